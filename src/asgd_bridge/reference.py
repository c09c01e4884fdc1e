"""The specification: NumPy float64 steps of averaged SGD (torch's ASGD) and of SAG (Paddle's ASGD).

Every backend is tested against these pure functions; each documented fix is a flag here too.

Averaged SGD (``torch.optim.ASGD``), per parameter, step ``t`` counted from 1::

    g    = -grad if maximize else grad
    g    = g + weight_decay * p
    p    = p * (1 - lambd * eta) - eta * g
    ax   = ax + mu * (p - ax)                      (a copy when mu == 1)
    eta  = lr / (1 + lambd * lr * t) ** alpha      (used by step t + 1)
    mu   = 1 / max(1, t - t0)                      (used by step t + 1)

Torch computes ``eta`` and ``mu`` at the *end* of a step, for the next one. Two consequences are
fixed behind flags (both default off, i.e. torch's behaviour):

* ``immediate_lr``: eta is computed at the start of step t from the *current* lr,
  ``eta_t = lr_t / (1 + lambd * lr_t * (t - 1)) ** alpha`` (Bottou's schedule with ``t - 1``
  examples seen). With a constant lr this is the same number torch uses; a new lr (by hand or by a
  scheduler) takes effect on the very next step instead of one step late.
* ``bottou_average``: mu is computed from the current step, ``mu_t = 1 / max(1, t - t0)``, so ``ax``
  is the mean of every iterate after t0, ``p_{t0+1} .. p_t`` (Polyak & Juditsky; Bottou's
  ``asgd`` code). Torch uses ``mu_{t-1}`` and so leaves out ``p_{t0+1}``.

SAG (``paddle.optimizer.ASGD``), per parameter, ``m`` counted from 0, ``n = batch_num``::

    i     = m % n
    d     = d - y[i] + g
    y[i]  = g
    p     = p - lr * d / min(m + 1, n)

where ``g`` comes from :func:`prepare_gradients`: negated first under ``maximize`` (torch's
convention, so a regulariser still shrinks the weights), then clipped, then the regulariser's term
added (Paddle's order). With ``n == 1`` SAG is plain SGD.

References:
    B. T. Polyak and A. B. Juditsky. Acceleration of stochastic approximation by averaging.
    SIAM J. Control Optim., 30(4):838-855, 1992.

    L. Bottou. Large-scale machine learning with stochastic gradient descent. COMPSTAT 2010;
    and the ``asgd`` program of his ``sgd`` code (``svmasgd.cpp``).

    W. Xu. Towards optimal one pass large scale learning with averaged stochastic gradient descent.
    arXiv:1107.2490, 2011.

    M. Schmidt, N. Le Roux and F. Bach. Minimizing finite sums with the stochastic average gradient.
    Math. Program., 162:83-112, 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "ASGDState",
    "SAGState",
    "asgd_init",
    "asgd_step",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "eta_schedule",
    "l1_decay",
    "l2_decay",
    "mu_schedule",
    "prepare_gradients",
    "sag_init",
    "sag_step",
]


# --------------------------------------------------------------------------- averaged SGD


class ASGDState(NamedTuple):
    """State of averaged SGD for one parameter, with torch's keys and meaning.

    ``step`` counts finished steps; ``eta`` and ``mu`` are the values the *next* step uses in
    torch's schedule; ``ax`` is the running average of the iterates.
    """

    step: int
    eta: float
    mu: float
    ax: np.ndarray


def eta_schedule(lr: float, lambd: float, alpha: float, step: float) -> float:
    r"""Step size after ``step`` updates: :math:`\eta = lr / (1 + \lambda\, lr\, t)^{\alpha}`.

    Works on Python floats and on framework scalars alike (only arithmetic operators are used).
    """
    return lr / ((1 + lambd * lr * step) ** alpha)


def mu_schedule(step: float, t0: float) -> float:
    r"""Averaging weight after ``step`` updates: :math:`\mu = 1 / \max(1, t - t_0)`."""
    return 1 / max(1, step - t0)


def asgd_init(param: np.ndarray, lr: float) -> ASGDState:
    """Fresh state, as torch creates it on a parameter's first step: eta = lr, mu = 1, ax = 0."""
    return ASGDState(step=0, eta=float(lr), mu=1.0, ax=np.zeros_like(param, dtype=param.dtype))


def asgd_step(
    param: np.ndarray,
    grad: np.ndarray,
    state: ASGDState,
    *,
    lr: float = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
    maximize: bool = False,
    immediate_lr: bool = False,
    bottou_average: bool = False,
) -> tuple[np.ndarray, ASGDState]:
    r"""One step of averaged SGD (torch.optim.ASGD), returning the new parameter and state.

    .. math::

        g_t &= \pm\nabla f(p_{t-1}) + wd\, p_{t-1} \\
        p_t &= p_{t-1}(1 - \lambda \eta) - \eta\, g_t \\
        \bar{x}_t &= \bar{x}_{t-1} + \mu (p_t - \bar{x}_{t-1})

    with :math:`\eta, \mu` the state's values (torch) or, under ``immediate_lr`` /
    ``bottou_average``, :math:`\eta_t = lr_t / (1 + \lambda\, lr_t (t-1))^{\alpha}` and
    :math:`\mu_t = 1/\max(1, t - t_0)`. See the module docstring for the references.

    Args:
        param: the parameter before the step (float or complex array).
        grad: its gradient.
        state: from :func:`asgd_init` or a previous step.
        lr, lambd, alpha, t0, weight_decay, maximize: torch.optim.ASGD's hyperparameters; ``lr`` is
            the group's lr at the time of this step.
        immediate_lr: compute eta from the current lr (fix of torch's one-step lr lag).
        bottou_average: average every iterate after t0 (fix of torch's dropped first iterate).

    Returns:
        ``(new_param, new_state)``; the inputs are not modified.
    """
    t = state.step + 1
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + weight_decay * param
    eta = eta_schedule(lr, lambd, alpha, t - 1) if immediate_lr else state.eta
    mu = mu_schedule(t, t0) if bottou_average else state.mu
    new_param = param * (1 - lambd * eta) - eta * g
    ax = new_param.copy() if mu == 1 else state.ax + mu * (new_param - state.ax)
    new_state = ASGDState(
        step=t, eta=eta_schedule(lr, lambd, alpha, t), mu=mu_schedule(t, t0), ax=ax
    )
    return new_param, new_state


# --------------------------------------------------------------------------- SAG


class SAGState(NamedTuple):
    """State of SAG for one parameter, with Paddle's accumulator names.

    ``d`` is the sum of the stored gradients, ``y`` holds ``batch_num`` stored gradients (shape
    ``[batch_num, *param.shape]``), ``m`` counts finished steps.
    """

    d: np.ndarray
    y: np.ndarray
    m: int


def sag_init(param: np.ndarray, batch_num: int) -> SAGState:
    """Fresh state, as Paddle creates it: zero sum, ``batch_num`` zero gradients, m = 0."""
    return SAGState(
        d=np.zeros_like(param), y=np.zeros((batch_num, *param.shape), dtype=param.dtype), m=0
    )


def sag_step(
    param: np.ndarray,
    grad: np.ndarray,
    state: SAGState,
    *,
    lr: float = 1e-3,
) -> tuple[np.ndarray, SAGState]:
    r"""One step of SAG (paddle.optimizer.ASGD), returning the new parameter and state.

    .. math::

        i = m \bmod n,\quad d \leftarrow d - y_i + g,\quad y_i \leftarrow g,\quad
        p \leftarrow p - lr\, \frac{d}{\min(m + 1, n)}

    ``grad`` is the gradient as :func:`prepare_gradients` returns it (maximize, clipping and
    regulariser applied). ``n`` is the number of stored gradients, ``state.y.shape[0]``.

    References: Schmidt, Le Roux & Bach (2017), see the module docstring.
    """
    n = state.y.shape[0]
    g = grad
    i = state.m % n
    y = state.y.copy()
    d = state.d - y[i] + g
    y[i] = g
    new_param = param - lr * d / min(state.m + 1, n)
    return new_param, SAGState(d=d, y=y, m=state.m + 1)


# --------------------------------------------------------------------------- regularisers, clipping


def l2_decay(param: np.ndarray, grad: np.ndarray, coeff: float) -> np.ndarray:
    """Paddle's ``L2Decay(coeff)`` (and a float ``weight_decay``): ``grad + coeff * param``."""
    return grad + coeff * param


def l1_decay(param: np.ndarray, grad: np.ndarray, coeff: float) -> np.ndarray:
    """Paddle's ``L1Decay(coeff)``: ``grad + coeff * sign(param)``."""
    return grad + coeff * np.sign(param)


def clip_by_value(grads: Sequence[np.ndarray], max: float, min: float | None = None) -> list:
    """Paddle's ``ClipGradByValue(max, min=-max)``: each element clipped to ``[min, max]``."""
    lo = -max if min is None else min
    return [np.clip(g, lo, max) for g in grads]


def clip_by_norm(grads: Sequence[np.ndarray], clip_norm: float) -> list:
    """Paddle's ``ClipGradByNorm``: each tensor scaled by ``clip_norm / max(||g||, clip_norm)``."""
    return [g * (clip_norm / max(float(np.linalg.norm(g)), clip_norm)) for g in grads]


def clip_by_global_norm(grads: Sequence[np.ndarray], clip_norm: float) -> list:
    """Paddle's ``ClipGradByGlobalNorm``: all tensors scaled by ``clip_norm / max(N, clip_norm)``,
    with ``N`` the L2 norm of all gradients together."""
    total = float(np.sqrt(sum(float(np.sum(np.abs(g) ** 2)) for g in grads)))
    scale = clip_norm / max(total, clip_norm)
    return [g * scale for g in grads]


def prepare_gradients(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    *,
    maximize: bool = False,
    grad_clip: tuple | None = None,
    regularizer: tuple[str, float] | None = None,
) -> list[np.ndarray]:
    """The gradients a Paddle-style step consumes, in the order every backend applies them.

    1. ``maximize`` negates the raw gradients (torch's convention: a regulariser still shrinks);
    2. ``grad_clip`` clips them together: ``("global_norm", c)``, ``("norm", c)``, ``("value", max)``
       or ``("value", min, max)`` (Paddle's ``ClipGradBy*``);
    3. ``regularizer`` adds its term: ``("l2", c)`` or ``("l1", c)`` (Paddle's ``L2Decay``/``L1Decay``).

    Torch's float ``weight_decay`` of averaged SGD is not a regulariser here: :func:`asgd_step` adds
    it itself, after this preparation.
    """
    gs = [-g for g in grads] if maximize else list(grads)
    if grad_clip is not None:
        kind, *args = grad_clip
        if kind == "global_norm":
            gs = clip_by_global_norm(gs, *args)
        elif kind == "norm":
            gs = clip_by_norm(gs, *args)
        elif kind == "value":
            gs = clip_by_value(gs, args[-1], args[0] if len(args) == 2 else None)
        else:
            raise ValueError(f"Invalid grad_clip kind: {kind!r} (expected global_norm, norm or value)")
    if regularizer is not None:
        kind, coeff = regularizer
        decay = {"l2": l2_decay, "l1": l1_decay}[kind]
        gs = [decay(p, g, coeff) for p, g in zip(params, gs, strict=True)]
    return gs
