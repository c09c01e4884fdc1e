"""``ASGD``: a drop-in for ``torch.optim.ASGD`` (averaged SGD) with its averaged weights usable.

Same arguments, state and ``state_dict`` as torch; two documented fixes behind keyword-only flags.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim.optimizer import (
    Optimizer,
    ParamsT,
    _default_to_fused_or_foreach,
    _disable_dynamo_if_unsupported,
    _get_capturable_supported_devices,
    _get_scalar_dtype,
    _get_value,
    _to_scalar,
    _use_grad_for_differentiable,
    _view_as_real,
)
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from ..hyperparams import ASGD_DEFAULTS, check_asgd, check_asgd_schedule
from ..state_format import ASGD_FORMAT, checked_torch_load
from . import _schedule
from .distributed import TorchAveraging

__all__ = ["ASGD", "asgd"]

#: Param-group keys this class adds to torch's; a group without them (a torch.optim.ASGD state
#: dict) takes the constructor's values.
_EXTRA_KEYS = ("immediate_lr", "bottou_average", "fused")


class ASGD(Optimizer, TorchAveraging):
    r"""Averaged SGD, a drop-in for :class:`torch.optim.ASGD` with an API for the averaged weights.

    Per parameter, step :math:`t` counted from 1 (the full statement is
    :func:`asgd_bridge.reference.asgd_step`):

    .. math::

        p_t &= p_{t-1}(1 - \lambda\eta) - \eta\,(\pm g_t + wd\, p_{t-1}) \\
        \bar{x}_t &= \bar{x}_{t-1} + \mu\,(p_t - \bar{x}_{t-1})

    with, at the end of step :math:`t` (for step :math:`t+1`),
    :math:`\eta = lr / (1 + \lambda\, lr\, t)^{\alpha}` (:func:`~asgd_bridge.reference.eta_schedule`)
    and :math:`\mu = 1/\max(1, t - t_0)` (:func:`~asgd_bridge.reference.mu_schedule`).
    Training uses :math:`p`; :math:`\bar{x}` is ``state[p]["ax"]``, read it with
    :meth:`averaged_parameters`, :meth:`swap_averaged` or :meth:`averaged_state_dict`.

    Everything torch.optim.ASGD has behaves as in torch 2.13: defaults, validation messages, param
    groups, tensor ``lr``, state keys ``step``/``eta``/``mu``/``ax``, the ``state_dict`` format (a state
    dict of either class loads into the other), ``foreach``, ``maximize``, ``differentiable``,
    ``capturable`` (on the devices torch allows; CPU is not one of them), complex parameters,
    per-parameter step counts, skipped parameters without gradients, sparse gradients refused. With
    ``foreach=False`` parameters and ``ax`` are bit-identical to ``torch.optim.ASGD(foreach=False)``.
    ``lambd``, ``alpha`` and ``t0`` must be non-negative (torch accepts negative values and then
    misbehaves); see :func:`asgd_bridge.hyperparams.check_asgd`.

    Args:
        params: iterable of parameters or named parameters, or of dicts defining parameter groups.
        lr: learning rate, float or 1-element tensor (default: 1e-2).
        lambd: decay term (default: 1e-4).
        alpha: power for the eta update (default: 0.75).
        t0: step after which averaging starts (default: 1e6).
        weight_decay: L2 penalty (default: 0).
        foreach: use the multi-tensor implementation; ``None`` picks it where torch would (CUDA).
        maximize: maximize the objective instead of minimizing it.
        differentiable: let autograd run through the step (single-tensor path).
        capturable: keep the schedule on the device, for CUDA graphs; torch allows it on
            ``cuda``/``xpu``/``hpu``/privateuse1/``xla`` only and raises torch's ``AssertionError``
            otherwise.
        fused: dispatch to :func:`asgd_bridge.torch._fused.fused_asgd_` (cannot be combined with
            ``foreach=True`` or ``differentiable=True``; ``capturable=True`` is refused on CPU as on
            every other path).
        immediate_lr: compute eta at the *start* of step :math:`t` from the current lr,
            :math:`\eta_t = lr_t / (1 + \lambda\, lr_t (t-1))^{\alpha}`, so an lr set by hand or by a
            scheduler takes effect on the very next step (torch applies it one step late,
            pytorch/pytorch#74884). With a constant lr nothing changes.
        bottou_average: compute mu at the start of step :math:`t`, :math:`\mu_t = 1/\max(1, t-t_0)`,
            so ``ax`` is the mean of *every* iterate after ``t0`` (torch leaves out the first one).

    The two flags only change the eta/mu used inside a step (written into ``state["eta"]`` /
    ``state["mu"]`` first, so they are rounded to the state's scalar dtype as torch's are: with a
    constant lr, ``immediate_lr=True`` is bit-identical to torch). ``eta`` and ``mu`` are still written
    into the state at the end of each step exactly as torch does, and the flags are param-group keys
    (so they are saved in ``state_dict()["param_groups"]``; a torch state dict without them keeps the
    values given to the constructor).

    ``immediate_lr``, before and after:

    >>> import torch
    >>> from asgd_bridge.torch import ASGD
    >>> def run(**flags):
    ...     p = torch.nn.Parameter(torch.zeros(1))
    ...     opt = ASGD([p], lr=0.1, lambd=0.0, **flags)
    ...     p.grad = torch.ones(1)
    ...     opt.step()
    ...     opt.param_groups[0]["lr"] = 0.5  # by hand or by a scheduler
    ...     opt.step()
    ...     return p.detach()
    >>> run()  # torch: the second step still moves by 0.1
    tensor([-0.2000])
    >>> run(immediate_lr=True)  # the new lr is used at once: -0.1 - 0.5
    tensor([-0.6000])

    ``bottou_average``, before and after (iterates -0.1, -0.2, -0.3 with ``t0=0``):

    >>> def average(**flags):
    ...     p = torch.nn.Parameter(torch.zeros(1))
    ...     opt = ASGD([p], lr=0.1, lambd=0.0, t0=0, **flags)
    ...     p.grad = torch.ones(1)
    ...     for _ in range(3):
    ...         opt.step()
    ...     return opt.averaged_parameters()[0]
    >>> average()  # torch: mean of -0.2 and -0.3, the first iterate is left out
    tensor([-0.2500])
    >>> average(bottou_average=True)  # mean of all three iterates
    tensor([-0.2000])

    Averaged weights (see :class:`asgd_bridge.averaging.AveragedWeights`)::

        with opt.swap_averaged():
            val_loss = evaluate(model)
        torch.save(opt.averaged_state_dict(model), "averaged.pt")

    References:
        B. T. Polyak and A. B. Juditsky. Acceleration of stochastic approximation by averaging.
        SIAM J. Control Optim., 30(4):838-855, 1992.

        L. Bottou. Large-scale machine learning with stochastic gradient descent. COMPSTAT 2010.

        W. Xu. Towards optimal one pass large scale learning with averaged stochastic gradient
        descent. arXiv:1107.2490, 2011.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = ASGD_DEFAULTS["lr"],
        lambd: float = ASGD_DEFAULTS["lambd"],
        alpha: float = ASGD_DEFAULTS["alpha"],
        t0: float = ASGD_DEFAULTS["t0"],
        weight_decay: float = 0,  # torch's literal int (ASGD_DEFAULTS has 0.0): same repr(opt)
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        fused: bool | None = None,
        immediate_lr: bool = False,
        bottou_average: bool = False,
    ) -> None:
        check_asgd(lr, lambd, alpha, t0, weight_decay)
        if fused:
            if foreach:
                raise ValueError("`fused` and `foreach` cannot be `True` together.")
            if differentiable:
                raise ValueError("`fused` and `differentiable` cannot be `True` together.")
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
            "fused": fused,
            "immediate_lr": immediate_lr,
            "bottou_average": bottou_average,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``; a group's own ``lambd``/``alpha``/``t0`` are validated too.

        The constructor adds its groups through here, so ``ASGD([{"params": ps, "lambd": -1}])``
        fails like ``ASGD(ps, lambd=-1)`` (torch accepts both and later divides by zero). In a
        ``fused`` group every parameter must be on a device torch's fused optimizers support (meta
        is not one) and floating point or complex; torch's ``RuntimeError`` is raised here, at
        construction, instead of at the first step.
        """
        check_asgd_schedule(**{k: param_group[k] for k in ("lambd", "alpha", "t0") if k in param_group})
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group.get("fused"):
            try:
                for p in group["params"]:
                    check_fused_param(p)
            except RuntimeError:
                self.param_groups.pop()
                raise

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, checked first, with ``step`` kept as saved in ``fused`` groups.

        The state dict (after the load pre-hooks) is checked against
        :data:`asgd_bridge.state_format.ASGD_FORMAT` and these parameters: hyperparameters as the
        constructor checks them, ``step``/``eta``/``mu`` in range, ``ax`` of each parameter's shape
        and a compatible dtype; a mismatch raises :class:`~asgd_bridge.state_format.StateDictError`
        (a ``ValueError``) naming the parameter and the key, and nothing is loaded.

        torch's ``Optimizer`` reads a group's ``fused`` key as *its* fused flag and casts ``step`` to
        float32 on the parameter's device; torch.optim.ASGD (no ``fused``) keeps the saved tensor, and
        so does this class. ``capturable`` groups are still cast, as torch does.
        """
        with checked_torch_load(self, state_dict, ASGD_FORMAT) as state_dict:
            super().load_state_dict(state_dict)
        saved_state = state_dict.get("state", {})
        for saved_group, group in zip(state_dict["param_groups"], self.param_groups, strict=True):
            if not saved_group.get("fused") or group.get("capturable"):
                continue
            for pid, p in zip(saved_group["params"], group["params"], strict=True):
                step = saved_state.get(pid, {}).get("step")
                if torch.is_tensor(step) and p in self.state:
                    self.state[p]["step"] = step

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("maximize", False)
            group.setdefault("differentiable", False)
            group.setdefault("capturable", False)
            for key in _EXTRA_KEYS:
                group.setdefault(key, self.defaults.get(key, None if key == "fused" else False))
            for p in group["params"]:
                p_state = self.state.get(p, [])
                if len(p_state) != 0:
                    # Old checkpoints hold Python numbers; torch converts them the same way.
                    for key in ("step", "eta", "mu"):
                        if not torch.is_tensor(p_state[key]):
                            p_state[key] = torch.tensor(
                                float(p_state[key]), dtype=_get_scalar_dtype(), device=p.device
                            )

    @staticmethod
    def _new_state(state: dict[str, Any], p: Tensor, group: dict[str, Any]) -> None:
        state["step"] = torch.zeros((), device=p.device, dtype=_get_scalar_dtype())
        state["eta"] = (
            torch.as_tensor(_to_scalar(group["lr"]), device=p.device, dtype=_get_scalar_dtype())
            .clone()
            .detach()
        )
        state["mu"] = torch.ones((), device=p.device, dtype=_get_scalar_dtype())
        state["ax"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _init_group(
        self,
        group: dict[str, Any],
        params_with_grad: list[Tensor],
        grads: list[Tensor],
        mus: list[Tensor],
        axs: list[Tensor],
        etas: list[Tensor],
        state_steps: list[Tensor],
    ) -> bool:
        has_complex = False
        for p in group["params"]:
            if p.grad is not None:
                has_complex |= torch.is_complex(p)
                params_with_grad.append(p)
                if p.grad.is_sparse:
                    raise RuntimeError("ASGD does not support sparse gradients")
                grads.append(p.grad)

                state = self.state[p]
                fresh = self.__dict__.get("_fresh_steps")
                # init_state()'s state, still unstepped (DCP may have loaded into the same tensors)
                if len(state) == 0 or (
                    fresh and fresh.pop(id(p), None) is state.get("step") and float(state["step"]) == 0
                ):
                    self._new_state(state, p, group)

                mus.append(state["mu"])
                axs.append(state["ax"])
                etas.append(state["eta"])
                state_steps.append(state["step"])
        return has_complex

    @_use_grad_for_differentiable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform a single optimization step.

        Args:
            closure: a closure that reevaluates the model and returns the loss.
        """
        self._check_not_swapped("step()")
        self._accelerator_graph_capture_health_check()

        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params_with_grad: list[Tensor] = []
            grads: list[Tensor] = []
            mus: list[Tensor] = []
            axs: list[Tensor] = []
            etas: list[Tensor] = []
            state_steps: list[Tensor] = []
            has_complex = self._init_group(group, params_with_grad, grads, mus, axs, etas, state_steps)
            asgd(
                params_with_grad,
                grads,
                axs,
                mus,
                etas,
                state_steps,
                foreach=group["foreach"],
                maximize=group["maximize"],
                differentiable=group["differentiable"],
                capturable=group["capturable"],
                has_complex=has_complex,
                lambd=group["lambd"],
                lr=group["lr"],
                t0=group["t0"],
                alpha=group["alpha"],
                weight_decay=group["weight_decay"],
                fused=group["fused"],
                immediate_lr=group["immediate_lr"],
                bottou_average=group["bottou_average"],
            )
        return loss

    # ------------------------------------------------------------------ AveragedWeights hooks

    def _averaging_pairs(self) -> list[tuple[Tensor, Tensor | None]]:
        pairs: list[tuple[Tensor, Tensor | None]] = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)  # .get: self.state is a defaultdict, indexing would add p
                ax = None if not state else state.get("ax")
                if ax is not None and float(state["step"]) == 0:  # init_state() only: not stepped
                    ax = None
                pairs.append((p, ax))
        return pairs

    # ------------------------------------------------------------------ checkpoints (DCP)

    def init_state(self) -> None:
        """Create every parameter's state as its first step would, without taking a step.

        ``step`` 0, ``eta`` the group's lr, ``mu`` 1, ``ax`` zeros: exactly what :meth:`step` creates
        before updating. ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`` (and
        ``set_optimizer_state_dict``) run a dummy ``step()`` with lr=0 and zero gradients when the
        optimizer's state is empty (``_init_optim_state``); for averaged SGD that is not a no-op
        (``step`` becomes 1 and ``eta`` is computed from lr=0, so the schedule of the real run shifts).
        Call this once before the first DCP call; the state is then not empty and DCP takes no step.

        ``eta`` is set again from the group's lr at the parameter's first real step (an lr changed
        in between, e.g. by a scheduler's constructor, is honoured as torch's lazy state would);
        the averaged-weights API treats a parameter with ``step`` 0 as not stepped yet.
        Parameters that already have state are left alone.
        """
        fresh = self.__dict__.setdefault("_fresh_steps", {})
        for group in self.param_groups:
            for p in group["params"]:
                if len(self.state.get(p, {})) != 0:
                    continue
                state = self.state[p]
                self._new_state(state, p, group)
                fresh[id(p)] = state["step"]

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict``; the flags of this class are recorded only where they are set.

        A group records ``immediate_lr``/``bottou_average`` when ``True`` and ``fused`` when not
        ``None``; otherwise the group has exactly torch.optim.ASGD's keys, so a
        ``torch.distributed.checkpoint`` of either class loads into the other without
        ``allow_partial_load``. A missing flag takes the constructor's value on load.
        """
        out = super().state_dict()
        for group in out["param_groups"]:
            for key in _EXTRA_KEYS:
                if key in group and group[key] in (None, False):
                    del group[key]
        return out


# ---------------------------------------------------------------------- implementation paths


def _check_capturable_devices(devices: list[tuple[torch.device, ...]], supports_xla: bool) -> None:
    supported = _get_capturable_supported_devices(supports_xla=supports_xla)
    if not all(len({d.type for d in ds}) == 1 and ds[0].type in supported for ds in devices):
        raise AssertionError(
            "If capturable=True, params, mus, etas, and state_steps must be on supported devices: "
            f"{supported}."
        )


def check_fused_param(p: Tensor) -> None:
    """Raise torch's fused-optimizer error unless ``p`` can take ``fused=True``.

    torch's fused optimizers (``_device_dtype_check_for_fused``) refuse a parameter that is not a
    floating-point tensor on a fused-kernel device, meta included; this path also takes complex
    parameters (updated as real views), so only the device and integer/bool dtypes are refused.
    """
    devices = _get_fused_kernels_supported_devices()
    if p.device.type not in devices or not (p.is_floating_point() or p.is_complex()):
        raise RuntimeError(
            "`fused=True` requires all the params to be floating point Tensors of "
            f"supported devices: {devices} but {p.dtype} and {p.device.type}"
        )


def _single_tensor_asgd(
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    mus: list[Tensor],
    etas: list[Tensor],
    state_steps: list[Tensor],
    *,
    lambd: float,
    lr: float | Tensor,
    t0: float,
    alpha: float,
    weight_decay: float,
    maximize: bool,
    differentiable: bool,
    capturable: bool,
    has_complex: bool,
    immediate_lr: bool,
    bottou_average: bool,
) -> None:
    # torch's _single_tensor_asgd, op for op (bit-identity), plus the two flags.
    lr = _to_scalar(lr)
    for i, param in enumerate(params):
        grad = grads[i]
        grad = grad if not maximize else -grad
        mu, ax, eta, step_t = mus[i], axs[i], etas[i], state_steps[i]

        if not torch.compiler.is_compiling() and capturable:
            _check_capturable_devices([(param.device, mu.device, eta.device, step_t.device)], True)

        if torch.is_complex(param):
            grad = torch.view_as_real(grad)
            param = torch.view_as_real(param)
            ax = torch.view_as_real(ax)

        # On CPU exactly torch's ops (host reads of eta/mu are free there); elsewhere device scalars.
        on_device = _schedule.sync_free(param.device, capturable)
        if immediate_lr:
            eta.copy_(_schedule.eta(lr, lambd, alpha, step_t, on_device))  # step_t = t - 1 updates so far
        step_t += 1
        if bottou_average:
            mu.copy_(_schedule.mu(step_t, t0, on_device))

        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)

        if on_device:
            param.mul_(1 - lambd * eta)
            param.addcmul_(grad, eta, value=-1)
        else:
            eta_value = _get_value(eta)
            param.mul_(1 - lambd * eta_value)
            param.add_(grad, alpha=-eta_value)

        if on_device or mu.item() != 1:
            ax.add_(param.sub(ax).mul_(mu))
        else:
            ax.copy_(param)

        eta.copy_(_schedule.eta(lr, lambd, alpha, step_t, on_device))
        mu.copy_(_schedule.mu(step_t, t0, on_device))


def _multi_tensor_asgd(
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    mus: list[Tensor],
    etas: list[Tensor],
    state_steps: list[Tensor],
    *,
    lambd: float,
    lr: float | Tensor,
    t0: float,
    alpha: float,
    weight_decay: float,
    maximize: bool,
    differentiable: bool,
    capturable: bool,
    has_complex: bool,
    immediate_lr: bool,
    bottou_average: bool,
) -> None:
    # torch's _multi_tensor_asgd (p - eta * (g + lambd p): not bit-identical to the loop), plus flags.
    if len(params) == 0:
        return
    if differentiable:
        raise AssertionError("_foreach ops don't support autograd")
    if not torch.compiler.is_compiling() and capturable:
        devices = zip(params, mus, etas, state_steps, strict=True)
        _check_capturable_devices([tuple(t.device for t in ts) for ts in devices], False)

    lr = _to_scalar(lr)
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, axs, mus, etas, state_steps]  # type: ignore[list-item]
    )
    for (device, _), (lists, _) in grouped.items():
        g_params, g_grads, g_axs, g_mus, g_etas, g_steps = (cast(list[Tensor], x) for x in lists)

        if has_complex:
            _view_as_real(g_params, g_grads, g_axs)
        if maximize:
            g_grads = list(torch._foreach_neg(g_grads))
        on_device = _schedule.sync_free(device, capturable)

        if immediate_lr:
            torch._foreach_copy_(g_etas, _schedule.foreach_eta(g_steps, lr, lambd, alpha, on_device, device))
        if not torch.compiler.is_compiling() and g_steps[0].is_cpu:
            torch._foreach_add_(g_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
        else:
            torch._foreach_add_(g_steps, 1)
        if bottou_average:
            torch._foreach_copy_(g_mus, _schedule.foreach_mu(g_steps, t0, on_device, device))

        intermediate: list[Tensor]
        if weight_decay != 0:
            if maximize:
                torch._foreach_add_(g_grads, g_params, alpha=weight_decay)
                intermediate = g_grads
            else:
                intermediate = list(torch._foreach_add(g_grads, g_params, alpha=weight_decay))
            torch._foreach_add_(intermediate, g_params, alpha=lambd)
        else:
            intermediate = list(torch._foreach_add(g_grads, g_params, alpha=lambd))
        torch._foreach_addcmul_(g_params, intermediate, g_etas, value=-1)
        del intermediate

        diff = torch._foreach_sub(g_params, g_axs)
        torch._foreach_addcmul_(g_axs, diff, g_mus)
        del diff

        torch._foreach_copy_(g_etas, _schedule.foreach_eta(g_steps, lr, lambd, alpha, on_device, device))
        torch._foreach_copy_(g_mus, _schedule.foreach_mu(g_steps, t0, on_device, device))


@_disable_dynamo_if_unsupported()
def asgd(
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    mus: list[Tensor],
    etas: list[Tensor],
    state_steps: list[Tensor],
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
    has_complex: bool = False,
    *,
    lambd: float,
    lr: float | Tensor,
    t0: float,
    alpha: float,
    weight_decay: float,
    fused: bool | None = None,
    immediate_lr: bool = False,
    bottou_average: bool = False,
) -> None:
    """Functional averaged SGD (torch.optim.functional style); the one place that picks a path.

    ``fused=True`` calls :func:`asgd_bridge.torch._fused.fused_asgd_`; otherwise ``foreach`` picks the
    multi-tensor path (``None``: where torch would, i.e. CUDA) or the single-tensor one. See
    :class:`ASGD` for the arguments.
    """
    if fused:
        if foreach or differentiable:
            other = "foreach" if foreach else "differentiable"
            raise ValueError(f"`fused` and `{other}` cannot be `True` together.")
        from ._fused import fused_asgd_  # lazy: optional module

        fused_asgd_(
            params, grads, axs, mus, etas, state_steps,
            lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize,
            immediate_lr=immediate_lr, bottou_average=bottou_average, capturable=capturable,
        )  # fmt: skip
        return

    if foreach is None:
        _, foreach = _default_to_fused_or_foreach(params, differentiable, use_fused=False)
    func = _multi_tensor_asgd if foreach else _single_tensor_asgd
    func(
        params, grads, axs, mus, etas, state_steps,
        lambd=lambd, lr=lr, t0=t0, alpha=alpha, weight_decay=weight_decay, maximize=maximize,
        differentiable=differentiable, capturable=capturable, has_complex=has_complex,
        immediate_lr=immediate_lr, bottou_average=bottou_average,
    )  # fmt: skip
