"""One-pass CPU paths of ``asgd_bridge.paddle.ASGD`` and ``SAG``: the C kernels of ``asgd_bridge._native``.

Paddle's ops update a parameter in four passes over memory (``scale_`` and ``sgd_`` for the weight,
``scale_`` and ``sgd_`` for the average); the kernel ``asgd_update`` of ``asgd_cpu.c`` (the same
source, builder and private cache as ``asgd_bridge.torch``'s fused path) does it in one: each
element of the weight, the gradient and ``ax`` is read once and the weight and ``ax`` written once
(20 bytes per fp32 element). Per parameter, with the host-side schedule of the optimizer (step,
eta and mu are Python numbers, so nothing is read back from a tensor)::

    decay = 1 - lambd * eta - eta * weight_decay
    x     = decay * x - (-eta if maximize else eta) * g     (x: the parameter, or its fp32 master)
    p     = x rounded to p's dtype
    ax    = p if mu == 1 else ax + mu * (x - ax)

which is :func:`asgd_bridge.reference.asgd_step` written as the optimizer's Paddle path writes it.

What reaches the kernel (:func:`_check`): plain dense CPU tensors (``paddle.Tensor`` or a
parameter; not SelectedRows, not distributed, initialised, contiguous -- a view's ``data_ptr()``
already includes its offset), ``p`` and ``ax`` of one dtype among float32/float64/bfloat16/float16
and one element count, the gradient of that count and of p's dtype (or float32 for bfloat16/float16, as the
optimizer casts it), a ``multi_precision`` master of float32 and p's count, no two buffers
overlapping. Anything else, a GPU parameter, or no C compiler: Paddle's ops, after one
``RuntimeWarning`` per reason naming the parameter. The first step of a parameter (which creates
its state and master weight) runs Paddle's ops too, without a warning.
"""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import paddle

from .._native import asgd as _kernel
from .._native import sag as _sag_kernel
from .._native.build import warn_once
from ..reference import eta_schedule, mu_schedule

__all__ = ["asgd_update", "batched", "kernel_threads", "sag_update"]

_LOW = (paddle.bfloat16, paddle.float16)
_NAMES = {paddle.float32: "float32", paddle.float64: "float64", paddle.bfloat16: "bfloat16",
          paddle.float16: "float16"}  # fmt: skip
_PLAIN = (paddle.Tensor, paddle.base.framework.EagerParamBase)

#: Tests set this to run every parameter through Paddle's ops (the non-fused path).
_FORCE_FALLBACK = False

_asgd: Any = None


def kernel_threads() -> int:
    """Threads of a kernel launch: ``OMP_NUM_THREADS`` if set (as Paddle's CPU kernels), else the
    CPUs this process may run on."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _load() -> Any:
    return _kernel.LOADER.or_warn("paddle-no-kernel", "asgd_bridge.paddle.ASGD uses Paddle's ops")


def _for_ops(p: paddle.Tensor, grad: paddle.Tensor) -> paddle.Tensor:
    """The gradient as the optimizer's Paddle ops take it (float32 for a bfloat16/float16 parameter)."""
    return grad.astype("float32") if p.dtype in _LOW and grad.dtype != paddle.float32 else grad


def _fallback(reason: str, p: paddle.Tensor, grad: paddle.Tensor, who: str = "ASGD") -> paddle.Tensor:
    warn_once(
        f"paddle-rest:{who}:{reason}",
        f"asgd_bridge.paddle.{who}: parameter {p.name!r} is updated by Paddle's ops, not the one-pass "
        f"CPU kernel: {reason} (said once per reason)",
        stacklevel=4,
    )
    return _for_ops(p, grad)


def _check(t: Any, what: str, dtypes: tuple, numel: int, p: paddle.Tensor) -> str | None:
    """Why tensor ``t`` (``what``) cannot reach the kernel as ``numel`` elements of one of
    ``dtypes``, or ``None``. Attribute reads only (a gradient clipped by Paddle may have shape
    ``[1]`` for a 0-d parameter: the element count is what the kernel needs).

    Raises:
        ValueError: ``t`` has another number of elements than the parameter (a hand-edited or
            corrupt state: no path could update it correctly), naming the parameter.
    """
    if type(t) not in _PLAIN:
        return f"its {what} is a {type(t).__name__}, not a plain paddle.Tensor"
    if math.prod(t.shape) != numel:
        raise ValueError(
            f"asgd_bridge.paddle: the {what} of parameter {p.name!r} has shape {list(t.shape)} "
            f"({math.prod(t.shape)} elements), the parameter has {numel} (shape {list(p.shape)})"
        )
    if not t.place.is_cpu_place():
        return f"its {what} is on {t.place}, not the CPU"
    if not t.is_dense() or t.is_dist() or not t._is_initialized():
        return f"its {what} is not an initialised dense tensor"
    dt = t.dtype  # dtypes are singletons: `is` is the cheap exact test (== is a Python-level call)
    if dt is not dtypes[0] and (len(dtypes) == 1 or dt is not dtypes[1]):
        return f"its {what} has dtype {dt}"
    if not t.is_contiguous():
        return f"its {what} is not contiguous (strides {t.strides})"
    return None


def asgd_update(opt: Any, p: paddle.Tensor, grad: paddle.Tensor, group: dict[str, Any], extras: Any,
                negated: bool) -> paddle.Tensor | None:  # fmt: skip
    """Update ``p`` (one step of ``opt``, an ``asgd_bridge.paddle.ASGD``) with the kernel if it can.

    The arguments are those of ``ASGD._update``: the prepared gradient (negated, clipped; a
    bfloat16/float16 gradient is float32 where a clip or regulariser saw it, else still of the
    parameter's dtype, so the kernel reads 2 bytes per element of it), the parameter's group and
    extras, and whether ``maximize`` already negated the gradient. Returns ``None`` when the
    parameter, its ``ax``, the schedule (and its master weight) were updated, else the gradient
    the caller's Paddle ops take (cast to float32 for a bfloat16/float16 parameter; nothing else
    was modified).

    Raises:
        ValueError: the gradient, ``ax`` or the master weight has another element count than ``p``.
    """
    st = opt.state.get(p)
    # the first step creates the state (and master weight) in the Paddle path
    kernel = None if _FORCE_FALLBACK or st is None else _load()
    if kernel is None:
        return _for_ops(p, grad)
    dtype = p.dtype
    name = _NAMES.get(dtype)
    if name is None:
        return _fallback(f"dtype {dtype}", p, grad)
    numel = math.prod(p.shape)
    low = dtype is paddle.bfloat16 or dtype is paddle.float16
    reason = _check(p, "value", (dtype,), numel, p) or _check(st.ax, "state 'ax'", (dtype,), numel, p)
    master = opt._master_weights.get(p.name) if low and opt._multi_precision else None
    if reason is None and master is not None:
        reason = _check(master, "master weight", (paddle.float32,), numel, p)
    if reason is None:
        reason = _check(grad, "gradient", (dtype, paddle.float32) if low else (dtype,), numel, p)
    if reason is not None:
        return _fallback(reason, p, grad)

    # grad is prepared (asgd_bridge.paddle._common.prepare_gradients: negated if ``negated``, clipped,
    # regularised); a parameter's own regulariser replaces torch's float weight decay, as in ``_update``
    wd = 0.0 if getattr(p, "regularizer", None) is not None else group["weight_decay"]
    raw = grad  # what the Paddle ops get if the kernel cannot run

    pointers = (
        p.data_ptr(),
        grad.data_ptr(),
        st.ax.data_ptr(),
        master.data_ptr() if master is not None else 0,
    )
    if _overlap(pointers, (p, grad, st.ax, master)):
        return _fallback("two of its buffers (value, gradient, ax, master) overlap", p, raw)

    global _asgd
    if _asgd is None:
        from . import asgd as _asgd  # the optimizer's own functions (imported here: asgd imports us)
    _param_lr_multiplier, _round_scalar = _asgd._param_lr_multiplier, _asgd._round_scalar

    lambd, alpha, t0 = group["lambd"], group["alpha"], group["t0"]
    lr = group["lr"] * _param_lr_multiplier(p)
    t = st.step + 1
    rnd = st.scalar_dtype
    eta = _round_scalar(eta_schedule(lr, lambd, alpha, t - 1), rnd) if group["immediate_lr"] else st.eta
    mu = _round_scalar(mu_schedule(t, t0), rnd) if group["bottou_average"] else st.mu
    signed = -eta if group["maximize"] and not negated else eta
    entry = _Entry(
        tensors=(p, grad, st.ax, master),
        pointers=pointers,
        numel=numel,
        scalars=(1.0 - lambd * eta - eta * wd, signed, mu),
        written=(p, st.ax) if master is None else (p, st.ax, master),
        done=partial(_advance_asgd, st, t, _round_scalar(eta_schedule(lr, lambd, alpha, t), rnd),
                     _round_scalar(mu_schedule(t, t0), rnd)),
    )  # fmt: skip
    _submit(opt, ("asgd", name, low and grad.dtype is paddle.float32, master is not None), entry)
    return None


def _overlap(pointers: tuple[int, ...], tensors: tuple) -> bool:
    """Whether any two of these dense tensors' byte ranges intersect (``None`` entries skipped)."""
    spans = sorted(
        (a, a + math.prod(t.shape) * t.element_size())
        for a, t in zip(pointers, tensors, strict=True)
        if t is not None
    )  # (a few tensors: sorting is cheaper than pairwise tests)
    return any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1))


# --------------------------------------------------------------------------- SAG


def _load_sag() -> Any:
    return _sag_kernel.LOADER.or_warn("paddle-sag-no-kernel", "asgd_bridge.paddle.SAG uses Paddle's ops")


_SAG_DTYPES = {paddle.float32: "float32", paddle.float64: "float64"}


def _sag_regularizer(opt: Any, p: paddle.Tensor) -> tuple[str | None, float] | None:
    """The regulariser ``SAG._regularize`` applies to ``p`` as ``(kind, coeff)``; ``None``: a custom one."""
    from paddle.regularizer import L1Decay, L2Decay

    reg = getattr(p, "regularizer", None)
    if reg is None:
        reg = opt.regularization
    if reg is None:
        return None, 0.0
    if isinstance(reg, (int, float)):
        return ("l2", float(reg)) if reg != 0 else (None, 0.0)
    if type(reg) in (L2Decay, L1Decay):
        coeff = float(reg._coeff)
        return ("l2" if type(reg) is L2Decay else "l1", coeff) if coeff != 0 else (None, 0.0)
    return None


def sag_update(opt: Any, p: paddle.Tensor, g: paddle.Tensor, lr: float) -> bool:
    r"""One SAG step of ``p`` (``opt``, an ``asgd_bridge.paddle.SAG``) with the kernel if it can.

    The arguments are those of ``SAG._update``: the gradient already negated and clipped by the
    optimizer, and the global lr. In one pass (``sag_cpu.c``, :func:`asgd_bridge.reference.sag_step`)::

        g = g + coeff * p  (L2Decay / float)  |  g + coeff * sign(p)  (L1Decay)
        d = d - y[i] + g;   y[i] = g;   p = p - lr * d / min(m + 1, n)

    Returns ``True`` when ``p``, ``d``, ``y[m % n]`` and ``m`` were updated; ``False`` when the caller
    must run Paddle's ops (nothing modified): float16/bfloat16 or a master weight, a GPU
    parameter (quietly: Paddle's ops are their path), a custom regulariser, a layout the kernel
    does not take (one warning per reason).

    Raises:
        ValueError: the gradient, ``d`` or ``y`` has another element count than the state needs.
    """
    name = _SAG_DTYPES.get(p.dtype)
    if _FORCE_FALLBACK or name is None or not p.place.is_cpu_place():
        return False
    state = opt._state_of(p)  # allocates the state on a first step, as SAG._update does
    if "master" in state:
        return False
    kernel = _load_sag()
    if kernel is None:
        return False
    reg = _sag_regularizer(opt, p)
    if reg is None:
        _fallback("a custom regularizer", p, g, "SAG")
        return False
    d, y = state["d"], state["y"]
    n = opt._n_of(p)
    numel = math.prod(p.shape)
    dtypes = (p.dtype,)
    reason = (
        _check(p, "value", dtypes, numel, p)
        or _check(g, "gradient", dtypes, numel, p)
        or _check(d, "state 'd'", dtypes, numel, p)
        or _check(y, "state 'y'", dtypes, n * numel, p)
    )
    pointers = (p.data_ptr(), g.data_ptr(), d.data_ptr(), y.data_ptr())
    if reason is None and _overlap(pointers, (p, g, d, y)):
        reason = "two of its buffers (value, gradient, d, y) overlap"
    if reason is not None:
        _fallback(reason, p, g, "SAG")
        return False
    m = state["m"]
    attr = getattr(p, "optimize_attr", None) or {}
    plr = lr * float(attr.get("learning_rate", 1.0))
    row = pointers[3] + (m % n) * numel * p.element_size()
    entry = _Entry(
        tensors=(p, g, d, y),
        pointers=(*pointers[:3], row),
        numel=numel,
        scalars=(-plr / min(m + 1, n),),
        written=(p, d, y),
        done=partial(_advance_sag, state, m + 1),
    )
    _submit(opt, ("sag", name, reg[0], reg[1]), entry)
    return True


# --------------------------------------------------------------------------- launches


@dataclass
class _Entry:
    """One parameter's share of a launch: its tensors (kept alive until the launch), their data
    addresses, its element count and scalars, what the kernel writes, and the host-state update."""

    tensors: tuple
    pointers: tuple[int, ...]
    numel: int
    scalars: tuple[float, ...]
    written: tuple
    done: Callable[[], None]


def _advance_asgd(st: Any, t: int, eta: float, mu: float) -> None:
    st.step, st.eta, st.mu = t, eta, mu


def _advance_sag(state: dict[str, Any], m: int) -> None:
    state["m"] = m


@contextmanager
def batched(opt: Any) -> Iterator[None]:
    """Within this block, the parameters :func:`asgd_update` / :func:`sag_update` take are queued
    and updated at its end, in one kernel launch per kernel variant (storage dtype, gradient dtype,
    master weight; for SAG the regulariser), so many small tensors cost one call, not one each.

    The block ends with the launches whether it exits normally or by an exception, so a step that
    fails half-way has updated exactly the parameters before the failure, as without batching.
    Outside the block each parameter is launched at once.
    """
    outer = getattr(opt, "_fused_batch", None)
    if outer is not None:  # nested (a subclass calling step() inside step()): the outer one launches
        yield
        return
    opt._fused_batch = batch = {}
    try:
        yield
    finally:
        opt._fused_batch = None
        _launch_all(batch)


def _submit(opt: Any, key: tuple, entry: _Entry) -> None:
    batch = getattr(opt, "_fused_batch", None)
    if batch is None:
        _launch(key, [entry])
        return
    seen = batch.setdefault("params", set())
    if id(entry.tensors[0]) in seen:  # the same parameter twice in one block: launch in order
        _launch_all(batch)
        seen = batch.setdefault("params", set())
    seen.add(id(entry.tensors[0]))
    batch.setdefault(key, []).append(entry)


def _launch_all(batch: dict[Any, Any]) -> None:
    groups = [(key, entries) for key, entries in batch.items() if key != "params"]
    batch.clear()
    for key, entries in groups:
        _launch(key, entries)


def _launch(key: tuple, entries: list[_Entry]) -> None:
    """One kernel launch over ``entries`` (checked by the hooks), then their versions and state."""
    k = len(entries)
    addresses = array("Q", [e.pointers[j] for j in range(len(entries[0].pointers)) for e in entries])
    scalars = array("d", [e.scalars[j] for j in range(len(entries[0].scalars)) for e in entries])
    if key[0] == "asgd":
        _, name, grad_f32, master = key
        addresses.extend(e.numel for e in entries)
        _kernel.asgd_update(
            _kernel.LOADER.kernel, name, addresses, scalars, k, grad_f32=grad_f32, master=master,
            nthreads=kernel_threads(),
        )  # fmt: skip
    else:
        _, name, reg, coeff = key
        addresses.extend([0] * k)  # no clip scale: the optimizer clipped the gradients already
        addresses.extend(e.numel for e in entries)
        _sag_kernel.sag_step(
            _sag_kernel.LOADER.kernel, name, addresses, scalars, k, scale_f64=False, maximize=False,
            clip_value=None, regularizer=reg, coeff=coeff, nthreads=kernel_threads(),
        )  # fmt: skip
    # The kernel wrote through raw pointers: bump the versions, as Paddle's in-place ops do.
    for e in entries:
        for x in e.written:
            x._bump_inplace_version()
        e.done()
