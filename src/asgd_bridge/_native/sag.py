"""The SAG CPU kernel (``sag_cpu.c``): load it once, and call it on checked pointers.

The math is :func:`asgd_bridge.reference.sag_step` after :func:`asgd_bridge.reference.prepare_gradients`;
the kernel's contract is in its source. This module knows addresses and element counts only; the
framework callers (``asgd_bridge.torch._sag_fused``, ``asgd_bridge.paddle._fused``) check their
tensors and pass what :func:`sag_step` documents.
"""

from __future__ import annotations

import ctypes
from array import array
from pathlib import Path
from typing import Any

from .build import KernelLoader, build_shared_library

__all__ = ["DTYPE_CODES", "LOADER", "REGULARIZERS", "SOURCE", "load_sag_kernel", "sag_step"]

SOURCE = Path(__file__).with_name("sag_cpu.c")

#: Storage dtype codes of sag_cpu.c, by dtype name.
DTYPE_CODES: dict[str, int] = {"float32": 0, "float64": 1}
#: Regulariser codes of sag_cpu.c.
REGULARIZERS: dict[str | None, int] = {None: 0, "l2": 1, "l1": 2}

def _load() -> Any:
    lib = build_shared_library(SOURCE, "sag_cpu", what="the SAG CPU kernel")
    p, i, i64, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
    lib.sag_step.restype = i
    lib.sag_step.argtypes = [i, i64, p, p, p, p, p, p, p, i, i, i, d, d, i, d, i]
    return lib


#: The kernel, built (cached on disk like ``asgd_cpu.c``) and loaded once per process.
LOADER = KernelLoader(lambda: _load())


def load_sag_kernel() -> Any:
    """The loaded kernel; raise :class:`~asgd_bridge._native.build.NativeUnavailable` if not possible."""
    return LOADER()


def sag_step(
    kernel: Any,
    dtype: str,
    addresses: array,
    steps: array,
    k: int,
    *,
    scale_f64: bool,
    maximize: bool,
    clip_value: tuple[float, float] | None,
    regularizer: str | None,
    coeff: float,
    nthreads: int,
) -> None:
    """One kernel launch over ``k`` tensors of storage dtype ``dtype`` (float32 or float64).

    ``addresses`` is an ``array("Q")`` of ``6 * k`` entries: the data addresses of ``p[0..k)``,
    ``grad``, ``d``, ``y[i]`` (the row this step replaces), the clip scales (0: none), then the
    element counts; ``steps`` an ``array("d")`` of ``k`` entries ``-lr / min(m + 1, n)``.
    ``clip_value`` is ``(lo, hi)`` of a value clip; ``regularizer`` ``"l2"``, ``"l1"`` or ``None``.
    The caller guarantees what the kernel cannot check: ``p``, ``grad``, ``d`` and ``y[i]`` of
    tensor ``j`` are dense, non-overlapping host buffers of ``counts[j]`` elements of ``dtype``; a
    non-zero scale address points at one float32 (float64 if ``scale_f64``) in host memory.
    """
    base, w = addresses.buffer_info()[0], 8 * k
    lo, hi = clip_value if clip_value is not None else (0.0, 0.0)
    rc = kernel.sag_step(
        DTYPE_CODES[dtype], k, base, base + w, base + 2 * w, base + 3 * w, base + 5 * w,
        steps.buffer_info()[0], base + 4 * w, int(scale_f64), int(maximize), int(clip_value is not None),
        lo, hi, REGULARIZERS[regularizer], coeff, nthreads,
    )  # fmt: skip
    if rc != 0:
        raise RuntimeError(
            f"asgd_bridge SAG: the CPU kernel refused dtype {dtype} / regularizer {regularizer}"
        )
