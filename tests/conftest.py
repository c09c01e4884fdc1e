"""Fixtures shared by the test files (framework imports stay inside the fixtures that need them)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator."""
    return np.random.default_rng(0)


@pytest.fixture
def torch_float64_default() -> Iterator[None]:
    """torch's default dtype set to float64 for the test, so optimizer scalars (eta, mu) are float64."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)
