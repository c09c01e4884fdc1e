"""The converter's entry point: :func:`convert_source` runs one direction's codemod over one file's text.

Each direction's codemod lives in one module (:mod:`.to_paddle`, :mod:`.to_torch`), driven by the rows of
:mod:`.rules`; this module only picks one, and guarantees valid Python in and out.
"""

from __future__ import annotations

import libcst as cst
from libcst.codemod import CodemodContext

from .changes import Change, ConvertResult
from .command import ConvertCommand
from .to_paddle import TorchToPaddle
from .to_torch import PaddleToTorch

__all__ = ["Change", "ConvertResult", "InvalidPython", "convert_source", "PaddleToTorch", "TorchToPaddle"]

DIRECTIONS: dict[str, type[ConvertCommand]] = {"paddle": TorchToPaddle, "torch": PaddleToTorch}


class InvalidPython(cst.ParserSyntaxError):
    """The source is not valid Python, at the position Python's own compiler gives (``lineno``,
    ``offset``, 1-based; ``raw_line`` / ``raw_column`` as libcst spells them, column 0-based)."""

    def __init__(self, error: SyntaxError, code: str) -> None:
        self.lineno = error.lineno or 0
        self.offset = error.offset or 0
        lines = code.splitlines(True) or [""]
        column = max(self.offset - 1, 0)
        super().__init__(error.msg, lines=lines, raw_line=self.lineno, raw_column=column)

    def __str__(self) -> str:
        return f"{self.message} (line {self.lineno}, column {self.offset})"


def check_python(code: str, filename: str = "<string>") -> None:
    """Raise :class:`InvalidPython` unless ``code`` compiles (parser, tokenizer and compiler checks:
    duplicate keywords, ``return`` outside a function...)."""
    try:
        compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError and TabError too
        raise InvalidPython(exc, code) from None
    except (ValueError, MemoryError, RecursionError) as exc:  # null bytes; too deep for the compiler
        raise InvalidPython(SyntaxError(str(exc) or type(exc).__name__, (filename, 1, 1, "")), code) from None


def convert_source(code: str, to: str = "paddle", filename: str = "<string>") -> ConvertResult:
    """Convert one file's source. Files that never spell ``ASGD`` are returned as they are, unparsed.

    Only the nodes that name the class (and the uses that would crash after migration) are rewritten; the
    rest of the file round-trips byte for byte, comments included. The output is always valid Python: a
    rewrite that would not compile is not made (the source comes back unchanged, with a report).

    Raises:
        InvalidPython: the source is not valid Python (a ``libcst.ParserSyntaxError`` at Python's position).
    """
    if "ASGD" not in code:
        return ConvertResult(code, [])
    check_python(code, filename)
    module = cst.parse_module(code)
    command = DIRECTIONS[to](CodemodContext(filename=filename))
    new = command.convert(module).code
    try:
        check_python(new, filename)
    except InvalidPython as exc:
        reason = f"the rewrite would not be valid Python ({exc}): file left unchanged, please report it"
        report = Change(exc.lineno, exc.offset, "report", "", "(unchanged)", reason)
        return ConvertResult(code, [*command.changes, report])
    return ConvertResult(new, command.changes)
