"""The specification checked against what it claims in closed form (no framework computes anything here)."""

from __future__ import annotations

import numpy as np
import pytest
from optim_info import ASGD_INFO, reference_run

from asgd_bridge import reference as ref


def run_asgd(grads, p0, **hp):
    """The last parameter, its state and every iterate, from the one reference runner (constant lr)."""
    lr = hp.get("lr", ASGD_INFO.defaults["lr"])
    snaps = reference_run(ASGD_INFO, [p0], [[g] for g in grads], hp, [lr] * len(grads))
    iterates = [ps[0] for ps, _ in snaps]
    return iterates[-1], ref.ASGDState(**snaps[-1][1][0]), iterates


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_asgd_without_decay_is_sgd(rng):
    p0, grads = rng.normal(size=4), rng.normal(size=(6, 4))
    p, _, _ = run_asgd(grads, p0, lr=0.1, lambd=0.0)
    np.testing.assert_allclose(p, p0 - 0.1 * grads.sum(0), rtol=1e-12)


def test_asgd_trajectory_is_sgd_with_decayed_lr(rng):
    # MAPPING.md: ASGD(lr, lambd, alpha, wd) moves p like SGD with weight decay lambd + wd and
    # lr_t = lr / (1 + lambd*lr*(t-1))**alpha.
    lr, lambd, alpha, wd = 0.1, 0.05, 0.75, 0.02
    p0, grads = rng.normal(size=3), rng.normal(size=(20, 3))
    p, _, _ = run_asgd(grads, p0, lr=lr, lambd=lambd, alpha=alpha, weight_decay=wd, t0=0)
    q = p0.copy()
    for t, g in enumerate(grads, start=1):
        q = q - lr / (1 + lambd * lr * (t - 1)) ** alpha * (g + (lambd + wd) * q)
    np.testing.assert_allclose(p, q, rtol=1e-12)


@pytest.mark.parametrize("t0", [0, 3])
def test_torch_average_drops_first_iterate_after_t0(rng, t0):
    p0, grads = rng.normal(size=3), rng.normal(size=(10, 3))
    _, state, its = run_asgd(grads, p0, lr=0.1, t0=t0)
    np.testing.assert_allclose(state.ax, np.mean(its[t0 + 1 :], axis=0), rtol=1e-12)


@pytest.mark.parametrize("t0", [0, 3])
def test_bottou_average_is_mean_of_iterates_after_t0(rng, t0):
    p0, grads = rng.normal(size=3), rng.normal(size=(10, 3))
    _, state, its = run_asgd(grads, p0, lr=0.1, t0=t0, bottou_average=True)
    np.testing.assert_allclose(state.ax, np.mean(its[t0:], axis=0), rtol=1e-12)


def test_parameters_do_not_depend_on_t0(rng):
    p0, grads = rng.normal(size=3), rng.normal(size=(8, 3))
    a, _, _ = run_asgd(grads, p0, lr=0.1, lambd=0.1, t0=0)
    b, _, _ = run_asgd(grads, p0, lr=0.1, lambd=0.1, t0=1e6)
    np.testing.assert_array_equal(a, b)


def test_lr_change_is_one_step_late_unless_immediate(rng):
    p0, g = rng.normal(size=3), rng.normal(size=3)
    state = ref.asgd_init(p0, 0.1)
    p1, state = ref.asgd_step(p0, g, state, lr=0.1, lambd=0.0)
    late, _ = ref.asgd_step(p1, g, state, lr=0.5, lambd=0.0)
    now, _ = ref.asgd_step(p1, g, state, lr=0.5, lambd=0.0, immediate_lr=True)
    np.testing.assert_allclose(late, p1 - 0.1 * g)
    np.testing.assert_allclose(now, p1 - 0.5 * g)


def test_immediate_lr_changes_nothing_when_lr_is_constant(rng):
    p0, grads = rng.normal(size=3), rng.normal(size=(10, 3))
    a, sa, _ = run_asgd(grads, p0, lr=0.1, lambd=0.3, t0=2)
    b, sb, _ = run_asgd(grads, p0, lr=0.1, lambd=0.3, t0=2, immediate_lr=True)
    np.testing.assert_allclose(a, b, rtol=1e-14)
    np.testing.assert_allclose(sa.ax, sb.ax, rtol=1e-14)


def test_maximize_negates_gradient_before_weight_decay(rng):
    p0, g = rng.normal(size=3), rng.normal(size=3)
    up, _ = ref.asgd_step(p0, g, ref.asgd_init(p0, 0.1), lr=0.1, lambd=0, maximize=True,
                          weight_decay=0.5)
    np.testing.assert_allclose(up, p0 - 0.1 * (-g + 0.5 * p0))


def test_complex_parameters_follow_the_real_view(rng):
    z0 = rng.normal(size=3) + 1j * rng.normal(size=3)
    gz = rng.normal(size=(5, 3)) + 1j * rng.normal(size=(5, 3))
    pz, sz, _ = run_asgd(gz, z0, lr=0.1, lambd=0.1, t0=1)
    pr, sr, _ = run_asgd(np.stack([gz.real, gz.imag], -1), np.stack([z0.real, z0.imag], -1),
                         lr=0.1, lambd=0.1, t0=1)
    np.testing.assert_allclose(np.stack([pz.real, pz.imag], -1), pr, rtol=1e-12)
    np.testing.assert_allclose(np.stack([sz.ax.real, sz.ax.imag], -1), sr.ax, rtol=1e-12)


def test_sag_with_one_batch_is_sgd(rng):
    p0, grads = rng.normal(size=4), rng.normal(size=(5, 4))
    p, state = p0.copy(), ref.sag_init(p0, 1)
    for g in grads:
        p, state = ref.sag_step(p, g, state, lr=0.1)
    np.testing.assert_allclose(p, p0 - 0.1 * grads.sum(0), rtol=1e-12)


def test_sag_steps_along_the_mean_of_the_last_n_gradients(rng):
    n, p0, grads = 3, rng.normal(size=2), rng.normal(size=(7, 2))
    p, state = p0.copy(), ref.sag_init(p0, n)
    for m, g in enumerate(grads):
        before = p
        p, state = ref.sag_step(p, g, state, lr=0.1)
        window = grads[max(0, m - n + 1) : m + 1]
        np.testing.assert_allclose(before - p, 0.1 * window.mean(0), rtol=1e-12)
    assert state.m == 7 and state.y.shape == (3, 2)


def test_clipping_matches_paddle_definitions():
    g = [np.array([3.0, 4.0]), np.array([0.0, 0.0, 12.0])]
    by_norm = ref.clip_by_norm(g, 1.0)
    np.testing.assert_allclose(by_norm[0], [0.6, 0.8])
    np.testing.assert_allclose(ref.clip_by_global_norm(g, 6.5)[1], [0, 0, 6.0])
    np.testing.assert_allclose(ref.clip_by_value(g, 3.5)[0], [3.0, 3.5])
    np.testing.assert_allclose(ref.l1_decay(np.array([-2.0, 0.0]), np.zeros(2), 0.5), [-0.5, 0])


def test_prepared_gradients_negate_then_clip_then_regularise():
    p, g = [np.array([2.0, -1.0])], [np.array([3.0, -0.5])]
    out = ref.prepare_gradients(p, g, maximize=True, grad_clip=("value", -1.0, 2.0), regularizer=("l1", 0.1))
    # -g = [-3, 0.5] -> clipped to [-1, 2] -> [-1, 0.5] -> + 0.1*sign(p)
    np.testing.assert_allclose(out[0], [-0.9, 0.4])
    np.testing.assert_allclose(ref.prepare_gradients(p, g, regularizer=("l2", 0.5))[0], [4.0, -1.0])
