r"""The eta/mu schedule of averaged SGD on torch tensors: the one home every torch path calls.

:func:`asgd_bridge.reference.eta_schedule` and :func:`~asgd_bridge.reference.mu_schedule`,

.. math::

    \eta = lr / (1 + \lambda\, lr\, t)^{\alpha}, \qquad \mu = 1 / \max(1, t - t_0),

in three forms, each checked against the reference (``tests/test_torch_asgd.py``) and, where torch has
the same path, bit-identical to ``torch.optim.ASGD``:

* on the host (:func:`eta`, :func:`mu` with ``on_device=False``): the Python-float expression torch
  evaluates on CPU (one read of ``step``, identical rounding);
* on the device (:func:`device_eta`, :func:`device_mu`): tensor expressions with no host read, for
  ``capturable``, accelerators and the fused path (``torch.compile`` traces them);
* as ``torch._foreach_*`` ops over lists (:func:`foreach_eta`, :func:`foreach_mu`), in torch's order.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor
from torch.optim.optimizer import _get_value

from ..reference import eta_schedule, mu_schedule

__all__ = ["device_eta", "device_mu", "eta", "foreach_eta", "foreach_mu", "mu", "sync_free"]

#: Devices whose state scalars may be read on the host (``.item()``, ``float()``): a read there is a
#: memory load, not a synchronisation. On any other device the scalars stay device tensors even
#: without ``capturable`` (torch's ASGD syncs there once per parameter per step; ours never does).
_HOST_DEVICES = frozenset({"cpu"})


def sync_free(device: torch.device, capturable: bool) -> bool:
    """Whether eta/mu must be used as device tensors (no host read) on ``device``."""
    return capturable or device.type not in _HOST_DEVICES


def device_eta(step: Tensor, lr: float | Tensor, lambd: float, alpha: float) -> Tensor:
    """eta after ``step`` updates on ``step``'s device: ``eta_schedule`` on a tensor."""
    return cast(Tensor, eta_schedule(lr, lambd, alpha, step))  # type: ignore[arg-type]


def device_mu(step: Tensor, t0: float) -> Tensor:
    """mu after ``step`` updates on ``step``'s device: ``mu_schedule`` without Python's ``max`` (a host
    sync); ``clamp(min=1)`` is exact, the same number as torch's ``maximum(step - t0, 1)``."""
    return 1 / torch.clamp(step - t0, min=1)


def eta(lr: float | Tensor, lambd: float, alpha: float, step: Tensor, on_device: bool) -> Tensor:
    """eta after ``step`` updates: :func:`device_eta`, or (``on_device=False``) the Python-float
    expression torch evaluates, as a 0-d tensor."""
    if on_device:
        return device_eta(step, lr, lambd, alpha)
    return torch.as_tensor(eta_schedule(lr, lambd, alpha, _get_value(step)))  # type: ignore[arg-type]


def mu(step: Tensor, t0: float, on_device: bool) -> Tensor:
    """mu after ``step`` updates: :func:`device_mu`, or the Python-float expression torch evaluates."""
    if on_device:
        return device_mu(step, t0)
    return torch.as_tensor(mu_schedule(_get_value(step), t0))


def foreach_eta(
    steps: list[Tensor], lr: float | Tensor, lambd: float, alpha: float, on_device: bool, device: Any
) -> list[Tensor]:
    """:func:`eta` for a list of steps: foreach ops in torch's order on the device, else per step."""
    if on_device:
        etas = list(torch._foreach_mul(steps, lambd))
        torch._foreach_mul_(etas, lr)
        torch._foreach_add_(etas, 1)
        torch._foreach_pow_(etas, alpha)
        torch._foreach_reciprocal_(etas)
        torch._foreach_mul_(etas, lr)
        return etas
    return [torch.as_tensor(eta_schedule(lr, lambd, alpha, s), device=device) for s in steps]  # type: ignore[arg-type]


def foreach_mu(steps: list[Tensor], t0: float, on_device: bool, device: Any) -> list[Tensor]:
    """:func:`mu` for a list of steps: foreach ops in torch's order on the device, else per step."""
    if on_device:
        mus = list(torch._foreach_sub(steps, t0))
        torch._foreach_maximum_(mus, 1.0)
        torch._foreach_reciprocal_(mus)
        return mus
    return [torch.as_tensor(mu_schedule(_get_value(s), t0), device=device) for s in steps]
