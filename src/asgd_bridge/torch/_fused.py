"""The fused path of averaged SGD (``ASGD(..., fused=True)``): one pass over memory per tensor.

Each element of ``p``, ``grad`` and ``ax`` is read once and ``p``, ``ax`` written once (20 bytes per
fp32 element, the floor of this update). The math is :func:`asgd_bridge.reference.asgd_step`.

Paths, chosen per tensor:

* CPU tensors: the C kernel of :mod:`asgd_bridge._native` (``asgd_cpu.c``, OpenMP over elements,
  all tensors of a storage dtype in one call), built with the system C compiler on first use and
  cached privately (see the trust model there). Every tensor is checked here before its address
  goes to the kernel (:func:`_cpu_key`); a DTensor runs on its local shard.
* Other devices (CUDA): the same per-tensor update written in torch ops and compiled with
  ``torch.compile`` into one kernel per tensor, with eta/mu/step kept on the device (no host sync).
* Whatever neither can take (no compiler, a dtype or layout the kernel does not handle, a failed
  compile): a ``torch._foreach_*`` implementation of the same math, after one ``warnings.warn``
  that names the reason.

Under ``torch.compile`` (``torch.compile(opt.step)``) the CPU kernel is the custom operator
``torch.ops.asgd_bridge.fused_asgd_`` (:func:`_fused_asgd_op`): opaque to dynamo and inductor, so
no graph break of ours, and at run time the same eager step, every check included. Eagerly the
step is called directly: the op's dispatch costs ~3.5 us per tensor (500 x 16 elements: 1.5 ms
direct, 3.3 ms through the op), which would double the step of a model of many small tensors.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._native import asgd as _kernel
from .._native.build import NativeUnavailable, warn_once
from ._schedule import device_eta, device_mu
from .asgd import _check_capturable_devices, check_fused_param

__all__ = ["FusedUnavailable", "build_info", "fused_asgd_", "load_cpu_kernel"]

#: The CPU kernel cannot be built or loaded here (the one error class of asgd_bridge._native).
FusedUnavailable = NativeUnavailable

#: Build (once) and load the CPU kernel; its build record.
load_cpu_kernel = _kernel.load_asgd_kernel
build_info = _kernel.build_info

_warn_once = warn_once

#: The only tensor classes whose ``data_ptr()`` reaches the kernel (no subclass: a DTensor's is 0).
_PLAIN = (Tensor, torch.nn.Parameter)


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
    Nothing is read back to the host from a device tensor: every path keeps the schedule on the
    tensors' own device. ``capturable=True`` is refused on CPU with torch's ``AssertionError``,
    as the foreach path refuses it.

    Raises:
        ValueError: ``grads[i]`` or ``axs[i]`` has another number of elements than ``params[i]``
            (a hand-edited or corrupt state; no path could update it correctly).
        RuntimeError: a meta parameter (torch's fused-optimizer message).
    """
    if not params:
        return
    n = len(params)
    if not (len(grads) == len(axs) == len(mus) == len(etas) == len(state_steps) == n):
        raise ValueError(
            "fused_asgd_: params, grads, axs, mus, etas and state_steps must have the same length, got "
            f"{[len(x) for x in (params, grads, axs, mus, etas, state_steps)]}"
        )
    if capturable and not torch.compiler.is_compiling():
        devices = zip(params, mus, etas, state_steps, strict=True)
        _check_capturable_devices([tuple(t.device for t in ts) for ts in devices], False)
    hp = {
        "lambd": float(lambd), "alpha": float(alpha), "t0": float(t0),
        "weight_decay": float(weight_decay), "maximize": bool(maximize),
        "immediate_lr": bool(immediate_lr), "bottou_average": bool(bottou_average),
    }
    if torch.compiler.is_compiling():
        _traced_step(params, grads, axs, mus, etas, state_steps, lr, hp)
    else:
        _step(params, grads, axs, mus, etas, state_steps, lr, hp)


def _step(
    params: list[Tensor], grads: list[Tensor], axs: list[Tensor], mus: list[Tensor], etas: list[Tensor],
    state_steps: list[Tensor], lr: float | Tensor, hp: dict[str, Any],
) -> None:
    """The step itself, run eagerly: check every tensor, one kernel launch per CPU storage dtype,
    the per-tensor compiled update on other devices, the foreach path for the rest."""
    n = len(params)
    rest: list[int] = []
    lr_host = _host_lr(lr)
    kernel = None
    if lr_host is not None and any(p.device.type == "cpu" for p in params):
        try:
            kernel = load_cpu_kernel()
        except NativeUnavailable as e:
            _warn_once("no-kernel", f"asgd_bridge fused ASGD falls back to foreach: {e}")
    groups: dict[tuple[str, torch.dtype], list[tuple[Tensor, Tensor, Tensor, int, int]]] = {}
    supported = kernel.asgd_dtypes() if kernel is not None else 0
    for i in range(n):
        p, g, ax = params[i], grads[i], axs[i]
        _check_sizes(i, p, g, ax)
        key = None
        if kernel is not None:
            if type(p) not in _PLAIN or type(g) not in _PLAIN or type(ax) not in _PLAIN:
                p, g, ax = _local_shards(p, g, ax)
            if p is not None:
                key = _cpu_key(p, g, ax, mus[i], etas[i], state_steps[i])
        if key is None or not (supported >> _kernel.DTYPE_CODES[key[0]]) & 1:
            meta = next((t for t in (params[i], grads[i], axs[i]) if t.is_meta), None)
            if meta is not None:
                check_fused_param(meta)  # raises: no path can step a meta tensor
            rest.append(i)
        else:
            groups.setdefault(key[:2], []).append((p, g, ax, i, key[2]))
    for (dtype, sdtype), entries in groups.items():
        _run_cpu(kernel, dtype, sdtype, entries, params, axs, mus, etas, state_steps, lr_host, hp)  # type: ignore[arg-type]
    if not rest:
        return
    devices = {params[i].device.type for i in rest}
    if devices == {"cpu"}:
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


def _pick(xs: Sequence[Tensor], idx: list[int]) -> list[Tensor]:
    return [xs[i] for i in idx]


def _host_lr(lr: float | Tensor) -> float | None:
    if isinstance(lr, Tensor):
        # A CPU tensor is host memory: reading it is no device sync. A device lr stays there.
        return float(lr) if lr.device.type == "cpu" else None
    return float(lr)


def _check_sizes(i: int, p: Tensor, g: Tensor, ax: Tensor) -> None:
    """Refuse a ``grad``/``ax`` whose element count is not the parameter's: no path can be right."""
    n = p.numel()
    if ax.numel() != n:
        raise ValueError(
            f"asgd_bridge fused ASGD: state 'ax' of params[{i}] has {ax.numel()} elements "
            f"(shape {tuple(ax.shape)}), the parameter has {n} (shape {tuple(p.shape)})"
        )
    if g.numel() != n:
        raise ValueError(
            f"asgd_bridge fused ASGD: the gradient of params[{i}] has {g.numel()} elements "
            f"(shape {tuple(g.shape)}), the parameter has {n} (shape {tuple(p.shape)})"
        )


def _local_shards(p: Tensor, g: Tensor, ax: Tensor) -> tuple[Any, Any, Any]:
    """The local shards of DTensors ``p``, ``grad``, ``ax`` laid out alike, else ``(None,) * 3``."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch build without distributed
        return None, None, None
    if not (type(p) is DTensor and type(g) is DTensor and type(ax) is DTensor):
        return None, None, None
    same_mesh = p.device_mesh == g.device_mesh == ax.device_mesh
    if not (same_mesh and p.placements == g.placements == ax.placements):
        return None, None, None  # e.g. a Partial grad: foreach on the DTensors redistributes
    local = p._local_tensor, g._local_tensor, ax._local_tensor
    if any(type(t) not in _PLAIN for t in local):
        return None, None, None
    return local


_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}
_STORAGE = {getattr(torch, name): name for name in _kernel.DTYPE_CODES}
_STATE_DTYPES = (torch.float32, torch.float64)
_strided = torch.strided


def _cpu_key(
    p: Tensor, g: Tensor, ax: Tensor, mu: Tensor, eta: Tensor, step: Tensor
) -> tuple[str, torch.dtype, int] | None:
    """(storage dtype, state dtype, real element count) if the CPU kernel may update this tensor.

    Exactly what :func:`asgd_bridge._native.asgd.asgd_step` requires of its addresses: ``p``,
    ``grad``, ``ax`` plain strided CPU tensors (no subclass, no lazy conj/neg bit) of one dtype,
    shape and strides, dense (contiguous, or channels_last with equal strides); ``step``/``eta``/
    ``mu`` plain 1-element CPU tensors of one float dtype. Complex counts twice its numel in its
    real dtype. Called per tensor per step, so only attribute reads (with :func:`_check_sizes`,
    2-3 us per tensor in all).
    """
    if not (p.is_cpu and g.is_cpu and ax.is_cpu and step.is_cpu and eta.is_cpu and mu.is_cpu):
        return None
    if type(step) not in _PLAIN or type(eta) not in _PLAIN or type(mu) not in _PLAIN:
        return None
    dtype, sdtype = p.dtype, step.dtype
    # dtypes and layouts are singletons: `is` is the cheap exact test.
    if g.dtype is not dtype or ax.dtype is not dtype or eta.dtype is not sdtype or mu.dtype is not sdtype:
        return None
    if sdtype not in _STATE_DTYPES or step.numel() != 1 or eta.numel() != 1 or mu.numel() != 1:
        return None
    if p.layout is not _strided or g.layout is not _strided or ax.layout is not _strided:
        return None
    if not p.shape == g.shape == ax.shape:
        return None
    if not (p.is_contiguous() and g.is_contiguous() and ax.is_contiguous()):
        # Any dense layout works elementwise as long as the three share it (channels_last convs).
        if not (
            p.is_contiguous(memory_format=torch.channels_last)
            and g.stride() == p.stride() == ax.stride()
        ):
            return None
    if p.is_neg() or g.is_neg() or ax.is_neg():
        return None
    count = p.numel()
    if dtype in _REAL:
        if p.is_conj() or g.is_conj() or ax.is_conj():
            return None
        dtype, count = _REAL[dtype], 2 * count
    name = _STORAGE.get(dtype)
    return (name, sdtype, count) if name is not None else None


def _run_cpu(
    kernel: Any, dtype: str, sdtype: torch.dtype, entries: list[tuple[Tensor, Tensor, Tensor, int, int]],
    params: list[Tensor], axs: list[Tensor], mus: list[Tensor], etas: list[Tensor], steps: list[Tensor],
    lr: float, hp: dict[str, Any],
) -> None:
    """One launch over tensors :func:`_cpu_key` admitted: ``(p, grad, ax, index, count)`` each."""
    ps = [e[0] for e in entries]
    ax = [e[2] for e in entries]
    idx = [e[3] for e in entries]
    addresses = array(
        "Q",
        [t.data_ptr() for t in ps]
        + [e[1].data_ptr() for e in entries]
        + [t.data_ptr() for t in ax]
        + [steps[i].data_ptr() for i in idx]
        + [etas[i].data_ptr() for i in idx]
        + [mus[i].data_ptr() for i in idx]
        + [e[4] for e in entries],
    )
    _kernel.asgd_step(
        kernel, dtype, addresses, len(entries), scalar_f64=sdtype == torch.float64, lr=lr,
        nthreads=torch.get_num_threads(), **hp,
    )  # fmt: skip
    # The kernel wrote through raw pointers: tell autograd, as an in-place torch op would.
    torch.autograd.graph.increment_version(ps)
    torch.autograd.graph.increment_version(ax)
    wrappers = [t for i in idx for t in (params[i], axs[i]) if type(t) not in _PLAIN]
    if wrappers:  # DTensors whose local shards were written: their own counters, as an in-place op
        torch.autograd.graph.increment_version(wrappers)


# --------------------------------------------------------------------------- torch.compile: the custom op


@torch.library.custom_op(
    "asgd_bridge::fused_asgd_", mutates_args=("params", "axs", "mus", "etas", "steps"), device_types=None
)
def _fused_asgd_op(
    params: list[Tensor], grads: list[Tensor], axs: list[Tensor], mus: list[Tensor], etas: list[Tensor],
    steps: list[Tensor], lr: float, lr_tensor: Tensor | None, lambd: float, alpha: float, t0: float,
    weight_decay: float, maximize: bool, immediate_lr: bool, bottou_average: bool,
) -> None:
    """``torch.ops.asgd_bridge.fused_asgd_``: :func:`fused_asgd_` as one operator (any device).

    Opaque to dynamo and inductor (its fake implementation only says it returns nothing and
    mutates ``params``, ``axs``, ``mus``, ``etas``, ``steps``), so ``torch.compile(opt.step)``
    traces through it without a graph break; at run time it is :func:`_step`, so every tensor is
    checked (:func:`_check_sizes`, :func:`_cpu_key`) at every call before an address reaches the
    kernel. ``lr_tensor``, when given, is the lr (a tensor lr); else ``lr``.
    """
    hp = {
        "lambd": lambd, "alpha": alpha, "t0": t0, "weight_decay": weight_decay, "maximize": maximize,
        "immediate_lr": immediate_lr, "bottou_average": bottou_average,
    }
    n = len(params)
    if not (len(grads) == len(axs) == len(mus) == len(etas) == len(steps) == n):
        raise ValueError(
            "asgd_bridge::fused_asgd_: params, grads, axs, mus, etas and steps must have the same length, "
            f"got {[len(x) for x in (params, grads, axs, mus, etas, steps)]}"
        )
    _step(params, grads, axs, mus, etas, steps, lr if lr_tensor is None else lr_tensor, hp)


@_fused_asgd_op.register_fake
def _fused_asgd_fake(
    params: list[Tensor], grads: list[Tensor], axs: list[Tensor], mus: list[Tensor], etas: list[Tensor],
    steps: list[Tensor], lr: float, lr_tensor: Tensor | None, lambd: float, alpha: float, t0: float,
    weight_decay: float, maximize: bool, immediate_lr: bool, bottou_average: bool,
) -> None:
    return None  # in-place on its inputs: no output to describe


def _traced_step(
    params: list[Tensor], grads: list[Tensor], axs: list[Tensor], mus: list[Tensor], etas: list[Tensor],
    state_steps: list[Tensor], lr: float | Tensor, hp: dict[str, Any],
) -> None:
    """The step while dynamo traces: plain real CPU tensors go to the custom op (the C kernel,
    checked at run time); tensors on other devices, tensor subclasses (DTensor) and complex
    tensors are traced as the per-tensor update in torch ops (:func:`_update_one`), which inductor
    compiles into the graph (the eager device path compiles the same function on its own).
    Complex stays out of the op because inductor cannot remove the functionalization of an
    opaque op's mutation of a complex graph input ("auto_functionalized_v2 was not removed",
    torch 2.13), whether the op gets the complex tensor or its real view."""
    op, inline = [], []
    for i in range(len(params)):
        ts = (params[i], grads[i], axs[i], mus[i], etas[i], state_steps[i])
        if not ts[0].is_complex() and all(type(t) in _PLAIN and t.device.type == "cpu" for t in ts):
            op.append(i)
        else:
            inline.append(i)
    if op:
        lr_f, lr_t = (0.0, lr) if isinstance(lr, Tensor) else (float(lr), None)
        torch.ops.asgd_bridge.fused_asgd_(
            *(_pick(x, op) for x in (params, grads, axs, mus, etas, state_steps)), lr_f, lr_t, **hp
        )
    for i in inline:
        p, g, ax = _real(params[i]), _real(grads[i]), _real(axs[i])
        _update_one(p, g, ax, mus[i], etas[i], state_steps[i], lr, **hp)


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


# --------------------------------------------------------------------------- device-generic paths


def _schedule(
    step: Tensor, lr: float | Tensor, lambd: float, alpha: float, t0: float
) -> tuple[Tensor, Tensor]:
    """eta and mu after ``step`` updates on step's device (:mod:`asgd_bridge.torch._schedule`)."""
    return device_eta(step, lr, lambd, alpha), device_mu(step, t0)


def _update_one(
    p: Tensor, g: Tensor, ax: Tensor, mu: Tensor, eta: Tensor, step: Tensor,
    lr: float | Tensor, lambd: float, alpha: float, t0: float, weight_decay: float,
    maximize: bool, immediate_lr: bool, bottou_average: bool,
) -> None:
    """One tensor's step in torch ops (one kernel once compiled); schedule stays on the device."""
    opm = torch.float64 if p.dtype == torch.float64 else torch.float32
    t = step + 1
    eta_t = device_eta(t - 1, lr, lambd, alpha) if immediate_lr else eta
    mu_t = device_mu(t, t0) if bottou_average else mu
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
    mu_use = [device_mu(s, t0) for s in steps] if bottou_average else list(mus)
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
