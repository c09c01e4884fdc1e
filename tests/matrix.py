"""The differential test matrix as data, shared by both backends (one row per case).

A new flag or hyperparameter is one more row here; the torch and Paddle tests iterate over the same rows.
"""

from __future__ import annotations

from typing import Any

#: Hyperparameters of averaged SGD (torch.optim.ASGD's names), each a case for every backend.
ASGD_CASES: list[dict[str, Any]] = [
    {},
    {"lr": 0.05},
    {"lr": 0.1, "lambd": 0.01, "alpha": 0.5},
    {"lr": 0.05, "t0": 0},
    {"lr": 0.05, "t0": 3, "lambd": 0.0},
    {"lr": 0.02, "weight_decay": 0.1},
    {"lr": 0.05, "maximize": True},
    {"lr": 0.05, "maximize": True, "weight_decay": 0.05, "t0": 2},
    {"lr": 0.3, "lambd": 0.1, "alpha": 1.0, "t0": 5, "weight_decay": 0.01},
]

#: The documented fixes (keyword-only switches of both backends and of the reference).
FIXES: list[dict[str, bool]] = [
    {"immediate_lr": True},
    {"bottou_average": True},
    {"immediate_lr": True, "bottou_average": True},
]

#: Hyperparameters of SAG (torch-style names; Paddle's learning_rate is lr here).
SAG_CASES: list[dict[str, Any]] = [
    {},
    {"lr": 0.05},
    {"lr": 0.05, "batch_num": 3},
    {"lr": 0.02, "batch_num": 8, "weight_decay": 0.1},
    {"lr": 0.05, "batch_num": 2, "maximize": True},
    {"lr": 0.05, "batch_num": 3, "weight_decay": ("l1", 0.05)},
    {"lr": 0.05, "batch_num": 3, "grad_clip": ("global_norm", 0.5)},
    {"lr": 0.05, "batch_num": 2, "grad_clip": ("norm", 0.5), "weight_decay": 0.1},
    {"lr": 0.05, "batch_num": 4, "grad_clip": ("value", 0.3)},
    {"lr": 0.05, "batch_num": 3, "grad_clip": ("value", -0.2, 0.4), "maximize": True},
    {"lr": 0.05, "batch_num": 2, "maximize": True, "weight_decay": 0.1},
]

#: Parameter shapes every case runs on.
SHAPES: list[tuple[int, ...]] = [(), (5,), (3, 4), (2, 3, 4)]


def case_id(case: dict[str, Any]) -> str:
    """A readable pytest id for a case."""
    return ",".join(f"{k}={v}" for k, v in case.items()) or "defaults"
