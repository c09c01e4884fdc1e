"""Migrate ASGD programs between PyTorch and Paddle: the seed page's table as rules, libcst transforms, CLI.

``convert_source`` converts one file's text; ``convert_paths`` a file or a tree; ``runtime`` holds the
helpers converted programs call.
"""

from __future__ import annotations

from typing import Any

__all__ = ["convert_paths", "convert_source"]


def __getattr__(name: str) -> Any:
    # libcst is imported on first use, so `asgd_bridge.convert.runtime` stays light for converted programs.
    if name == "convert_source":
        from .transform import convert_source

        return convert_source
    if name == "convert_paths":
        from .files import convert_paths

        return convert_paths
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
