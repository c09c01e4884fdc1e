"""The promise of averaging, guarded: a small one-pass logistic regression (no timing).

A small version of ``benchmarks/convergence.py``'s first experiment, with its problem and runner.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asgd_bridge.torch import ASGD

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "convergence.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("convergence_bench", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setting(bench):
    problem = bench.make_problem(n=5_000, d=10, lam=1e-4, seed=0)
    order = np.random.default_rng(100).permutation(len(problem.y))
    return problem, order, problem.optimum()


def test_averaged_sgd_with_t0_zero_beats_the_best_tuned_sgd_by_a_clear_factor(bench, setting):
    problem, order, f_star = setting
    lam = problem.lam
    best_sgd = min(
        problem.objective(
            bench.one_pass_torch(
                problem, order, lambda ps, lr=lr: torch.optim.SGD(ps, lr=lr, weight_decay=lam)
            )["last"]
        )
        - f_star
        for lr in (0.5, 0.25, 0.1, 0.05, 0.025)
    )
    lr = 1.0 / (2.0 * problem.R2)
    got = bench.one_pass_torch(problem, order, lambda ps: ASGD(ps, lr=lr, t0=0, lambd=0.0, weight_decay=lam))
    averaged = problem.objective(got["average"]) - f_star
    last = problem.objective(got["last"]) - f_star
    assert averaged * 3 < best_sgd, (averaged, best_sgd)
    assert averaged * 3 < last, (averaged, last)  # the average, not the iterate, converges


def test_torch_default_t0_averages_nothing_and_says_so(bench, setting):
    problem, order, _ = setting
    opts = []

    def make(params):
        opts.append(ASGD(params, lr=0.5))  # torch's defaults: t0=1e6
        return opts[-1]

    got = bench.one_pass_torch(problem, order, make)
    np.testing.assert_array_equal(got["average"], got["last"])
    with pytest.warns(UserWarning, match=r"t0=1e\+06, step 5000"):
        opts[0].averaged_parameters()
