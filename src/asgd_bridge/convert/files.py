"""Files and trees for the converter: walking, per-file isolation, lossless writes, patches, outcomes.

A tree is converted as a whole: ``*.py`` files and notebook code cells by the codemod, Hydra-style
configs by :mod:`.configs`; every other file is copied unchanged (``-o``). Each file that needs parsing
is converted in its own child process (:mod:`.isolate`), in parallel, so a file that crashes, recurses or
overruns a limit is reported with its path and the run goes on. Nothing is written until every file is
converted. A file that cannot be converted is reported as ``file:line:column`` and left untouched.

What is kept: the bytes of every file that does not change; a UTF-8 BOM, CRLF and CR-only line endings;
the mode; symbolic links (``--in-place`` rewrites the link's target and keeps the link; a link leaving
the tree is refused; ``-o`` recreates links that stay inside the tree); hard links (``--in-place`` writes
through the shared inode instead of replacing it, so every name sees the new text, which is not atomic:
the new text is complete in memory first, then written and synced in one go; ``-o`` links the copies
likewise). A read-only file is not rewritten in place unless forced.
"""

from __future__ import annotations

import ast
import difflib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from .changes import Change
from .configs import CONFIG_SUFFIXES, convert_config
from .isolate import DEFAULT_LIMITS, IsolationFailure, Limits, run_isolated

__all__ = [
    "Finding",
    "FileOutcome",
    "atomic_write",
    "convert_paths",
    "convert_text",
    "iter_python_files",
    "iter_tree",
    "kind_of",
    "unified_diff",
]

_SKIP_DIRS = frozenset(
    {
        "__pycache__", ".git", ".hg", ".svn", ".venv", "venv", ".tox", "node_modules", ".mypy_cache",
        ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints",
    }
)  # fmt: skip
_BOM = "\ufeff"
_NO_NEWLINE = "\\ No newline at end of file\n"


def kind_of(path: Path) -> str:
    """``"python"``, ``"notebook"``, ``"config"`` (YAML/JSON) or ``"other"`` (copied unchanged)."""
    suffix = path.suffix.lower()
    if suffix == ".py":
        return "python"
    if suffix == ".ipynb":
        return "notebook"
    if suffix in CONFIG_SUFFIXES:
        return "config"
    return "other"


@dataclass
class Finding:
    """Something in a file's output left to do by hand (``todo``) or worth knowing, at ``line``."""

    line: int
    message: str
    todo: bool = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"line": self.line, "message": self.message, "todo": self.todo}


@dataclass
class FileOutcome:
    """What happened to one file: its path, where it went, whether it changed, its error, the rewrites
    made and the findings (PaConvert's unconverted lines, notes)."""

    path: Path
    output: Path | None
    kind: str = "python"
    changed: bool = False
    error: str | None = None
    changes: list[Change] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    size: int = 0
    diff: str = ""

    @property
    def todo(self) -> int:
        """How many things in this file are left to do by hand (reported calls, unconverted lines)."""
        return sum(c.kind == "report" for c in self.changes) + sum(f.todo for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--report``."""
        return {
            "path": str(self.path),
            "output": str(self.output) if self.output is not None else None,
            "kind": self.kind,
            "changed": self.changed,
            "error": self.error,
            "changes": [c.as_dict() for c in sorted(self.changes, key=lambda c: (c.line, c.column))],
            "findings": [f.as_dict() for f in self.findings],
        }


# ---------------------------------------------------------------------------------------------- walking
def iter_tree(root: Path, skip: Path | None = None) -> Iterator[Path]:
    """``root`` itself if it is a file, else every file and symbolic link below it, in sorted order
    (version-control, cache and virtual-environment folders, and ``skip``, left out)."""
    if not root.is_dir():
        yield root
        return
    skip_real = skip.resolve() if skip is not None else None
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d in _SKIP_DIRS or (skip_real is not None and (here / d).resolve() == skip_real):
                continue
            if (here / d).is_symlink():
                yield here / d  # a linked folder is one entry: recreated, never walked
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            yield here / name


def iter_python_files(root: Path) -> Iterator[Path]:
    """``root`` itself if it is a file, else every ``*.py`` below it (as :func:`iter_tree` walks)."""
    for path in iter_tree(root):
        if path is root or kind_of(path) == "python":
            yield path


# ---------------------------------------------------------------------------------------------- writing
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


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst, stat.S_IMODE(src.stat().st_mode)) as tmp:
        shutil.copyfile(src, tmp)


def _write_through(path: Path, data: bytes) -> None:
    """Rewrite ``path``'s inode itself (a hard-linked file keeps all its names)."""
    with open(path, "r+b") as fh:
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


def _link(dst: Path, make: Callable[[Path], None]) -> None:
    """Create a link at ``dst`` with ``make(tmp)`` beside it, then rename it over ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    make(tmp)
    os.replace(tmp, dst)


# ---------------------------------------------------------------------------------------------- diffs
def _patch_lines(text: str) -> list[str]:
    # patch(1) splits on "\n" only (a CR-only file is one line); a last line without "\n" carries the
    # marker, so difflib compares and prints it as the pair of lines a patch needs.
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1] + "\n" + _NO_NEWLINE)
    return out


def unified_diff(old: str, new: str, path: str) -> str:
    """A ``diff -u`` of one file that ``patch -p1`` and ``git apply`` accept (a file without a final
    newline gets ``\\ No newline at end of file``)."""
    return "".join(difflib.unified_diff(_patch_lines(old), _patch_lines(new), f"a/{path}", f"b/{path}"))


def _diff_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path).lstrip("/")


# ---------------------------------------------------------------------------------------------- converting
def _python_position(code: str, filename: str, notebook: bool) -> SyntaxError | None:
    flags = ast.PyCF_ONLY_AST | (ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if notebook else 0)
    try:
        compile(code, filename, "exec", flags=flags, dont_inherit=True)
    except SyntaxError as exc:
        return exc
    except (ValueError, RecursionError, MemoryError):  # null bytes, too deep for the compiler
        return None
    return None


def _syntax_message(exc: BaseException) -> str:
    from .transform import InvalidPython

    if isinstance(exc, SyntaxError):
        return f"{exc.lineno or 0}:{exc.offset or 0}: invalid Python: {exc.msg}"
    if isinstance(exc, InvalidPython):  # convert_source's own compile(): Python's position and words
        return f"{exc.lineno}:{exc.offset}: invalid Python: {exc.message}"
    line = getattr(exc, "raw_line", None) or 0
    col = getattr(exc, "raw_column", None)
    col = col + 1 if isinstance(col, int) else 0
    message = getattr(exc, "message", None) or str(exc).splitlines()[0]
    return f"{line}:{col}: libcst cannot parse this file: {message}"


def _convert_python(
    text: str, to: str, filename: str, notebook: bool = False
) -> tuple[str, list[Change], str | None]:
    """One Python source through the codemod, its BOM and CR-only line endings kept. Returns
    ``(code, changes, error)``; with an error, ``code`` is ``text``. The result compiles (convert_source
    checks it; Python's compiler runs here again only to place an error)."""
    import libcst as cst

    from .transform import convert_source

    bom = text.startswith(_BOM)
    body = text[1:] if bom else text
    cr_only = "\r" in body and "\n" not in body
    if cr_only:
        body = body.replace("\r", "\n")
    try:
        result = convert_source(body, to=to, filename=filename)
    except (cst.ParserSyntaxError, SyntaxError) as exc:
        return text, [], _syntax_message(_python_position(body, filename, notebook) or exc)
    code = result.code  # convert_source compiled it: valid Python, or the source back with a report
    if cr_only:
        code = code.replace("\n", "\r")
    return (_BOM + code if bom else code), result.changes, None


def convert_text(kind: str, text: str, to: str, filename: str) -> tuple[str, list[Change], list[str], str]:
    """Convert one file's text of ``kind`` (see :func:`kind_of`). Returns ``(code, changes, errors,
    note)``; never raises for bad input. This is what each isolated child runs."""
    if kind == "python":
        code, changes, error = _convert_python(text, to, filename)
        return code, changes, [f"{filename}:{error}"] if error else [], ""
    if kind == "notebook":
        from .notebook import convert_notebook

        def cell(source: str, label: str) -> tuple[str, list[Change], str | None]:
            return _convert_python(source, to, label, notebook=True)

        nb = convert_notebook(text, cell, filename)
        return nb.code, nb.changes, nb.errors, nb.note
    if kind == "config":
        code, changes = convert_config(text, to)
        return code, changes, [], ""
    return text, [], [], ""


@dataclass
class _Plan:
    path: Path
    target: Path | None
    kind: str
    raw: bytes = b""
    new: bytes | None = None
    outcome: FileOutcome = field(init=False)

    def __post_init__(self) -> None:
        self.outcome = FileOutcome(self.path, self.target, self.kind)


def _is_dir(path: Path) -> bool:
    return path.is_dir()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _target(path: Path, source: Path, output: Path | None, write: bool) -> Path | None:
    if output is None:
        return path if write else None
    if path is source or not source.is_dir():
        return output
    return output / path.relative_to(source)


def convert_paths(
    source: Path,
    output: Path | None = None,
    to: str = "paddle",
    write: bool = True,
    want_diff: bool = False,
    progress: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
    force: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    jobs: int | None = None,
) -> list[FileOutcome]:
    """Convert a file or a tree. ``output`` mirrors ``source``; ``None`` with ``write`` means in place.

    Args:
        source: a ``.py`` file, a notebook, a config, or a folder.
        output: where the converted file or tree goes; every other file of the tree is copied there.
        to: ``"paddle"`` (torch.optim.ASGD programs) or ``"torch"`` (paddle.optimizer.ASGD programs).
        write: False for ``--check`` / ``--diff`` (nothing is written).
        want_diff: keep each changed file's unified diff (a valid patch) in its outcome.
        progress: wraps the iterator of finished conversions (a progress bar), given their count.
        force: rewrite read-only files in place.
        limits: each file's time and memory limit.
        jobs: child processes at once (default: every core).
    """
    in_place = write and output is None
    tree = source.is_dir()
    plans: list[_Plan] = []
    for path in iter_tree(source, skip=output if tree and output is not None else None):
        kind = "other" if path.is_dir() else kind_of(path)
        if not tree and kind == "other":
            kind = "python"  # a file given by name is a Python source, whatever its name
        target = _target(path, source, output, write)
        plan = _Plan(path, target, "link" if tree and path.is_symlink() else kind)
        plan.outcome.kind = kind
        plans.append(plan)
    # Read what may need converting; decide which files need a child.
    isolated: list[_Plan] = []
    for plan in plans:
        kind = plan.outcome.kind
        if kind == "other" or _is_dir(plan.path):
            if not _is_dir(plan.path):
                plan.outcome.size = plan.path.stat().st_size
            continue
        if plan.kind == "link" and not _inside(plan.path, source):
            if in_place:
                plan.outcome.error = f"{plan.path}: a link to outside the tree; convert its target directly"
                continue
        try:
            plan.raw = plan.path.read_bytes()
        except OSError as exc:
            plan.outcome.error = f"{plan.path}: cannot read: {exc.strerror}"
            continue
        plan.outcome.size = len(plan.raw)
        if b"ASGD" not in plan.raw:
            continue
        try:
            text = plan.raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            plan.outcome.error = f"{plan.path}: not UTF-8 (byte {exc.start}); left untouched"
            continue
        if kind == "config":
            _finish(plan, convert_text(kind, text, to, str(plan.path)))
        else:
            isolated.append(plan)
    work = [(p.outcome.kind, p.raw.decode("utf-8"), to, str(p.path)) for p in isolated]
    results: Iterator[tuple[int, Any]] = run_isolated(convert_text, work, limits, jobs)
    if progress is not None:
        results = progress(results, len(isolated))
    for index, value in results:
        plan = isolated[index]
        if isinstance(value, IsolationFailure):
            plan.outcome.error = f"{plan.path}: {value.message}"
        else:
            _finish(plan, value)
    # Diffs, then writes: nothing is written before every file is converted.
    for plan in plans:
        o = plan.outcome
        if want_diff and o.changed and plan.new is not None:
            o.diff = unified_diff(plan.raw.decode("utf-8"), plan.new.decode("utf-8"), _diff_name(plan.path))
    if write:
        _write_all(plans, source, in_place, force)
    return [p.outcome for p in plans if not (p.outcome.kind == "other" and (in_place or not write))]


def _finish(plan: _Plan, value: tuple[str, list[Change], list[str], str]) -> None:
    code, changes, errors, note = value
    o = plan.outcome
    o.changes = changes
    if note:
        o.findings.append(Finding(0, note, todo=False))
    if errors and code == plan.raw.decode("utf-8"):
        o.error = "\n".join(errors)
        return
    if errors:  # a notebook: the other cells were converted
        o.error = "\n".join(errors)
    new = code.encode("utf-8")
    if new != plan.raw:
        plan.new = new
        o.changed = True


def _write_all(plans: list[_Plan], source: Path, in_place: bool, force: bool) -> None:
    done: dict[tuple[int, int], Path] = {}  # (device, inode) -> the name written first
    for plan in plans:
        o = plan.outcome
        if o.error or o.output is None:
            continue
        try:
            if in_place:
                _write_in_place(plan, done, force)
            else:
                _write_copy(plan, source, done)
        except OSError as exc:
            o.error = f"{o.output}: cannot write: {exc.strerror or exc}"


def _write_in_place(plan: _Plan, done: dict[tuple[int, int], Path], force: bool) -> None:
    o = plan.outcome
    if plan.new is None or _is_dir(plan.path):
        return
    real = plan.path.resolve()
    st = real.stat()
    key = (st.st_dev, st.st_ino)
    if key in done:
        o.findings.append(Finding(0, f"the same file as {done[key]}: converted once", todo=False))
        return
    done[key] = plan.path
    if not stat.S_IMODE(st.st_mode) & 0o222 and not force:
        o.error = f"{plan.path}: read-only; not rewritten (--force rewrites it, keeping its mode)"
        return
    o.output = real if plan.path.is_symlink() else plan.path
    if st.st_nlink > 1:
        mode = stat.S_IMODE(st.st_mode)
        if not mode & stat.S_IWUSR:
            os.chmod(real, mode | stat.S_IWUSR)
        try:
            _write_through(real, plan.new)
        finally:
            os.chmod(real, mode)
        note = f"hard link ({st.st_nlink} names): written through the inode"
        o.findings.append(Finding(0, note, todo=False))
    else:
        atomic_write(real, plan.new)


def _write_copy(plan: _Plan, source: Path, done: dict[tuple[int, int], Path]) -> None:
    o = plan.outcome
    assert o.output is not None
    if plan.kind == "link" and _inside(plan.path, source):
        if plan.path.resolve() == o.output.resolve():
            return
        target = os.readlink(plan.path)
        _link(o.output, lambda tmp: os.symlink(target, tmp))
        return
    if _is_dir(plan.path):
        target = os.readlink(plan.path)
        _link(o.output, lambda tmp: os.symlink(target, tmp))
        o.findings.append(Finding(0, "a linked folder outside the tree: the link is copied", todo=False))
        return
    st = plan.path.stat()
    key = (st.st_dev, st.st_ino)
    if st.st_nlink > 1 and key in done:
        first = done[key]
        try:
            _link(o.output, lambda tmp: os.link(first, tmp))
            return
        except OSError:
            pass  # another file system: write a copy
    if o.output.exists() and o.output.resolve() == plan.path.resolve():
        if plan.new is not None:
            atomic_write(o.output, plan.new)
    elif plan.new is not None:
        atomic_write(o.output, plan.new, like=plan.path)
    else:
        _copy(plan.path, o.output)
    if st.st_nlink > 1:
        done[key] = o.output
