"""Reading torch and Paddle files without running code they contain: the one home for every file we read.

A pickle is a program: loading one calls whatever importable function its ``GLOBAL`` opcodes name, so a
checkpoint from someone else can run anything as you. Paddle's ``.pdopt`` / ``.pdparams`` are plain pickles,
and ``paddle.load`` unpickles them with no restriction. This module loads them as torch's
``torch.load(weights_only=True)`` loads ``.pt`` files: through an unpickler whose ``find_class`` admits only
the globals that ``paddle.save`` writes for tensors and plain containers, and refuses any other with
:class:`UnsafeFileError` naming the global and the file.

What ``paddle.save`` writes (Paddle 3.x, ``paddle/framework/io.py``, pickle protocols 2, 3 and 4): a tensor
is reduced to ``tuple((name, ndarray))`` (``reduce_varbase``), or, in a flat state dict, to its ndarray plus a
``"StructuredToParameterName@@"`` name table (``_build_saved_state_dict``); an ndarray pickles as
``numpy._core.multiarray._reconstruct`` / ``numpy.ndarray`` / ``numpy.dtype`` (``numpy.core`` before
NumPy 2), a NumPy scalar as ``numpy._core.multiarray.scalar``, bytes under protocol 2 as
``_codecs.encode(s, "latin1")``, and containers as ``builtins`` tuple / set / frozenset / complex and
``collections.OrderedDict``. After unpickling, the plain structure becomes Paddle tensors through Paddle's
own post-processing (the part of ``paddle.load`` that follows ``pickle.load``, which only walks containers
and calls ``paddle.to_tensor``), so a benign file loads to exactly what ``paddle.load`` returns.

torch files go through ``torch.load(weights_only=True, map_location="cpu")``; its refusals become
:class:`UnsafeFileError` too. ``unsafe=True`` is the explicit opt-in to the frameworks' full loaders, for
files you trust; it warns.

References:
    Python ``pickle`` docs, "Restricting Globals"; PyTorch ``torch.load`` docs, ``weights_only``.
"""

from __future__ import annotations

import _codecs
import collections
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

__all__ = [
    "PADDLE_SAFE_GLOBALS",
    "PADDLE_SUFFIXES",
    "TORCH_SUFFIXES",
    "Framework",
    "UnsafeFileError",
    "UnsafeLoadWarning",
    "detect_framework",
    "framework_of",
    "load",
    "load_paddle",
    "load_torch",
]

Framework = Literal["torch", "paddle"]

TORCH_SUFFIXES = (".pt", ".pth")
PADDLE_SUFFIXES = (".pdopt", ".pdparams")

#: ``torch.save(..., _use_new_zipfile_serialization=False)`` writes this int as its first pickle.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_HEADER = pickle.dumps(_TORCH_LEGACY_MAGIC, protocol=2)
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
_NAME_TABLE = "StructuredToParameterName@@"


class UnsafeLoadWarning(UserWarning):
    """A file is being loaded with ``unsafe=True``: it can run any code it contains."""


class UnsafeFileError(pickle.UnpicklingError):
    """A file asked for something a safe load does not allow (a global outside the allowlist).

    Attributes:
        path: the file.
        global_name: the refused ``module.name``, or ``None`` when the refusal was not about a global.
    """

    def __init__(self, message: str, path: str | os.PathLike[str], global_name: str | None = None):
        super().__init__(message)
        self.path = os.fspath(path)
        self.global_name = global_name


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``: only the ``latin1`` codec, only on a str."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError(
            f"_codecs.encode is only allowed as pickle protocol 2 writes bytes (a str, 'latin1'), "
            f"got {type(text).__name__}, {encoding!r}"
        )
    return _codecs.encode(text, "latin1", errors)


def _allowlist() -> dict[tuple[str, str], Any]:
    try:  # NumPy >= 2: numpy._core; NumPy 1.x: numpy.core (both spellings appear in files)
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]

    allowed: dict[tuple[str, str], Any] = {
        ("_codecs", "encode"): _latin1_encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    for mod in ("builtins", "__builtin__"):  # protocol 2 writes the Python 2 name
        for kind in (tuple, list, dict, set, frozenset, complex):
            allowed[(mod, kind.__name__)] = kind
    return allowed


_ALLOWED = _allowlist()

#: The ``(module, name)`` globals a Paddle pickle may name (what ``paddle.save`` writes); nothing else loads.
PADDLE_SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(_ALLOWED)


class _RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` answers only from :data:`PADDLE_SAFE_GLOBALS`."""

    def __init__(self, file: BinaryIO, path: str | os.PathLike[str]):
        super().__init__(file, encoding="latin1")  # as paddle.load, for Python 2 pickles
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeFileError(
                f"{os.fspath(self._path)}: refused to load global {module}.{name}: a safe load admits only "
                "the tensors and plain containers paddle.save writes. If you trust this file (loading it "
                "can run any code it contains), pass --unsafe-load (unsafe=True in "
                "asgd_bridge.safe_load.load)",
                self._path,
                f"{module}.{name}",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(
            f"{os.fspath(self._path)}: refused a persistent id ({type(pid).__name__}): paddle.save "
            "does not write them",
            self._path,
        )


def _check_plain(obj: Any, path: str | os.PathLike[str]) -> None:
    """Refuse object arrays (their dtype allows any Python object; Paddle cannot hold them anyway)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise UnsafeFileError(
                    f"{os.fspath(path)}: refused an array of dtype {item.dtype} (Python objects): "
                    "paddle.save writes numeric arrays only",
                    path,
                )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)


def _paddle_from_plain(obj: Any) -> Any:
    """What ``paddle.load`` does after ``pickle.load``: ndarrays and ``(name, ndarray)`` -> ``paddle.Tensor``.

    Uses Paddle's own helpers (``_pack_loaded_dict``, ``_ndarray_to_tensor``, ``_parse_load_result``); they
    walk plain containers and call ``paddle.to_tensor``, nothing else, on what the restricted unpickler built.
    """
    from paddle.framework import io as paddle_io

    if isinstance(obj, dict):
        obj = paddle_io._pack_loaded_dict(obj)
        if _NAME_TABLE in obj:  # paddle.save of a flat state dict (_legacy_save)
            for key, name in obj[_NAME_TABLE].items():
                if isinstance(obj[key], np.ndarray):
                    obj[key] = paddle_io._ndarray_to_tensor(obj[key], False)
                    if getattr(obj[key], "name", ""):
                        obj[key].name = name
            del obj[_NAME_TABLE]
            return obj
    return paddle_io._parse_load_result(obj, False)


def load_paddle(path: str | os.PathLike[str], *, unsafe: bool = False) -> Any:
    """Load a file written by ``paddle.save`` (``.pdopt``, ``.pdparams``) without running code from it.

    Args:
        path: the file.
        unsafe: use ``paddle.load`` itself (any pickle, so any code the file contains runs); warns.

    Returns:
        What ``paddle.load(path)`` returns for a file of tensors and plain containers.

    Raises:
        UnsafeFileError: the pickle names a global outside :data:`PADDLE_SAFE_GLOBALS` (the message names it).
        pickle.UnpicklingError: the file is not a pickle (Paddle's binary tensor and program formats are
            not read here).
    """
    if unsafe:
        _warn_unsafe(path)
        import paddle

        return paddle.load(os.fspath(path))
    plain = _unpickle_restricted(path)
    return _paddle_from_plain(plain)


def _unpickle_restricted(path: str | os.PathLike[str]) -> Any:
    with open(path, "rb") as fh:
        head = fh.read(1)
        if head != _PICKLE_PROTO:
            raise pickle.UnpicklingError(
                f"{os.fspath(path)}: not a pickle written by paddle.save (it starts with {head!r}, "
                "not a pickle protocol 2-4 header)"
            )
        fh.seek(0)
        plain = _RestrictedUnpickler(fh, path).load()
    _check_plain(plain, path)
    return plain


_TORCH_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_torch(path: str | os.PathLike[str], *, unsafe: bool = False) -> Any:
    """Load a file written by ``torch.save`` onto the CPU with ``torch.load(weights_only=True)``.

    Args:
        path: the file.
        unsafe: ``weights_only=False`` (any pickle, so any code the file contains runs); warns.

    Raises:
        UnsafeFileError: torch's weights-only unpickler refused the file (the message names the global).
    """
    import torch

    if unsafe:
        _warn_unsafe(path)
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        match = _TORCH_GLOBAL.search(text)
        if match:
            name = match.group(1)
            reason = f"refused to load global {name}"
        else:
            name = None
            reason = "torch.load(weights_only=True) refused it: " + text.splitlines()[-1].strip()
        raise UnsafeFileError(
            f"{os.fspath(path)}: {reason}: a safe load admits only tensors and plain containers. If you "
            "trust this file (loading it can run any code it contains), pass --unsafe-load (unsafe=True "
            "in asgd_bridge.safe_load.load)",
            path,
            name,
        ) from None


def framework_of(path: str | os.PathLike[str]) -> Framework | None:
    """The framework named by a suffix: ``.pt``/``.pth`` torch, ``.pdopt``/``.pdparams`` Paddle, else None."""
    suffix = Path(path).suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if suffix in PADDLE_SUFFIXES:
        return "paddle"
    return None


def detect_framework(path: str | os.PathLike[str]) -> Framework:
    """The framework of a file: from its suffix, else from its content (a zip archive is torch's format,
    a pickle of torch's legacy magic number is torch's old format, other pickles are Paddle's). Nothing is
    unpickled to tell.

    Raises:
        pickle.UnpicklingError: neither (not a zip archive, not a pickle).
    """
    named = framework_of(path)
    if named is not None:
        return named
    with open(path, "rb") as fh:
        head = fh.read(len(_TORCH_LEGACY_HEADER))
    if head.startswith(_ZIP_MAGIC) or head == _TORCH_LEGACY_HEADER:
        return "torch"
    if head.startswith(_PICKLE_PROTO):
        return "paddle"
    raise pickle.UnpicklingError(
        f"{os.fspath(path)}: neither a torch file (zip archive) nor a Paddle file (pickle): "
        f"it starts with {head!r}"
    )


def load(path: str | os.PathLike[str], framework: Framework | None = None, *, unsafe: bool = False) -> Any:
    """Load a torch or Paddle file without running code from it.

    Args:
        path: the file.
        framework: ``"torch"`` or ``"paddle"``; default: :func:`detect_framework` (suffix, else content).
            A file is never handed to a plain ``paddle.load`` by default.
        unsafe: the frameworks' full loaders (``torch.load(weights_only=False)``, ``paddle.load``) for a
            file you trust; warns, because the file can run code.

    Returns:
        torch files: what ``torch.load(path, map_location="cpu", weights_only=True)`` returns; Paddle files:
        what ``paddle.load(path)`` returns.

    Raises:
        UnsafeFileError: the file names a global a safe load does not admit (the message names it and
            suggests ``--unsafe-load`` / ``unsafe=True``).
        pickle.UnpicklingError: the file is not a torch or Paddle file.
        ValueError: ``framework`` is neither ``"torch"`` nor ``"paddle"``.
    """
    if framework is None:
        framework = detect_framework(path)
    if framework == "torch":
        return load_torch(path, unsafe=unsafe)
    if framework == "paddle":
        return load_paddle(path, unsafe=unsafe)
    raise ValueError(f"framework must be 'torch' or 'paddle', got {framework!r}")


def _warn_unsafe(path: str | os.PathLike[str]) -> None:
    warnings.warn(
        f"{os.fspath(path)}: loading with unsafe=True (--unsafe-load): the file can run any code it "
        "contains; do this only for files you trust",
        UnsafeLoadWarning,
        stacklevel=3,
    )
