"""Every example in docs/*.md runs: ``python`` blocks, and ``$ transferkit`` lines of
``console`` blocks.

The blocks of one page run in order, in one namespace, in a fresh working directory (so a page
can build on its earlier blocks and write ``runs/...``). A block is skipped only when it is
fenced as ```` ```python no-test ```` or preceded by ``<!-- no-test -->``, which is kept for
code that needs what a test machine lacks (a GPU, the network). A block fenced
```` ```python needs=onnxruntime,mlflow ```` runs only where those modules are installed (an
optional extra; CI installs them all).

In ``console`` blocks, a line ``$ transferkit ARGS`` runs ``transferkit.cli.main(ARGS)``
in-process. It must exit 0, unless the lines after it (its shown output) start with
``transferkit: error:``; then it must exit non-zero and print exactly that line on stderr.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_FENCE = re.compile(r"^```(\S*)[ \t]*(.*)$")

# Pages of other parts of the project whose code blocks are illustrations that cannot run as
# they stand. strict=True: the day a page runs, its entry must go (the test then XPASSes, a
# failure).
_NOT_RUNNABLE_YET: dict[str, str] = {}


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: bool
    needs: tuple[str, ...] = ()  # modules of an optional extra (```python needs=onnx)


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        lang, info, start = m.group(1), m.group(2), i
        prev = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        skip = "no-test" in info or prev == "<!-- no-test -->"
        needs = re.search(r"needs=(\S+)", info)
        out.append(Block(lang, "\n".join(body) + "\n", start + 1, skip,
                         tuple(needs.group(1).split(",")) if needs else ()))
        i += 1
    return out


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _run_console(block: Block, page: str, capsys) -> int:
    from transferkit.cli import main

    lines = block.code.splitlines()
    ran = 0
    for k, line in enumerate(lines):
        if not line.startswith("$ transferkit"):
            continue
        shown = []
        for nxt in lines[k + 1:]:
            if nxt.startswith("$ "):
                break
            shown.append(nxt)
        expected_error = next((s for s in shown if s.startswith("transferkit: error:")), None)
        capsys.readouterr()
        status = main(shlex.split(line[2:])[1:])
        err = capsys.readouterr().err.strip().splitlines()
        where = f"{page}:{block.line}: {line}"
        if expected_error is None:
            assert status == 0, f"{where} exited {status}: {err[-1:] or ''}"
        else:
            assert status != 0, f"{where} was shown failing but exited 0"
            assert err[-1:] == [expected_error], f"{where}: stderr {err}"
        ran += 1
    return ran


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_docs_page_examples_run(page: Path, tmp_path, monkeypatch, capsys, request) -> None:
    if page.name in _NOT_RUNNABLE_YET:
        request.applymarker(pytest.mark.xfail(reason=_NOT_RUNNABLE_YET[page.name], strict=True))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    ran = 0
    environ = dict(os.environ)  # pages may set variables (TORCH_HOME); keep them to the page
    try:
        for block in blocks(page):
            if block.skip or any(importlib.util.find_spec(m) is None for m in block.needs):
                continue
            if block.lang == "python":
                code = compile(block.code, f"{page.name}:{block.line}", "exec")
                exec(code, namespace)  # noqa: S102 - the docs' own examples
                ran += 1
            elif block.lang == "console":
                ran += _run_console(block, page.name, capsys)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    # A page with no runnable example is fine; one whose examples all get skipped is not.
    skipped = [b for b in blocks(page) if b.skip]
    assert ran or not skipped, f"{page.name}: every example is marked no-test"


def test_docs_skips_are_rare() -> None:
    """no-test marks are for code that needs a GPU or the network; keep them few."""
    skipped = [(p.name, b.line) for p in _pages() for b in blocks(p) if b.skip]
    assert len(skipped) <= 3, f"too many no-test blocks: {skipped}"


def test_docs_relative_links_resolve() -> None:
    """Every relative link in docs/ and the README points at a file that exists."""
    root = DOCS.parent
    bad = []
    for page in [root / "README.md", *_pages()]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                bad.append(f"{page.name} -> {target}")
    assert not bad, f"broken links: {bad}"


def test_docs_block_parser_sees_markers(tmp_path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n```python\na = 1\n```\n<!-- no-test -->\n\n```python\nb = 2\n```\n"
                    "```python no-test\nc = 3\n```\n```console\n$ transferkit list heads\n```\n")
    found = [(b.lang, b.code, b.skip) for b in blocks(page)]
    assert found == [("python", "a = 1\n", False), ("python", "b = 2\n", True),
                     ("python", "c = 3\n", True), ("console", "$ transferkit list heads\n", False)]
