"""asgd_bridge.paddle.NTASGD against the hand-written paddle SGD -> asgd_bridge.paddle.ASGD program."""

from __future__ import annotations

import warnings

import numpy as np
import paddle
import pytest

from asgd_bridge.paddle import ASGD, NTASGD


def model_pair(dtype="float32"):
    paddle.seed(0)
    a = paddle.nn.Sequential(paddle.nn.Linear(4, 5), paddle.nn.Tanh(), paddle.nn.Linear(5, 2))
    b = paddle.nn.Sequential(paddle.nn.Linear(4, 5), paddle.nn.Tanh(), paddle.nn.Linear(5, 2))
    b.set_state_dict(a.state_dict())
    if dtype == "float64":
        a, b = a.to(dtype="float64"), b.to(dtype="float64")
    return a, b


def batches(n, dtype="float32", seed=1):
    rng = np.random.default_rng(seed)
    return [
        (
            paddle.to_tensor(rng.normal(size=(8, 4)).astype(dtype)),
            paddle.to_tensor(rng.normal(size=(8, 2)).astype(dtype)),
        )
        for _ in range(n)
    ]


def loss_step(model, opt, x, y):
    paddle.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    opt.clear_grad()


def assert_same(model_a, opt_a, model_b, opt_b):
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        if isinstance(opt_b, ASGD) and opt_b.state.get(q) is not None:
            np.testing.assert_array_equal(opt_a.state[p]["ax"].numpy(), opt_b.state[q]["ax"].numpy())
            assert opt_a.state[p].step == opt_b.state[q].step
        else:
            assert opt_a.state.get(p) is None  # before the switch NTASGD keeps no state, as SGD


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("clip", [None, "global_norm"])
def test_trajectory_is_the_hand_written_program_bit_for_bit(dtype, clip):
    wd, switch = 1e-2, 5

    def make_clip():
        return paddle.nn.ClipGradByGlobalNorm(0.5) if clip else None

    ours_model, ref_model = model_pair(dtype)
    sched = paddle.optimizer.lr.StepDecay(0.2, step_size=3, gamma=0.5)
    ours = NTASGD(
        learning_rate=sched, weight_decay=wd, parameters=ours_model.parameters(), grad_clip=make_clip()
    )
    ref = paddle.optimizer.SGD(
        learning_rate=0.2, weight_decay=wd, parameters=ref_model.parameters(), grad_clip=make_clip()
    )
    for i, (x, y) in enumerate(batches(12, dtype)):
        if i == switch:
            assert ours.start_averaging()
            ref = ASGD(
                learning_rate=ref.get_lr(), t0=0, lambd=0.0, weight_decay=wd,
                parameters=ref_model.parameters(), grad_clip=make_clip(),
            )  # fmt: skip
        loss_step(ours_model, ours, x, y)
        loss_step(ref_model, ref, x, y)
        assert_same(ours_model, ours, ref_model, ref)
        sched.step()
        ref.set_lr(sched())  # the program follows the same schedule by hand
    assert ours.averaging_start == switch and ours.steps == 12


def test_report_switches_and_the_averages_are_asgds():
    ours_model, ref_model = model_pair()
    ours = NTASGD(learning_rate=0.1, parameters=ours_model.parameters(), nonmono=1)
    for v in (2.0, 1.0):
        assert not ours.report(v)
    assert ours.report(2.5) and ours.averaging_start == 0
    ref = ASGD(learning_rate=0.1, t0=0, lambd=0.0, parameters=ref_model.parameters())
    for x, y in batches(4):
        loss_step(ours_model, ours, x, y)
        loss_step(ref_model, ref, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for a, b in zip(ours.averaged_parameters(), ref.averaged_parameters(), strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("cut", [2, 4, 7])
def test_state_dict_round_trip_resumes_like_an_uninterrupted_run(cut, tmp_path):
    data, values = batches(10), [3.0, 2.0, 2.5, 2.6, 2.7]

    def run(model, opt, lo, hi):
        for i in range(lo, hi):
            if i < len(values):
                opt.report(values[i])
            loss_step(model, opt, *data[i])

    whole_model, cut_model = model_pair()
    whole = NTASGD(learning_rate=0.1, weight_decay=1e-3, parameters=whole_model.parameters(), nonmono=2)
    run(whole_model, whole, 0, 10)
    assert whole.averaging_start == 4
    first = NTASGD(learning_rate=0.1, weight_decay=1e-3, parameters=cut_model.parameters(), nonmono=2)
    run(cut_model, first, 0, cut)
    paddle.save(first.state_dict(), str(tmp_path / "opt.pdopt"))
    resumed = NTASGD(learning_rate=0.1, weight_decay=1e-3, parameters=cut_model.parameters(), nonmono=9)
    resumed.set_state_dict(paddle.load(str(tmp_path / "opt.pdopt")))
    run(cut_model, resumed, cut, 10)
    for p, q in zip(cut_model.parameters(), whole_model.parameters(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        np.testing.assert_array_equal(resumed.state[p]["ax"].numpy(), whole.state[q]["ax"].numpy())
    assert resumed.state_dict()["ntasgd"] == whole.state_dict()["ntasgd"]


def test_missing_ntasgd_entry_is_refused_and_changes_nothing():
    model, _ = model_pair()
    opt = NTASGD(learning_rate=0.1, parameters=model.parameters())
    opt.start_averaging()
    loss_step(model, opt, *batches(1)[0])
    sd = opt.state_dict()
    del sd["ntasgd"]
    fresh = NTASGD(learning_rate=0.1, parameters=model.parameters())
    with pytest.raises(ValueError, match="no 'ntasgd' entry"):
        fresh.load_state_dict(sd)
    assert not fresh.is_averaging and fresh.state.get(model.parameters()[0]) is None


def test_averaged_weights_before_the_switch_are_the_raw_weights_with_one_warning():
    model, _ = model_pair()
    opt = NTASGD(learning_rate=0.1, parameters=model.parameters())
    for x, y in batches(2):
        loss_step(model, opt, x, y)
    raw = [p.numpy().copy() for p in model.parameters()]
    with pytest.warns(UserWarning, match=r"averaging has not started \(step 2"):
        averaged = opt.averaged_parameters()
    for a, r in zip(averaged, raw, strict=True):
        np.testing.assert_array_equal(a.numpy(), r)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with opt.swap_averaged():
            for p, r in zip(model.parameters(), raw, strict=True):
                np.testing.assert_array_equal(p.numpy(), r)
