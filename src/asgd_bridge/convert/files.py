"""Files and trees for the converter: walking, atomic writes, unified diffs, per-file outcomes.

A file that fails to parse is reported with ``file:line:column`` and left untouched; the others go on.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from .changes import Change
from .transform import convert_source

__all__ = [
    "FileOutcome",
    "atomic_write",
    "convert_file",
    "convert_paths",
    "iter_python_files",
    "unified_diff",
]

_SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", "node_modules"})


@dataclass
class FileOutcome:
    """What happened to one file: its path, whether it changed, its error, the rewrites made."""

    path: Path
    output: Path | None
    changed: bool = False
    error: str | None = None
    changes: list[Change] = field(default_factory=list)
    size: int = 0
    diff: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--report``."""
        return {
            "path": str(self.path),
            "output": str(self.output) if self.output is not None else None,
            "changed": self.changed,
            "error": self.error,
            "changes": [c.as_dict() for c in sorted(self.changes, key=lambda c: (c.line, c.column))],
        }


def iter_python_files(root: Path) -> Iterator[Path]:
    """``root`` itself if it is a file, else every ``*.py`` below it in sorted order (hidden and cache
    folders skipped)."""
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name


def atomic_write(path: Path, data: bytes, like: Path | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader sees the old file or the new one, never half of it. The mode is the existing file's, else
    ``like``'s (the source of a copy), else the umask default.
    """
    mode = None  # atomic_path: the existing file's mode, else the umask default
    if not path.exists() and like is not None and like.exists():
        mode = stat.S_IMODE(like.stat().st_mode)
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def unified_diff(old: str, new: str, path: str) -> str:
    """A ``diff -u`` of one file, as ruff and black print it."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )


def _syntax_error(path: Path, exc: Exception) -> str:
    line = getattr(exc, "raw_line", None) or getattr(exc, "lineno", None) or 0
    col = getattr(exc, "raw_column", None)
    col = (col + 1) if isinstance(col, int) else (getattr(exc, "offset", None) or 0)
    message = getattr(exc, "message", None) or str(exc).splitlines()[0]
    return f"{path}:{line}:{col}: invalid Python: {message}"


def convert_file(
    path: Path, output: Path | None, to: str = "paddle", write: bool = True, want_diff: bool = False
) -> FileOutcome:
    """Convert one file into ``output`` (``None``: nothing written). Never raises for bad input.

    A file whose text is unchanged is copied byte for byte when ``output`` differs from ``path``.
    """
    import libcst as cst

    outcome = FileOutcome(path=path, output=output)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        outcome.error = f"{path}: cannot read: {exc.strerror}"
        return outcome
    outcome.size = len(raw)
    if b"ASGD" in raw:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            outcome.error = f"{path}: not UTF-8 (byte {exc.start}); left untouched"
            return outcome
        try:
            result = convert_source(text, to=to, filename=str(path))
        except cst.ParserSyntaxError as exc:
            outcome.error = _syntax_error(path, exc)
            return outcome
        except RecursionError:
            outcome.error = f"{path}: nested too deeply to parse; left untouched"
            return outcome
        outcome.changes = result.changes
        outcome.changed = result.code != text
        new = result.code.encode("utf-8") if outcome.changed else raw
        if want_diff and outcome.changed:
            outcome.diff = unified_diff(text, result.code, str(path))
    else:
        new = raw
    if write and output is not None and (outcome.changed or output.resolve() != path.resolve()):
        try:
            atomic_write(output, new, like=path)
        except OSError as exc:
            outcome.error = f"{output}: cannot write: {exc.strerror}"
    return outcome


def convert_paths(
    source: Path,
    output: Path | None = None,
    to: str = "paddle",
    write: bool = True,
    want_diff: bool = False,
    progress: Callable[[Iterator[Path], int], Iterator[Path]] | None = None,
) -> list[FileOutcome]:
    """Convert a file or a tree. ``output`` mirrors ``source``; ``None`` with ``write`` means in place.

    Args:
        source: a ``.py`` file or a folder.
        output: where the converted file or tree goes (only ``*.py`` files are written).
        to: ``"paddle"`` (torch.optim.ASGD programs) or ``"torch"`` (paddle.optimizer.ASGD programs).
        write: False for ``--check`` / ``--diff`` (nothing is written).
        want_diff: keep each changed file's unified diff in its outcome.
        progress: wraps the file iterator (a progress bar), given the file count.
    """
    files = list(iter_python_files(source))
    iterator: Iterator[Path] = iter(files)
    if progress is not None:
        iterator = progress(iterator, len(files))
    outcomes = []
    for path in iterator:
        if output is None:
            target: Path | None = path if write else None
        elif source.is_file():
            target = output
        else:
            target = output / path.relative_to(source)
        outcomes.append(convert_file(path, target, to=to, write=write, want_diff=want_diff))
    return outcomes
