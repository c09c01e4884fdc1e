"""Averaged weights of the whole model under DDP, ``torch.compile``, FSDP1, FSDP2 and ZeRO.

The averaged-weights API (:class:`asgd_bridge.averaging.AveragedWeights`) works on the tensors an
optimizer owns. Once a model is wrapped or sharded those are not the model's parameters as the user
sees them; this module supplies what the torch backend needs to give the user the *whole model's*
averages, keyed as the unwrapped model:

* :func:`model_state_dict`: the model's state dict in unwrapped keys (no ``module.``, ``_orig_mod.``,
  ``_fsdp_wrapped_module.``), through torch's own
  :func:`torch.distributed.checkpoint.state_dict.get_model_state_dict` (FSDP1 flat parameters are
  un-flattened by FSDP's ``state_dict_type``; FSDP2 DTensors gathered with ``full_tensor()`` when
  ``full_state_dict=True``, kept as sharded DTensors for DCP otherwise).
* :func:`reshard_model`: frees every all-gathered (unsharded) FSDP parameter, so that a swap writes
  into the sharded parameters the next forward all-gathers from. FSDP keeps the root's parameters
  unsharded after a forward (FSDP2 root, ``reshard_after_forward=False``, FSDP1 root); without this an
  evaluation inside the swap would see the raw weights and training after it the averaged ones.
* :class:`ZeroAveraged`: the averaged-weights API over a
  :class:`~torch.distributed.optim.ZeroRedundancyOptimizer` whose ``optimizer_class`` is an
  averaged-SGD optimizer; each parameter's average is broadcast from the rank that owns it.

Every function that gathers is a collective: call it on every rank of the process group.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from ..averaging import AveragedWeights, GatheredAverages

__all__ = ["ZeroAveraged", "is_wrapped", "model_state_dict", "reshard_model"]


def _fsdp2_modules(model: torch.nn.Module) -> list[Any]:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch build without distributed
        return []
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def _fsdp1_modules(model: torch.nn.Module) -> list[Any]:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, FullyShardedDataParallel)]


def _is_dtensor(t: Any) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return False
    return isinstance(t, DTensor)


def is_flat_param(t: Any) -> bool:
    """Whether ``t`` is managed by FSDP1: a ``FlatParameter``, or an original parameter viewing one."""
    try:
        from torch.distributed.fsdp._common_utils import _is_fsdp_flattened
        from torch.distributed.fsdp._flat_param import FlatParameter
    except ImportError:
        return False
    return isinstance(t, FlatParameter) or _is_fsdp_flattened(t)


def is_wrapped(model: torch.nn.Module) -> bool:
    """Whether ``model.state_dict()`` keys differ from the unwrapped model's, or its tensors are sharded.

    True when any submodule is a DDP, ``torch.compile``, FSDP1 or FSDP2 wrapper, or any parameter is
    a DTensor.
    """
    from torch._dynamo.eval_frame import OptimizedModule
    from torch.nn.parallel import DistributedDataParallel

    for m in model.modules():
        if isinstance(m, (OptimizedModule, DistributedDataParallel)):
            return True
    if _fsdp1_modules(model) or _fsdp2_modules(model):
        return True
    return any(_is_dtensor(p) for p in model.parameters())


def model_state_dict(model: torch.nn.Module, *, full_state_dict: bool, rank0_only: bool) -> dict[str, Any]:
    """The state dict of ``model`` in the unwrapped model's keys (tensors alias the model's).

    ``full_state_dict=True``: every tensor whole (FSDP shards all-gathered, DTensors
    ``full_tensor()``); ``False``: FSDP's sharded state dict (DTensors), what DCP saves and loads.
    ``rank0_only=True`` (needs ``full_state_dict=True``): the gathered tensors on CPU on rank 0 and
    an empty dict on every other rank (torch's ``cpu_offload``). A collective for sharded models.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if rank0_only and not full_state_dict:
        raise ValueError(
            "averaged_state_dict: rank0_only=True needs full_state_dict=True (a sharded "
            "state dict has one shard per rank)"
        )
    if rank0_only and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        rank0_only = False  # one process: it is rank 0
    options = StateDictOptions(full_state_dict=full_state_dict, cpu_offload=rank0_only)
    return get_model_state_dict(model, options=options)


def reshard_model(model: torch.nn.Module) -> None:
    """Free every unsharded FSDP parameter of ``model`` so its parameters are the sharded ones.

    FSDP2: :meth:`FSDPModule.reshard` on every ``fully_shard`` module. FSDP1: its handles'
    reshard (FSDP's own ``_reshard``, the call its post-forward makes), for every FSDP instance.
    A no-op for unsharded models and for modules already resharded.
    """
    for m in _fsdp2_modules(model):
        m.reshard()
    fsdp1 = _fsdp1_modules(model)
    if fsdp1:
        from torch.distributed.fsdp._runtime_utils import _reshard

        for m in fsdp1:
            handle = getattr(m, "_handle", None)
            if handle is not None and handle.uses_sharded_strategy:
                _reshard(m, handle, True)


def check_swap_target(params: list[Tensor], model: Any) -> None:
    """Refuse (FSDP1 flat parameters) or warn (DTensors) about a swap that cannot reshard its model."""
    if model is not None:
        return
    if any(is_flat_param(p) for p in params):
        raise ValueError(
            "swap_averaged(): the optimizer holds FSDP1 (FullyShardedDataParallel) parameters; pass the "
            "FSDP model, "
            "swap_averaged(model), so its unsharded parameters are freed on entry and exit (otherwise "
            "the evaluation inside sees the raw weights and training after it the averaged ones)"
        )
    if any(_is_dtensor(p) for p in params):
        warnings.warn(
            "swap_averaged(): the parameters are DTensors; if the model is sharded with fully_shard, "
            "pass it, swap_averaged(model), so the parameters FSDP keeps all-gathered after a forward "
            "are freed on entry and exit",
            UserWarning,
            stacklevel=4,
        )


def unowned_trainable(model: Any, owned: set[int]) -> int:
    """How many trainable parameters of ``model`` this optimizer does not own, in a multi-rank run."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0
    if torch.distributed.get_world_size() < 2:
        return 0
    return sum(1 for p in model.parameters() if p.requires_grad and p.numel() > 0 and id(p) not in owned)


class TorchAveraging(AveragedWeights[Tensor]):
    """The torch answers of the averaged-weights hooks shared by :class:`ASGD` and :class:`ZeroAveraged`."""

    def _copy_into(self, dst: Tensor, src: Tensor) -> None:
        with torch.no_grad():
            dst.copy_(src)

    def _reshard_model(self, model: Any) -> None:
        if model is not None:
            reshard_model(model)

    def _check_swap_target(self, params: list[Tensor], model: Any) -> None:
        check_swap_target(params, model)

    def _unowned_trainable(self, model: Any, owned: set[int]) -> int:
        return unowned_trainable(model, owned)

    def _is_wrapped(self, model: Any) -> bool:
        return isinstance(model, torch.nn.Module) and is_wrapped(model)

    def _model_state_dict(self, model: Any, full_state_dict: bool, rank0_only: bool) -> dict[str, Any]:
        return model_state_dict(model, full_state_dict=full_state_dict, rank0_only=rank0_only)


class ZeroAveraged(GatheredAverages, TorchAveraging):
    r"""The averaged-weights API of the whole model under ZeRO (``ZeroRedundancyOptimizer``).

    ZeRO gives each rank the optimizer state, so ``ax``, of its own shard of the parameters only;
    ``zero.optim.swap_averaged()`` would swap that shard alone. This wrapper reads the average of
    *every* parameter of ``zero.param_groups``, each broadcast from its owning rank, so
    :meth:`swap_averaged`, :meth:`averaged_parameters` and :meth:`averaged_state_dict` see the whole
    model's :math:`\bar{x}` on every rank. Every method is a collective (call it on every rank).
    ``zero.step()`` inside :meth:`swap_averaged` raises, as the optimizer's own ``step()`` does.

    Example::

        zero = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=ASGD, lr=0.1, t0=0)
        averaged = ZeroAveraged(zero)
        with averaged.swap_averaged(ddp):
            val_loss = evaluate(ddp)                         # the whole model's averages
        sd = averaged.averaged_state_dict(ddp)               # unwrapped keys, on every rank

    Args:
        zero: a ``ZeroRedundancyOptimizer`` whose local optimizer (``zero.optim``) is an averaged-SGD
            optimizer of this library (it has ``_averaging_pairs``).
    """

    def __init__(self, zero: Any) -> None:
        inner = getattr(zero, "optim", None)
        if inner is None or not isinstance(inner, AveragedWeights):
            raise TypeError(
                "ZeroAveraged(zero): zero must be a ZeroRedundancyOptimizer whose optimizer_class is "
                f"asgd_bridge.torch.ASGD (or NTASGD), got local optimizer {type(inner).__name__}"
            )
        self.zero = zero
        self.optim = inner

    def _averaging_pairs(self) -> list[tuple[Tensor, Tensor | None]]:
        dist = torch.distributed
        zero = self.zero
        group = zero.process_group
        rank = dist.get_rank(group)
        owner = zero._param_to_rank  # ZeRO's own partition (param -> rank in the group)
        local = {id(p): ax for p, ax in self.optim._averaging_pairs()}
        params = [p for g in zero.param_groups for p in g["params"]]
        device = params[0].device if params else torch.device("cpu")
        has = torch.zeros(len(params), dtype=torch.int32, device=device)
        for i, p in enumerate(params):
            if owner[p] == rank and local.get(id(p)) is not None:
                has[i] = 1
        dist.all_reduce(has, group=group)  # one collective: which parameters have an average
        pairs: list[tuple[Tensor, Tensor | None]] = []
        for i, p in enumerate(params):
            if not int(has[i]):
                pairs.append((p, None))
                continue
            src = owner[p]
            buf = local[id(p)].detach().clone() if src == rank else torch.empty_like(p)  # type: ignore[union-attr]
            dist.broadcast(buf, src=dist.get_global_rank(group, src), group=group)
            pairs.append((p, buf))
        return pairs
