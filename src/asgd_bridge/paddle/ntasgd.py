"""``NTASGD`` for Paddle: ``paddle.optimizer.SGD`` until the validation metric stalls, then averaged SGD."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import paddle
from paddle import _C_ops
from paddle.nn.clip import GradientClipBase
from paddle.optimizer.lr import LRScheduler
from paddle.regularizer import L2Decay, WeightDecayRegularizer

from ..hyperparams import ASGD_DEFAULTS
from ..ntasgd import NonMonotonicAveraging, NonMonotonicTrigger
from ._amp import skip_for_found_inf
from .asgd import ASGD, _param_lr_multiplier

__all__ = ["NTASGD"]

Tensor = paddle.Tensor


class NTASGD(NonMonotonicAveraging, ASGD):
    r"""Non-monotonically triggered averaged SGD (NT-ASGD, Merity et al. 2018) as one Paddle optimizer.

    The Paddle form of AWD-LSTM's program: ``paddle.optimizer.SGD(learning_rate=lr, weight_decay=wd)``
    until the validation loss is worse than the best of all but the last ``nonmono`` checks, then
    ``asgd_bridge.paddle.ASGD(learning_rate=lr, t0=0, lambd=0., weight_decay=wd)`` (torch's averaged
    SGD) built at the switch:

    - **before the switch**, ``step()`` is Paddle's SGD step, op for op: the gradient is clipped
      (``grad_clip``), regularised (a float ``weight_decay`` is ``L2Decay(weight_decay)``, as in
      ``paddle.optimizer.SGD``; a parameter's own regulariser takes precedence) and applied,
      :math:`p \leftarrow p - lr\,(g + wd\,p)`; no optimizer state is kept;
    - **the switch**: :meth:`start_averaging` (t0 becomes the current step) or :meth:`report` (the
      validation metric, once per epoch) firing the :class:`~asgd_bridge.ntasgd.NonMonotonicTrigger`;
    - **after the switch**, ``step()`` is :class:`asgd_bridge.paddle.ASGD`'s with ``t0=0, lambd=0``,
      started fresh: :math:`p_s = p_{s-1}(1 - \eta\,wd) - \eta\,g_s`,
      :math:`\bar{x}_s = \bar{x}_{s-1} + \mu_s (p_s - \bar{x}_{s-1})`, :math:`\mu_s = 1/\max(1, s-1)`
      (torch's float ``weight_decay`` inside the update, as ``asgd_bridge.paddle.ASGD`` does).

    Parameters and ``ax`` equal the hand-written ``paddle.optimizer.SGD`` -> ``asgd_bridge.paddle.ASGD``
    program step after step. An ``LRScheduler`` as ``learning_rate``, ``set_lr`` and param groups work
    across the switch (the groups are kept). The averaged-weights API is ASGD's; before the switch it
    returns the raw weights, with one warning. ``state_dict()`` adds an ``"ntasgd"`` entry (steps,
    :attr:`averaging_start`, the trigger's state), validated by ``load_state_dict`` /
    ``set_state_dict``, so a resumed run equals an uninterrupted one.

    Args:
        learning_rate: float or ``paddle.optimizer.lr.LRScheduler`` (default 0.01).
        weight_decay: float (see above), ``L1Decay`` / ``L2Decay``, or ``None``.
        parameters: a list of tensors or of Paddle/torch-style param-group dicts (as ``ASGD``).
        grad_clip: ``paddle.nn.ClipGradBy*``, in both phases.
        name: Paddle's optimizer name (unused).
        nonmono, mode, threshold, threshold_mode: the trigger's arguments (AWD-LSTM's ``nonmono=5``).
        maximize: negate the gradient first, in both phases.
        immediate_lr, bottou_average: :class:`asgd_bridge.paddle.ASGD`'s fixes for the averaged phase.

    Float16/bfloat16 master weights (``multi_precision``) are not offered.

    References:
        S. Merity, N. S. Keskar and R. Socher. Regularizing and optimizing LSTM language models.
        ICLR 2018 (arXiv:1708.02182), Algorithm 1.

        B. T. Polyak and A. B. Juditsky. Acceleration of stochastic approximation by averaging.
        SIAM J. Control Optim., 30(4):838-855, 1992.
    """

    def __init__(
        self,
        learning_rate: float | LRScheduler = ASGD_DEFAULTS["lr"],
        weight_decay: float | WeightDecayRegularizer | None = None,
        parameters: Sequence[Tensor] | Sequence[Mapping[str, Any]] | None = None,
        grad_clip: GradientClipBase | None = None,
        name: str | None = None,
        *,
        nonmono: int = 5,
        mode: str = "min",
        threshold: float = 0.0,
        threshold_mode: str = "rel",
        maximize: bool = False,
        immediate_lr: bool = False,
        bottou_average: bool = False,
    ) -> None:
        trigger = NonMonotonicTrigger(nonmono, mode, threshold, threshold_mode)
        super().__init__(
            learning_rate=learning_rate,
            lambd=0.0,
            t0=0,
            weight_decay=weight_decay,
            maximize=maximize,
            parameters=parameters,
            grad_clip=grad_clip,
            name=name,
            immediate_lr=immediate_lr,
            bottou_average=bottou_average,
        )
        self._init_ntasgd(trigger)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step: Paddle's SGD before the switch, averaged SGD after (see the class doc)."""
        self._check_not_swapped("step()")
        if self.is_averaging:
            loss = super().step(closure)
            self._count_step()
            return loss
        loss, skip = self._begin_step(closure)
        if skip:
            return loss
        self._sgd_step()
        self._count_step()
        return loss

    def _sgd_step(self, given: Sequence[tuple[Tensor, Any]] | None = None) -> None:
        """Paddle's SGD step (before the switch) on every parameter's ``p.grad``, or on ``given`` pairs."""
        with paddle.no_grad():
            self._sync_lr()
            self._scalars = {}
            prepared = self._prepared_gradients("NTASGD", self._sgd_regularizer, given=given)
            for index, pairs in enumerate(prepared):
                group = self._groups[index]
                for p, grad in pairs:
                    lr = group["lr"] * _param_lr_multiplier(p)
                    grad = grad if grad.dtype == p.dtype else grad.astype(p.dtype)  # prepared in fp32
                    _C_ops.sgd_(p, self._scalar(lr, p.dtype), grad, None, False)

    def _apply_optimize(self, loss, startup_program, params_grads, param_group_idx=0):  # noqa: ANN001
        """:meth:`step` on the ``(param, grad)`` pairs fleet's wrappers pass (see
        :meth:`asgd_bridge.paddle.ASGD._apply_optimize`), before and after the switch."""
        if self.is_averaging:
            super()._apply_optimize(loss, startup_program, params_grads, param_group_idx)
            self._count_step()
            return None
        if not paddle.in_dynamic_mode():
            raise RuntimeError("asgd_bridge.paddle.NTASGD supports dynamic-graph mode only")
        self._check_not_swapped("step()")
        if skip_for_found_inf(self):
            return None
        self._sgd_step(params_grads["params"] if isinstance(params_grads, Mapping) else params_grads)
        self._count_step()
        return None

    def _sgd_regularizer(self, index: int) -> WeightDecayRegularizer | None:
        """Group ``index``'s regulariser before the switch: its Paddle one, else ``L2Decay`` of its float
        ``weight_decay`` (``paddle.optimizer.SGD``'s meaning of the float)."""
        regularizer, wd = self._extras[index].regularizer, self._groups[index]["weight_decay"]
        return regularizer if regularizer is not None or not wd else L2Decay(wd)

    set_state_dict = NonMonotonicAveraging.load_state_dict
