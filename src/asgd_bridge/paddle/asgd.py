"""Averaged SGD (``torch.optim.ASGD``'s algorithm) as a ``paddle.optimizer.Optimizer``.

Paddle-style arguments, torch's trajectory, a torch-like surface (``param_groups``, ``state``,
``state_dict``) and the averaged-weights API; the math is :func:`asgd_bridge.reference.asgd_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import paddle
from paddle import _C_ops
from paddle.nn.clip import GradientClipBase
from paddle.optimizer.lr import LRScheduler
from paddle.regularizer import WeightDecayRegularizer

from ..hyperparams import ASGD_DEFAULTS, check_asgd, check_flag, check_lr, check_name
from ..reference import eta_schedule, mu_schedule
from ..state_format import ASGD_FORMAT, check_state_dict, param_spec
from . import _fused
from ._amp import skip_for_found_inf
from ._common import HALF as _LOW_PRECISION
from ._common import (
    clip_from_spec,
    clip_to_spec,
    prepare_gradients,
    regularize,
    regularizer_to_spec,
    saved_regularizer,
    split_weight_decay,
)
from .distributed import PaddleAveraging

__all__ = ["ASGD"]

Tensor = paddle.Tensor

_GROUP_KEYS = ("lr", "lambd", "alpha", "t0", "weight_decay", "maximize", "immediate_lr", "bottou_average")
_FLAGS = ("maximize", "immediate_lr", "bottou_average")


# --------------------------------------------------------------------------- validation


def _check_flag(name: str, value: Any) -> bool:
    # NumPy bools are accepted here too (group values that went through NumPy).
    return check_flag(name, bool(value) if isinstance(value, np.bool_) else value)


# --------------------------------------------------------------------------- state


def _round_scalar(value: float, dtype: Any) -> float:
    # eta and mu live in float32 (torch keeps them in float32 tensors) unless the parameter is
    # float64; rounding here makes the float32 state dict lossless, so a resumed run is bit-identical.
    return value if dtype == paddle.float64 else float(np.float32(value))


class _ParamState(MutableMapping):
    """One parameter's state with torch's keys: ``step``, ``eta``, ``mu`` (0-d tensors) and ``ax``.

    ``step``/``eta``/``mu`` are kept as Python numbers, so ``step()`` never waits for the device;
    reading them builds a tensor (float32; float64 for eta/mu of a float64 parameter), assigning
    them accepts tensors or numbers.
    """

    __slots__ = ("ax", "eta", "mu", "scalar_dtype", "step")
    _KEYS = ("step", "eta", "mu", "ax")

    def __init__(self, step: int, eta: float, mu: float, ax: Tensor, scalar_dtype: Any) -> None:
        self.step, self.eta, self.mu, self.ax, self.scalar_dtype = step, eta, mu, ax, scalar_dtype

    def __getitem__(self, key: str) -> Tensor:
        if key == "ax":
            return self.ax
        if key == "step":
            return paddle.full([], float(self.step), dtype="float32")
        if key in ("eta", "mu"):
            return paddle.full([], getattr(self, key), dtype=self.scalar_dtype)
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "ax":
            if list(value.shape) != list(self.ax.shape):
                raise ValueError(f"state 'ax' must have shape {list(self.ax.shape)}, got {list(value.shape)}")
            self.ax = value
        elif key == "step":
            self.step = int(float(value))
        elif key in ("eta", "mu"):
            setattr(self, key, _round_scalar(float(value), self.scalar_dtype))
        else:
            raise KeyError(f"ASGD state has only the keys {self._KEYS}, not {key!r}")

    def __delitem__(self, key: str) -> None:
        raise TypeError("ASGD state entries cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    def __repr__(self) -> str:
        return f"_ParamState(step={self.step}, eta={self.eta}, mu={self.mu}, ax=<{list(self.ax.shape)}>)"


class _StateTable(dict):
    """``optimizer.state``: parameter -> its state; a parameter not stepped yet reads as ``{}``, as in
    torch (Paddle tensors hash by identity, so they key a dict directly)."""

    def __missing__(self, param: Tensor) -> dict:
        return {}


@dataclass
class _GroupExtras:
    """What a group carries besides torch's keys: its share of the global lr and its regulariser."""

    lr_scale: float | None  # group lr = global lr * lr_scale; None: an absolute lr, not rescaled
    regularizer: WeightDecayRegularizer | None


# --------------------------------------------------------------------------- optimizer


class ASGD(PaddleAveraging, paddle.optimizer.Optimizer):
    r"""Averaged SGD, torch.optim.ASGD's algorithm, for Paddle (not Paddle's own ``ASGD``, which is SAG).

    Per parameter, step ``t`` counted from 1 (:func:`asgd_bridge.reference.asgd_step`)::

        g    = reg(clip(-grad if maximize else grad))   (reference.prepare_gradients)
        g    = g + weight_decay * p                (float weight_decay: torch's, after negation)
        p    = p * (1 - lambd * eta) - eta * g
        ax   = ax + mu * (p - ax)                  (a copy when mu == 1)
        eta  = lr / (1 + lambd * lr * t) ** alpha  (for step t + 1)
        mu   = 1 / max(1, t - t0)                  (for step t + 1)

    ``ax`` is the Polyak-Juditsky average of the iterates; read it with :meth:`averaged_parameters`,
    evaluate with it inside :meth:`swap_averaged`, save it with :meth:`averaged_state_dict`.

    Args:
        learning_rate: float or ``paddle.optimizer.lr.LRScheduler``; torch's default 0.01. A
            scheduler's ``step()`` changes the lr the next ``step()`` sees, as in Paddle.
        parameters: a list of tensors, or Paddle param groups (dicts with ``params`` and optionally
            ``learning_rate`` -- a *multiplier* of the global lr, as Paddle defines it -- and
            ``weight_decay``; torch keys ``lr`` (an absolute lr), ``lambd``, ``alpha``, ``t0``,
            ``maximize``, ``immediate_lr``, ``bottou_average`` are accepted too).
        lambd: decay term (default 1e-4). alpha: power of the eta schedule (0.75).
        t0: step after which averaging starts (1e6).
        weight_decay: a float is torch's weight decay (``g + wd * p`` inside the update, after the
            ``maximize`` negation), so a converted torch program reproduces torch. An ``L1Decay`` /
            ``L2Decay`` object is a Paddle regulariser, added to the (clipped) gradient before the
            update as Paddle does; a parameter's own regulariser (``ParamAttr(regularizer=...)``)
            takes precedence over either, as in Paddle.
        grad_clip: ``ClipGradByValue`` / ``ClipGradByNorm`` / ``ClipGradByGlobalNorm``, applied to the
            raw gradients of all parameters together (global norm over every group), before any
            regulariser.
        maximize: maximise the objective: the raw gradient is negated first, before clipping and
            any regulariser (torch's convention, so weight decay still shrinks the weights).
        multi_precision: keep float32 master weights for float16/bfloat16 parameters (the update
            runs on the master; without it such parameters are updated through a float32 copy).
            ``ax`` stays in the parameter's dtype (the state-dict contract, and torch's choice):
            it is averaged in float32 from the master and rounded once per step, so late in a long
            run (small ``mu``) its updates can fall below half an ulp of float16/bfloat16.
        name: Paddle's optimizer name (unused).
        immediate_lr: fix of torch's one-step lr lag (see below); default off, i.e. torch.
        bottou_average: fix of torch's dropped first averaged iterate; default off, i.e. torch.

    The fixes (exactly :func:`asgd_bridge.reference.asgd_step`'s flags)::

        # before (torch): the lr set here reaches the parameters one step late, through eta
        opt = ASGD(parameters=ps, learning_rate=0.1)
        opt.param_groups[0]["lr"] = 0.01; opt.step()     # still moves with eta from lr = 0.1
        # after: eta_t = lr_t / (1 + lambd * lr_t * (t - 1)) ** alpha, from the current lr
        opt = ASGD(parameters=ps, learning_rate=0.1, immediate_lr=True)

        # before (torch, t0=0): ax after 3 steps is the mean of p2, p3 (p1 left out)
        # after: ax is the mean of p1, p2, p3 (mu_t = 1 / max(1, t - t0))
        opt = ASGD(parameters=ps, t0=0, bottou_average=True)

    Torch-like surface: ``param_groups`` (dicts with ``params``, ``lr``, ``lambd``, ``alpha``, ``t0``,
    ``weight_decay``, ``maximize``, ``immediate_lr``, ``bottou_average``; assigning a value takes
    effect on the next step, an ``lr`` through eta one step late unless ``immediate_lr``), ``state``
    (``state[param]['ax']`` & co.), ``step(closure)``, ``zero_grad``, ``state_dict`` /
    ``load_state_dict``, ``add_param_group``; and Paddle's ``clear_grad``, ``set_lr``, ``get_lr``,
    ``set_state_dict``, ``minimize``. When the global lr changes (``set_lr``, a scheduler step), every
    group's ``lr`` becomes global lr times its multiplier.

    State dict (index-keyed, parameters numbered across groups in order, as in torch)::

        {"state": {i: {"step": float32 [], "eta": [], "mu": [], "ax": like param}},
         "param_groups": [{"lr", "lambd", "alpha", "t0", "weight_decay", "maximize",
                           "immediate_lr", "bottou_average",
                           "regularizer": None | ("l2", c) | ("l1", c),  # the group's L2Decay/L1Decay
                           "grad_clip": None | ("value", min, max) | ("norm", c) | ("global_norm", c),
                           "params": [i, ...]}],
         "master_weights": {i: float32 tensor},   # multi_precision only
         "LR_Scheduler": {...}}                   # LRScheduler only

    ``regularizer`` is the group's ``L2Decay``/``L1Decay`` (``weight_decay`` stays torch's float) and
    is restored by :meth:`load_state_dict`; ``grad_clip`` records the optimizer's clip for
    :mod:`asgd_bridge.checkpoint` (the loading optimizer keeps its own). A parameter's own
    ``ParamAttr`` regulariser is not part of the state dict.

    References:
        B. T. Polyak and A. B. Juditsky. Acceleration of stochastic approximation by averaging.
        SIAM J. Control Optim., 30(4):838-855, 1992.
        W. Xu. Towards optimal one pass large scale learning with averaged stochastic gradient
        descent. arXiv:1107.2490, 2011.
    """

    def __init__(
        self,
        learning_rate: float | LRScheduler = ASGD_DEFAULTS["lr"],
        lambd: float = ASGD_DEFAULTS["lambd"],
        alpha: float = ASGD_DEFAULTS["alpha"],
        t0: float = ASGD_DEFAULTS["t0"],
        weight_decay: float | WeightDecayRegularizer | None = ASGD_DEFAULTS["weight_decay"],
        maximize: bool = False,
        parameters: Sequence[Tensor] | Sequence[Mapping[str, Any]] | None = None,
        grad_clip: GradientClipBase | None = None,
        multi_precision: bool = False,
        name: str | None = None,
        *,
        immediate_lr: bool = False,
        bottou_average: bool = False,
    ) -> None:
        if isinstance(learning_rate, LRScheduler):
            global_lr = float(check_lr(learning_rate(), name="learning_rate"))
        else:
            learning_rate = global_lr = float(check_lr(learning_rate, name="learning_rate"))
        wd, regularizer = split_weight_decay(weight_decay)
        check_asgd(global_lr, lambd, alpha, t0, wd)
        if not isinstance(grad_clip, GradientClipBase):
            grad_clip = clip_from_spec(grad_clip)
        check_name(name)
        self._defaults: dict[str, Any] = {
            "lr": global_lr,
            "lambd": float(lambd),
            "alpha": float(alpha),
            "t0": float(t0),
            "weight_decay": wd,
            "maximize": _check_flag("maximize", maximize),
            "immediate_lr": _check_flag("immediate_lr", immediate_lr),
            "bottou_average": _check_flag("bottou_average", bottou_average),
        }
        self._default_regularizer = regularizer
        groups = self._group_specs(parameters)

        super().__init__(learning_rate=learning_rate, parameters=[], grad_clip=grad_clip, name=name)
        self._parameter_list = []
        self._param_groups = self._parameter_list  # Paddle internals (clear_grad, GradScaler) read these
        self.regularization = regularizer
        self._multi_precision = _check_flag("multi_precision", multi_precision)
        self._groups: list[dict[str, Any]] = []
        self._extras: list[_GroupExtras] = []
        self.state: _StateTable = _StateTable()
        self._global_lr_seen = global_lr
        self._scalars: dict[tuple[float, Any], Tensor] = {}
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ param groups

    @staticmethod
    def _group_specs(parameters: Any) -> list[dict[str, Any]]:
        if parameters is None:
            raise ValueError(
                "Invalid parameters value: None (a list of tensors or of param-group dicts is required)"
            )
        if isinstance(parameters, (paddle.Tensor, Mapping)):
            raise ValueError(
                f"Invalid parameters value: a {type(parameters).__name__} (expected an iterable of tensors "
                "or a list of param-group dicts)"
            )
        items = list(parameters)
        if not items:
            raise ValueError(
                "Invalid parameters value: an empty list (the optimizer has nothing to optimize)"
            )
        if isinstance(items[0], Mapping):
            return [dict(group) for group in items]
        return [{"params": items}]

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group (torch's ``add_param_group``; Paddle's group keys accepted, see the class doc)."""
        group = dict(param_group)
        if "params" not in group:
            raise ValueError("Invalid parameters value: a param group has no 'params' key")
        params = group.pop("params")
        params = [params] if isinstance(params, paddle.Tensor) else list(params)
        if not params or not all(isinstance(p, paddle.Tensor) for p in params):
            raise ValueError(
                "Invalid parameters value: a param group's 'params' must be a non-empty list of tensors"
            )
        known = {id(p) for g in self._groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or known & {id(p) for p in params}:
            raise ValueError("Invalid parameters value: some parameters appear more than once")
        unknown = set(group) - set(_GROUP_KEYS) - {"learning_rate"}
        if unknown:
            raise ValueError(
                f"Invalid parameters value: unknown param-group key(s) {sorted(unknown)} "
                f"(allowed: params, learning_rate, {', '.join(_GROUP_KEYS)})"
            )
        if "lr" in group and "learning_rate" in group:
            raise ValueError("Invalid parameters value: a param group gives both 'lr' and 'learning_rate'")

        new = {"params": params}
        global_lr = float(self.get_lr())
        if "lr" in group:  # torch: absolute; kept proportional to the global lr
            new["lr"] = float(check_lr(group.pop("lr")))
            scale = new["lr"] / global_lr if global_lr > 0 else None
        else:
            scale = float(check_lr(group.pop("learning_rate", 1.0), name="learning_rate"))
            new["lr"] = global_lr * scale
        if "weight_decay" in group:
            wd, regularizer = split_weight_decay(group.pop("weight_decay"))
        else:
            wd, regularizer = self._defaults["weight_decay"], self._default_regularizer
        for key in ("lambd", "alpha", "t0"):
            new[key] = float(group.pop(key, self._defaults[key]))
        check_asgd(new["lr"], new["lambd"], new["alpha"], new["t0"], wd)
        new["weight_decay"] = wd
        for key in _FLAGS:
            new[key] = _check_flag(key, group.pop(key, self._defaults[key]))
        self._groups.append({key: new[key] for key in ("params", *_GROUP_KEYS)})
        self._extras.append(_GroupExtras(lr_scale=scale, regularizer=regularizer))
        self._parameter_list.extend(params)

    _add_param_group = add_param_group  # Paddle's private name for the same thing

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """torch-style groups; ``lr`` is the group's effective lr (global lr times its multiplier)."""
        self._sync_lr()
        return self._groups

    def _sync_lr(self) -> None:
        # Paddle's schedulers and set_lr change only the global lr; carry a change into the groups,
        # leaving lrs assigned by hand alone while the global lr stays the same.
        global_lr = float(self.get_lr())
        if global_lr != self._global_lr_seen:
            for group, extras in zip(self._groups, self._extras, strict=True):
                if extras.lr_scale is not None:
                    group["lr"] = global_lr * extras.lr_scale
            self._global_lr_seen = global_lr

    def _params(self) -> list[Tensor]:
        return [p for group in self._groups for p in group["params"]]

    # ------------------------------------------------------------------ step

    def _scalar(self, value: float, dtype: Any) -> Tensor:
        key = (value, dtype)
        tensor = self._scalars.get(key)
        if tensor is None:
            tensor = self._scalars[key] = paddle.full([], value, dtype=dtype)
        return tensor

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of averaged SGD on every parameter with a gradient; returns ``closure()``'s loss."""
        loss, skip = self._begin_step(closure)
        if not skip:
            self._update_all()
        return loss

    def _begin_step(self, closure: Callable[[], Any] | None) -> tuple[Any, bool]:
        """What every ``step()`` does first: refuse inside a swap, run ``closure``, and say whether
        ``paddle.amp.GradScaler`` found inf/NaN gradients (then the step is skipped)."""
        self._check_not_swapped("step()")
        loss = None
        if closure is not None:
            with paddle.enable_grad():
                loss = closure()
        return loss, skip_for_found_inf(self)

    def _update_all(self, given: Sequence[tuple[Tensor, Any]] | None = None) -> None:
        """Prepare the gradients (every ``p.grad``, or the ``given`` pairs) and update each parameter."""
        with paddle.no_grad():
            self._sync_lr()
            self._scalars = {}
            prepared = self._prepared_gradients(type(self).__name__, untouched=self._untouched, given=given)
            with _fused.batched(self):  # one kernel launch per dtype at the end (paddle/_fused.py)
                for index, pairs in enumerate(prepared):
                    group, extras = self._groups[index], self._extras[index]
                    # an untouched gradient is raw (its dtype, not negated): the update negates it
                    touched = self._group_touched(index)
                    for p, grad, negated in _fused.asgd_group(self, pairs, group, touched):
                        self._update(p, grad, group, extras, negated)  # what the kernel did not take

    def _group_touched(self, index: int) -> bool:
        """Whether a clip or group ``index``'s regulariser sees every gradient of the group."""
        return self._grad_clip is not None or self._extras[index].regularizer is not None

    def _untouched(self, index: int, p: Tensor) -> bool:
        """Whether no clip and no regulariser sees parameter ``p``'s gradient (group ``index``): the update
        then reads the raw gradient (a bf16/fp16 one in its 2 bytes) and applies ``maximize`` itself.
        (:func:`_fused.asgd_group` asks the same per parameter: not touched and no own regulariser.)"""
        return not self._group_touched(index) and getattr(p, "regularizer", None) is None

    def _prepared_gradients(
        self,
        who: str,
        regularizer_of: Any = None,
        untouched: Any = None,
        given: Sequence[tuple[Tensor, Any]] | None = None,
    ) -> list[list[tuple[Tensor, Tensor]]]:
        """Every group's ``(param, grad)`` pairs through :func:`asgd_bridge.paddle._common.prepare_gradients`:
        negated per group (``maximize``), clipped by the one ``grad_clip`` over all groups together, and
        regularised by ``regularizer_of(index)`` (default: the group's Paddle regulariser); pairs for which
        ``untouched(index, p)`` holds are passed through as they are.

        The raw gradients are ``p.grad`` of every parameter, or the ``given`` ``(param, grad)`` pairs
        (:meth:`_apply_optimize`: the pairs fleet's wrappers pass), each placed in its parameter's group."""
        grads = None if given is None else self._given_gradients(given)
        groups = []
        for group in self._groups:
            pairs = []
            for p in group["params"]:
                if grads is not None:
                    grad = grads.get(id(p))
                else:
                    grad = None if p.stop_gradient else p.grad
                if grad is None:
                    continue
                if grad.is_selected_rows():
                    raise RuntimeError(f"{who} does not support sparse (SelectedRows) gradients")
                pairs.append((p, grad))
            groups.append(pairs)
        regularizer_of = regularizer_of or (lambda index: self._extras[index].regularizer)

        def reg(index: int, p: Tensor, g: Tensor) -> Tensor:
            return regularize(self, p, g, regularizer_of(index), self._master_weights.get(p.name))

        return prepare_gradients(
            groups,
            maximize=[bool(group["maximize"]) for group in self._groups],
            clips=[self._grad_clip],
            across_groups=True,
            regularize=reg,
            untouched=untouched,
        )

    def _update(
        self, p: Tensor, grad: Tensor, group: dict[str, Any], extras: _GroupExtras, negated: bool
    ) -> None:
        """One step of ``p`` with Paddle's ops (a parameter :func:`_fused.asgd_group` did not take)."""
        lambd, alpha, t0 = group["lambd"], group["alpha"], group["t0"]
        lr = group["lr"] * _param_lr_multiplier(p)
        st = self.state.get(p)
        low = p.dtype in _LOW_PRECISION
        if st is None:
            scalar_dtype = paddle.float64 if p.dtype == paddle.float64 else paddle.float32
            st = self.state[p] = _ParamState(
                0, _round_scalar(lr, scalar_dtype), 1.0, paddle.zeros_like(p), scalar_dtype
            )
            if low and self._multi_precision:
                self._create_master_weight(p)
        # w: the tensor the update runs on (the parameter, or a float32 master / working copy)
        w = p if not low else self._master_weights[p.name] if self._multi_precision else p.astype("float32")

        # grad is prepared (negated if ``negated``, clipped, regularised); a parameter's own regulariser
        # replaces torch's float weight decay, as Paddle's replaces the optimizer's
        wd = 0.0 if getattr(p, "regularizer", None) is not None else group["weight_decay"]

        t = st.step + 1
        rnd = st.scalar_dtype
        eta = _round_scalar(eta_schedule(lr, lambd, alpha, t - 1), rnd) if group["immediate_lr"] else st.eta
        mu = _round_scalar(mu_schedule(t, t0), rnd) if group["bottou_average"] else st.mu

        # p * (1 - lambd*eta) - eta * (g + wd*p)  ==  p * (1 - lambd*eta - eta*wd) - eta * g
        decay = 1.0 - lambd * eta - eta * wd
        if decay != 1.0:
            _C_ops.scale_(w, decay, 0.0, True)
        negate_here = group["maximize"] and not negated
        _C_ops.sgd_(w, self._scalar(-eta if negate_here else eta, w.dtype), grad, None, False)
        if low:
            paddle.assign(w.astype(p.dtype), output=p)

        if mu == 1:
            paddle.assign(p, output=st.ax)
        elif low:
            ax = st.ax.astype("float32")
            self._average_into(ax, w, mu)
            paddle.assign(ax.astype(p.dtype), output=st.ax)
        else:
            self._average_into(st.ax, p, mu)

        st.step = t
        st.eta = _round_scalar(eta_schedule(lr, lambd, alpha, t), rnd)
        st.mu = _round_scalar(mu_schedule(t, t0), rnd)

    def _average_into(self, ax: Tensor, x: Tensor, mu: float) -> None:
        """``ax = ax + mu * (x - ax)`` in place, as ``ax * (1 - mu) + mu * x`` (same value up to rounding).

        Two bandwidth-bound kernels (``scale_``, then ``sgd_`` with lr ``-mu``) instead of ``lerp_``,
        whose CPU kernel (Eigen broadcast of the 0-D weight) runs at under half the memory bandwidth:
        on 16M float32 elements, 2 threads, 8 ms instead of 14 ms.
        """
        _C_ops.scale_(ax, 1.0 - mu, 0.0, True)
        _C_ops.sgd_(ax, self._scalar(-mu, ax.dtype), x, None, False)

    def minimize(
        self,
        loss: Tensor,
        startup_program: Any = None,
        parameters: Any = None,
        no_grad_set: Any = None,
    ) -> tuple[list, list[tuple[Tensor, Tensor]]]:
        """Paddle's dygraph ``minimize``: after ``loss.backward()``, step every parameter.

        Only dynamic-graph mode is supported; ``parameters`` / ``no_grad_set`` must be left unset.
        """
        if startup_program is not None or parameters is not None or no_grad_set is not None:
            raise ValueError(
                "ASGD.minimize supports dynamic-graph mode only, with no startup_program, "
                "parameters or no_grad_set"
            )
        params_grads = [(p, p.grad) for p in self._params() if not p.stop_gradient and p.grad is not None]
        self.step()
        return [], params_grads

    def _given_gradients(self, given: Sequence[tuple[Tensor, Any]]) -> dict[int, Tensor]:
        """``id(param) -> grad`` of ``given`` pairs, refusing a parameter this optimizer does not hold."""
        known = {id(p) for p in self._params()}
        grads = {}
        for p, g in given:
            if id(p) not in known:
                raise ValueError(
                    f"{type(self).__name__}._apply_optimize: parameter {p.name!r} is not in the "
                    "optimizer's param groups"
                )
            if g is not None and not p.stop_gradient:
                grads[id(p)] = g
        return grads

    def _apply_optimize(self, loss, startup_program, params_grads, param_group_idx=0):  # noqa: ANN001
        """The step on the ``(param, grad)`` pairs Paddle's wrappers pass, in dynamic-graph mode.

        Fleet's ``distributed_optimizer`` (sharding stage 1: ``DygraphShardingOptimizer.step``) calls
        this instead of :meth:`step`, with the pairs of the parameters this rank updates; ``params_grads``
        is that list, or a param-group dict with ``"params"``. The update is :meth:`step`'s, on those
        pairs only (``p.grad`` is not read): the same gradient preparation (a ``grad_clip`` clips the
        given gradients together; fleet replaces a global-norm clip by one whose norm spans the ranks)
        and the same per-parameter update.
        """
        if not paddle.in_dynamic_mode():
            raise RuntimeError(f"asgd_bridge.paddle.{type(self).__name__} supports dynamic-graph mode only")
        self._check_not_swapped("step()")
        pairs = params_grads["params"] if isinstance(params_grads, Mapping) else params_grads
        if skip_for_found_inf(self):
            return None
        self._update_all(given=pairs)
        return None

    def _append_optimize_op(self, block: Any, param_and_grad: Any) -> Any:
        raise NotImplementedError("asgd_bridge.paddle.ASGD runs in dynamic-graph mode only")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's ``zero_grad``: ``set_to_none=False`` zeroes the gradients instead of dropping them."""
        self.clear_grad(set_to_zero=not set_to_none)

    # ------------------------------------------------------------------ averaged weights (mixin hooks)

    def _averaging_pairs(self) -> list[tuple[Tensor, Tensor | None]]:
        params = self._params()
        # fleet sharding hands this optimizer its rank's shard (``_parameter_list``); the others' averages
        # live on their owners (asgd_bridge.paddle.ShardingAveraged gathers them)
        if len(self._parameter_list) < len(params):
            local = {id(p) for p in self._parameter_list}
            params = [p for p in params if id(p) in local]
        return [(p, st.ax if (st := self.state.get(p)) is not None else None) for p in params]

    # ------------------------------------------------------------------ state dict

    def state_dict(self) -> dict[str, Any]:
        """torch-layout state (see the class doc), plus master weights and Paddle's ``LR_Scheduler``."""
        self._sync_lr()
        state: dict[int, dict[str, Tensor]] = {}
        masters: dict[int, Tensor] = {}
        groups = []
        clip = self._grad_clip_spec()
        index = 0
        for group, extras in zip(self._groups, self._extras, strict=True):
            indices = []
            for p in group["params"]:
                st = self.state.get(p)
                if st is not None:
                    state[index] = {key: st[key] for key in _ParamState._KEYS}
                if p.name in self._master_weights:
                    masters[index] = self._master_weights[p.name]
                indices.append(index)
                index += 1
            groups.append(
                {
                    **{key: group[key] for key in _GROUP_KEYS},
                    "regularizer": regularizer_to_spec(extras.regularizer),
                    "grad_clip": clip,
                    "params": indices,
                }
            )
        out: dict[str, Any] = {"state": state, "param_groups": groups}
        if masters:
            out["master_weights"] = masters
        if isinstance(self._learning_rate, LRScheduler):
            out["LR_Scheduler"] = self._learning_rate.state_dict()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also from ``paddle.load``) into this optimizer, copying tensors.

        The state dict is first checked against :data:`asgd_bridge.state_format.ASGD_FORMAT` and these
        parameters (hyperparameters as the constructor checks them, ``step``/``eta``/``mu`` in range,
        ``ax`` and ``master_weights`` of each parameter's shape); a mismatch raises
        :class:`~asgd_bridge.state_format.StateDictError` (a ``ValueError``) naming the parameter and
        the key, and nothing is loaded.
        """
        check_state_dict(
            state_dict,
            ASGD_FORMAT,
            [[param_spec(p, p.name) for p in group["params"]] for group in self._groups],
            framework="paddle",
        )
        saved_groups = state_dict["param_groups"]
        # a group's regulariser (absent from older state dicts and torch's: the constructor's stays)
        regularizers = [
            saved_regularizer(saved["regularizer"], extras.regularizer, f"param group {index}")
            if "regularizer" in saved
            else extras.regularizer
            for index, (saved, extras) in enumerate(zip(saved_groups, self._extras, strict=True))
        ]
        if isinstance(self._learning_rate, LRScheduler) and state_dict.get("LR_Scheduler"):
            self._learning_rate.set_state_dict(dict(state_dict["LR_Scheduler"]))
        params: dict[int, Tensor] = {}
        for saved, group, extras, regularizer in zip(
            saved_groups, self._groups, self._extras, regularizers, strict=True
        ):
            for key in _GROUP_KEYS:
                if key in saved:
                    value = saved[key]
                    group[key] = bool(value) if key in _FLAGS else float(value)
            extras.regularizer = regularizer
            params.update({int(i): p for i, p in zip(saved["params"], group["params"], strict=True)})
        self._global_lr_seen = float(self.get_lr())

        self.state = _StateTable()
        with paddle.no_grad():
            for i, entry in state_dict["state"].items():
                if not entry:
                    continue  # looked up, never stepped
                p = params[int(i)]
                scalar_dtype = paddle.float64 if p.dtype == paddle.float64 else paddle.float32
                ax = _tensor_copy(entry["ax"], p.dtype)
                if list(ax.shape) != list(p.shape):
                    raise ValueError(
                        f"state of parameter {i}: 'ax' has shape {list(ax.shape)}, expected {list(p.shape)}"
                    )
                self.state[p] = _ParamState(
                    int(_number(entry["step"])),
                    _round_scalar(_number(entry["eta"]), scalar_dtype),
                    _round_scalar(_number(entry["mu"]), scalar_dtype),
                    ax,
                    scalar_dtype,
                )
            self._master_weights = {}
            for i, master in state_dict.get("master_weights", {}).items():
                p = params[int(i)]
                copy = _tensor_copy(master, paddle.float32)
                copy.name = self._gen_master_weight_var_name(p)
                self._master_weights[p.name] = copy

    set_state_dict = load_state_dict

    def _grad_clip_spec(self) -> tuple | None:
        """The optimizer's ``grad_clip`` in the plain form state dicts carry (``None`` without one)."""
        return clip_to_spec(self._grad_clip)


def _param_lr_multiplier(p: Tensor) -> float:
    # ParamAttr(learning_rate=...) scales a parameter's lr in every Paddle optimizer.
    attr = getattr(p, "optimize_attr", None)
    return float(attr.get("learning_rate", 1.0)) if attr else 1.0


def _number(value: Any) -> float:
    return float(np.asarray(value.numpy() if isinstance(value, paddle.Tensor) else value).reshape(()))


def _tensor_copy(value: Any, dtype: Any) -> Tensor:
    tensor = value if isinstance(value, paddle.Tensor) else paddle.to_tensor(np.asarray(value))
    return tensor.detach().astype(dtype).clone()
