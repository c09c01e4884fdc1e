"""Hyperparameters shared by every backend: defaults, and validation with the frameworks' messages.

Both backends and the converter read the defaults from here, so they are written once.
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
    "check_rate",
    "CLIP_KINDS",
    "check_sag",
    "parse_grad_clip",
    "parse_weight_decay",
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


def check_rate(label: str, value: Any) -> float:
    """A finite rate ``>= 0`` given as a Python number (``bool`` and tensors refused); returns it as a float.

    ``label`` names it in the message: ``"Invalid {label}: {value} (must be a finite float >= 0)"``
    (``"learning rate"`` for torch's SAG, ``"lr value"`` / ``"learning_rate value"`` for Paddle's classes).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Invalid {label}: {value!r} (expected a float >= 0)")
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"Invalid {label}: {value} (must be a finite float >= 0)")
    return float(value)


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


# ----------------------------------------------------------------- SAG: regulariser and clipping specs

#: Canonical gradient-clipping specs of SAG (framework-neutral, what state dicts carry):
#: ``("global_norm", c)`` = Paddle's ClipGradByGlobalNorm(c), ``("norm", c)`` = ClipGradByNorm(c),
#: ``("value", lo, hi)`` = ClipGradByValue(max=hi, min=lo).
CLIP_KINDS = ("global_norm", "norm", "value")


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def parse_grad_clip(spec: Any) -> tuple | None:
    """Validate a SAG ``grad_clip`` spec and return its canonical tuple (or ``None``).

    Accepted: ``None``; ``("global_norm", c)`` and ``("norm", c)`` with ``c > 0``; ``("value", hi)``
    (clip to ``[-hi, hi]``, ``hi > 0``, Paddle's ``ClipGradByValue(hi)``) and ``("value", lo, hi)``
    with ``lo < hi`` (``torch.clamp`` order). Anything else raises ``ValueError`` naming the spec.
    """
    if spec is None:
        return None
    allowed = "None, ('global_norm', c), ('norm', c), ('value', max) or ('value', min, max)"
    if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in CLIP_KINDS:
        raise ValueError(f"Invalid grad_clip value: {spec!r} (expected {allowed})")
    kind, *args = spec
    if not all(_finite_number(a) for a in args):
        raise ValueError(f"Invalid grad_clip value: {spec!r} (bounds must be finite numbers)")
    if kind in ("global_norm", "norm"):
        if len(args) != 1 or not args[0] > 0:
            raise ValueError(f"Invalid grad_clip value: {spec!r} (expected ({kind!r}, c) with c > 0)")
        return (kind, float(args[0]))
    if len(args) == 1:
        if not args[0] > 0:
            raise ValueError(f"Invalid grad_clip value: {spec!r} (('value', max) needs max > 0)")
        return ("value", -float(args[0]), float(args[0]))
    if len(args) != 2 or not args[0] < args[1]:
        raise ValueError(f"Invalid grad_clip value: {spec!r} (expected ('value', min, max), min < max)")
    return ("value", float(args[0]), float(args[1]))


def parse_weight_decay(spec: Any) -> tuple[str, float]:
    """Validate a SAG ``weight_decay`` and return ``(kind, coeff)``, kind ``"l2"`` or ``"l1"``.

    A number is Paddle's ``L2Decay(coeff)`` (and torch's ``weight_decay``); ``("l2", c)`` and
    ``("l1", c)`` name the regulariser (``L1Decay`` adds ``c * sign(p)``); ``None`` is no decay.
    """
    if spec is None:
        return ("l2", 0.0)
    if _finite_number(spec):
        if not spec >= 0:
            raise ValueError(f"Invalid weight_decay value: {spec} (must be >= 0)")
        return ("l2", float(spec))
    if (
        isinstance(spec, (tuple, list))
        and len(spec) == 2
        and spec[0] in ("l1", "l2")
        and _finite_number(spec[1])
        and spec[1] >= 0
    ):
        return (spec[0], float(spec[1]))
    raise ValueError(
        f"Invalid weight_decay value: {spec!r} (expected a float >= 0, ('l2', c) or ('l1', c) with c >= 0)"
    )
