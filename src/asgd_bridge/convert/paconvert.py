"""``--with-paconvert``: run PaConvert over ASGD Bridge's output so the result is a whole Paddle program.

PaConvert (optional dependency, extra ``convert``) converts the model and data code; ASGD Bridge has already
rewritten the optimizer code, which PaConvert leaves alone. PaConvert regenerates each file it touches, so
its comments are lost there (a PaConvert habit); the optimizer mapping is ours either way.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .files import atomic_write, iter_tree, kind_of

__all__ = ["PaConvertError", "PaConvertResult", "available", "run_paconvert"]

#: PaConvert prefixes each line it could not convert with this marker.
UNSUPPORTED_MARK = ">>>>>>"


class PaConvertError(RuntimeError):
    """PaConvert is missing or failed."""


@dataclass
class PaConvertResult:
    """Files written, lines PaConvert marked as not converted (``(path, line)`` each), and Python files
    it wrote that do not compile for another reason (``(path, line, column, message)`` each)."""

    files: list[Path]
    unsupported: list[tuple[Path, int]]
    log: str
    invalid: list[tuple[Path, int, int, str]] = field(default_factory=list)


def available() -> bool:
    """Whether PaConvert can be imported."""
    return importlib.util.find_spec("paconvert") is not None


def run_paconvert(source: Path, output: Path, timeout: float = 600.0) -> PaConvertResult:
    """Run PaConvert on ``source`` (a file or tree) and write all it produced into ``output`` atomically.

    PaConvert converts the ``*.py`` files and copies the others (``requirements.txt``: ``torch`` becomes
    ``paddlepaddle-gpu``). Every Python file it wrote is compiled: a line it marked ``>>>>>>`` is in
    :attr:`PaConvertResult.unsupported`, any other error (a mangled import) in ``invalid``.

    PaConvert runs in a child process on a staging copy, so its console banner and any crash stay out of
    this process and a failure leaves ``output`` as it was. The child is isolated from the code it converts:
    ``python -I`` (no current directory or script directory on ``sys.path``, no ``PYTHON*`` variables, no
    user site) started in a fresh empty directory, so a ``json.py``, ``ast.py`` or ``paconvert/`` in the
    repository being converted (or in the current directory) is never imported; PaConvert itself comes from
    this interpreter's environment.

    Raises:
        PaConvertError: PaConvert is not installed or exited with an error.
    """
    if not available():
        raise PaConvertError(
            "PaConvert is not installed: pip install 'asgd-bridge[convert]' (or pip install paconvert)"
        )
    with tempfile.TemporaryDirectory(prefix="asgd-bridge-paconvert-") as tmp:
        staged = Path(tmp) / "out"
        if source.is_dir():
            staged.mkdir()
        else:
            staged = staged.with_suffix(source.suffix or ".py")
        log = Path(tmp) / "paconvert.log"
        neutral = Path(tmp) / "cwd"
        neutral.mkdir()
        cmd = [
            sys.executable,
            "-I",
            "-c",
            "import sys; from paconvert.main import main; sys.exit(main())",
            "--in_dir",
            str(source.resolve()),
            "--out_dir",
            str(staged),
            "--log_dir",
            str(log),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=neutral)
        text = log.read_text(errors="replace") if log.exists() else proc.stdout
        if proc.returncode != 0 or not staged.exists():
            tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
            raise PaConvertError(f"PaConvert failed (exit {proc.returncode}):\n{tail}")
        result = PaConvertResult([], [], text)
        for path in iter_tree(staged):
            if path.is_dir() or path.is_symlink():
                continue
            target = output / path.relative_to(staged) if staged.is_dir() else output
            data = path.read_bytes()
            if kind_of(path) == "python" or not staged.is_dir():
                _check(data, target, result)
            src = source / path.relative_to(staged) if source.is_dir() else source
            atomic_write(target, data, like=src if src.exists() else None)
            result.files.append(target)
        shutil.rmtree(staged, ignore_errors=True)
    return result


def _check(data: bytes, target: Path, result: PaConvertResult) -> None:
    """Record ``target``'s ``>>>>>>`` lines, and whether it compiles for another reason."""
    text = data.decode("utf-8", "replace")
    marked = set()
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(UNSUPPORTED_MARK):
            marked.add(number)
            result.unsupported.append((target, number))
    try:
        compile(text, str(target), "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:
        if exc.lineno not in marked:
            result.invalid.append((target, exc.lineno or 0, exc.offset or 0, exc.msg))
    except (ValueError, RecursionError, MemoryError) as exc:
        result.invalid.append((target, 0, 0, f"{type(exc).__name__}: {exc}"))
