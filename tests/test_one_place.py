"""Rules written once (issue 12, docs/architecture.md "One rule, one place"): the task names,
the progress bar, the normalised confusion matrix, the memory-or-memmap store.

The source checks read transferkit's files with ``ast``, so that a second copy of a rule is
found the moment it is written, not when it drifts.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit._tasks as tasks
from transferkit import _io

ROOT = Path(__file__).resolve().parent.parent / "transferkit"
SOURCES = {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text(encoding="utf-8"))
           for p in sorted(ROOT.rglob("*.py"))}


# -- task names ------------------------------------------------------------------------------
def _task_literals(tree: ast.AST) -> list[int]:
    """Lines of tuple/list/set literals naming three or more of the tasks: a copy of a task
    list (a pair such as ``("regression", "image2image")`` is a rule about those two; a dict
    keyed by task, such as ``LOSSES``, holds per-task values; ``Literal[...]`` is a type)."""
    names = set(tasks.TASKS)
    in_literal = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Subscript)
                  and getattr(node.value, "id", getattr(node.value, "attr", None)) == "Literal"
                  for n in ast.walk(node.slice)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and id(node) not in in_literal:
            found = {i.value for i in node.elts
                     if isinstance(i, ast.Constant) and i.value in names}
            if len(found) >= 3:
                lines.append(node.lineno)
    return lines


def test_the_task_names_are_written_once():
    copies = {f: lines for f, tree in SOURCES.items() if f != "_tasks.py"
              for lines in [_task_literals(tree)] if lines}
    assert not copies, (f"task names written outside transferkit/_tasks.py: {copies}; import "
                        "TASKS / CLASSIFICATION_TASKS / DENSE_TASKS from there")
    assert _task_literals(SOURCES["_tasks.py"])  # the check sees the one definition


def test_every_layer_reads_the_same_task_names():
    from transferkit import transfer_model
    from transferkit.data import dense
    from transferkit.metrics import classification
    from transferkit.training import losses

    assert losses.TASKS is tasks.TASKS and losses.DENSE_TASKS is tasks.DENSE_TASKS
    assert transfer_model.DENSE_TASKS is tasks.DENSE_TASKS
    assert transfer_model.CLASSIFICATION_TASKS is classification.TASKS is tasks.CLASSIFICATION_TASKS
    assert set(tasks.TASKS) == set(tasks.CLASSIFICATION_TASKS) | set(tasks.DENSE_TASKS)
    assert dense.TARGET_KINDS == ("mask", "image")


def test_replace_head_names_every_task_in_its_error():
    import transferkit as tk

    with pytest.raises(ValueError, match=r"task must be None or one of \['multiclass', "
                       r"'multilabel', 'regression', 'segmentation', 'image2image'\]"):
        tk.replace_head(tk.load_backbone("resnet18"), 2, task="detection")


# -- memory-or-memmap store ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.uint8])
def test_allocate_store_is_in_memory_within_the_budget_else_a_memmap(dtype):
    small, path, keep = _io.allocate_store((2, 3), dtype, 10**6)
    assert path is None and keep is None and small.dtype == dtype
    big, path, keep = _io.allocate_store((4, 5), dtype, 8)
    assert isinstance(keep, np.memmap) and path is not None and big.dtype == dtype
    big[:] = 3
    assert float(np.asarray(keep).astype(np.float64).sum()) == 60.0  # one buffer, shared
    assert not Path(path).exists()  # POSIX: unlinked at once, nothing left behind


def test_no_other_module_allocates_a_memmap():
    users = sorted(f for f, tree in SOURCES.items() if f != "_io.py" for node in ast.walk(tree)
                   if isinstance(node, ast.Attribute) and node.attr == "open_memmap")
    assert not users, f"{users} open a memmap themselves; call transferkit._io.allocate_store"


# -- the progress bar ------------------------------------------------------------------------
def _imports_tqdm(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tqdm" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tqdm":
            return True
    return False


def test_only_the_helper_imports_tqdm():
    direct = sorted(f for f, tree in SOURCES.items() if f != "_log.py" and _imports_tqdm(tree))
    assert not direct, f"{direct} import tqdm; use transferkit._log.progress_bar"
    assert _imports_tqdm(SOURCES["_log.py"])  # the check sees the one import
    assert _imports_tqdm(ast.parse("def f():\n    from tqdm.auto import tqdm\n"))


class _Terminal:
    """A stderr that says it is a terminal, and keeps what is written."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass


def test_progress_bar_draws_on_a_terminal_only_and_never_when_off(monkeypatch):
    from transferkit._log import progress_bar

    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    with progress_bar(total=4, desc="cache", enabled=True) as bar:
        assert not bar.disable
        bar.update(4)
    assert "cache:" in term.text and "0/4" in term.text  # drawn (then cleared: leave=False)
    term.text = ""
    with progress_bar(total=4, desc="cache", enabled=False) as bar:
        assert bar.disable
        bar.update(4)
    assert term.text == ""
    assert list(progress_bar(range(3), enabled=False)) == [0, 1, 2]  # still iterates
    monkeypatch.setattr("sys.stderr", type("Pipe", (_Terminal,), {"isatty": lambda s: False})())
    assert progress_bar(total=1, enabled=True).disable  # a log file or pipe: no bar


def test_training_and_evaluation_bars_go_through_the_helper(monkeypatch):
    """finetune's epochs, its feature cache and evaluate all ask the helper for their bar."""
    import transferkit as tk
    from transferkit import _log

    calls = []
    real = _log.progress_bar

    def spy(*args, **kwargs):
        calls.append((kwargs.get("desc"), kwargs.get("enabled")))
        return real(*args, **kwargs)

    for name in ("transferkit.evaluate", "transferkit.training.feature_cache",
                 "transferkit.training.trainer"):  # modules (tk.evaluate is the function)
        monkeypatch.setattr(sys.modules[name], "progress_bar", spy)
    torch.manual_seed(0)
    X, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 2
    model = tk.replace_head(tk.load_backbone("resnet18", weights=None), 2)
    tk.freeze(model)
    tk.finetune(model, (X, y), strategy="linear_probe", epochs=1, batch_size=4, augment=False,
                progress=False, seed=0)
    tk.evaluate(model, (X, y), batch_size=4, progress=False)
    descs = [d for d, _ in calls]
    assert any(d and d.startswith("epoch 1") for d in descs), descs
    assert "evaluate" in descs and len(calls) >= 3, descs
    assert all(on is False for _, on in calls)  # progress=False reaches every bar


# -- the normalised confusion matrix ---------------------------------------------------------
@pytest.mark.parametrize("normalize", ["true", "pred", "all"])
def test_normalised_confusion_matrix_is_scikit_learns(normalize):
    """The plotted matrix equals sklearn's confusion_matrix(normalize=) on the raw labels,
    an empty class (a zero row and column) included."""
    pytest.importorskip("matplotlib")
    from sklearn.metrics import confusion_matrix

    from transferkit.metrics.classification import compute_report

    rng = np.random.default_rng(0)
    y = rng.choice([0, 1, 3], size=60)  # class 2 never occurs
    logits = rng.normal(size=(60, 4))
    logits[np.arange(60), y] += 1.0
    logits[:, 2] -= 10.0  # ... and is never predicted
    report = compute_report(y, logits, task="multiclass")
    fig = report.plot_confusion_matrix(normalize=normalize)
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    expected = confusion_matrix(y, logits.argmax(1), labels=range(4), normalize=normalize)
    np.testing.assert_allclose(drawn, expected, rtol=0, atol=1e-12)
    assert not np.isnan(drawn).any() and drawn[2].sum() == 0


# -- measurement history lives in docs/ ------------------------------------------------------
#: What a benchmark figure looks like in prose: a rate, a speed ratio, a timing pair, "measured
#: at/on <number>", the machine's load. Rules and pointers ("see docs/benchmarks.md") pass.
_FIGURE = re.compile(
    r"\d[\d.,]*\s*(?:training\s+)?(?:images/s|img/s)|\d+(?:\.\d+)?x\s+(?:faster|slower)"
    r"|\d+(?:\.\d+)?\s*m?s\s+(?:against|vs\.?)\s+\d|measured\s+(?:at|on)\s+\d"
    r"|on\s+\d\s+busy\s+cores|\b\d+\.\d+x\b")


def _prose(tree: ast.AST, source: str) -> list[tuple[int, str]]:
    """Docstrings and comments (not code, not the f-strings that print a report's figures)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((getattr(node, "lineno", 1), " ".join(doc.split())))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string))
    return out


def test_no_benchmark_figures_in_docstrings_or_comments():
    found = [f"{f}:{line}: {m.group(0)!r}" for f in SOURCES
             for line, text in _prose(SOURCES[f], (ROOT / f).read_text(encoding="utf-8"))
             for m in _FIGURE.finditer(text)]
    assert not found, ("measured figures in the code (move them to docs/benchmarks.md, "
                       "'Measurements behind rules in the code', and leave the rule and a "
                       "pointer): " + "; ".join(found))
    old = '"""Channels-last, about 1.8x faster (measured on 2 busy cores: 77 -> 132 images/s)."""'
    assert len(list(_FIGURE.finditer(old))) == 3  # the check sees the shape it forbids
