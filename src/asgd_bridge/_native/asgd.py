"""The averaged-SGD CPU kernel (``asgd_cpu.c``): load it once, and call it on checked pointers.

The math is :func:`asgd_bridge.reference.asgd_step`; the kernel's contract is in its source. This
module knows addresses and element counts only; a framework caller checks its tensors and passes
what :func:`asgd_step` (``asgd_bridge.torch._fused``: schedule in 0-d tensors, read and updated by the
kernel) or :func:`asgd_update` (``asgd_bridge.paddle._fused``: schedule kept on the host) documents.
"""

from __future__ import annotations

import ctypes
from array import array
from pathlib import Path
from typing import Any

from .build import BuildInfo, KernelLoader, NativeUnavailable, build_shared_library, warn_once

__all__ = ["DTYPE_CODES", "LOADER", "SOURCE", "asgd_step", "asgd_update", "build_info", "load_asgd_kernel"]

SOURCE = Path(__file__).with_name("asgd_cpu.c")

#: Storage dtype codes of asgd_cpu.c, by dtype name.
DTYPE_CODES: dict[str, int] = {"float32": 0, "float64": 1, "bfloat16": 2, "float16": 3}

_info = BuildInfo()


def build_info() -> BuildInfo:
    """The build record of the kernel (empty until :func:`load_asgd_kernel` ran)."""
    return _info


def load_asgd_kernel() -> Any:
    """Build (once, cached on disk) and load the kernel; raise :class:`NativeUnavailable` if not possible.

    See :func:`asgd_bridge._native.build.build_shared_library` for the compiler, flags and cache.
    Without OpenMP the kernel runs on one thread (still one pass); a warning says so.
    """
    try:
        return LOADER()
    except NativeUnavailable as e:
        _info.error = str(e)
        raise


def _load() -> Any:
    lib = build_shared_library(SOURCE, "asgd_cpu", what="the CPU kernel")
    p, i, i64, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
    lib.asgd_dtypes.restype = i
    lib.asgd_dtypes.argtypes = []
    lib.asgd_step.restype = i
    lib.asgd_step.argtypes = [i, i64, p, p, p, p, p, p, p, i, d, d, d, d, d, i, i, i, i]
    lib.asgd_update.restype = i
    lib.asgd_update.argtypes = [i, i, i64, p, p, p, p, p, p, p, p, i]
    info: BuildInfo = lib.asgd_build_info
    _info.__init__(**info.__dict__)  # type: ignore[misc]
    if not info.openmp:
        errors = lib.asgd_build_errors
        warn_once(
            "no-openmp",
            "asgd_bridge fused ASGD: the C compiler has no OpenMP here; the CPU kernel runs on one "
            f"thread. Compiler errors with -fopenmp: {errors[-1] if errors else ''}",
        )
    return lib


#: The kernel, built and loaded once per process (``_load`` looked up at call time).
LOADER = KernelLoader(lambda: _load())


def asgd_step(
    kernel: Any,
    dtype: str,
    addresses: array,
    k: int,
    *,
    scalar_f64: bool,
    lr: float,
    lambd: float,
    alpha: float,
    t0: float,
    weight_decay: float,
    maximize: bool,
    immediate_lr: bool,
    bottou_average: bool,
    nthreads: int,
) -> None:
    """One kernel launch over ``k`` tensors of storage dtype ``dtype``.

    ``addresses`` is an ``array("Q")`` of ``7 * k`` entries: the data addresses of ``p[0..k)``,
    ``grad``, ``ax``, ``step``, ``eta``, ``mu`` (each ``k`` long), then the element counts. The
    caller guarantees what the kernel cannot check: ``p``, ``grad`` and ``ax`` of tensor ``j`` are
    dense, non-overlapping buffers of ``counts[j]`` elements of ``dtype``, laid out alike, in host
    memory; ``step``/``eta``/``mu`` each point at one float32 (float64 if ``scalar_f64``).
    """
    base, w = addresses.buffer_info()[0], 8 * k
    rc = kernel.asgd_step(
        DTYPE_CODES[dtype], k, base, base + w, base + 2 * w, base + 6 * w, base + 3 * w, base + 4 * w,
        base + 5 * w, int(scalar_f64), lr, lambd, alpha, t0, weight_decay, int(maximize), int(immediate_lr),
        int(bottou_average), nthreads,
    )  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"asgd_bridge fused ASGD: the CPU kernel refused dtype {dtype}")


def asgd_update(
    kernel: Any,
    dtype: str,
    addresses: array,
    scalars: array,
    k: int,
    *,
    grad_f32: bool,
    master: bool,
    nthreads: int,
) -> None:
    """One launch of the host-scheduled variant over ``k`` tensors of storage dtype ``dtype``.

    Per tensor, with ``decay``, ``eta``, ``mu`` from ``scalars`` and ``x`` the weight (the float32
    master when ``master``, else ``p``)::

        x = decay * x - eta * g;   p = round(x);   ax = p if mu == 1 else round(ax + mu * (x - ax))

    ``addresses`` is an ``array("Q")`` of ``5 * k`` entries: the data addresses of ``p[0..k)``,
    ``grad``, ``ax``, the masters (ignored unless ``master``), then the element counts;
    ``scalars`` an ``array("d")`` of ``3 * k``: every ``decay``, then every ``eta``, then every
    ``mu``. The caller guarantees what the kernel cannot check: ``p``, ``grad``, ``ax`` (and the
    master) of tensor ``j`` are dense, non-overlapping host buffers of ``counts[j]`` elements, ``p``
    and ``ax`` of ``dtype``, ``grad`` of ``dtype`` or float32 (``grad_f32``), the master float32;
    ``grad_f32`` and ``master`` only with bfloat16/float16 storage.
    """
    base, w = addresses.buffer_info()[0], 8 * k
    sbase = scalars.buffer_info()[0]
    rc = kernel.asgd_update(
        DTYPE_CODES[dtype], int(grad_f32), k, base, base + w, base + 2 * w, base + 3 * w if master else None,
        base + 4 * w, sbase, sbase + w, sbase + 2 * w, nthreads,
    )  # fmt: skip
    if rc != 0:
        raise RuntimeError(
            f"asgd_bridge fused ASGD: the CPU kernel refused dtype {dtype} "
            f"(grad_f32={grad_f32}, master={master})"
        )
