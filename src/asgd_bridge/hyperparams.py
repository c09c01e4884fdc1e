"""Hyperparameters shared by every backend: defaults, and validation with the frameworks' messages.

Both backends and the converter read the defaults from here, so they are written once.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "ASGD_DEFAULTS",
    "SAG_DEFAULTS",
    "check_asgd",
    "check_sag",
]

#: torch.optim.ASGD's defaults (torch 2.13).
ASGD_DEFAULTS: dict[str, Any] = {
    "lr": 1e-2,
    "lambd": 1e-4,
    "alpha": 0.75,
    "t0": 1e6,
    "weight_decay": 0.0,
}

#: paddle.optimizer.ASGD's defaults (paddle 3.3).
SAG_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "batch_num": 1,
}


def _is_nonneg(value: Any) -> bool:
    # `not 0.0 <= x` is torch's own test: it also refuses NaN, and works for 1-element tensors.
    return bool(0.0 <= value)


def check_asgd(
    lr: Any, lambd: float, alpha: float, t0: float, weight_decay: float
) -> None:
    """Validate averaged-SGD hyperparameters.

    ``lr`` and ``weight_decay`` fail with torch.optim.ASGD's own messages; ``lambd``, ``alpha`` and
    ``t0``, which torch accepts and later divides by zero with (or silently misuses), fail here with a
    ``ValueError`` naming the argument.
    """
    if hasattr(lr, "numel") and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not _is_nonneg(lr):
        raise ValueError(f"Invalid learning rate: {lr}")
    if not _is_nonneg(weight_decay):
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    for name, value in (("lambd", lambd), ("alpha", alpha), ("t0", t0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Invalid {name} value: {value!r} (expected a float >= 0)")
        if not value >= 0 or math.isinf(value) and name != "t0":
            raise ValueError(f"Invalid {name} value: {value} (must be a finite float >= 0)")


def check_sag(lr: Any, batch_num: Any) -> None:
    """Validate SAG hyperparameters with ``ValueError`` naming the argument."""
    if lr is None:
        raise ValueError("learning_rate should not be none")
    if isinstance(lr, (int, float)) and not _is_nonneg(lr):
        raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
    if batch_num is None:
        raise ValueError("batch_num should not be none")
    if isinstance(batch_num, bool) or not isinstance(batch_num, int):
        raise ValueError(f"Invalid batch_num value: {batch_num!r} (expected an int >= 1)")
    if batch_num < 1:
        raise ValueError(f"Invalid batch_num value: {batch_num} (must be >= 1)")
