"""Rules written once (issue 12, docs/architecture.md "One rule, one place"): the task names,
the progress bar, the normalised confusion matrix, the memory-or-memmap store.

The source checks read transferkit's files with ``ast``, so that a second copy of a rule is
found the moment it is written, not when it drifts.
"""

from __future__ import annotations

import ast
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
