"""The fused path of averaged SGD (``ASGD(..., fused=True)``): one pass over memory per tensor.

Each element of ``p``, ``grad`` and ``ax`` is read once and ``p``, ``ax`` written once (20 bytes per
fp32 element, the floor of this update). The math is :func:`asgd_bridge.reference.asgd_step`.

Paths, chosen per tensor:

* CPU tensors: a small C kernel (``_kernels/asgd_cpu.c``, OpenMP over elements, all tensors of a
  dtype in one call), built with the system C compiler on first use and cached under torch's
  extension cache (``~/.cache/torch_extensions/asgd_bridge``). Plain C with no torch headers, so the
  first build takes well under a second and needs neither ninja nor Python headers.
* Other devices (CUDA): the same per-tensor update written in torch ops and compiled with
  ``torch.compile`` into one kernel per tensor, with eta/mu/step kept on the device (no host sync).
* Whatever neither can take (no compiler, a dtype or layout the kernel does not handle, a failed
  compile): a ``torch._foreach_*`` implementation of the same math, after one ``warnings.warn``
  that names the reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["FusedUnavailable", "build_info", "build_shared_library", "fused_asgd_", "load_cpu_kernel"]

_SOURCE = Path(__file__).with_name("_kernels") / "asgd_cpu.c"

# Storage dtype codes of asgd_cpu.c.
_DTYPE_CODES: dict[torch.dtype, int] = {
    torch.float32: 0,
    torch.float64: 1,
    torch.bfloat16: 2,
    torch.float16: 3,
}


class FusedUnavailable(RuntimeError):
    """The CPU kernel cannot be built or loaded here; the message says why."""


@dataclass
class BuildInfo:
    """What the one-time build of the CPU kernel did (reported by the benchmarks apart from steps)."""

    path: str = ""
    compiler: str = ""
    flags: list[str] = field(default_factory=list)
    openmp: bool = False
    cached: bool = False
    build_s: float = 0.0
    load_s: float = 0.0
    error: str = ""


_lock = threading.Lock()
_kernel: Any = None
_kernel_error: str | None = None
_info = BuildInfo()
_warned: set[str] = set()


def build_info() -> BuildInfo:
    """The build record of the CPU kernel (empty until :func:`load_cpu_kernel` ran)."""
    return _info


def _build_root() -> Path:
    # torch's own cache root for JIT extensions (honours TORCH_EXTENSIONS_DIR), never the repo.
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / "asgd_bridge"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _compile(cc: str, flags: list[str], out: Path, source: Path = _SOURCE) -> tuple[bool, str]:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [cc, *flags, "-shared", "-fPIC", "-o", tmp, str(source)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        os.unlink(tmp)
        return False, f"{' '.join(cmd)}: {e}"
    if res.returncode != 0:
        os.unlink(tmp)
        return False, f"{' '.join(cmd)} failed:\n{res.stderr.strip()[-2000:]}"
    os.replace(tmp, out)  # atomic: concurrent builders (pytest-xdist, several ranks) never see half a file
    return True, ""


def load_cpu_kernel() -> Any:
    """Build (once, cached on disk) and load the CPU kernel; raise :class:`FusedUnavailable` if not possible.

    The compiler is ``$CC`` or the first of ``cc``/``gcc``/``clang`` on PATH. Flags are tried from
    the fastest down: ``-O3 -march=native -fopenmp``, then without ``-march=native``, then without
    OpenMP (one thread, still one pass; a warning says so).
    """
    global _kernel, _kernel_error
    if _kernel is not None:
        return _kernel
    if _kernel_error is not None:
        raise FusedUnavailable(_kernel_error)
    with _lock:
        if _kernel is not None:
            return _kernel
        try:
            _kernel = _load()
        except FusedUnavailable as e:
            _kernel_error = _info.error = str(e)
            raise
        return _kernel


def _load() -> Any:
    lib, info, errors = _build(_SOURCE, "asgd_cpu")
    _declare(lib)
    _info.__init__(**info.__dict__)  # type: ignore[misc]
    if not info.openmp:
        _warn_once(
            "no-openmp",
            "asgd_bridge fused ASGD: the C compiler has no OpenMP here; the CPU kernel runs on one "
            f"thread. Compiler errors with -fopenmp: {errors[-1] if errors else ''}",
        )
    return lib


def build_shared_library(source_path: str | os.PathLike[str], name: str) -> ctypes.CDLL:
    """Build a plain-C source the way the CPU kernel is built, cache it, and load it with ctypes.

    Same compiler choice, flag ladder (``-O3 -march=native -fopenmp`` first), cache directory and
    cache key (source bytes, compiler, flags, CPU model) as :func:`load_cpu_kernel`; the file is
    ``<name>_<key>.so``. The :class:`BuildInfo` of the build is attached as ``lib.asgd_build_info``.
    Raises :class:`FusedUnavailable` when no flag set compiles and loads.
    """
    lib, info, _ = _build(Path(source_path), name)
    lib.asgd_build_info = info
    return lib


def _build(source: Path, name: str) -> tuple[ctypes.CDLL, BuildInfo, list[str]]:
    """Compile (or find in the cache) and load ``source``; also the compiler errors of skipped flags."""
    if sys.platform == "win32":
        raise FusedUnavailable("the CPU kernel is built with a POSIX C compiler; not supported on Windows")
    if not source.is_file():
        raise FusedUnavailable(f"kernel source {source.name} is not installed with the package")
    cc = os.environ.get("CC") or next(
        (c for c in ("cc", "gcc", "clang") if shutil.which(c)), None
    )
    if cc is None:
        raise FusedUnavailable("no C compiler found (set CC or install gcc)")
    code = source.read_bytes()
    candidates = [
        (["-O3", "-march=native", "-fopenmp"], True),
        (["-O3", "-fopenmp"], True),
        (["-O3", "-march=native"], False),
        (["-O3"], False),
    ]
    errors = []
    for flags, openmp in candidates:
        key = hashlib.sha256(
            b"\0".join([code, cc.encode(), " ".join(flags).encode(), _cpu_model().encode()])
        ).hexdigest()[:16]
        out = _build_root() / f"{name}_{key}.so"
        t0 = time.perf_counter()
        cached = out.is_file()
        if not cached:
            ok, err = _compile(cc, flags, out, source)
            if not ok:
                errors.append(err)
                continue
        build_s = 0.0 if cached else time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            lib = ctypes.CDLL(str(out))
        except OSError as e:
            errors.append(f"loading {out.name}: {e}")
            continue
        info = BuildInfo(
            path=str(out), compiler=cc, flags=flags, openmp=openmp, cached=cached,
            build_s=build_s, load_s=time.perf_counter() - t1,
        )
        return lib, info, errors
    what = "the CPU kernel" if source == _SOURCE else f"the CPU kernel {name} ({source.name})"
    raise FusedUnavailable(f"could not build {what}:\n" + "\n".join(errors))


def _declare(lib: Any) -> None:
    p, i, i64, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
    lib.asgd_dtypes.restype = i
    lib.asgd_dtypes.argtypes = []
    lib.asgd_step.restype = i
    lib.asgd_step.argtypes = [i, i64, p, p, p, p, p, p, p, i, d, d, d, d, d, i, i, i, i]


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- entry point


def fused_asgd_(
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    mus: list[Tensor],
    etas: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float | Tensor,
    lambd: float,
    alpha: float,
    t0: float,
    weight_decay: float,
    maximize: bool,
    immediate_lr: bool = False,
    bottou_average: bool = False,
    capturable: bool = False,
) -> None:
    r"""One fused averaged-SGD step over lists laid out like torch's ``_single_tensor_asgd``.

    Per tensor, with ``t = step + 1`` (see :func:`asgd_bridge.reference.asgd_step`)::

        g  = (-grad if maximize else grad) + weight_decay * p
        p  = p * (1 - lambd * eta) - eta * g
        ax = p if mu == 1 else ax + mu * (p - ax)
        step, eta, mu = t, lr / (1 + lambd * lr * t) ** alpha, 1 / max(1, t - t0)

    ``eta``/``mu`` are the state's (torch's schedule) or, under ``immediate_lr`` /
    ``bottou_average``, ``lr / (1 + lambd * lr * (t - 1)) ** alpha`` / ``1 / max(1, t - t0)``.
    ``params``, ``axs`` and the 0-d ``mus``/``etas``/``state_steps`` are updated in place. Complex
    tensors are updated as real views; bf16/fp16 are computed in fp32 and rounded once on store.
    Nothing is read back to the host from a device tensor (``capturable`` is accepted for
    signature compatibility: every path keeps the schedule on the tensors' own device).
    """
    del capturable
    if not params:
        return
    n = len(params)
    if not (len(grads) == len(axs) == len(mus) == len(etas) == len(state_steps) == n):
        raise ValueError(
            "fused_asgd_: params, grads, axs, mus, etas and state_steps must have the same length, got "
            f"{[len(x) for x in (params, grads, axs, mus, etas, state_steps)]}"
        )
    hp = {
        "lambd": float(lambd), "alpha": float(alpha), "t0": float(t0),
        "weight_decay": float(weight_decay), "maximize": bool(maximize),
        "immediate_lr": bool(immediate_lr), "bottou_average": bool(bottou_average),
    }
    rest: list[int] = []
    lr_host = _host_lr(lr)
    kernel = None
    if lr_host is not None and any(p.device.type == "cpu" for p in params):
        try:
            kernel = load_cpu_kernel()
        except FusedUnavailable as e:
            _warn_once("no-kernel", f"asgd_bridge fused ASGD falls back to foreach: {e}")
    if kernel is not None and lr_host is not None:
        groups: dict[tuple[torch.dtype, torch.dtype], list[int]] = {}
        supported = kernel.asgd_dtypes()
        for i, key in enumerate(map(_cpu_key, params, grads, axs, mus, etas, state_steps)):
            if key is None or not (supported >> _DTYPE_CODES[key[0]]) & 1:
                rest.append(i)
            else:
                groups.setdefault(key, []).append(i)
        for (dtype, sdtype), idx in groups.items():
            _run_cpu(kernel, dtype, sdtype, idx, params, grads, axs, mus, etas, state_steps, lr_host, hp)
    else:
        rest = list(range(n))
    if not rest:
        return
    devices = {params[i].device.type for i in rest}
    if devices == {"cpu"} or _FORCE_FOREACH:
        if kernel is not None:
            _warn_once(
                "cpu-rest",
                "asgd_bridge fused ASGD: some CPU tensors are not dense with matching layouts/dtypes "
                "(or lr is a non-CPU tensor); they are updated by the foreach path",
            )
        _foreach_asgd_(*(_pick(x, rest) for x in (params, grads, axs, mus, etas, state_steps)), lr=lr, **hp)
        return
    for i in rest:
        _compiled_one(params[i], grads[i], axs[i], mus[i], etas[i], state_steps[i], lr, hp)


#: Tests set this to route every tensor through the foreach fallback.
_FORCE_FOREACH = False


def _pick(xs: Sequence[Tensor], idx: list[int]) -> list[Tensor]:
    return [xs[i] for i in idx]


def _host_lr(lr: float | Tensor) -> float | None:
    if isinstance(lr, Tensor):
        # A CPU tensor is host memory: reading it is no device sync. A device lr stays there.
        return float(lr) if lr.device.type == "cpu" else None
    return float(lr)


_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}
_STATE_DTYPES = (torch.float32, torch.float64)


def _cpu_key(
    p: Tensor, g: Tensor, ax: Tensor, mu: Tensor, eta: Tensor, step: Tensor
) -> tuple[torch.dtype, torch.dtype] | None:
    """(storage dtype, state dtype) if the CPU kernel can update this tensor, else None.

    Called per tensor per step, so only cheap attribute reads (about 2 us per tensor in all).
    """
    if not (p.is_cpu and g.is_cpu and ax.is_cpu and step.is_cpu and eta.is_cpu and mu.is_cpu):
        return None
    dtype, sdtype = p.dtype, step.dtype
    if g.dtype != dtype or ax.dtype != dtype or eta.dtype != sdtype or mu.dtype != sdtype:
        return None
    if sdtype not in _STATE_DTYPES or step.numel() != 1 or eta.numel() != 1 or mu.numel() != 1:
        return None
    if not (p.is_contiguous() and g.is_contiguous() and ax.is_contiguous()):
        # Any dense layout works elementwise as long as the three share it (channels_last convs).
        if not (
            p.is_contiguous(memory_format=torch.channels_last)
            and g.stride() == p.stride() == ax.stride()
        ):
            return None
    if g.is_sparse:
        return None
    dtype = _REAL.get(dtype, dtype)
    return (dtype, sdtype) if dtype in _DTYPE_CODES else None


def _run_cpu(
    kernel: Any, dtype: torch.dtype, sdtype: torch.dtype, idx: list[int],
    params: list[Tensor], grads: list[Tensor], axs: list[Tensor],
    mus: list[Tensor], etas: list[Tensor], steps: list[Tensor], lr: float, hp: dict[str, Any],
) -> None:
    k = len(idx)
    ps = [params[i] for i in idx]
    ax = [axs[i] for i in idx]
    # One flat array of addresses: p[0..k), grad, ax, step, eta, mu (each k long), then numels.
    ptrs = array(
        "Q",
        [t.data_ptr() for t in ps]
        + [grads[i].data_ptr() for i in idx]
        + [t.data_ptr() for t in ax]
        + [steps[i].data_ptr() for i in idx]
        + [etas[i].data_ptr() for i in idx]
        + [mus[i].data_ptr() for i in idx]
        + [t.numel() for t in ps],
    )
    if dtype != ps[0].dtype:  # complex: a real view has twice the elements
        ptrs[6 * k :] = array("Q", [2 * t.numel() for t in ps])
    base, w = ptrs.buffer_info()[0], 8 * k
    rc = kernel.asgd_step(
        _DTYPE_CODES[dtype], k, base, base + w, base + 2 * w, base + 6 * w,
        base + 3 * w, base + 4 * w, base + 5 * w,
        int(sdtype == torch.float64), lr, hp["lambd"], hp["alpha"], hp["t0"], hp["weight_decay"],
        int(hp["maximize"]), int(hp["immediate_lr"]), int(hp["bottou_average"]), torch.get_num_threads(),
    )
    if rc != 0:
        raise RuntimeError(f"asgd_bridge fused ASGD: the CPU kernel refused dtype {dtype}")
    # The kernel wrote through raw pointers: tell autograd, as an in-place torch op would.
    torch.autograd.graph.increment_version(ps)
    torch.autograd.graph.increment_version(ax)


# --------------------------------------------------------------------------- device-generic paths


def _schedule(
    step: Tensor, lr: float | Tensor, lambd: float, alpha: float, t0: float
) -> tuple[Tensor, Tensor]:
    """eta and mu after ``step`` updates (reference.eta_schedule / mu_schedule) on step's device."""
    eta = lr / (1 + lambd * lr * step) ** alpha
    mu = 1 / torch.clamp(step - t0, min=1)
    return eta, mu


def _update_one(
    p: Tensor, g: Tensor, ax: Tensor, mu: Tensor, eta: Tensor, step: Tensor,
    lr: float | Tensor, lambd: float, alpha: float, t0: float, weight_decay: float,
    maximize: bool, immediate_lr: bool, bottou_average: bool,
) -> None:
    """One tensor's step in torch ops (one kernel once compiled); schedule stays on the device."""
    opm = torch.float64 if p.dtype == torch.float64 else torch.float32
    t = step + 1
    if immediate_lr:
        eta_t = lr / (1 + lambd * lr * (t - 1)) ** alpha
    else:
        eta_t = eta
    mu_t = 1 / torch.clamp(t - t0, min=1) if bottou_average else mu
    eta_o = eta_t.to(opm)
    pv, gv = p.to(opm), g.to(opm)
    if maximize:
        gv = -gv
    if weight_decay != 0:
        gv = gv + weight_decay * pv
    new = (pv * (1 - lambd * eta_o) - eta_o * gv).to(p.dtype)
    nv, av = new.to(opm), ax.to(opm)
    avg = torch.where(mu_t == 1, nv, av + mu_t.to(opm) * (nv - av))
    p.copy_(new)
    ax.copy_(avg.to(ax.dtype))
    new_eta, new_mu = _schedule(t, lr, lambd, alpha, t0)
    step.copy_(t)
    eta.copy_(new_eta)
    mu.copy_(new_mu)


_compiled: Callable[..., None] | None = None
_compile_failed = False


def _compiled_one(
    p: Tensor, g: Tensor, ax: Tensor, mu: Tensor, eta: Tensor, step: Tensor,
    lr: float | Tensor, hp: dict[str, Any],
) -> None:
    global _compiled, _compile_failed
    if torch.is_complex(p):
        p, g, ax = torch.view_as_real(p), torch.view_as_real(g), torch.view_as_real(ax)
    args = (p.view(-1) if p.is_contiguous() else p, g.view(-1) if g.is_contiguous() else g,
            ax.view(-1) if ax.is_contiguous() else ax)
    if not _compile_failed:
        if _compiled is None:
            _compiled = torch.compile(_update_one, dynamic=True, fullgraph=True)
        try:
            _compiled(*args, mu, eta, step, lr, **hp)
            return
        except Exception as e:  # noqa: BLE001 - any compiler failure means: use the foreach path
            _compile_failed = True
            _warn_once(
                "no-compile",
                f"asgd_bridge fused ASGD falls back to foreach: torch.compile failed on {p.device} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            )
    _foreach_asgd_([p], [g], [ax], [mu], [eta], [step], lr=lr, **hp)


def _foreach_asgd_(
    params: list[Tensor], grads: list[Tensor], axs: list[Tensor],
    mus: list[Tensor], etas: list[Tensor], steps: list[Tensor], *,
    lr: float | Tensor, lambd: float, alpha: float, t0: float, weight_decay: float,
    maximize: bool, immediate_lr: bool, bottou_average: bool,
) -> None:
    """The fallback: the same math with ``torch._foreach_*`` ops, schedule kept on the device."""
    if not params:
        return
    params = [torch.view_as_real(x) if x.is_complex() else x for x in params]
    grads = [torch.view_as_real(x) if x.is_complex() else x for x in grads]
    axs = [torch.view_as_real(x) if x.is_complex() else x for x in axs]
    torch._foreach_add_(steps, 1)
    if immediate_lr:
        prev = torch._foreach_sub(steps, 1)
        eta_use = [_schedule(s, lr, lambd, alpha, t0)[0] for s in prev]
    else:
        eta_use = list(etas)
    mu_use = [1 / torch.clamp(s - t0, min=1) for s in steps] if bottou_average else list(mus)
    g = torch._foreach_neg(grads) if maximize else list(grads)
    if weight_decay != 0:
        g = torch._foreach_add(g, params, alpha=weight_decay)
    # p * (1 - lambd*eta) - eta*g  ==  p - eta * (g + lambd*p)
    inter = torch._foreach_add(g, params, alpha=lambd)
    eta_p = [e.to(p.dtype) for e, p in zip(eta_use, params, strict=True)]
    torch._foreach_addcmul_(params, inter, eta_p, value=-1)
    # lerp is exact at weight 1 (it computes end - (end - start) * (1 - w) for w >= 0.5): ax = p.
    torch._foreach_lerp_(axs, params, [m.to(a.dtype) for m, a in zip(mu_use, axs, strict=True)])
    for s, e, m in zip(steps, etas, mus, strict=True):
        new_eta, new_mu = _schedule(s, lr, lambd, alpha, t0)
        e.copy_(new_eta)
        m.copy_(new_mu)
