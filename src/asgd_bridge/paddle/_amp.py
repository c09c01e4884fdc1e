"""Paddle AMP's contract with an optimizer, shared by both Paddle optimizers."""

from __future__ import annotations

import paddle


def skip_for_found_inf(opt: paddle.optimizer.Optimizer) -> bool:
    """Whether ``paddle.amp.GradScaler`` flagged inf/NaN gradients, so the step must be skipped.

    ``GradScaler.step`` sets the ``found_inf`` auxiliary variable and calls ``step()`` unconditionally,
    leaving the skip to the optimizer; this is what ``Optimizer._create_optimization_pass`` does (one
    read of the flag, only when a scaler set it).
    """
    found_inf = opt._get_auxiliary_var("found_inf")
    if found_inf is None:
        return False
    skip = bool(found_inf)
    if isinstance(found_inf, paddle.Tensor):
        opt._set_auxiliary_var("found_inf", skip)
    return skip
