"""The converter's entry point: :func:`convert_source` runs one direction's codemod over one file's text.

Each direction's codemod lives in one module (:mod:`.to_paddle`, :mod:`.to_torch`), driven by the rows of
:mod:`.rules`; this module only picks one.
"""

from __future__ import annotations

import libcst as cst
from libcst.codemod import CodemodContext

from .changes import Change, ConvertResult
from .command import ConvertCommand
from .to_paddle import TorchToPaddle
from .to_torch import PaddleToTorch

__all__ = ["Change", "ConvertResult", "convert_source", "PaddleToTorch", "TorchToPaddle"]

DIRECTIONS: dict[str, type[ConvertCommand]] = {"paddle": TorchToPaddle, "torch": PaddleToTorch}


def convert_source(code: str, to: str = "paddle", filename: str = "<string>") -> ConvertResult:
    """Convert one file's source. Files that never spell ``ASGD`` are returned as they are, unparsed.

    Only the nodes that name the class (and the uses that would crash after migration) are rewritten; the
    rest of the file round-trips byte for byte, comments included.

    Raises:
        libcst.ParserSyntaxError: the source is not valid Python.
    """
    if "ASGD" not in code:
        return ConvertResult(code, [])
    module = cst.parse_module(code)
    command = DIRECTIONS[to](CodemodContext(filename=filename))
    new = command.transform_module(module)
    return ConvertResult(new.code, command.changes)
