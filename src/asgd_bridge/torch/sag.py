"""SAG for PyTorch: the algorithm of ``paddle.optimizer.ASGD``, as a ``torch.optim.Optimizer``.

The math is :func:`asgd_bridge.reference.sag_step`; clipping and regularisers follow Paddle's order.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from asgd_bridge.convert.runtime import get_lr as runtime_get_lr
from asgd_bridge.convert.runtime import set_lr as runtime_set_lr
from asgd_bridge.hyperparams import SAG_DEFAULTS, check_flag, check_lr, check_sag
from asgd_bridge.memory import StateTensor, check_sag_memory
from asgd_bridge.specs import parse_grad_clip, parse_weight_decay, weight_decay_value
from asgd_bridge.state_format import SAG_FORMAT, checked_torch_load
from asgd_bridge.torch import _sag_fused

__all__ = ["SAG"]

_HALF = (torch.float16, torch.bfloat16)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def clip_scales(grads: list[torch.Tensor], clip: tuple | None) -> list[torch.Tensor] | None:
    """Per-gradient scale factors of a norm clip over ``grads`` together (tensors, no host sync):
    ``c / max(c, ||g||)`` (``("norm", c)``) or ``c / max(c, ||all g||)`` (``("global_norm", c)``);
    ``None`` for no clip or a value clip. Norms of float16/bfloat16 gradients are taken in float32."""
    if clip is None or clip[0] == "value":
        return None
    c = clip[1]
    norms = [
        torch.linalg.vector_norm(g, dtype=torch.float32 if g.dtype in _HALF else None) for g in grads
    ]
    if clip[0] == "norm":
        return [c / torch.clamp(nrm, min=c) for nrm in norms]
    acc = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    device = grads[0].device
    total = torch.linalg.vector_norm(torch.stack([nrm.to(device=device, dtype=acc) for nrm in norms]))
    scale = c / torch.clamp(total, min=c)
    cache: dict[tuple, torch.Tensor] = {}
    out = []
    for g in grads:
        key = (g.device, g.dtype if g.dtype not in _HALF else torch.float32)
        if key not in cache:
            cache[key] = scale.to(device=key[0], dtype=key[1])
        out.append(cache[key])
    return out


def prepare_gradients_(
    gs: list[torch.Tensor],
    weights: list[torch.Tensor],
    *,
    maximize: bool,
    clip: tuple | None,
    scales: list[torch.Tensor] | None,
    regularizer: tuple[str, float],
) -> None:
    """:func:`asgd_bridge.reference.prepare_gradients` in place on ``gs`` with ``torch._foreach_*`` ops:
    negate (``maximize``), clip (``("value", lo, hi)``, or the :func:`clip_scales` of a norm clip), add
    the regulariser's term (``("l2", c)``: ``c * w``; ``("l1", c)``: ``c * sign(w)``, ``w`` in
    ``weights``: the parameters, or their fp32 master copies)."""
    if maximize:
        torch._foreach_neg_(gs)
    if clip is not None and clip[0] == "value":
        torch._foreach_clamp_min_(gs, clip[1])
        torch._foreach_clamp_max_(gs, clip[2])
    elif scales is not None:
        torch._foreach_mul_(gs, scales)
    kind, coeff = regularizer
    if coeff != 0:
        torch._foreach_add_(gs, torch._foreach_sign(weights) if kind == "l1" else weights, alpha=coeff)


class SAG(Optimizer):
    r"""Stochastic average gradient (SAG), the algorithm of ``paddle.optimizer.ASGD``, for PyTorch.

    Per parameter, with ``m`` finished steps and ``n = batch_num`` stored gradients::

        g     = grad  (negated if maximize), clipped (grad_clip), + regulariser (weight_decay)
        i     = m % n
        d     = d - y[i] + g
        y[i]  = g
        p     = p - lr * d / min(m + 1, n)

    exactly as :func:`asgd_bridge.reference.sag_step` and Paddle (clipping first, then the
    regulariser's term, as ``paddle.optimizer.Optimizer`` does). With ``batch_num=1`` it is SGD.

    Memory: ``batch_num`` gradients are stored per parameter. Every path that grows the state
    estimates it first (:func:`asgd_bridge.memory.check_sag_memory`) against the memory this process
    may still use (:func:`asgd_bridge.memory.available_bytes`: free memory, cgroup limits,
    ``RLIMIT_AS``) and raises :class:`asgd_bridge.memory.SAGMemoryError` if it does not fit: the
    constructor, for all groups together, each with its own ``batch_num``; :meth:`add_param_group`,
    for the new group plus the state the other parameters have yet to allocate (a refused group is
    not added); and :meth:`step`, before it allocates the state of a parameter that has none -- so
    a ``batch_num`` edited in ``param_groups`` or loaded with a state dict is estimated too, before
    any parameter is updated. Once every stepped parameter has its state, a step checks nothing.

    Args:
        params: parameters or parameter groups (groups may set every hyperparameter below but
            ``check_memory``).
        lr: learning rate (Paddle's ``learning_rate``, default 0.001 as Paddle).
        batch_num: number of stored gradients per parameter, an int >= 1 (Paddle's ``batch_num``).
        weight_decay: Paddle's regulariser, added to the clipped gradient: a float ``c`` (or
            ``("l2", c)``) adds ``c * p`` (``L2Decay``); ``("l1", c)`` adds ``c * sign(p)``
            (``L1Decay``).
        grad_clip: ``None``; ``("global_norm", c)`` (Paddle's ``ClipGradByGlobalNorm(c)``, over the
            parameters of a group), ``("norm", c)`` (``ClipGradByNorm(c)``, per parameter),
            ``("value", hi)`` or ``("value", lo, hi)`` (``ClipGradByValue(max=hi, min=lo)``,
            ``lo = -hi`` by default). The gradient in ``.grad`` is left untouched.
        multi_precision: for float16/bfloat16 parameters, keep an fp32 master copy (state
            ``"master"``) and an fp32 ``d``; the stored gradients ``y`` stay in the parameter's dtype.
            The update is computed in fp32 and the parameter is the rounded master copy.
        maximize: maximise the objective: the gradient is negated before clipping and the
            regulariser (torch's convention, so weight decay still shrinks the weights).
        check_memory: ``False`` skips the memory estimate (so does ``ASGD_BRIDGE_SKIP_MEMORY_CHECK=1``).

    State per parameter: ``"d"`` (sum of stored gradients), ``"y"`` (``[batch_num, *p.shape]``),
    ``"m"`` (int, finished steps) and with ``multi_precision`` ``"master"`` -- Paddle's accumulator
    names. ``m`` is a Python int, so picking ``y[m % n]`` never synchronises with the device.

    References:
        M. Schmidt, N. Le Roux and F. Bach. Minimizing finite sums with the stochastic average
        gradient. Math. Program., 162:83-112, 2017.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = SAG_DEFAULTS["lr"],
        batch_num: int = SAG_DEFAULTS["batch_num"],
        weight_decay: float | tuple[str, float] = 0.0,
        *,
        grad_clip: tuple | None = None,
        multi_precision: bool = False,
        maximize: bool = False,
        check_memory: bool = True,
    ) -> None:
        self._check_memory = check_flag("check_memory", check_memory)
        defaults = {
            "lr": lr,
            "batch_num": batch_num,
            "weight_decay": weight_decay,
            "grad_clip": grad_clip,
            "multi_precision": multi_precision,
            "maximize": maximize,
        }
        self._validate_group(defaults)
        # the memory estimate covers every group together, once they are all known
        self._constructing = True
        super().__init__(params, defaults)
        self._constructing = False
        tensors = [t for i in range(len(self.param_groups)) for t in self._state_tensors(i, warn=False)]
        check_sag_memory(tensors, batch_num, check=self._check_memory)

    # ------------------------------------------------------------------ groups and memory

    @staticmethod
    def _validate_group(group: dict[str, Any]) -> None:
        lr = float(check_lr(group["lr"]))
        check_sag(lr, group["batch_num"])
        group["lr"] = lr
        for flag in ("maximize", "multi_precision"):
            check_flag(flag, group[flag])
        group["weight_decay"] = weight_decay_value(*parse_weight_decay(group["weight_decay"]))
        group["grad_clip"] = parse_grad_clip(group["grad_clip"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (torch's API); its hyperparameters are validated and its memory estimated,
        together with the state the optimizer's other parameters will still allocate."""
        super().add_param_group(param_group)
        index = len(self.param_groups) - 1
        group = self.param_groups[index]
        try:
            self._validate_group(group)
            tensors = self._state_tensors(index)
            if getattr(self, "_constructing", False):
                return  # __init__ estimates all groups at once
            committed = [t for t, _ in self._unallocated(range(index))]
            check_sag_memory(
                tensors,
                group["batch_num"],
                check=self._check_memory,
                committed=committed,
                action="add_param_group",
            )
        except Exception:
            self.param_groups.pop()  # a refused group is not added
            raise

    def _state_tensors(self, index: int, *, warn: bool = True) -> list[StateTensor]:
        """Group ``index``'s parameters as the memory estimate sees them (with the group's batch_num)."""
        group = self.param_groups[index]
        names = group.get("param_names")
        tensors = []
        for j, p in enumerate(group["params"]):
            name = names[j] if names else f"param_groups[{index}]['params'][{j}]"
            master = group["multi_precision"] and p.dtype in _HALF
            extra = p.numel() * (8 if master else p.element_size())
            tensors.append(
                StateTensor(
                    name,
                    tuple(p.shape),
                    p.numel(),
                    p.element_size(),
                    extra,
                    _device_name(p.device),
                    int(group["batch_num"]),
                )
            )
            if warn and p.dtype in _HALF and not group["multi_precision"]:
                warnings.warn(
                    "SAG accumulates float16/bfloat16 parameters in their own precision; consider "
                    "multi_precision=True.",
                    stacklevel=4,
                )
        return tensors

    def _unallocated(self, indices: Iterable[int]) -> list[tuple[StateTensor, torch.Tensor]]:
        """The parameters of groups ``indices`` that have no state yet, as the estimate sees them."""
        return [
            (t, p)
            for i in indices
            for t, p in zip(self._state_tensors(i, warn=False), self.param_groups[i]["params"], strict=True)
            if not self.state.get(p)
        ]

    def _check_allocation(self, fresh: list[torch.Tensor]) -> None:
        """Estimate the state ``fresh`` parameters are about to allocate at ``step()``, with the state
        the optimizer's other stateless parameters will allocate later, before anything is allocated.

        It covers a ``batch_num`` that changed after the constructor's estimate (edited in
        ``param_groups`` or loaded by :meth:`load_state_dict`); state already allocated is out of the
        free memory and does not count.
        """
        ids = {id(p) for p in fresh}
        new, committed = [], []
        for t, p in self._unallocated(range(len(self.param_groups))):
            (new if id(p) in ids else committed).append(t)
        check_sag_memory(
            new,
            int(self.defaults["batch_num"]),
            check=self._check_memory,
            committed=committed,
            action="step()",
        )

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """Allocate ``p``'s state: ``d``, ``y`` of ``[batch_num, *p.shape]``, ``m = 0`` (and ``master``)."""
        state = self.state[p]
        n = group["batch_num"]
        master = group["multi_precision"] and p.dtype in _HALF
        acc = torch.float32 if master else p.dtype
        state["d"] = torch.zeros(p.shape, dtype=acc, device=p.device)
        state["y"] = torch.zeros((n, *p.shape), dtype=p.dtype, device=p.device)
        state["m"] = 0
        if master:
            state["master"] = p.detach().to(torch.float32, copy=True)
        return state

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One SAG step for every parameter with a gradient (see the class docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = [(group, *self._with_grad(group)) for group in self.param_groups]
        # state to allocate (a first step, a new group, a loaded state dict without state): estimate
        # it for every group before any parameter is updated; never once every state exists
        fresh = [
            p
            for _, params, _, states in work
            if not all(states)  # (C speed; the loop below runs only where some state is missing)
            for p, st in zip(params, states, strict=True)
            if not st
        ]
        if fresh:
            self._check_allocation(fresh)
        for group, params, grads, states in work:
            if params:
                self._step_group(group, params, grads, states)
        return loss

    def _with_grad(self, group: dict[str, Any]) -> tuple[list, list, list]:
        """The group's parameters that have a gradient, their gradients and their state (``None``
        where it is not allocated yet); a state whose ``y`` does not hold the group's ``batch_num``
        gradients is refused here, before any group is updated."""
        params, grads = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("SAG does not support sparse gradients")
            params.append(p)
            grads.append(p.grad)
        states = [self.state.get(p) for p in params]
        n = group["batch_num"]
        for st in states:
            if st and st["y"].shape[0] != n:
                raise ValueError(
                    f"SAG state holds {st['y'].shape[0]} stored gradients but the group's batch_num is "
                    f"{n}; batch_num cannot change once training has started"
                )
        return params, grads, states

    def _step_group(self, group: dict[str, Any], params: list, grads: list, states: list) -> None:
        n, lr, clip = group["batch_num"], group["lr"], group["grad_clip"]
        regularizer = parse_weight_decay(group["weight_decay"])
        scales = clip_scales(grads, clip)
        states = [st or self._init_state(p, group) for p, st in zip(params, states, strict=True)]
        if _sag_fused.sag_group_(group, params, grads, states, scales):
            return  # one pass in the CPU kernel (torch/_sag_fused.py); below: foreach ops

        fast, mixed = [], []
        for j, st in enumerate(states):
            (mixed if "master" in st else fast).append(j)
        for idx, use_master in ((fast, False), (mixed, True)):
            if not idx:
                continue
            ps = [params[j] for j in idx]
            sts = [states[j] for j in idx]
            ds = [st["d"] for st in sts]
            yis = [st["y"][st["m"] % n] for st in sts]
            weights = [st["master"] for st in sts] if use_master else ps
            # g is built in place of the new stored gradient: y[i] (fp32 temporaries with a master copy).
            gs = [grads[j].to(torch.float32) for j in idx] if use_master else yis
            torch._foreach_sub_(ds, yis)  # d - y[i], before y[i] is overwritten
            if not use_master:
                torch._foreach_copy_(gs, [grads[j] for j in idx])
            prepare_gradients_(
                gs,
                weights,
                maximize=group["maximize"],
                clip=clip,
                scales=None if scales is None else [scales[j] for j in idx],
                regularizer=regularizer,
            )
            if use_master:
                torch._foreach_copy_(yis, gs)
            torch._foreach_add_(ds, yis)  # d - y[i] + g
            buckets: dict[int, list[int]] = defaultdict(list)
            for k, st in enumerate(sts):
                buckets[min(st["m"] + 1, n)].append(k)
                st["m"] += 1
            for count, ks in buckets.items():
                torch._foreach_add_([weights[k] for k in ks], [ds[k] for k in ks], alpha=-lr / count)
            if use_master:
                torch._foreach_copy_(ps, weights)

    # ------------------------------------------------------------------ Paddle's names

    # A program migrated from paddle.optimizer.ASGD (``asgd-bridge convert --to torch``) keeps running
    # where the converter cannot follow the optimizer variable.

    def clear_grad(self, set_to_zero: bool = True) -> None:
        """Paddle's ``clear_grad``: ``zero_grad(set_to_none=not set_to_zero)``."""
        self.zero_grad(set_to_none=not set_to_zero)

    def get_lr(self) -> float:
        """Paddle's ``get_lr``: the learning rate in force now, ``param_groups[0]['lr']`` (a torch
        scheduler moves it; ``defaults['lr']`` keeps the constructor's), as
        :func:`asgd_bridge.convert.runtime.get_lr` reads it of any torch optimizer."""
        return runtime_get_lr(self)

    def set_lr(self, value: float) -> None:
        """Paddle's ``set_lr``: :meth:`get_lr` becomes ``value``; each group keeps its ratio to the first
        (Paddle's per-group ``learning_rate`` multiplier), :func:`asgd_bridge.convert.runtime.set_lr`."""
        runtime_set_lr(self, value)

    def set_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Paddle's ``set_state_dict``: :meth:`load_state_dict`."""
        self.load_state_dict(state_dict)

    # ------------------------------------------------------------------ state dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, checked first, keeping the fp32 ``master`` and ``d`` of
        multi-precision parameters in fp32 (torch would cast every floating state tensor to the
        parameter's dtype).

        The state dict (after the load pre-hooks) is checked against
        :data:`asgd_bridge.state_format.SAG_FORMAT` and these parameters (``d`` of each parameter's
        shape, ``y`` of ``[batch_num, *shape]``, ``m`` an int >= 0, hyperparameters as the constructor
        checks them); a mismatch raises :class:`~asgd_bridge.state_format.StateDictError` naming the
        parameter and the key, and nothing is loaded. The loaded groups are canonicalised as the
        constructor's are, and ``m`` becomes a Python int.
        """
        with checked_torch_load(self, state_dict, SAG_FORMAT) as state_dict:
            groups = state_dict["param_groups"]
            keep: dict[Any, dict[str, torch.Tensor]] = {}
            state = {}
            for key, value in state_dict["state"].items():
                value = dict(value)
                if "m" in value:
                    value["m"] = int(value["m"])
                if "master" in value:
                    keep[key] = {k: value.pop(k) for k in ("master", "d") if k in value}
                state[key] = value
            super().load_state_dict({**state_dict, "state": state})
        for group in self.param_groups:
            self._validate_group(group)
        ids = [i for g in groups for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        by_id = dict(zip(ids, params, strict=True))
        for key, tensors in keep.items():
            p = by_id[key]
            for k, v in tensors.items():
                self.state[p][k] = v.to(device=p.device, dtype=torch.float32)
