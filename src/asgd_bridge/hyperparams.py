"""Hyperparameters shared by every backend: defaults, and validation with one message per argument.

Both backends and the converter read the defaults from here, and all four optimizers and every
``load_state_dict`` (through :mod:`asgd_bridge.state_format`) validate with these functions, so a mistake
reads the same wherever it is made. The messages are torch.optim.ASGD's where torch has one (``Invalid
learning rate: -1``, ``Invalid weight_decay value: -1``), and ``Invalid <argument> value: ...`` otherwise;
Paddle's ``learning_rate`` argument reads ``Invalid learning rate (learning_rate): -1``. A reason in
parentheses follows where torch would not refuse the value (``inf``, a ``bool``, a string).
Clip and weight-decay specs are parsed by :mod:`asgd_bridge.specs`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "ASGD_DEFAULTS",
    "SAG_DEFAULTS",
    "check_asgd",
    "check_asgd_schedule",
    "check_flag",
    "check_lr",
    "check_name",
    "check_sag",
    "check_weight_decay",
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


def _check_nonneg(label: str, value: Any, *, finite: bool, tensor: bool) -> Any:
    """``value >= 0`` with torch's test; ``finite`` also refuses ``inf``; without ``tensor`` only Python
    numbers (``bool`` refused) pass. ``label`` is the message's subject."""
    if not tensor and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"Invalid {label}: {value!r} (expected a finite float >= 0)")
    if not _is_nonneg(value):
        raise ValueError(f"Invalid {label}: {value}")
    if finite and not value < float("inf"):
        raise ValueError(f"Invalid {label}: {value} (must be a finite float >= 0)")
    return value


def check_lr(value: Any, *, name: str = "lr", finite: bool = True, tensor: bool = False) -> Any:
    """A learning rate ``>= 0``: ``ValueError("Invalid learning rate: -1")`` (torch.optim.ASGD's message;
    ``"Invalid learning rate (learning_rate): -1"`` for Paddle's argument name ``name="learning_rate"``).

    ``finite`` refuses ``inf``; ``tensor`` accepts what torch does (any real ``>= 0``, a 1-element
    tensor), otherwise only a Python ``int``/``float`` (not ``bool``). Returns ``value``.
    """
    label = "learning rate" if name == "lr" else f"learning rate ({name})"
    if tensor and hasattr(value, "numel") and value.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    return _check_nonneg(label, value, finite=finite, tensor=tensor)


def check_weight_decay(value: Any, *, finite: bool = True, tensor: bool = False) -> Any:
    """torch's float ``weight_decay`` ``>= 0``: ``ValueError("Invalid weight_decay value: -1")`` (torch's
    message); ``finite`` and ``tensor`` as in :func:`check_lr`. Returns ``value``."""
    return _check_nonneg("weight_decay value", value, finite=finite, tensor=tensor)


def check_asgd(
    lr: Any, lambd: float, alpha: float, t0: float, weight_decay: float
) -> None:
    """Validate averaged-SGD hyperparameters as torch.optim.ASGD takes them (tensors, ``inf``).

    ``lr`` and ``weight_decay`` fail with torch.optim.ASGD's own messages; ``lambd``, ``alpha`` and
    ``t0``, which torch accepts and later divides by zero with (or silently misuses), fail here with a
    ``ValueError`` naming the argument.
    """
    check_lr(lr, finite=False, tensor=True)
    check_weight_decay(weight_decay, finite=False, tensor=True)
    check_asgd_schedule(lambd=lambd, alpha=alpha, t0=t0)


def _is_real_scalar(value: Any) -> bool:
    # What torch.optim.ASGD computes with: Python and NumPy reals, and 1-element real tensors.
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    is_complex = getattr(value, "is_complex", None)
    return (
        hasattr(value, "numel")
        and bool(value.numel() == 1)
        and callable(is_complex)
        and not is_complex()
    )


def check_asgd_schedule(**values: Any) -> None:
    """Validate any of ``lambd``, ``alpha``, ``t0`` (given by name), e.g. a param group's overrides.

    Each must be a real number (Python, NumPy or a 1-element tensor, as torch accepts) that is
    ``>= 0``; ``lambd`` and ``alpha`` also finite. Otherwise ``ValueError`` naming the argument.
    """
    for name, value in values.items():
        if name not in ("lambd", "alpha", "t0"):
            raise TypeError(f"check_asgd_schedule() got an unexpected argument {name!r}")
        if not _is_real_scalar(value):
            raise ValueError(f"Invalid {name} value: {value!r} (expected a float >= 0)")
        number = float(value)
        if not number >= 0 or math.isinf(number) and name != "t0":
            raise ValueError(f"Invalid {name} value: {value} (must be a finite float >= 0)")


def check_flag(name: str, value: Any) -> bool:
    """A boolean switch (``maximize``, ``multi_precision``, ...): ``ValueError`` naming it otherwise."""
    if not isinstance(value, bool):
        raise ValueError(f"Invalid {name} value: {value!r} (expected True or False)")
    return value


def check_name(value: Any) -> str | None:
    """Paddle's optional operator ``name``: a ``str`` or ``None``."""
    if value is not None and not isinstance(value, str):
        raise ValueError(f"Invalid name value: {value!r} (expected a str or None)")
    return value


def check_sag(lr: Any, batch_num: Any) -> None:
    """Validate SAG hyperparameters with ``ValueError`` naming the argument."""
    if lr is None:
        raise ValueError("learning_rate should not be none")
    if isinstance(lr, (int, float)):
        check_lr(lr)
    if batch_num is None:
        raise ValueError("batch_num should not be none")
    if isinstance(batch_num, bool) or not isinstance(batch_num, int):
        raise ValueError(f"Invalid batch_num value: {batch_num!r} (expected an int >= 1)")
    if batch_num < 1:
        raise ValueError(f"Invalid batch_num value: {batch_num} (must be >= 1)")
