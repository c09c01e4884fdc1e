"""PyTorch optimizers: ``ASGD`` (drop-in for torch.optim.ASGD), ``NTASGD`` (SGD, then ASGD when validation
stalls) and ``SAG`` (paddle.optimizer.ASGD's SAG)."""

from __future__ import annotations

from typing import Any

__all__ = ["ASGD", "NTASGD", "SAG", "ZeroAveraged"]


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
    if name == "ZeroAveraged":
        from .distributed import ZeroAveraged

        return ZeroAveraged
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
