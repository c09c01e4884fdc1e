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
overlapping; across the parameters of one launch, no two sharing a byte (else they are launched
one at a time, in order). Anything else, a GPU parameter, or no C compiler: Paddle's ops, after one
``RuntimeWarning`` per reason naming the parameter. The first step of a parameter (which creates
its state and master weight) runs Paddle's ops too, without a warning.

Cost: the checks are attribute reads written out in :func:`asgd_group`'s loop (a call per tensor
costs as much as its tests), the schedule is computed once per distinct ``(lr, decay, state)`` of
a group, and the parameters of a step go to one launch per kernel variant, so 500 tensors of 4096
float32 elements step in about the time of ``paddle.optimizer.SGD`` (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import paddle
from paddle.regularizer import L1Decay, L2Decay

from .._native import asgd as _kernel
from .._native import sag as _sag_kernel
from .._native.build import warn_once
from ..reference import eta_schedule, mu_schedule

__all__ = ["asgd_group", "batched", "kernel_threads", "sag_group"]

_LOW = (paddle.bfloat16, paddle.float16)
_NAMES = {paddle.float32: "float32", paddle.float64: "float64", paddle.bfloat16: "bfloat16",
          paddle.float16: "float16"}  # fmt: skip
_SIZES = {paddle.float32: 4, paddle.float64: 8, paddle.bfloat16: 2, paddle.float16: 2}
_SIZES_BY_NAME = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}
_F32 = paddle.float32
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


def _host_only() -> bool:
    """Whether this Paddle build can place a tensor in host memory only: compiled without CUDA/ROCm,
    XPU and IPU, and no custom-device plugin loaded (plugins load with ``import paddle``). Then every
    initialised dense tensor is on the CPU and :func:`_fits` need not read its place."""
    return not (
        paddle.is_compiled_with_cuda()
        or paddle.is_compiled_with_rocm()
        or paddle.is_compiled_with_xpu()
        or paddle.is_compiled_with_ipu()
        or paddle.device.get_all_custom_device_type()
    )


_HOST_ONLY = _host_only()


def _fits(t: Any, dtype: Any, numel: int) -> bool:
    """Whether ``t`` passes every test of :func:`_check` for ``numel`` elements of ``dtype``: the hot
    path's one call per tensor (attribute reads only); when it fails, :func:`_check` says why.
    (``is_dense()`` is false for a distributed tensor, so ``is_dist()`` adds nothing here.)"""
    return (
        type(t) in _PLAIN
        and t.dtype is dtype
        and t.is_dense()
        and t._is_initialized()
        and t.is_contiguous()
        and (_HOST_ONLY or t.place.is_cpu_place())
        and math.prod(t.shape) == numel
    )


def asgd_group(opt: Any, pairs: list[tuple[paddle.Tensor, paddle.Tensor]], group: dict[str, Any],
               touched: bool) -> list[tuple[paddle.Tensor, paddle.Tensor, bool]]:  # fmt: skip
    """Update the parameters of one group (one step of ``opt``, an ``asgd_bridge.paddle.ASGD``) with
    the kernel where it can; return the rest as ``(param, gradient, negated)`` for Paddle's ops.

    ``pairs`` are the group's ``(param, prepared gradient)``: negated (``maximize``), clipped and
    regularised where ``touched`` (the optimizer has a clip or the group a regulariser) or the
    parameter has its own regulariser; else the raw gradient (a bfloat16/float16 one still in its 2
    bytes), and the kernel applies ``maximize``. Inside :func:`batched` the parameters are queued
    for the block's launch, else launched at once. A returned gradient is what the Paddle ops take
    (float32 for a bfloat16/float16 parameter), and nothing of its parameter was modified. The
    first step of a parameter (which creates its state and master weight) always returns it.

    Raises:
        ValueError: a gradient, ``ax`` or master weight has another element count than its parameter.
    """
    maximize, lr0, wd0 = bool(group["maximize"]), group["lr"], group["weight_decay"]
    constants = (group["lambd"], group["alpha"], group["t0"], group["immediate_lr"], group["bottou_average"])
    state, masters = opt.state, opt._master_weights if opt._multi_precision else None
    batch: _Batch | None = getattr(opt, "_fused_batch", None)
    usable = not _FORCE_FALLBACK and (_kernel.LOADER.kernel is not None or _load() is not None)
    memo: dict[tuple, tuple] = {}  # the schedule, once per distinct (lr, weight decay, sign, state)
    dtype_seen, name, size, low = None, None, 0, False  # what p's dtype gives (most share one)
    rest = []
    for p, grad in pairs:
        own = getattr(p, "regularizer", None) is not None
        negated = maximize and (touched or own)  # the prepared gradient is negated unless untouched
        st = state.get(p)
        if st is None or not usable:
            rest.append((p, _for_ops(p, grad), negated))
            continue
        dtype = p.dtype
        if dtype is not dtype_seen:
            dtype_seen, name, size = dtype, _NAMES.get(dtype), _SIZES.get(dtype, 0)
            low = dtype is paddle.bfloat16 or dtype is paddle.float16
        if name is None:
            rest.append((p, _fallback(f"dtype {dtype}", p, grad), negated))
            continue
        ax = st.ax
        master = masters.get(p.name) if low and masters is not None else None
        gdt = grad.dtype
        numel = math.prod(p.shape)
        # _fits(p), _fits(ax), _fits(grad) written out (the hot path: a call each costs as much as its
        # tests); the master weight, when there is one, through _fits
        if not (
            type(p) in _PLAIN
            and p.is_dense()
            and p._is_initialized()
            and p.is_contiguous()
            and (_HOST_ONLY or p.place.is_cpu_place())
            and type(ax) in _PLAIN
            and ax.dtype is dtype
            and ax.is_dense()
            and ax._is_initialized()
            and ax.is_contiguous()
            and (_HOST_ONLY or ax.place.is_cpu_place())
            and math.prod(ax.shape) == numel
            and type(grad) in _PLAIN
            and (gdt is dtype or (low and gdt is _F32))
            and grad.is_dense()
            and grad._is_initialized()
            and grad.is_contiguous()
            and (_HOST_ONLY or grad.place.is_cpu_place())
            and math.prod(grad.shape) == numel
            and (master is None or _fits(master, _F32, numel))
        ):
            reason = (
                _check(p, "value", (dtype,), numel, p)
                or _check(ax, "state 'ax'", (dtype,), numel, p)
                or (master is not None and _check(master, "master weight", (_F32,), numel, p))
                or _check(grad, "gradient", (dtype, _F32) if low else (dtype,), numel, p)
                or "a layout the kernel does not take"
            )
            rest.append((p, _fallback(reason, p, grad), negated))
            continue
        pp, pg, pa = p.data_ptr(), grad.data_ptr(), ax.data_ptr()
        pw = master.data_ptr() if master is not None else 0
        nb = numel * size
        gb = numel * 4 if gdt is _F32 else nb
        if (
            (pg < pp + nb and pp < pg + gb)
            or (pa < pp + nb and pp < pa + nb)
            or (pa < pg + gb and pg < pa + nb)
            or (master is not None and _spans_meet((pp, pg, pa, pw), (nb, gb, nb, numel * 4)))
        ):
            reason = "two of its buffers (value, gradient, ax, master) overlap"
            rest.append((p, _fallback(reason, p, grad), negated))
            continue
        # a parameter's own regulariser replaces torch's float weight decay, as in ASGD._update
        attr = getattr(p, "optimize_attr", None)
        key = (lr0 * float(attr.get("learning_rate", 1.0)) if attr else lr0, 0.0 if own else wd0,
               maximize and not negated, st.scalar_dtype, st.step, st.eta, st.mu)  # fmt: skip
        sched = memo.get(key)
        if sched is None:
            sched = memo[key] = _asgd_schedule(*key, *constants)
        launch = _pending(batch, ("asgd", name, gdt is not dtype, master is not None), 4, 3, p)
        a, s = launch.addresses, launch.scalars
        a[0].append(pp)
        a[1].append(pg)
        a[2].append(pa)
        a[3].append(pw)
        s[0].append(sched[0])
        s[1].append(sched[1])
        s[2].append(sched[2])
        launch.counts.append(numel)
        launch.tensors.append((p, ax, master, grad))
        launch.after.append((st, sched[3], sched[4], sched[5]))
        if batch is None:
            _launch(launch)
    return rest


def _asgd_schedule(lr: float, wd: float, negate: bool, rnd: Any, step: int, eta: float, mu: float,
                   lambd: float, alpha: float, t0: float, immediate_lr: bool,
                   bottou_average: bool) -> tuple:  # fmt: skip
    """``(decay, signed eta, mu, t, next eta, next mu)`` of one step from the state
    ``(step, eta, mu)``: the non-fused ``ASGD._update``'s arithmetic (eta/mu rounded to the
    state's ``rnd`` dtype, float32 unless the parameter is float64). A function of its arguments
    only, so :func:`asgd_group` computes it once per distinct argument tuple."""
    global _asgd
    if _asgd is None:
        from . import asgd as _asgd  # the optimizer's own rounding (imported here: asgd imports us)
    rs = _asgd._round_scalar
    t = step + 1
    if immediate_lr:
        eta = rs(eta_schedule(lr, lambd, alpha, t - 1), rnd)
    if bottou_average:
        mu = rs(mu_schedule(t, t0), rnd)
    return (1.0 - lambd * eta - eta * wd, -eta if negate else eta, mu, t,
            rs(eta_schedule(lr, lambd, alpha, t), rnd), rs(mu_schedule(t, t0), rnd))  # fmt: skip


def _spans_meet(starts: tuple[int, ...], sizes: tuple[int, ...]) -> bool:
    """Whether any two of the byte ranges ``[start, start + size)`` intersect (a few ranges: pairwise)."""
    k = len(starts)
    return any(
        starts[i] < starts[j] + sizes[j] and starts[j] < starts[i] + sizes[i]
        for i in range(k)
        for j in range(i + 1, k)
    )


# --------------------------------------------------------------------------- SAG


def _load_sag() -> Any:
    return _sag_kernel.LOADER.or_warn("paddle-sag-no-kernel", "asgd_bridge.paddle.SAG uses Paddle's ops")


_SAG_DTYPES = {paddle.float32: "float32", paddle.float64: "float64"}


def _sag_regularizer(opt: Any, p: paddle.Tensor) -> tuple[str | None, float] | None:
    """The regulariser ``SAG._regularize`` applies to ``p`` as ``(kind, coeff)``; ``None``: a custom one."""
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


def sag_group(opt: Any, pairs: list[tuple[paddle.Tensor, paddle.Tensor]],
              lr: float) -> list[tuple[paddle.Tensor, paddle.Tensor]]:  # fmt: skip
    r"""One SAG step of the ``pairs`` of ``opt`` (an ``asgd_bridge.paddle.SAG``) with the kernel where
    it can; return the pairs the caller must run with Paddle's ops (nothing of them modified).

    The arguments are those of ``SAG._update``: each gradient already negated and clipped by the
    optimizer, and the global lr. In one pass (``sag_cpu.c``, :func:`asgd_bridge.reference.sag_step`)::

        g = g + coeff * p  (L2Decay / float)  |  g + coeff * sign(p)  (L1Decay)
        d = d - y[i] + g;   y[i] = g;   p = p - lr * d / min(m + 1, n)

    updating ``p``, ``d``, ``y[m % n]`` and ``m`` (inside :func:`batched`: queued for the block's
    launch). Returned: float16/bfloat16 or a master weight, a GPU parameter (quietly: Paddle's ops
    are their path), a custom regulariser or a layout the kernel does not take (one warning per
    reason). The checks are :func:`_fits`'s, as in :func:`asgd_group`.

    Raises:
        ValueError: the gradient, ``d`` or ``y`` has another element count than the state needs.
    """
    if _FORCE_FALLBACK or (_sag_kernel.LOADER.kernel is None and _load_sag() is None):
        return list(pairs)
    batch: _Batch | None = getattr(opt, "_fused_batch", None)
    rest = []
    for p, g in pairs:
        dtype = p.dtype
        name = _SAG_DTYPES.get(dtype)
        if name is None or not (_HOST_ONLY or p.place.is_cpu_place()):
            rest.append((p, g))
            continue
        state = opt._state_of(p)  # allocates the state on a first step, as SAG._update does
        if "master" in state:
            rest.append((p, g))
            continue
        reg = _sag_regularizer(opt, p)
        if reg is None:
            _fallback("a custom regularizer", p, g, "SAG")
            rest.append((p, g))
            continue
        d, y = state["d"], state["y"]
        n = opt._n_of(p)
        numel = math.prod(p.shape)
        if not (_fits(p, dtype, numel) and _fits(g, dtype, numel) and _fits(d, dtype, numel)
                and _fits(y, dtype, n * numel)):  # fmt: skip
            _fallback(
                _check(p, "value", (dtype,), numel, p)
                or _check(g, "gradient", (dtype,), numel, p)
                or _check(d, "state 'd'", (dtype,), numel, p)
                or _check(y, "state 'y'", (dtype,), n * numel, p)
                or "a layout the kernel does not take",
                p, g, "SAG",
            )  # fmt: skip
            rest.append((p, g))
            continue
        pointers = (p.data_ptr(), g.data_ptr(), d.data_ptr(), y.data_ptr())
        nb = numel * _SIZES[dtype]
        if _spans_meet(pointers, (nb, nb, nb, n * nb)):
            _fallback("two of its buffers (value, gradient, d, y) overlap", p, g, "SAG")
            rest.append((p, g))
            continue
        m = state["m"]
        attr = getattr(p, "optimize_attr", None)
        plr = lr * float(attr.get("learning_rate", 1.0)) if attr else lr
        launch = _pending(batch, ("sag", name, reg[0], reg[1]), 5, 1, p)
        a = launch.addresses
        a[0].append(pointers[0])
        a[1].append(pointers[1])
        a[2].append(pointers[2])
        a[3].append(pointers[3] + (m % n) * numel * _SIZES[dtype])  # the row y[m % n] this step replaces
        a[4].append(0)  # no clip scale: the optimizer clipped the gradients already
        launch.scalars[0].append(-plr / min(m + 1, n))
        launch.counts.append(numel)
        launch.tensors.append((p, d, y, g))
        launch.after.append((state, m + 1))
        if batch is None:
            _launch(launch)
    return rest


# --------------------------------------------------------------------------- launches


class _Launch:
    """The parameters of one kernel launch, as parallel lists: per buffer role the data addresses,
    the element counts, per scalar role the values, each parameter's tensors (kept alive until the
    launch; all but the last, the gradient, are written by the kernel) and its host-state update."""

    __slots__ = ("addresses", "after", "counts", "key", "scalars", "tensors")

    def __init__(self, key: tuple, roles: int, nscalars: int) -> None:
        self.key = key
        self.addresses: tuple[list[int], ...] = tuple([] for _ in range(roles))
        self.scalars: tuple[list[float], ...] = tuple([] for _ in range(nscalars))
        self.counts: list[int] = []
        self.tensors: list[tuple] = []
        self.after: list[tuple] = []

    def entry(self, j: int) -> _Launch:
        """A launch of entry ``j`` alone."""
        one = _Launch(self.key, len(self.addresses), len(self.scalars))
        for mine, its in zip(one.addresses + one.scalars, self.addresses + self.scalars, strict=True):
            mine.append(its[j])
        one.counts.append(self.counts[j])
        one.tensors.append(self.tensors[j])
        one.after.append(self.after[j])
        return one


class _Batch:
    """The launches queued inside one :func:`batched` block and the parameters they hold."""

    __slots__ = ("launches", "seen")

    def __init__(self) -> None:
        self.launches: dict[tuple, _Launch] = {}
        self.seen: set[int] = set()


@contextmanager
def batched(opt: Any) -> Iterator[None]:
    """Within this block, the parameters :func:`asgd_group` / :func:`sag_group` take are queued
    and updated at its end, in one kernel launch per kernel variant (storage dtype, gradient dtype,
    master weight; for SAG the regulariser), so many small tensors cost one call, not one each.

    The block ends with the launches whether it exits normally or by an exception, so a step that
    fails half-way has updated exactly the parameters before the failure, as without batching.
    Outside the block each parameter is launched at once.
    """
    if getattr(opt, "_fused_batch", None) is not None:  # nested (step() inside step()): the outer launches
        yield
        return
    opt._fused_batch = batch = _Batch()
    try:
        yield
    finally:
        opt._fused_batch = None
        _launch_all(batch)


def _pending(batch: _Batch | None, key: tuple, roles: int, nscalars: int, p: paddle.Tensor) -> _Launch:
    """The launch parameter ``p`` joins: a fresh one outside a batch, else the batch's for ``key``
    (after launching everything queued if ``p`` is queued already, so its two updates run in order)."""
    if batch is None:
        return _Launch(key, roles, nscalars)
    if id(p) in batch.seen:
        _launch_all(batch)
    batch.seen.add(id(p))
    launch = batch.launches.get(key)
    if launch is None:
        launch = batch.launches[key] = _Launch(key, roles, nscalars)
    return launch


def _launch_all(batch: _Batch) -> None:
    launches = list(batch.launches.values())
    batch.launches.clear()
    batch.seen.clear()
    for launch in launches:
        _launch(launch)


def _disjoint(addresses: array, k: int, sizes: tuple[int, ...]) -> bool:
    """Whether the buffers of a launch (role ``r``: ``k`` addresses of ``sizes[r]``-byte elements,
    ``0``: a role without buffers) are pairwise disjoint across its parameters; each parameter's
    own buffers were checked when it was queued. One sort of the byte ranges."""
    a = np.frombuffer(addresses, dtype=np.uint64)
    counts = a[len(sizes) * k :]
    starts = np.concatenate([a[r * k : (r + 1) * k] for r, b in enumerate(sizes) if b])
    ends = np.concatenate([a[r * k : (r + 1) * k] + counts * np.uint64(b) for r, b in enumerate(sizes) if b])
    used = ends > starts  # an empty tensor has no bytes to share
    starts, ends = starts[used], ends[used]
    order = np.argsort(starts, kind="stable")
    return bool(np.all(ends[order][:-1] <= starts[order][1:]))


def _launch(launch: _Launch) -> None:
    """One kernel launch over the queued parameters (checked by the hooks), then their versions and
    host state. Parameters whose buffers overlap one another's (aliased parameters) are launched
    one at a time instead, so they are updated in order, as by Paddle's ops."""
    k = len(launch.counts)
    if k == 0:
        return
    addresses = array("Q", [x for role in launch.addresses for x in role])
    addresses.extend(launch.counts)
    key = launch.key
    if key[0] == "asgd":
        _, name, grad_f32, master = key
        size = _SIZES_BY_NAME[name]
        sizes = (size, 4 if grad_f32 else size, size, 4 if master else 0)
    else:
        size = _SIZES_BY_NAME[key[1]]
        sizes = (size, size, size, size, 0)
    if k > 1 and not _disjoint(addresses, k, sizes):
        for j in range(k):
            _launch(launch.entry(j))
        return
    scalars = array("d", [x for role in launch.scalars for x in role])
    if key[0] == "asgd":
        _kernel.asgd_update(
            _kernel.LOADER.kernel, name, addresses, scalars, k, grad_f32=grad_f32, master=master,
            nthreads=kernel_threads(),
        )  # fmt: skip
        # The kernel wrote through raw pointers: bump the versions, as Paddle's in-place ops do.
        for p, ax, w, _ in launch.tensors:
            p._bump_inplace_version()
            ax._bump_inplace_version()
            if w is not None:
                w._bump_inplace_version()
        for st, t, eta, mu in launch.after:
            st.step, st.eta, st.mu = t, eta, mu
    else:
        _, name, reg, coeff = key
        _sag_kernel.sag_step(
            _sag_kernel.LOADER.kernel, name, addresses, scalars, k, scale_f64=False, maximize=False,
            clip_value=None, regularizer=reg, coeff=coeff, nthreads=kernel_threads(),
        )  # fmt: skip
        for p, d, y, _ in launch.tensors:
            p._bump_inplace_version()
            d._bump_inplace_version()
            y._bump_inplace_version()
        for state, m in launch.after:
            state["m"] = m
