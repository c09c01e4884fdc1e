"""NT-ASGD: the non-monotonic trigger, and asgd_bridge.torch.NTASGD against the hand-written program."""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optim_info import record_launches

from asgd_bridge.ntasgd import NonMonotonicTrigger
from asgd_bridge.torch import ASGD, NTASGD

# ---------------------------------------------------------------------- the trigger


def awd_lstm_fire_index(values, nonmono):
    """AWD-LSTM's main.py logic: the first check that switches, or None.

    ``best_val_loss[:-nonmono]`` written as ``[:len - nonmono]`` so that nonmono=0 means the paper's
    "all previous values" (AWD-LSTM's slice ``[:-0]`` is empty and ``min`` raises).
    """
    best_val_loss = []
    for k, val_loss in enumerate(values):
        if len(best_val_loss) > nonmono and val_loss > min(best_val_loss[: len(best_val_loss) - nonmono]):
            return k
        best_val_loss.append(val_loss)
    return None


def fire_index(trigger, values):
    fired = [k for k, v in enumerate(values) if trigger.report(v)]
    assert len(fired) <= 1  # fires once at most
    return fired[0] if fired else None


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 6).map(float), min_size=0, max_size=14),
    nonmono=st.integers(0, 4),
)
def test_trigger_is_awd_lstms_rule(values, nonmono):
    # small integers: ties are frequent, and a tie must not fire (AWD-LSTM uses a strict >)
    assert fire_index(NonMonotonicTrigger(nonmono), values) == awd_lstm_fire_index(values, nonmono)


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.integers(0, 6).map(float), max_size=12), nonmono=st.integers(0, 3))
def test_mode_max_is_mode_min_of_the_negated_metric(values, nonmono):
    negated = [-v for v in values]
    assert fire_index(NonMonotonicTrigger(nonmono, mode="max"), values) == awd_lstm_fire_index(
        negated, nonmono
    )


@pytest.mark.parametrize(
    ("mode", "threshold_mode", "threshold", "value", "fires"),
    [
        ("min", "rel", 0.1, 10.9, False),  # best 10: worse only above 10 * 1.1
        ("min", "rel", 0.1, 11.1, True),
        ("min", "abs", 0.5, 10.4, False),
        ("min", "abs", 0.5, 10.6, True),
        ("max", "rel", 0.1, 9.1, False),  # best 10: worse only below 10 * 0.9
        ("max", "rel", 0.1, 8.9, True),
        ("max", "abs", 0.5, 9.6, False),
        ("max", "abs", 0.5, 9.4, True),
    ],
)
def test_threshold_as_reduce_lr_on_plateau_measures_it(mode, threshold_mode, threshold, value, fires):
    trigger = NonMonotonicTrigger(1, mode=mode, threshold=threshold, threshold_mode=threshold_mode)
    trigger.report(10.0)
    trigger.report(10.0)  # the exempt latest value
    assert trigger.report(value) is fires


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nonmono": -1}, "nonmono"),
        ({"nonmono": 2.0}, "nonmono"),
        ({"nonmono": True}, "nonmono"),
        ({"mode": "mean"}, "mode"),
        ({"threshold_mode": "pct"}, "threshold_mode"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
    ],
)
def test_trigger_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NonMonotonicTrigger(**kwargs)


@pytest.mark.parametrize("metric", [float("nan"), float("inf"), "1.0x", None])
def test_a_non_finite_metric_is_refused(metric):
    with pytest.raises(ValueError, match="metric"):
        NonMonotonicTrigger().report(metric)


def test_trigger_accepts_tensors_and_numpy_scalars():
    trigger = NonMonotonicTrigger(0)
    trigger.report(torch.tensor(1.0))
    assert trigger.report(np.float32(2.0))


@pytest.mark.parametrize("cut", range(0, 9))
def test_trigger_state_round_trip_resumes_identically(cut):
    values = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.4, 2.0, 3.6]
    whole = NonMonotonicTrigger(2)
    expected = [whole.report(v) for v in values]
    first = NonMonotonicTrigger(2)
    got = [first.report(v) for v in values[:cut]]
    resumed = NonMonotonicTrigger()
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    got += [resumed.report(v) for v in values[cut:]]
    assert got == expected
    assert resumed.state_dict() == whole.state_dict()


def _trigger_state():
    trigger = NonMonotonicTrigger(2)
    for v in (3.0, 2.0, 1.0, 1.5):
        trigger.report(v)
    return trigger.state_dict()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.pop("best"), "keys"),
        (lambda s: s.update(extra=1), "keys"),
        (lambda s: s.update(mode="avg"), "mode"),
        (lambda s: s.update(recent=[1.0]), "recent"),
        (lambda s: s.update(recent=[1.0, float("nan")]), "recent"),
        (lambda s: s.update(best=None), "best"),
        (lambda s: s.update(num_reports=-1), "num_reports"),
        (lambda s: s.update(fired_at=4), "fired_at"),
        (lambda s: s.update(nonmono=-2), "nonmono"),
    ],
)
def test_loaded_trigger_state_is_validated_and_a_failed_load_changes_nothing(edit, match):
    state = _trigger_state()
    edit(state)
    trigger = NonMonotonicTrigger(3)
    before = trigger.state_dict()
    with pytest.raises(ValueError, match=match):
        trigger.load_state_dict(state)
    assert trigger.state_dict() == before


# ---------------------------------------------------------------------- torch NTASGD vs the program


def model_pair():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    return a, copy.deepcopy(a)


def groups(model, lr):
    # two param groups with different lrs, as a program can give them
    return [{"params": model[0].parameters(), "lr": lr}, {"params": model[2].parameters(), "lr": lr / 2}]


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)) for _ in range(n)]


def loss_step(model, opt, x, y):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()


def assert_same(model_a, opt_a, model_b, opt_b):
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q)
        if q in opt_b.state and "ax" in opt_b.state[q]:
            assert torch.equal(opt_a.state[p]["ax"], opt_b.state[q]["ax"])
            assert torch.equal(opt_a.state[p]["step"], opt_b.state[q]["step"])
        else:
            assert not opt_a.state.get(p)  # before the switch NTASGD keeps no state, as SGD


@pytest.mark.parametrize("foreach", [None, True])
@pytest.mark.parametrize("flags", [{}, {"immediate_lr": True, "bottou_average": True}])
def test_trajectory_is_the_hand_written_sgd_then_asgd_program_bit_for_bit(foreach, flags):
    lr, wd, switch = 0.1, 1e-2, 5
    ours_model, ref_model = model_pair()
    ours = NTASGD(groups(ours_model, lr), lr=lr, weight_decay=wd, foreach=foreach, **flags)
    ref = torch.optim.SGD(groups(ref_model, lr), lr=lr, weight_decay=wd, foreach=foreach)
    for i, (x, y) in enumerate(batches(14)):
        if i == 3:  # an lr change by hand in the SGD phase: immediate
            for o in (ours, ref):
                o.param_groups[0]["lr"] = 0.05
        if i == switch:
            assert ours.start_averaging()
            current = [g["lr"] for g in ref.param_groups]
            gs = groups(ref_model, lr)
            for g, g_lr in zip(gs, current, strict=True):
                g["lr"] = g_lr
            program = torch.optim.ASGD if not flags else ASGD  # the fixes exist in ours only
            ref = program(gs, lr=lr, t0=0, lambd=0.0, weight_decay=wd, foreach=foreach, **flags)
        if i == 9:  # an lr change in the averaged phase (one step late, as torch, unless immediate_lr)
            for o in (ours, ref):
                o.param_groups[1]["lr"] = 0.02
        loss_step(ours_model, ours, x, y)
        loss_step(ref_model, ref, x, y)
        assert_same(ours_model, ours, ref_model, ref)
    assert ours.averaging_start == switch and ours.steps == 14
    # after the switch the state is the program's ASGD's: it loads into torch.optim.ASGD
    sd = ours.state_dict()
    sd.pop("ntasgd")
    if not flags:
        ref.load_state_dict(sd)


def test_report_switches_where_the_hand_written_rule_does():
    values = [5.0, 4.0, 3.0, 2.9, 2.95, 2.97, 2.99, 3.01, 2.5]
    model, _ = model_pair()
    opt = NTASGD(model.parameters(), lr=0.1, nonmono=3)
    switched = [k for k, v in enumerate(values) if opt.report(v)]
    assert switched == [awd_lstm_fire_index(values, 3)] == [7]
    assert opt.is_averaging and opt.averaging_start == 0
    assert not opt.start_averaging()  # already averaging: nothing changes


def test_report_after_a_manual_switch_records_but_changes_nothing():
    model, _ = model_pair()
    opt = NTASGD(model.parameters(), nonmono=0)
    opt.start_averaging()
    opt.report(1.0)
    assert opt.report(2.0) is False
    assert opt.trigger.fired_at == 1 and opt.averaging_start == 0


@pytest.mark.parametrize("cut", [2, 4, 5, 9])  # before the switch, at it, one step after, well after
def test_state_dict_round_trip_resumes_like_an_uninterrupted_run(cut):
    data = batches(12)
    values = [3.0, 2.0, 2.5, 2.6, 2.7]  # nonmono=2: 2.6 > min(3.0) no; 2.7 > min(3.0, 2.0) fires

    def run(model, opt, lo, hi):
        for i in range(lo, hi):
            if i < len(values):
                opt.report(values[i])
            loss_step(model, opt, *data[i])

    whole_model, cut_model = model_pair()
    whole = NTASGD(whole_model.parameters(), lr=0.1, weight_decay=1e-3, nonmono=2)
    run(whole_model, whole, 0, 12)
    assert whole.averaging_start == 4

    first = NTASGD(cut_model.parameters(), lr=0.1, weight_decay=1e-3, nonmono=2)
    run(cut_model, first, 0, cut)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = NTASGD(cut_model.parameters(), lr=0.5, nonmono=7)  # hyperparameters come from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    run(cut_model, resumed, cut, 12)
    assert_same(cut_model, resumed, whole_model, whole)
    assert resumed.state_dict()["ntasgd"] == whole.state_dict()["ntasgd"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sd: sd.pop("ntasgd"), "no 'ntasgd' entry"),
        (lambda sd: sd["ntasgd"].pop("steps"), "keys"),
        (lambda sd: sd["ntasgd"].update(steps=-1), "steps"),
        (lambda sd: sd["ntasgd"].update(averaging_start=99), "averaging_start"),
        (lambda sd: sd["ntasgd"].update(averaging_start=None), "has not started"),
        (lambda sd: sd["ntasgd"]["trigger"].update(mode="avg"), "mode"),
    ],
)
def test_loaded_ntasgd_state_is_validated_and_a_failed_load_changes_nothing(edit, match):
    model, _ = model_pair()
    opt = NTASGD(model.parameters(), lr=0.1)
    x, y = batches(1)[0]
    loss_step(model, opt, x, y)
    opt.start_averaging()
    loss_step(model, opt, x, y)
    sd = opt.state_dict()
    edit(sd)
    fresh = NTASGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=match):
        fresh.load_state_dict(sd)
    assert not fresh.is_averaging and fresh.steps == 0 and not fresh.state


def test_lr_scheduler_across_the_switch_equals_the_program_with_the_same_lrs():
    ours_model, ref_model = model_pair()
    ours = NTASGD(ours_model.parameters(), lr=0.2)
    sched = torch.optim.lr_scheduler.StepLR(ours, step_size=2, gamma=0.5)
    ref = torch.optim.SGD(ref_model.parameters(), lr=0.2)
    for i, (x, y) in enumerate(batches(10)):
        if i == 4:
            ours.start_averaging()
            ref = torch.optim.ASGD(ref_model.parameters(), lr=ref.param_groups[0]["lr"], t0=0, lambd=0.0)
        loss_step(ours_model, ours, x, y)
        loss_step(ref_model, ref, x, y)
        sched.step()
        ref.param_groups[0]["lr"] = ours.param_groups[0]["lr"]  # the program sets the same lrs by hand
        assert_same(ours_model, ours, ref_model, ref)
    assert ours.param_groups[0]["lr"] == 0.2 * 0.5**5


def test_averaged_weights_before_the_switch_are_the_raw_weights_with_one_warning():
    model, _ = model_pair()
    opt = NTASGD(model.parameters(), lr=0.1)
    for x, y in batches(3):
        loss_step(model, opt, x, y)
    raw = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(UserWarning, match=r"averaging has not started \(step 3.*start_averaging\(\)"):
        averaged = opt.averaged_parameters()
    assert all(torch.equal(a, r) for a, r in zip(averaged, raw, strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per optimizer
        with opt.swap_averaged():
            assert all(torch.equal(p, r) for p, r in zip(model.parameters(), raw, strict=True))
        sd = opt.averaged_state_dict(model)
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())


def test_averaged_weights_after_the_switch_are_asgds():
    ours_model, ref_model = model_pair()
    ours = NTASGD(ours_model.parameters(), lr=0.1)
    ours.start_averaging()
    ref = ASGD(ref_model.parameters(), lr=0.1, t0=0, lambd=0.0)
    for x, y in batches(5):
        loss_step(ours_model, ours, x, y)
        loss_step(ref_model, ref, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # averaging has started: no warning
        for a, b in zip(ours.averaged_parameters(), ref.averaged_parameters(), strict=True):
            assert torch.equal(a, b)
        with ours.swap_averaged(), ref.swap_averaged():
            for p, q in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
                assert torch.equal(p, q)
        assert ours.averaged_state_dict(ours_model).keys() == ref.averaged_state_dict(ref_model).keys()


def test_switch_and_step_inside_swap_are_refused():
    model, _ = model_pair()
    opt = NTASGD(model.parameters())
    with pytest.warns(UserWarning), opt.swap_averaged():
        with pytest.raises(RuntimeError, match="start_averaging"):
            opt.start_averaging()
    assert not opt.is_averaging


def test_sparse_gradients_are_refused_before_the_switch_too():
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = NTASGD(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_step_hooks_run_once_per_step_in_both_phases():
    model, _ = model_pair()
    opt = NTASGD(model.parameters())
    calls = []
    opt.register_step_post_hook(lambda *_: calls.append(1))
    x, y = batches(1)[0]
    loss_step(model, opt, x, y)
    opt.start_averaging()
    loss_step(model, opt, x, y)
    assert len(calls) == 2


def test_deepcopy_keeps_the_phase_and_the_trigger():
    model, _ = model_pair()
    opt = NTASGD(model.parameters(), nonmono=1)
    for v in (2.0, 1.0):
        opt.report(v)
    loss_step(model, opt, *batches(1)[0])
    opt.start_averaging()
    clone = copy.deepcopy(opt)
    assert clone.state_dict()["ntasgd"] == opt.state_dict()["ntasgd"]
    assert clone.is_averaging and clone.steps == 1


def test_constructor_rejects_bad_trigger_arguments_naming_them():
    model, _ = model_pair()
    with pytest.raises(ValueError, match="nonmono"):
        NTASGD(model.parameters(), nonmono=-1)
    with pytest.raises(ValueError, match="mode"):
        NTASGD(model.parameters(), mode="lowest")


def test_fused_runs_the_kernel_after_the_switch_and_follows_the_loop(monkeypatch):
    """``fused=True``: the SGD phase is the same, the averaged phase one kernel launch per step (its
    float32 tolerance, docs/benchmarks.md: 1e-6 relative to the loop)."""
    from asgd_bridge._native import asgd as native

    calls = record_launches(monkeypatch, native, "asgd_step")
    lr, wd = 0.1, 1e-2
    fused_model, loop_model = model_pair()
    fused = NTASGD(groups(fused_model, lr), lr=lr, weight_decay=wd, fused=True)
    loop = NTASGD(groups(loop_model, lr), lr=lr, weight_decay=wd, foreach=False)
    for i, (x, y) in enumerate(batches(10)):
        if i == 4:
            assert fused.start_averaging() and loop.start_averaging()
        loss_step(fused_model, fused, x, y)
        loss_step(loop_model, loop, x, y)
        if i < 4:
            assert_same(fused_model, fused, loop_model, loop)  # the SGD phase is torch's, op for op
    assert calls == [("float32", 2)] * 12  # per averaged step one launch per group: its weight and bias
    for p, q in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(fused.state[p]["ax"], loop.state[q]["ax"], rtol=1e-6, atol=1e-7)
