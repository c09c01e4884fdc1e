"""Gradient-clipping and weight-decay specs: the framework-neutral form every backend, state dict,
checkpoint conversion and the converter use.

A spec is a small tuple of plain values, so it pickles, loads without executing code and reads the same in
torch and Paddle. Each spec stands for one Paddle object (the framework objects are built in one adapter,
:mod:`asgd_bridge.paddle._common`; torch's classes take the specs themselves):

==========================  =========================================  ============================
spec                        Paddle object                              gradient term
==========================  =========================================  ============================
``("global_norm", c)``      ``paddle.nn.ClipGradByGlobalNorm(c)``      ``g * c / max(c, ||all g||)``
``("norm", c)``             ``paddle.nn.ClipGradByNorm(c)``            ``g * c / max(c, ||g||)``
``("value", lo, hi)``       ``paddle.nn.ClipGradByValue(hi, lo)``      ``clip(g, lo, hi)``
``("l2", c)``               ``paddle.regularizer.L2Decay(c)``          ``g + c * p``
``("l1", c)``               ``paddle.regularizer.L1Decay(c)``          ``g + c * sign(p)``
``("custom", "Name")``      an instance of another class ``Name``      not representable
==========================  =========================================  ============================

(:func:`asgd_bridge.reference.prepare_gradients` computes each term.) ``("custom", name)`` is only
*recorded* (a state dict says what the optimizer had); loading it needs an optimizer built with that object.

A float ``weight_decay`` means two things, by design: in SAG (``paddle.optimizer.ASGD``'s algorithm) it is
Paddle's ``L2Decay(c)``, a regulariser added to the clipped gradient; in averaged SGD it is torch's
``weight_decay``, added inside the update after the ``maximize`` negation. Both are parsed here
(:func:`parse_weight_decay`); the backends document which one they apply.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "CLIP_KINDS",
    "CUSTOM",
    "PADDLE_SPEC_CLASSES",
    "REGULARIZER_KINDS",
    "custom_spec",
    "is_custom",
    "parse_grad_clip",
    "parse_regularizer",
    "parse_weight_decay",
    "weight_decay_value",
]

#: Gradient-clipping kinds: ``("global_norm", c)``, ``("norm", c)``, ``("value", lo, hi)``.
CLIP_KINDS = ("global_norm", "norm", "value")
#: Regulariser kinds: ``("l2", c)``, ``("l1", c)``.
REGULARIZER_KINDS = ("l2", "l1")
#: The tag of a spec recording an object no spec can express: ``("custom", class name)``.
CUSTOM = "custom"

#: Paddle's classes -> (spec kind, their constructor arguments in order); the converter rewrites source
#: with it and :mod:`asgd_bridge.paddle._common` builds the objects it names.
PADDLE_SPEC_CLASSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "paddle.regularizer.L2Decay": ("l2", ("coeff",)),
    "paddle.regularizer.L1Decay": ("l1", ("coeff",)),
    "paddle.nn.ClipGradByNorm": ("norm", ("clip_norm",)),
    "paddle.nn.ClipGradByGlobalNorm": ("global_norm", ("clip_norm",)),
    "paddle.nn.ClipGradByValue": ("value", ("max", "min")),
}


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def custom_spec(obj: Any) -> tuple[str, str]:
    """The record of an object no spec can express: ``("custom", its class name)``."""
    return (CUSTOM, type(obj).__name__)


def is_custom(spec: Any) -> bool:
    """Whether ``spec`` is a ``("custom", class name)`` record (a tuple, or a list after some loaders)."""
    return isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] == CUSTOM


def parse_grad_clip(spec: Any) -> tuple | None:
    """Validate a ``grad_clip`` spec and return its canonical tuple (or ``None``).

    Accepted: ``None``; ``("global_norm", c)`` and ``("norm", c)`` with ``c > 0``; ``("value", hi)``
    (clip to ``[-hi, hi]``, ``hi > 0``, Paddle's ``ClipGradByValue(hi)``) and ``("value", lo, hi)``
    with ``lo < hi`` (``torch.clamp`` order); a list in place of the tuple. Anything else raises
    ``ValueError`` naming ``grad_clip``.
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


def parse_weight_decay(spec: Any, name: str = "weight_decay") -> tuple[str, float]:
    """Validate a ``weight_decay`` and return ``(kind, coeff)``, kind ``"l2"`` or ``"l1"``.

    A finite number ``c >= 0`` is ``("l2", c)`` (what it adds is the backend's: see the module doc);
    ``("l2", c)`` and ``("l1", c)`` name the regulariser; ``None`` is no decay, ``("l2", 0.0)``.
    Anything else raises ``ValueError`` naming ``name``.
    """
    if spec is None:
        return ("l2", 0.0)
    if _finite_number(spec):
        if not spec >= 0:
            raise ValueError(f"Invalid {name} value: {spec}")
        return ("l2", float(spec))
    if (
        isinstance(spec, (tuple, list))
        and len(spec) == 2
        and spec[0] in REGULARIZER_KINDS
        and _finite_number(spec[1])
        and spec[1] >= 0
    ):
        return (spec[0], float(spec[1]))
    raise ValueError(
        f"Invalid {name} value: {spec!r} (expected a finite float >= 0, ('l2', c) or ('l1', c) with c >= 0)"
    )


def parse_regularizer(spec: Any) -> tuple[str, float] | tuple[str, str] | None:
    """Validate a recorded ``regularizer`` (averaged SGD's Paddle regulariser, kept apart from torch's
    float ``weight_decay``): ``None``, ``("l2", c)``, ``("l1", c)`` or ``("custom", class name)``.

    Returns the canonical tuple; anything else raises ``ValueError`` naming ``regularizer``.
    """
    if spec is None:
        return None
    if is_custom(spec):
        if not isinstance(spec[1], str):
            raise ValueError(f"Invalid regularizer value: {spec!r} (('custom', class name))")
        return (CUSTOM, spec[1])
    if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] in REGULARIZER_KINDS):
        raise ValueError(
            f"Invalid regularizer value: {spec!r} (expected None, ('l2', c), ('l1', c) or ('custom', name))"
        )
    return parse_weight_decay(spec, "regularizer")


def weight_decay_value(kind: str, coeff: float) -> float | tuple[str, float]:
    """SAG's canonical ``weight_decay`` (what its param groups and state dicts hold): the float ``coeff``
    for L2 (Paddle's ``L2Decay``), ``("l1", coeff)`` for L1."""
    return coeff if kind == "l2" else (kind, coeff)
