"""``NTASGD``: SGD until the validation metric stalls, then averaged SGD, in one torch optimizer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT, _use_grad_for_differentiable
from torch.optim.sgd import sgd

from ..hyperparams import ASGD_DEFAULTS
from ..ntasgd import NTASGD_KEY, NonMonotonicAveraging, NonMonotonicTrigger
from .asgd import ASGD

__all__ = ["NTASGD"]


class NTASGD(NonMonotonicAveraging, ASGD):
    r"""Non-monotonically triggered averaged SGD (NT-ASGD, Merity et al. 2018) as one optimizer.

    AWD-LSTM and its family train with ``torch.optim.SGD(params, lr, weight_decay=wd)`` and, when the
    validation loss is worse than the best of all but the last ``nonmono`` checks, replace it by
    ``torch.optim.ASGD(params, lr=lr, t0=0, lambd=0., weight_decay=wd)``. This class is that program:

    - **before the switch**, ``step()`` is ``torch.optim.SGD``'s step (no momentum), op for op:
      :math:`p \leftarrow p - lr\,(g + wd\,p)`; an lr change takes effect at once, as in SGD; no
      optimizer state is kept;
    - **the switch** happens by hand (:meth:`start_averaging`; t0 becomes the current step) or when
      :meth:`report` (the validation metric, once per epoch) fires the
      :class:`~asgd_bridge.ntasgd.NonMonotonicTrigger`;
    - **after the switch**, ``step()`` is :class:`asgd_bridge.torch.ASGD` (torch.optim.ASGD's
      algorithm) with ``t0=0, lambd=0`` started fresh at the switch: per parameter, step :math:`s`
      counted from the switch,

      .. math::

          p_s = p_{s-1} - \eta\,(g_s + wd\,p_{s-1}), \qquad
          \bar{x}_s = \bar{x}_{s-1} + \mu_s\,(p_s - \bar{x}_{s-1}), \qquad \mu_s = 1/\max(1, s-1)

      with :math:`\eta` = the group's lr (torch's rule: set at the end of the previous step, so an lr
      change reaches the parameters one step late unless ``immediate_lr=True``).

    Parameters and ``ax`` are bit-identical, step after step, to the hand-written SGD -> ASGD program
    built with the groups' current lrs at the switch; so is ``state`` (it counts steps from the
    switch, as the new ASGD's does). Param groups and lr schedulers work across the switch (the
    groups are kept). The averaged-weights API is :class:`asgd_bridge.averaging.AveragedWeights`'s;
    before the switch it returns the raw weights, with one warning. ``state_dict()`` adds an
    ``"ntasgd"`` entry (steps, :attr:`averaging_start`, the trigger's state) and ``load_state_dict``
    validates it, so a resumed run equals an uninterrupted one.

    Example::

        opt = NTASGD(model.parameters(), lr=30, weight_decay=1.2e-6, nonmono=5)
        for epoch in range(epochs):
            train_one_epoch(model, opt)            # opt.step() as usual
            with opt.swap_averaged():              # the raw weights until averaging starts
                val_loss = evaluate(model)
            if opt.report(val_loss):
                print("switching to ASGD")

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate (default 1e-2, torch.optim.ASGD's).
        weight_decay: L2 penalty in both phases (default 0).
        nonmono, mode, threshold, threshold_mode: the trigger's arguments
            (:class:`~asgd_bridge.ntasgd.NonMonotonicTrigger`; AWD-LSTM's ``nonmono=5`` by default).
        maximize, foreach, differentiable: as in torch's SGD and ASGD, in both phases.
        fused: the averaged phase runs :class:`asgd_bridge.torch.ASGD`'s one-pass kernel
            (``fused=True``: 20 bytes per fp32 element, see docs/benchmarks.md); the SGD phase is
            torch's default SGD path then. Not with ``foreach=True`` or ``differentiable=True``.
        immediate_lr, bottou_average: :class:`asgd_bridge.torch.ASGD`'s fixes for the averaged phase
            (default off: the hand-written program).

    Sparse gradients are refused in both phases (torch's ASGD refuses them after the switch).

    References:
        S. Merity, N. S. Keskar and R. Socher. Regularizing and optimizing LSTM language models.
        ICLR 2018 (arXiv:1708.02182), Algorithm 1.

        B. T. Polyak and A. B. Juditsky. Acceleration of stochastic approximation by averaging.
        SIAM J. Control Optim., 30(4):838-855, 1992.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = ASGD_DEFAULTS["lr"],
        weight_decay: float = 0,
        *,
        nonmono: int = 5,
        mode: str = "min",
        threshold: float = 0.0,
        threshold_mode: str = "rel",
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        immediate_lr: bool = False,
        bottou_average: bool = False,
    ) -> None:
        trigger = NonMonotonicTrigger(nonmono, mode, threshold, threshold_mode)
        super().__init__(
            params,
            lr=lr,
            lambd=0.0,
            t0=0,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
            immediate_lr=immediate_lr,
            bottou_average=bottou_average,
        )
        self._init_ntasgd(trigger)

    @_use_grad_for_differentiable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step: torch's SGD before the switch, averaged SGD after (see the class doc)."""
        self._check_not_swapped("step()")
        if self.is_averaging:
            # ASGD's step itself, not its hooked wrapper: step hooks run once, around this method.
            loss = inspect.unwrap(ASGD.step)(self, closure)
            self._count_step()
            return loss
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.is_sparse:
                        raise RuntimeError("NTASGD does not support sparse gradients")
                    params.append(p)
                    grads.append(p.grad)
            sgd(
                params,
                grads,
                [None] * len(params),
                weight_decay=group["weight_decay"],
                momentum=0.0,
                lr=group["lr"],
                dampening=0.0,
                nesterov=False,
                maximize=group["maximize"],
                has_sparse_grad=False,
                foreach=group["foreach"],
            )
        self._count_step()
        return loss


    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), NTASGD_KEY: self._ntasgd_state()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        entry = state.pop(NTASGD_KEY, None)
        super().__setstate__(state)
        self._trigger = NonMonotonicTrigger()
        self._steps, self._averaging_start = 0, None
        if entry is not None:
            self._set_ntasgd_state(self._check_ntasgd_state(entry, has_state=False))
