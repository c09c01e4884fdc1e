"""What both Paddle optimizers share: Paddle's clip/regulariser objects <-> :mod:`asgd_bridge.specs`, and
the gradient preparation of :func:`asgd_bridge.reference.prepare_gradients` on Paddle tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import paddle
from paddle.nn.clip import ClipGradBase
from paddle.regularizer import L1Decay, L2Decay, WeightDecayRegularizer

from ..specs import (
    custom_spec,
    is_custom,
    parse_grad_clip,
    parse_regularizer,
    parse_weight_decay,
)

__all__ = [
    "HALF",
    "clip_from_spec",
    "clip_to_spec",
    "prepare_gradients",
    "regularize",
    "regularizer_from_spec",
    "regularizer_to_spec",
    "saved_regularizer",
    "split_weight_decay",
]

Tensor = paddle.Tensor
Pairs = list[tuple[Tensor, Tensor]]

#: Dtypes whose gradients are prepared (and updates computed) in float32.
HALF = (paddle.float16, paddle.bfloat16)

_PADDLE_REGULARIZERS = "a float, L2Decay, L1Decay, ('l2', c) or ('l1', c)"


# --------------------------------------------------------------------------- Paddle objects <-> specs


def regularizer_from_spec(
    spec: Any, *, current: WeightDecayRegularizer | None = None, custom_ok: bool = False,
    name: str = "weight_decay",
) -> WeightDecayRegularizer | None:  # fmt: skip
    """A Paddle regulariser for ``spec``: ``None``, a number (``L2Decay``), ``("l2", c)``, ``("l1", c)``,
    an ``L2Decay`` / ``L1Decay`` (returned as is), another ``WeightDecayRegularizer`` (only with
    ``custom_ok``), or a recorded ``("custom", class name)`` (``current`` if it is of that class).

    Raises ``ValueError`` naming ``name`` for anything else.
    """
    if spec is None or isinstance(spec, (L1Decay, L2Decay)):
        return spec
    if isinstance(spec, WeightDecayRegularizer):
        if custom_ok:
            return spec
        raise ValueError(f"Invalid {name} value: {spec!r} (expected {_PADDLE_REGULARIZERS})")
    if is_custom(spec):
        if current is not None and type(current).__name__ == spec[1]:
            return current
        raise ValueError(
            f"Invalid {name} value: the saved regularizer is a custom {spec[1]} that a state dict cannot "
            f"carry; build the optimizer with it ({name}={spec[1]}(...)) before loading"
        )
    kind, coeff = parse_weight_decay(spec, name)
    return L2Decay(coeff) if kind == "l2" else L1Decay(coeff)


def regularizer_to_spec(reg: Any) -> tuple[str, Any] | None:
    """A Paddle regulariser (or Paddle's float ``weight_decay``) as a spec: ``None``, ``("l2", c)``,
    ``("l1", c)`` or ``("custom", class name)``."""
    if reg is None:
        return None
    if isinstance(reg, (int, float)) and not isinstance(reg, bool):
        return ("l2", float(reg))
    if isinstance(reg, L2Decay):
        return ("l2", float(reg._coeff))
    if isinstance(reg, L1Decay):
        return ("l1", float(reg._coeff))
    return custom_spec(reg)


def split_weight_decay(value: Any, name: str = "weight_decay") -> tuple[float, WeightDecayRegularizer | None]:
    """Averaged SGD's ``weight_decay`` as (torch's float coefficient, Paddle regulariser): a number is
    torch's weight decay (inside the update); ``L2Decay`` / ``L1Decay`` / another regulariser, or a spec
    ``("l2", c)`` / ``("l1", c)``, is a Paddle regulariser (added to the clipped gradient)."""
    if value is None:
        return 0.0, None
    if isinstance(value, (tuple, list)):
        return 0.0, regularizer_from_spec(value, name=name)
    if isinstance(value, WeightDecayRegularizer):
        return 0.0, value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"Invalid {name} value: {value!r} (expected a finite float >= 0, paddle.regularizer.L1Decay, "
            "L2Decay, ('l2', c), ('l1', c) or None)"
        )
    return parse_weight_decay(value, name)[1], None


def saved_regularizer(spec: Any, current: WeightDecayRegularizer | None, where: str) -> Any:
    """The regulariser a state dict's ``regularizer`` record stands for (``current`` kept for a matching
    custom one); ``ValueError`` starting with ``where`` otherwise."""
    try:
        return regularizer_from_spec(parse_regularizer(spec), current=current, name="regularizer")
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def clip_from_spec(spec: Any) -> ClipGradBase | None:
    """``grad_clip`` as a Paddle ``ClipGradBy*`` object: ``None``, an object (returned as is) or a spec."""
    if spec is None or isinstance(spec, ClipGradBase):
        return spec
    canon = parse_grad_clip(spec)
    assert canon is not None
    if canon[0] == "global_norm":
        return paddle.nn.ClipGradByGlobalNorm(canon[1])
    if canon[0] == "norm":
        return paddle.nn.ClipGradByNorm(canon[1])
    return paddle.nn.ClipGradByValue(max=canon[2], min=canon[1])


def clip_to_spec(clip: Any) -> tuple | None:
    """A Paddle ``ClipGradBy*`` object as a spec (``("custom", class name)`` for another clip)."""
    if clip is None:
        return None
    if isinstance(clip, paddle.nn.ClipGradByGlobalNorm):
        return ("global_norm", float(clip.clip_norm))
    if isinstance(clip, paddle.nn.ClipGradByNorm):
        return ("norm", float(clip.clip_norm))
    if isinstance(clip, paddle.nn.ClipGradByValue):
        return ("value", float(clip.min), float(clip.max))
    return custom_spec(clip)


# --------------------------------------------------------------------------- gradient preparation


def _clip(clip: ClipGradBase, pairs: Pairs) -> Pairs:
    """Apply Paddle's ``clip`` to ``(param, grad)`` pairs; ``ClipGradByNorm`` on float64 gradients is
    computed here (Paddle has no float64 ``clip_by_norm`` kernel on CPU), the same formula."""
    if type(clip) is not paddle.nn.ClipGradByNorm or all(g.dtype != paddle.float64 for _, g in pairs):
        return clip(pairs)
    out = []
    for p, g in pairs:
        if g.dtype != paddle.float64 or getattr(p, "need_clip", True) is False:
            out.append(clip([(p, g)])[0] if g.dtype != paddle.float64 else (p, g))
            continue
        norm = paddle.linalg.vector_norm(g)
        out.append((p, g * (clip.clip_norm / paddle.clip(norm, min=clip.clip_norm))))
    return out


def regularize(
    optimizer: paddle.optimizer.Optimizer, p: Tensor, g: Tensor, reg: Any, weight: Tensor | None = None
) -> Tensor:
    """``g`` plus the regulariser's term, as Paddle's optimizers add it: the parameter's own
    (``ParamAttr(regularizer=...)``) wins over ``reg``; ``L2Decay(c)`` adds ``c * w``, ``L1Decay(c)``
    ``c * sign(w)``, with ``w`` = ``weight`` (a float32 master or working copy) or ``p`` itself; another
    regulariser goes through Paddle's ``_create_regularization_of_grad``."""
    own = getattr(p, "regularizer", None)
    if own is not None:
        reg = own
    if reg is None:
        return g
    if isinstance(reg, (int, float)):
        reg = L2Decay(float(reg))
    w = p if weight is None else weight
    if w.dtype != g.dtype:
        w = w.astype(g.dtype)
    if isinstance(reg, L2Decay):
        return g + w * reg._coeff if reg._coeff != 0 else g
    if isinstance(reg, L1Decay):
        return g + paddle.sign(w) * reg._coeff if reg._coeff != 0 else g
    return optimizer._create_regularization_of_grad(p, g, None if own is not None else reg)


def prepare_gradients(
    groups: Sequence[Pairs],
    *,
    maximize: Sequence[bool],
    clips: Sequence[ClipGradBase | None],
    across_groups: bool = False,
    regularize: Callable[[int, Tensor, Tensor], Tensor] | None = None,
    untouched: Callable[[int, Tensor], bool] | None = None,
) -> list[Pairs]:
    """The gradients the update consumes, in :func:`asgd_bridge.reference.prepare_gradients`' order:

    1. float16/bfloat16 gradients in float32 (where the update is computed, and Paddle's CPU kernels
       exist); ``maximize[i]`` negates group ``i``'s raw gradients;
    2. ``clips[i]`` clips group ``i``'s gradients together (Paddle's ``Optimizer`` per param group, as
       ``paddle.optimizer.ASGD`` and ``asgd_bridge.paddle.SAG`` do); with ``across_groups`` the one clip
       ``clips[0]`` clips every group's gradients together (``asgd_bridge.paddle.ASGD``: a global norm over
       all parameters, as torch's ``clip_grad_norm_`` over ``model.parameters()``);
    3. ``regularize(i, p, g)`` adds the regulariser's term (:func:`regularize`) to group ``i``'s.

    ``groups`` holds each group's ``(param, grad)`` pairs; the result has the same structure. A pair for
    which ``untouched(i, p)`` holds (no clip and no regulariser sees it; the caller says so) is passed
    through as it is: not cast, not negated (its update applies ``maximize``), e.g. so a fused kernel
    reads a bf16 gradient in its 2 bytes.
    """

    # which pairs no clip or regulariser sees (asked once per pair; all of them when no one asks)
    raw = [[untouched is not None and untouched(i, p) for p, _ in pairs] for i, pairs in enumerate(groups)]

    def first(g: Tensor, neg: bool) -> Tensor:
        g = g.astype(paddle.float32) if g.dtype in HALF else g
        return -g if neg else g

    out = [
        [(p, g if keep else first(g, neg)) for (p, g), keep in zip(pairs, kept, strict=True)]
        for pairs, kept, neg in zip(groups, raw, maximize, strict=True)
    ]
    if across_groups:
        clip = clips[0] if clips else None
        if clip is not None and any(out):
            flat = _clip(clip, [pair for pairs in out for pair in pairs])
            clipped = {id(p): g for p, g in flat}
            out = [[(p, clipped.get(id(p), g)) for p, g in pairs] for pairs in out]
    else:
        out = [_clip(c, ps) if c is not None and ps else ps for ps, c in zip(out, clips, strict=True)]
    if regularize is not None:
        out = [
            [(p, g if keep else regularize(i, p, g)) for (p, g), keep in zip(pairs, kept, strict=True)]
            for i, (pairs, kept) in enumerate(zip(out, raw, strict=True))
        ]
    return out
