"""SAG for Paddle: ``paddle.optimizer.ASGD``'s algorithm without its host syncs, with portable state.

The math is :func:`asgd_bridge.reference.sag_step`; the state dict mirrors ``asgd_bridge.torch.SAG``'s.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from typing import Any

import paddle
from paddle.nn.clip import ClipGradBase
from paddle.optimizer import Optimizer
from paddle.optimizer.lr import LRScheduler
from paddle.regularizer import WeightDecayRegularizer

from asgd_bridge.hyperparams import SAG_DEFAULTS, check_flag, check_lr, check_name, check_sag
from asgd_bridge.memory import StateTensor, check_sag_memory
from asgd_bridge.paddle import _fused
from asgd_bridge.paddle._amp import skip_for_found_inf
from asgd_bridge.paddle._common import (
    HALF as _HALF,
)
from asgd_bridge.paddle._common import (
    clip_from_spec,
    clip_to_spec,
    prepare_gradients,
    regularize,
    regularizer_from_spec,
    regularizer_to_spec,
)
from asgd_bridge.specs import weight_decay_value
from asgd_bridge.state_format import (
    SAG_FORMAT,
    check_state_dict,
    from_paddle_sag_format,
    is_paddle_sag_format,
    param_spec,
)

try:  # the fused kernel of paddle.optimizer.ASGD: one pass over p, g, d and y[i]
    from paddle import _C_ops

    _FUSED = getattr(_C_ops, "asgd_", None)
except ImportError:  # pragma: no cover - every Paddle 3 has it
    _FUSED = None

__all__ = ["SAG"]

_FUSED_DTYPES = (paddle.float32, paddle.float64)


def _weight_decay_spec(reg: Any) -> float | tuple[str, float] | None:
    """A group's regulariser as SAG state dicts carry it (:func:`asgd_bridge.specs.weight_decay_value`);
    ``None`` for a custom regulariser, which no state dict can carry."""
    spec = regularizer_to_spec(reg)
    if spec is None:
        return 0.0
    return None if spec[0] == "custom" else weight_decay_value(*spec)


def _copy_tensor(value: Any, dtype: Any) -> paddle.Tensor:
    """A fresh tensor of ``dtype`` on the default device from a Paddle tensor or an array."""
    if isinstance(value, paddle.Tensor):
        return value.detach().astype(dtype).clone()
    return paddle.to_tensor(value, dtype=dtype)


_GROUP_KEYS = {"params", "learning_rate", "weight_decay", "grad_clip", "batch_num", "maximize"}


def _device_name(p: paddle.Tensor) -> str:
    place = p.place
    if place.is_gpu_place():
        return f"gpu:{place.gpu_device_id()}"
    return "cpu"


class SAG(Optimizer):
    r"""Stochastic average gradient (SAG) for Paddle: ``paddle.optimizer.ASGD``'s algorithm, faster.

    Per parameter, with ``m`` finished steps and ``n = batch_num`` stored gradients::

        g     = grad  (negated if maximize), clipped (grad_clip), + regulariser (weight_decay)
        i     = m % n
        d     = d - y[i] + g
        y[i]  = g
        p     = p - lr * d / min(m + 1, n)

    (:func:`asgd_bridge.reference.sag_step`). Same constructor and results as
    ``paddle.optimizer.ASGD``, with three differences:

    * no host synchronisation: ``m`` is a Python int per parameter (Paddle's ASGD reads its int64
      ``m`` tensor back with ``.item()`` for every parameter at every step);
    * :meth:`state_dict` is keyed by parameter *position* (``{"state": {0: {"d", "y", "m"}}, ...}``,
      the mirror of ``asgd_bridge.torch.SAG``'s), so a fresh optimizer, whose parameters have new
      names, can load it; Paddle's ASGD keys by generated names and fails;
    * float16/bfloat16 parameters work on CPU (computed in fp32; Paddle has no CPU kernel for them).

    Memory: ``batch_num`` gradients per parameter. Every path that grows the state estimates it
    first (:func:`asgd_bridge.memory.check_sag_memory`) against the memory this process may still
    use (:func:`asgd_bridge.memory.available_bytes`: free memory, cgroup limits, ``RLIMIT_AS``) and
    raises ``SAGMemoryError`` if it does not fit: the constructor, for all groups together;
    :meth:`add_param_group`, for the new group plus the state still to be allocated (a refused
    group is not added); and the step, before it allocates the state of a parameter that has none
    (with the state every other stateless parameter will allocate, so a first step is estimated
    whole before any parameter is updated). Once every parameter has its state, a step checks
    nothing.

    Args:
        learning_rate: float or ``LRScheduler`` (default 0.001).
        batch_num: stored gradients per parameter, an int >= 1 (a group may set its own).
        parameters: parameters or Paddle parameter groups (``learning_rate`` in a group is a
            multiplier of the global one, as in Paddle).
        weight_decay: ``None``, a float (``L2Decay``), ``L2Decay``, ``L1Decay``, or a spec
            ``("l2", c)`` / ``("l1", c)``. A regulariser set on a parameter (``ParamAttr``) wins.
        grad_clip: ``ClipGradByGlobalNorm`` / ``ClipGradByNorm`` / ``ClipGradByValue`` or a spec
            ``("global_norm", c)``, ``("norm", c)``, ``("value", max)``, ``("value", min, max)``.
        multi_precision: fp32 master weight (state ``"master"``) and fp32 ``d`` for float16/bfloat16
            parameters; ``y`` stays in the parameter's dtype.
        name: Paddle's optional name (unused by the state dict).
        maximize: negate the gradient before clipping and the regulariser (torch's convention); a
            param group may set its own (``{"params": ..., "maximize": True}``), as in torch.
        check_memory: ``False`` skips the memory estimate (so does ``ASGD_BRIDGE_SKIP_MEMORY_CHECK=1``).

    References:
        M. Schmidt, N. Le Roux and F. Bach. Minimizing finite sums with the stochastic average
        gradient. Math. Program., 162:83-112, 2017.
    """

    def __init__(
        self,
        learning_rate: float | LRScheduler = SAG_DEFAULTS["lr"],
        batch_num: int = SAG_DEFAULTS["batch_num"],
        parameters: Sequence[paddle.Tensor] | Sequence[dict[str, Any]] | None = None,
        weight_decay: float | WeightDecayRegularizer | tuple[str, float] | None = None,
        grad_clip: ClipGradBase | tuple | None = None,
        multi_precision: bool = False,
        name: str | None = None,
        *,
        maximize: bool = False,
        check_memory: bool = True,
    ) -> None:
        if not isinstance(learning_rate, LRScheduler):
            learning_rate = float(check_lr(learning_rate, name="learning_rate"))
        check_sag(learning_rate, batch_num)
        maximize = check_flag("maximize", maximize)
        multi_precision = check_flag("multi_precision", multi_precision)
        check_memory = check_flag("check_memory", check_memory)
        check_name(name)
        weight_decay = regularizer_from_spec(weight_decay)
        grad_clip = clip_from_spec(grad_clip)
        if parameters is None:
            raise ValueError("parameters should not be None: SAG runs in dynamic graph mode only")
        if isinstance(parameters, (paddle.Tensor, dict)):
            raise ValueError(
                f"Invalid parameters value: a {type(parameters).__name__} (expected an iterable of "
                "parameters or a list of param-group dicts)"
            )
        parameters = list(parameters)
        if not parameters:
            raise ValueError("Invalid parameters value: an empty list (nothing to optimize)")
        if isinstance(parameters[0], dict):
            parameters = [self._convert_group(dict(g)) for g in parameters]
        elif not all(isinstance(p, paddle.Tensor) for p in parameters):
            raise ValueError("Invalid parameters value: expected tensors or param-group dicts, not a mix")
        super().__init__(
            learning_rate=learning_rate,
            parameters=parameters,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            name=name,
        )
        self.type = "sag"
        self._batch_num = batch_num
        self._check_memory = check_memory
        self._stepping = False
        self._multi_precision = bool(multi_precision)
        self._maximize = bool(maximize)
        self._sag_state: dict[int, dict[str, Any]] = {}
        self._n_tensors: dict[tuple, paddle.Tensor] = {}
        groups = self._param_groups if isinstance(self._param_groups[0], dict) else [{"params": parameters}]
        self._flat: list[paddle.Tensor] = [p for g in groups for p in g["params"]]
        self._position = {id(p): i for i, p in enumerate(self._flat)}
        self._group_of = {id(p): g for g in groups for p in g["params"]}
        for g in groups:
            if "batch_num" in g:
                check_sag(learning_rate, g["batch_num"])
        self._warn_half(self._flat, stacklevel=3)
        # one estimate over every group, each with its own batch_num: groups that fit one by one
        # but not together are refused
        check_sag_memory([self._state_tensor(p) for p in self._flat], batch_num, check=check_memory)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _convert_group(group: dict[str, Any]) -> dict[str, Any]:
        """Validate a Paddle param group (``ValueError`` naming the key) and canonicalise its specs."""
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError("Invalid parameters value: a param group has no 'params' key")
        unknown = set(group) - _GROUP_KEYS
        if unknown:
            hint = " ('lr' is torch's; Paddle groups take learning_rate, a multiplier)" * ("lr" in unknown)
            raise ValueError(
                f"Invalid parameters value: unknown param-group key(s) {sorted(unknown)}{hint} "
                f"(allowed: {', '.join(sorted(_GROUP_KEYS))})"
            )
        if "learning_rate" in group:
            mult = group["learning_rate"]
            if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not 0.0 <= mult < float("inf"):
                raise ValueError(
                    f"Invalid learning_rate value in a param group: {mult!r} (a multiplier: a finite "
                    "float >= 0)"
                )
        if group.get("weight_decay") is not None:
            group["weight_decay"] = regularizer_from_spec(group["weight_decay"])
        if group.get("grad_clip") is not None:
            group["grad_clip"] = clip_from_spec(group["grad_clip"])
        if "maximize" in group:
            check_flag("maximize", group["maximize"])
        return group

    def _warn_half(self, params: list[paddle.Tensor], stacklevel: int) -> None:
        if not self._multi_precision and any(p.dtype in _HALF for p in params):
            warnings.warn(
                "SAG stores float16/bfloat16 accumulators in their own precision; consider "
                "multi_precision=True.",
                stacklevel=stacklevel,
            )

    def _n_of(self, p: paddle.Tensor) -> int:
        return int(self._group_of[id(p)].get("batch_num", self._batch_num))

    def _state_tensor(self, p: paddle.Tensor, batch_num: int | None = None) -> StateTensor:
        """``p`` as the memory estimate sees it (with its group's ``batch_num`` unless given)."""
        master = self._multi_precision and p.dtype in _HALF
        size = p.element_size()
        extra = p.size * (8 if master else size)
        n = self._n_of(p) if batch_num is None else batch_num
        return StateTensor(p.name, tuple(p.shape), p.size, size, extra, _device_name(p), n)

    def _unallocated(self, skip: Collection[int] = ()) -> list[StateTensor]:
        """The parameters without state (but those whose ``id`` is in ``skip``), for the estimate."""
        return [
            self._state_tensor(p)
            for i, p in enumerate(self._flat)
            if i not in self._sag_state and id(p) not in skip
        ]

    def _check_allocation(self, fresh: list[paddle.Tensor]) -> None:
        """Estimate the state ``fresh`` parameters are about to allocate in a step, with the state the
        other stateless parameters will allocate later: a ``batch_num`` changed since the
        constructor's estimate is estimated before anything is allocated."""
        ids = {id(p) for p in fresh}
        check_sag_memory(
            [self._state_tensor(p) for p in fresh],
            self._batch_num,
            check=self._check_memory,
            committed=self._unallocated(ids),
            action="step()",
        )

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group after construction (torch's name; Paddle's optimizers only have the
        private ``_add_param_group``, which this class routes here).

        The group is validated as the constructor validates one (keys, ``learning_rate``
        multiplier, ``weight_decay``, ``grad_clip``, ``batch_num``, parameters in no other group)
        and its state is estimated with the state the other parameters have yet to allocate
        (:func:`asgd_bridge.memory.check_sag_memory`); a refused group is not added. Its parameters
        get their state at their first step, like the constructor's, and are saved after them in
        :meth:`state_dict` (by position).
        """
        if not isinstance(param_group, dict):
            raise ValueError(f"Invalid param_group: a {type(param_group).__name__} (expected a dict)")
        group = self._convert_group(dict(param_group))
        params = group["params"]
        if isinstance(params, set):
            raise ValueError("Invalid param_group: 'params' is a set (use a list: the order matters)")
        params = [params] if isinstance(params, paddle.Tensor) else list(params)
        if not params:
            raise ValueError("Invalid param_group: 'params' is empty (nothing to optimize)")
        if not all(isinstance(p, paddle.Tensor) for p in params):
            raise ValueError("Invalid param_group: 'params' must hold only parameters (paddle.Tensor)")
        known = {id(p) for p in self._flat}
        if len({id(p) for p in params}) != len(params) or any(id(p) in known for p in params):
            raise ValueError("Invalid param_group: some parameters appear in more than one parameter group")
        n = group.get("batch_num", self._batch_num)
        check_sag(self._learning_rate, n)
        self._warn_half(params, stacklevel=3)
        check_sag_memory(
            [self._state_tensor(p, int(n)) for p in params],
            self._batch_num,
            check=self._check_memory,
            committed=self._unallocated(),
            action="add_param_group",
        )
        group["params"] = params
        if not isinstance(self._param_groups[0], dict):
            # the constructor got a flat list: it becomes the first group (its parameters keep their
            # own regularisers and learning-rate multipliers, as before); Paddle's step and
            # GradScaler then walk the groups, clear_grad the flat list of every parameter
            self._param_groups = [{"params": list(self._flat)}]
            self._parameter_list = list(self._flat)
        if not isinstance(self._parameter_list[0], dict):
            self._parameter_list.extend(params)
        super()._add_param_group(group)
        for p in params:
            self._position[id(p)] = len(self._flat)
            self._flat.append(p)
            self._group_of[id(p)] = group

    def _add_param_group(self, param_group: dict[str, Any]) -> None:
        if not hasattr(self, "_flat"):  # Paddle's constructor: validated and estimated by __init__
            super()._add_param_group(param_group)
        else:
            self.add_param_group(param_group)

    def _state_of(self, p: paddle.Tensor) -> dict[str, Any]:
        i = self._position[id(p)]
        state = self._sag_state.get(i)
        n = self._n_of(p)
        if state is None:
            master = self._multi_precision and p.dtype in _HALF
            acc = paddle.float32 if master else p.dtype
            state = {
                "d": paddle.zeros(p.shape, dtype=acc),
                "y": paddle.zeros([n, *p.shape], dtype=p.dtype),
                "m": 0,
            }
            if master:
                state["master"] = p.detach().astype(paddle.float32)
            self._sag_state[i] = state
        elif state["y"].shape[0] != n:
            raise ValueError(
                f"SAG state of parameter {i} holds {state['y'].shape[0]} stored gradients but batch_num "
                f"is {n}; batch_num cannot change once training has started"
            )
        return state

    def _scalar(self, value: float, dtype: Any, cache: dict) -> paddle.Tensor:
        key = (value, dtype)
        if key not in cache:
            cache[key] = paddle.to_tensor([value], dtype=dtype)
        return cache[key]

    # ------------------------------------------------------------------ step

    def step(self) -> None:
        """Paddle's ``step``; state about to be allocated (a first step, a new group, an edited
        ``batch_num``) is estimated for every group before any parameter is updated."""
        if len(self._sag_state) < len(self._flat):  # some state is missing (O(1) once all exists)
            fresh = [
                p
                for i, p in enumerate(self._flat)
                if i not in self._sag_state and not p.stop_gradient and p.grad is not None
            ]
            if fresh:  # counts every stateless parameter: nothing else is estimated in this step
                self._check_allocation(fresh)
        self._stepping = True
        try:
            super().step()
        finally:
            self._stepping = False

    def _apply_optimize(self, loss, startup_program, params_grads, param_group_idx=0):  # noqa: ANN001
        # Called by Optimizer.step() and minimize() with the gradients of one group.
        if not paddle.in_dynamic_mode():
            raise RuntimeError("asgd_bridge.paddle.SAG supports dynamic graph mode only")
        if isinstance(params_grads, dict):
            clip = params_grads.get("grad_clip", self._grad_clip)
            maximize = params_grads.get("maximize", self._maximize)
            pairs = params_grads["params"]
        else:
            clip, maximize, pairs = self._grad_clip, self._maximize, params_grads
        pairs = [(p, g) for p, g in pairs if g is not None]
        if not pairs or skip_for_found_inf(self):
            return None
        if not self._stepping and len(self._sag_state) < len(self._flat):  # minimize(): estimate here
            fresh = [p for p, _ in pairs if self._position[id(p)] not in self._sag_state]
            if fresh:
                self._check_allocation(fresh)
        # negated and clipped per group (Paddle's Optimizer); the regulariser is added in _update, on
        # the weights the update runs on (an fp32 master copy for float16/bfloat16)
        (pairs,) = prepare_gradients([pairs], maximize=[maximize], clips=[clip])
        lr = float(self.get_lr())
        cache: dict = {}
        with _fused.batched(self):  # one kernel launch per dtype at the end (paddle/_fused.py)
            for p, g in _fused.sag_group(self, pairs, lr):
                self._update(p, g, lr, cache)  # what the kernel did not take
        return None

    def _update(self, p: paddle.Tensor, g: paddle.Tensor, lr: float, cache: dict) -> None:
        """One SAG step of ``p`` with Paddle's ops (a pair :func:`_fused.sag_group` did not take)."""
        state = self._state_of(p)
        n = self._n_of(p)
        m = state["m"]
        i = m % n
        count = min(m + 1, n)
        attr = getattr(p, "optimize_attr", None) or {}
        plr = lr * float(attr.get("learning_rate", 1.0))
        d, y = state["d"], state["y"]
        master = state.get("master")
        if master is None and p.dtype in _FUSED_DTYPES and _FUSED is not None:
            g = regularize(self, p, g, self.regularization)
            key = (count, p.dtype)
            n_t = self._n_tensors.get(key)
            if n_t is None:
                n_t = paddle.to_tensor([float(count)], dtype=p.dtype)
                if count == n:  # the steady state; smaller counts are only seen n - 1 times
                    self._n_tensors[key] = n_t
            _FUSED(p, g, self._scalar(plr, p.dtype, cache), d, y[i], n_t, None, False)
        else:
            # float16/bfloat16 (or no fused kernel): computed in fp32, stored in each tensor's dtype.
            w = master if master is not None else p.astype(paddle.float32)
            g32 = g if g.dtype == paddle.float32 else g.astype(paddle.float32)
            g32 = regularize(self, p, g32, self.regularization, w)
            d32 = d if d.dtype == paddle.float32 else d.astype(paddle.float32)
            d32 = d32 - y[i].astype(paddle.float32)
            y[i] = g32.astype(y.dtype)
            d32 = d32 + y[i].astype(paddle.float32)
            paddle.assign(d32.astype(d.dtype), output=d)
            w = w - d32 * (plr / count)
            if master is not None:
                paddle.assign(w, output=master)
            paddle.assign(w.astype(p.dtype), output=p)
        state["m"] = m + 1

    # ------------------------------------------------------------------ state dict

    def _groups_for_state(self) -> list[dict[str, Any]]:
        lr = float(self.get_lr())
        if isinstance(self._param_groups[0], dict):
            groups = self._param_groups
        else:
            groups = [{"params": self._flat}]
        out = []
        for g in groups:
            mult = float(g.get("learning_rate", 1.0))
            out.append(
                {
                    "lr": lr * mult,
                    "batch_num": int(g.get("batch_num", self._batch_num)),
                    "weight_decay": _weight_decay_spec(g.get("weight_decay", self.regularization)),
                    "grad_clip": clip_to_spec(g.get("grad_clip", self._grad_clip)),
                    "maximize": bool(g.get("maximize", self._maximize)),
                    "multi_precision": self._multi_precision,
                    "params": [self._position[id(p)] for p in g["params"]],
                }
            )
        return out

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """``{"state": {i: {"d", "y", "m"[, "master"]}}, "param_groups": [...]}`` keyed by position.

        ``param_groups`` entries: ``lr`` (effective: global lr times the group's multiplier),
        ``batch_num``, ``weight_decay`` (float for L2, ``("l1", c)``), ``grad_clip`` (spec or
        ``None``), ``maximize``, ``multi_precision``, ``params`` (positions). ``"LR_Scheduler"`` is
        added when the learning rate is a scheduler. Tensors are the live ones, as Paddle's.
        """
        out: dict[str, Any] = {
            "state": {i: dict(s) for i, s in sorted(self._sag_state.items())},
            "param_groups": self._groups_for_state(),
        }
        if isinstance(self._learning_rate, LRScheduler):
            out["LR_Scheduler"] = self._learning_rate.state_dict()
        return out

    def set_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load :meth:`state_dict` output (of this class, or converted from torch's SAG), or the state
        of ``paddle.optimizer.ASGD`` (the same algorithm, keyed by parameter names).

        State is matched by position; a float learning rate is restored from the first group's
        ``lr`` (as ``torch.optim.Optimizer.load_state_dict`` restores it), a scheduler from
        ``"LR_Scheduler"``. The state dict is first checked against
        :data:`asgd_bridge.state_format.SAG_FORMAT` and these parameters (``d`` of each parameter's
        shape, ``y`` of ``[batch_num, *shape]``, ``m`` an int >= 0, hyperparameters as the constructor
        checks them); a mismatch raises :class:`~asgd_bridge.state_format.StateDictError` naming the
        parameter and the key, and nothing is loaded.

        ``paddle.optimizer.ASGD(...).state_dict()`` (``{"<param.name>_d_0": ..., "<param.name>_y_0":
        ..., "<param.name>_m_0": ...}``, :func:`asgd_bridge.state_format.from_paddle_sag_format`) is
        matched to this optimizer's parameters by ``name`` and continues exactly where Paddle's ASGD
        stopped; the hyperparameters are this optimizer's (Paddle's state carries none). Paddle names
        parameters per process (``linear_0.w_0``, ...): load it into a model built in the same order
        in a fresh process, or into the same parameters; an accumulator of a parameter this
        optimizer does not have is refused, naming it.
        """
        if is_paddle_sag_format(state_dict):
            state_dict = {
                **from_paddle_sag_format(state_dict, [p.name for p in self._flat]),
                "param_groups": self._groups_for_state(),
            }
        groups = self._param_groups if isinstance(self._param_groups[0], dict) else [{"params": self._flat}]
        check_state_dict(
            state_dict,
            SAG_FORMAT,
            [[param_spec(p, p.name) for p in g["params"]] for g in groups],
            framework="paddle",
        )
        saved_groups = state_dict["param_groups"]
        # saved ids pair with this optimizer's parameters group by group, as torch pairs them
        position = {
            k: self._position[id(p)]
            for g, saved in zip(groups, saved_groups, strict=True)
            for p, k in zip(g["params"], saved["params"], strict=True)
        }
        groups = saved_groups
        new_state: dict[int, dict[str, Any]] = {}
        for key, saved in state_dict["state"].items():
            if not saved:
                continue  # looked up, never stepped
            i = position[key]
            p = self._flat[i]
            n = self._n_of(p)
            y = _copy_tensor(saved["y"], p.dtype)
            if list(y.shape) != [n, *p.shape]:
                raise ValueError(
                    f"parameter {i} ({p.name}): stored gradients y have shape {list(y.shape)}, expected "
                    f"{[n, *p.shape]} (batch_num={n}, parameter shape {list(p.shape)})"
                )
            master = self._multi_precision and p.dtype in _HALF
            acc = paddle.float32 if master else p.dtype
            m = saved["m"]
            m = int(m.reshape([-1])[0]) if hasattr(m, "reshape") else int(m)
            state = {"d": _copy_tensor(saved["d"], acc), "y": y, "m": m}
            if master:
                src = saved.get("master", p)
                state["master"] = _copy_tensor(src, paddle.float32)
            new_state[i] = state
        self._sag_state = new_state
        if isinstance(self._learning_rate, LRScheduler):
            if state_dict.get("LR_Scheduler"):
                self._learning_rate.set_state_dict(state_dict["LR_Scheduler"])
        elif groups:
            first = self._param_groups[0]
            mult = float(first.get("learning_rate", 1.0)) if isinstance(first, dict) else 1.0
            if mult != 0:
                self.set_lr(float(groups[0]["lr"]) / mult)

    load_state_dict = set_state_dict
