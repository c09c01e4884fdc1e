"""Paddle optimizers: ``ASGD`` (torch.optim.ASGD's averaged SGD), ``NTASGD`` (SGD, then that ASGD when
validation stalls) and ``SAG`` (paddle.optimizer.ASGD's SAG); ``ShardingAveraged``: the whole model's
averages under fleet sharding (:mod:`asgd_bridge.paddle.distributed`)."""

from __future__ import annotations

from typing import Any

__all__ = ["ASGD", "NTASGD", "SAG", "ShardingAveraged"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import asgd_bridge.torch` stays cheap and the modules stay independent.
    if name == "ASGD":
        from .asgd import ASGD

        return ASGD
    if name == "NTASGD":
        from .ntasgd import NTASGD

        return NTASGD
    if name == "SAG":
        from .sag import SAG

        return SAG
    if name == "ShardingAveraged":
        from .distributed import ShardingAveraged

        return ShardingAveraged
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
