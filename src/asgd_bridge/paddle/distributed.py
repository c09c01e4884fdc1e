"""Averaged weights of the whole model under ``paddle.DataParallel`` and fleet (data parallel, sharding).

The averaged-weights API (:class:`asgd_bridge.averaging.AveragedWeights`) works on the tensors an
optimizer owns; this module gives the Paddle backend what it needs once the model is wrapped, the
Paddle counterpart of :mod:`asgd_bridge.torch.distributed`:

* :func:`unwrap_model`: the user's layer inside ``paddle.DataParallel`` and fleet's wrappers
  (``fleet.distributed_model``: ``DataParallel``, ``ShardingParallel``, any ``MetaParallelBase``), so
  ``averaged_state_dict(dp_model)`` gives the unwrapped layer's keys (no ``_layers.``) and loads into
  it. A wrapper *inside* the model (a sublayer that is a ``DataParallel``) would give ``_layers.``
  keys: it raises ``ValueError`` naming the sublayer.
* :class:`ShardingAveraged`: the averaged-weights API over fleet's sharding stage 1
  (``DygraphShardingOptimizer``), where each rank's optimizer updates, so averages, only its own
  shard of the parameters; each parameter's average is broadcast from the rank that owns it.

Under data parallelism every rank holds every average (the gradients are all-reduced, so every rank
takes the same step): no communication is needed, and every method works on each rank alone.
"""

from __future__ import annotations

from typing import Any

import paddle

from ..averaging import AveragedWeights, GatheredAverages

__all__ = ["ShardingAveraged", "unwrap_model"]

Tensor = paddle.Tensor


def _is_wrapper(layer: Any) -> bool:
    from paddle.distributed.fleet.meta_parallel.meta_parallel_base import MetaParallelBase

    return isinstance(layer, (paddle.DataParallel, MetaParallelBase))


def unwrap_model(model: Any) -> Any:
    """The layer inside ``paddle.DataParallel`` / fleet wrappers (``model`` itself when it is plain).

    Raises ``ValueError`` when a wrapper is nested inside the model (its sublayer's keys would carry
    ``_layers.`` and not load into the unwrapped model).
    """
    while _is_wrapper(model):
        model = model._layers
    if isinstance(model, paddle.nn.Layer):
        for name, sub in model.named_sublayers():
            if _is_wrapper(sub):
                raise ValueError(
                    f"averaged weights: sublayer {name!r} is a {type(sub).__name__} inside the model; "
                    "wrap the whole model instead (paddle.DataParallel(model)), so the state-dict keys "
                    "are the unwrapped model's"
                )
    return model


def unowned_trainable(model: Any, owned: set[int]) -> int:
    """How many trainable parameters of ``model`` this optimizer does not own, in a multi-rank run."""
    import paddle.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() < 2 or not isinstance(model, paddle.nn.Layer):
        return 0
    return sum(1 for p in model.parameters() if not p.stop_gradient and p.size > 0 and id(p) not in owned)


class PaddleAveraging(AveragedWeights[Tensor]):
    """The Paddle answers of the averaged-weights hooks, shared by the Paddle ASGD and
    :class:`ShardingAveraged`."""

    def _copy_into(self, dst: Tensor, src: Tensor) -> None:
        with paddle.no_grad():
            paddle.assign(src, output=dst)

    def _unwrap_model(self, model: Any) -> Any:
        return unwrap_model(model)

    def _unowned_trainable(self, model: Any, owned: set[int]) -> int:
        return unowned_trainable(model, owned)

    def _unowned_hint(self) -> str:
        return (
            "Under fleet sharding each rank updates a shard: use "
            "asgd_bridge.paddle.ShardingAveraged(optimizer) for the whole model's averages"
        )


def _sharding_optimizer(opt: Any) -> Any:
    """The ``DygraphShardingOptimizer`` inside fleet's ``distributed_optimizer`` result, or ``None``."""
    from paddle.distributed.fleet.meta_optimizers.dygraph_optimizer.dygraph_sharding_optimizer import (
        DygraphShardingOptimizer,
    )

    seen = 0
    while opt is not None and seen < 8:  # HybridParallelOptimizer -> DygraphShardingOptimizer -> ours
        if isinstance(opt, DygraphShardingOptimizer):
            return opt
        opt = opt.__dict__.get("_inner_opt")
        seen += 1
    return None


class ShardingAveraged(GatheredAverages, PaddleAveraging):
    r"""The averaged-weights API of the whole model under fleet sharding stage 1.

    ``DygraphShardingOptimizer`` gives each rank the optimizer state, so ``ax``, of its own shard of
    the parameters (``_rank2params``); the inner optimizer's ``swap_averaged()`` would swap that shard
    alone and warn about the rest. This wrapper reads the average of *every* parameter, each
    broadcast from its owning rank over the sharding group, so :meth:`swap_averaged`,
    :meth:`averaged_parameters` and :meth:`averaged_state_dict` see the whole model's :math:`\bar{x}`
    on every rank. Every method is a collective (call it on every rank). The optimizer's step inside
    :meth:`swap_averaged` raises, as without the wrapper.

    Example::

        strategy.hybrid_configs = {"sharding_degree": 2, ...}
        fleet.init(is_collective=True, strategy=strategy)
        model = fleet.distributed_model(layer)
        opt = fleet.distributed_optimizer(ASGD(parameters=layer.parameters(), t0=0))
        averaged = ShardingAveraged(opt)
        with averaged.swap_averaged(model):
            val_loss = evaluate(model)                     # the whole model's averages
        sd = averaged.averaged_state_dict(model)           # unwrapped keys, on every rank

    Args:
        optimizer: what ``fleet.distributed_optimizer`` returned (or the ``DygraphShardingOptimizer``)
            for an averaged-SGD optimizer of this library (``asgd_bridge.paddle.ASGD`` / ``NTASGD``).
    """

    def __init__(self, optimizer: Any) -> None:
        sharding = _sharding_optimizer(optimizer)
        if sharding is None:
            raise TypeError(
                "ShardingAveraged(optimizer): optimizer must be fleet.distributed_optimizer(...) under "
                f"sharding (a DygraphShardingOptimizer inside), got {type(optimizer).__name__}; without "
                "sharding every rank holds every average: use the optimizer's own methods"
            )
        inner = sharding._inner_opt
        if not isinstance(inner, AveragedWeights):
            raise TypeError(
                "ShardingAveraged(optimizer): the sharded optimizer must be asgd_bridge.paddle.ASGD (or "
                f"NTASGD), got {type(inner).__name__}"
            )
        self.sharding = sharding
        self.optim = inner

    def _averaging_pairs(self) -> list[tuple[Tensor, Tensor | None]]:
        import paddle.distributed as dist

        sharding = self.sharding
        group = sharding._hcg.get_sharding_parallel_group()
        rank = sharding._sharding_rank
        owner = sharding._param2rank  # parameter name -> sharding rank
        local = {id(p): ax for p, ax in self.optim._averaging_pairs()}
        params = list(sharding._origin_parameter_list)
        has = paddle.to_tensor(
            [int(owner[p.name] == rank and local.get(id(p)) is not None) for p in params], dtype="int32"
        )
        dist.all_reduce(has, group=group)  # one collective: which parameters have an average
        flags = has.numpy().tolist()
        pairs: list[tuple[Tensor, Tensor | None]] = []
        for p, flag in zip(params, flags, strict=True):
            if not flag:
                pairs.append((p, None))
                continue
            src = owner[p.name]
            mine = src == rank
            buf = local[id(p)].detach().clone() if mine else paddle.empty_like(p)  # type: ignore[union-attr]
            dist.broadcast(buf, src=group.ranks[src], group=group)
            pairs.append((p, buf))
        return pairs
