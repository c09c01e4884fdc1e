"""Jupyter notebooks (``.ipynb``): each code cell converted as its own Python source, the rest untouched.

Outputs, execution counts, metadata and markdown/raw cells are not touched. IPython lines (``%magic``,
``!shell``, ``?help``) are set aside as comments while the cell is converted and put back after; a cell
magic (``%%bash`` ...) leaves its cell alone. The notebook is written back in the JSON layout it was read
in (nbformat's: one-space indent, sorted keys, non-ASCII kept) when that layout reproduces the file byte
for byte; otherwise in nbformat's layout, said in the outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .changes import Change

__all__ = ["CellChange", "NotebookResult", "convert_notebook"]

_MAGIC = re.compile(r"^[ \t]*[%!?]")
_MARK = "# asgd-bridge-ipython-line "


@dataclass
class CellChange(Change):
    """A :class:`Change` in notebook cell ``cell`` (0-based index in ``cells``); ``line`` is the cell's."""

    cell: int = 0

    def as_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"cell": self.cell, **super().as_dict()}

    def summary(self) -> str:  # noqa: D102
        return f"cell {self.cell}:{super().summary()}"


@dataclass
class NotebookResult:
    """The notebook's new text, the changes (per cell), and the cells that could not be converted."""

    code: str
    changes: list[Change]
    errors: list[str]
    note: str = ""


def _layouts() -> list[dict[str, Any]]:
    return [
        {"indent": indent, "sort_keys": sort, "ensure_ascii": ascii_, "separators": (",", ": ")}
        for indent in (1, 2, 4)
        for sort in (True, False)
        for ascii_ in (False, True)
    ]


def _dump(nb: Any, layout: dict[str, Any], newline: bool) -> str:
    return json.dumps(nb, **layout) + ("\n" if newline else "")


def _protect(source: str) -> tuple[str, list[str]]:
    """The cell with IPython lines replaced by numbered comments (same line count), and those lines."""
    saved: list[str] = []
    out = []
    for line in source.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if _MAGIC.match(body):
            indent = body[: len(body) - len(body.lstrip())]
            out.append(f"{indent}{_MARK}{len(saved)}{line[len(body) :]}")
            saved.append(body)
        else:
            out.append(line)
    return "".join(out), saved


def _restore(code: str, saved: list[str]) -> str:
    if not saved:
        return code
    pattern = re.compile(r"^[ \t]*" + re.escape(_MARK) + r"(\d+)$", re.M)
    return pattern.sub(lambda m: saved[int(m.group(1))], code)


def convert_notebook(
    text: str, convert: Callable[[str, str], tuple[str, list[Change], str | None]], filename: str
) -> NotebookResult:
    """Convert every code cell of the notebook ``text`` with ``convert(cell_source, label)``, which
    returns ``(new_source, changes, error)``. A cell with an error is left as it was and named."""
    try:
        nb = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return NotebookResult(text, [], [f"{filename}: not a notebook (invalid JSON: {exc})"])
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        return NotebookResult(text, [], [f"{filename}: not a notebook (no 'cells' list)"])
    newline = text.endswith("\n")
    layout = next((lay for lay in _layouts() if _dump(nb, lay, newline) == text), None)
    changes: list[Change] = []
    errors: list[str] = []
    touched = False
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        raw = cell.get("source", "")
        source = "".join(raw) if isinstance(raw, list) else raw
        if not isinstance(source, str) or "ASGD" not in source or source.lstrip().startswith("%%"):
            continue
        protected, saved = _protect(source)
        new, cell_changes, error = convert(protected, f"{filename}:cell {index}")
        if error:
            errors.append(f"{filename}:cell {index}:{error}")
            continue
        changes.extend(CellChange(**{**vars(c), "cell": index}) for c in cell_changes)
        new = _restore(new, saved)
        if new != source:
            cell["source"] = new.splitlines(keepends=True) if isinstance(raw, list) else new
            touched = True
    if not touched:
        return NotebookResult(text, changes, errors)
    if layout is None:
        note = "notebook JSON layout not recognised: written in nbformat's layout"
        return NotebookResult(_dump(nb, _layouts()[0], True), changes, errors, note)
    return NotebookResult(_dump(nb, layout, newline), changes, errors)
