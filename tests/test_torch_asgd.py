"""asgd_bridge.torch.ASGD against the real torch.optim.ASGD (differential) and the NumPy reference: what is
particular to torch (schedulers, tensor lr, capturable / differentiable / fused flags, interop of state
dicts with torch's class, torch's exact error messages, deepcopy and pickle, hooks).

Bit-identity (``torch.equal``) is required wherever both run the same path. The case x dtype matrices
(against torch.optim.ASGD bit for bit, foreach against the for-loop, against the reference with every
fix), the own state-dict round trip and the bad-argument rows are the table's (``optim_info``), run by
``test_backends.py`` for every backend.
"""

from __future__ import annotations

import io
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optim_info import ASGD_INFO, case_id, cases_for, reference_run
from torch.optim import lr_scheduler

from asgd_bridge.torch import ASGD

TorchASGD = torch.optim.ASGD

STEPS = 8
SHAPES = [(), (5,), (3, 4), (2, 3, 4)]
#: the rows of the table that torch's class takes (the table's own, then torch's optim_inputs_func_asgd)
ASGD_CASES = [c.kwargs for c in cases_for("torch.ASGD(loop)")]
#: the row with every hyperparameter set
FULL_CASE = {"lr": 0.3, "lambd": 0.1, "alpha": 1.0, "t0": 5, "weight_decay": 0.01}
FIXES = ASGD_INFO.fixes

# --------------------------------------------------------------------------- helpers


def initial_params(dtype: torch.dtype, shapes=SHAPES, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    base = torch.complex64 if dtype.is_complex else torch.float32
    return [torch.randn(s, generator=gen, dtype=base).to(dtype) for s in shapes]


def gradients(p0s: list[torch.Tensor], steps: int, seed: int = 1) -> list[list[torch.Tensor | None]]:
    """Per step, one gradient per parameter; None where the parameter gets none that step.

    Parameter 1 gets no gradient every third step (its own step count); the last parameter never
    gets one (it must be skipped: unchanged, no state).
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        row: list[torch.Tensor | None] = []
        for i, p in enumerate(p0s):
            base = torch.complex64 if p.dtype.is_complex else torch.float32
            g = torch.randn(p.shape, generator=gen, dtype=base).to(p.dtype)
            skip = (i == len(p0s) - 1 and len(p0s) > 1) or (i == 1 and t % 3 == 1)
            row.append(None if skip else g)
        out.append(row)
    return out


def groups_of(params: list[torch.nn.Parameter], hp: dict[str, Any]) -> list[dict[str, Any]]:
    """Two param groups; the second overrides lr (and weight_decay) to exercise per-group values."""
    second = {"params": params[2:], "lr": 0.5 * float(hp.get("lr", 1e-2))}
    if "weight_decay" not in hp:
        second["weight_decay"] = 0.01
    return [{"params": params[:2]}, second]


Snapshot = tuple[list[torch.Tensor], list[torch.Tensor | None]]


def snapshot(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> Snapshot:
    axs = [opt.state[p]["ax"].clone() if p in opt.state else None for p in params]
    return [p.detach().clone() for p in params], axs


def run(
    cls: type,
    p0s: list[torch.Tensor],
    grads: list[list[torch.Tensor | None]],
    hp: dict[str, Any],
    *,
    schedule: Callable[[torch.optim.Optimizer], Any] | None = None,
    lr_at: dict[int, float] | None = None,
    opt_and_params: tuple[torch.optim.Optimizer, list[torch.nn.Parameter]] | None = None,
) -> tuple[list[Snapshot], torch.optim.Optimizer, list[torch.nn.Parameter]]:
    """Step ``cls`` through ``grads``; a snapshot of params and ax after every step."""
    if opt_and_params is None:
        params = [torch.nn.Parameter(p.clone()) for p in p0s]
        opt = cls(groups_of(params, hp) if len(params) > 2 else params, **hp)
    else:
        opt, params = opt_and_params
    sched = schedule(opt) if schedule else None
    out = []
    for t, row in enumerate(grads):
        for p, g in zip(params, row, strict=True):
            p.grad = None if g is None else g.clone()
        if lr_at and t in lr_at:
            for group in opt.param_groups:
                group["lr"] = lr_at[t]
        opt.step()
        if isinstance(sched, lr_scheduler.ReduceLROnPlateau):
            sched.step(float(t % 3 != 0))  # a metric that stalls, so the lr is cut
        elif sched is not None:
            sched.step()
        out.append(snapshot(opt, params))
    return out, opt, params


def assert_identical(a: list[Snapshot], b: list[Snapshot]) -> None:
    assert len(a) == len(b)
    for t, ((pa, xa), (pb, xb)) in enumerate(zip(a, b, strict=True)):
        for i, (u, v) in enumerate(zip(pa, pb, strict=True)):
            assert u.dtype == v.dtype and torch.equal(u, v), f"param {i} differs after step {t + 1}"
        for i, (u, v) in enumerate(zip(xa, xb, strict=True)):
            assert (u is None) == (v is None), f"ax {i} exists in one only after step {t + 1}"
            assert u is None or torch.equal(u, v), f"ax {i} differs after step {t + 1}"


def assert_close_rel(a: list[Snapshot], b: list[Snapshot], tol: float) -> None:
    for (pa, xa), (pb, xb) in zip(a, b, strict=True):
        for u, v in [*zip(pa, pb, strict=True), *zip(xa, xb, strict=True)]:
            assert (u is None) == (v is None)
            if u is None:
                continue
            wide = torch.complex128 if u.is_complex() else torch.float64
            u64, v64 = u.to(wide), v.to(wide)
            scale = max(1.0, float(u64.abs().max()))
            assert float((u64 - v64).abs().max()) <= tol * scale


def assert_same_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys() == {"step", "eta", "mu", "ax"}
        for key in ("step", "eta", "mu", "ax"):
            u, v = sa["state"][k][key], sb["state"][k][key]
            assert u.dtype == v.dtype and torch.equal(u, v), (k, key)


# --------------------------------------------------------------------------- the fixes


@pytest.mark.parametrize("fix", FIXES, ids=case_id)
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_fixes_change_nothing_with_constant_lr_but_what_they_fix(fix, foreach):
    # immediate_lr with a constant lr is bit-identical to torch; bottou_average leaves the params alone.
    case = {"lr": 0.1, "lambd": 0.05, "t0": 2, "foreach": foreach}
    p0s = initial_params(torch.float32)
    grads = gradients(p0s, STEPS)
    ours, _, _ = run(ASGD, p0s, grads, {**case, **fix})
    theirs, _, _ = run(TorchASGD, p0s, grads, case)
    if fix.get("bottou_average"):
        ours = [(ps, [None] * len(xs)) for ps, xs in ours]
        theirs = [(ps, [None] * len(xs)) for ps, xs in theirs]
    assert_identical(ours, theirs)


# --------------------------------------------------------------------------- lr changes, schedulers

SCHEDULES: dict[str, Callable[[torch.optim.Optimizer], Any]] = {
    "StepLR": lambda o: lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    "ExponentialLR": lambda o: lr_scheduler.ExponentialLR(o, gamma=0.8),
    "LambdaLR": lambda o: lr_scheduler.LambdaLR(o, lambda e: 1.0 / (1 + e)),
    "OneCycleLR": lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=STEPS, cycle_momentum=False),
    "CosineAnnealingLR": lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=4),
    "CosineAnnealingWarmRestarts": lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2),
    "MultiStepLR": lambda o: lr_scheduler.MultiStepLR(o, milestones=[2, 5], gamma=0.3),
    "MultiplicativeLR": lambda o: lr_scheduler.MultiplicativeLR(o, lambda e: 0.9),
    "ConstantLR": lambda o: lr_scheduler.ConstantLR(o, factor=0.3, total_iters=3),
    "LinearLR": lambda o: lr_scheduler.LinearLR(o, start_factor=0.3, total_iters=4),
    "PolynomialLR": lambda o: lr_scheduler.PolynomialLR(o, total_iters=6, power=2.0),
    "CyclicLR": lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.1, step_size_up=2, cycle_momentum=False),
    "ReduceLROnPlateau": lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=0, factor=0.5),
    "SequentialLR": lambda o: lr_scheduler.SequentialLR(
        o, [lr_scheduler.LinearLR(o, 0.5, total_iters=2), lr_scheduler.ExponentialLR(o, 0.9)], milestones=[3]
    ),
    "ChainedScheduler": lambda o: lr_scheduler.ChainedScheduler(
        [lr_scheduler.ConstantLR(o, 0.5, total_iters=3), lr_scheduler.ExponentialLR(o, 0.9)]
    ),
    "ReduceLROnPlateau-like by hand": lambda o: None,
}


def test_every_lr_scheduler_class_is_in_the_matrix():
    bases = (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)
    exported = {
        name for name in lr_scheduler.__all__
        if isinstance(getattr(lr_scheduler, name), type)
        and issubclass(getattr(lr_scheduler, name), bases)
        and name not in ("LRScheduler", "_LRScheduler")
    }  # fmt: skip
    assert exported <= set(SCHEDULES), exported - set(SCHEDULES)


@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float_lr", "tensor_lr"])
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedulers_and_hand_set_lr_match_torch(name, foreach, tensor_lr):
    p0s = initial_params(torch.float32)
    grads = gradients(p0s, STEPS)
    lr_at = {3: 0.2, 5: 0.02} if name.endswith("by hand") else None
    results, lrs = [], []
    for cls in (ASGD, TorchASGD):
        params = [torch.nn.Parameter(p.clone()) for p in p0s]
        lr = torch.tensor(0.05) if tensor_lr else 0.05
        opt = cls(params, lr=lr, lambd=0.01, t0=1, foreach=foreach)
        seen: list[float] = []
        opt.register_step_pre_hook(lambda o, a, k, seen=seen: seen.append(float(o.param_groups[0]["lr"])))
        results.append(run(cls, p0s, grads, {}, schedule=SCHEDULES[name], lr_at=lr_at,
                           opt_and_params=(opt, params))[0])  # fmt: skip
        lrs.append(seen)
    assert_identical(*results)
    assert lrs[0] == lrs[1] and len(set(lrs[0])) > 1  # the lr did change during the run


@pytest.mark.parametrize(
    "make",
    [lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=5),
     lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.1)],
    ids=["OneCycleLR", "CyclicLR"],
)  # fmt: skip
def test_momentum_cycling_fails_like_torch(make):
    # cycle_momentum=True (the default) needs a momentum/beta1 key, which torch's ASGD lacks too.
    errors = []
    for cls in (ASGD, TorchASGD):
        with pytest.raises(ValueError) as info:
            make(cls([torch.nn.Parameter(torch.zeros(2))]))
        errors.append(str(info.value))
    assert errors[0] == errors[1]


# --------------------------------------------------------------------------- state_dict round trips


def _continue_after_reload(
    first: type, second: type, hp: dict[str, Any], dtype: torch.dtype, via_bytes: bool
) -> tuple[list[Snapshot], list[Snapshot]]:
    p0s = initial_params(dtype)
    grads = gradients(p0s, 2 * STEPS)
    split = STEPS
    before, opt, params = run(first, p0s, grads[:split], hp)
    saved = opt.state_dict()
    if via_bytes:
        buf = io.BytesIO()
        torch.save(saved, buf)
        buf.seek(0)
        saved = torch.load(buf)
    fresh = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = second(groups_of(fresh, hp), **{**hp, "lr": 0.123})  # lr is restored from the state dict
    opt2.load_state_dict(saved)
    after, _, _ = run(second, p0s, grads[split:], hp, opt_and_params=(opt2, fresh))
    reference, _, _ = run(TorchASGD, p0s, grads, {k: v for k, v in hp.items() if k in TORCH_KEYS})
    return before + after, reference


TORCH_KEYS = set(FULL_CASE) | {"foreach", "maximize", "differentiable", "capturable"}


@pytest.mark.parametrize("via_bytes", [False, True], ids=["in_memory", "torch.save"])
@pytest.mark.parametrize("direction", ["ours->torch", "torch->ours"])  # ours->ours: test_backends.py
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64], ids=str)
@pytest.mark.parametrize("case", [ASGD_CASES[3], ASGD_CASES[7], FULL_CASE], ids=case_id)
def test_state_dict_round_trip_continues_identically(case, dtype, direction, via_bytes):
    first, second = {"ours->torch": (ASGD, TorchASGD), "torch->ours": (TorchASGD, ASGD),
                     "ours->ours": (ASGD, ASGD)}[direction]  # fmt: skip
    got, want = _continue_after_reload(first, second, {**case, "foreach": False}, dtype, via_bytes)
    assert_identical(got, want)


@pytest.mark.parametrize(
    "flags", [{}, {"immediate_lr": True}, {"bottou_average": True, "fused": True}], ids=str
)
def test_state_dict_format_is_torchs_plus_the_flags_that_are_set(flags):
    # At the defaults the groups have exactly torch's keys (a DCP checkpoint of either class then
    # loads into the other without allow_partial_load); a set flag is recorded.
    p = torch.nn.Parameter(torch.ones(3))
    q = torch.nn.Parameter(torch.ones(3))
    ours, theirs = ASGD([p], lr=0.1, **flags), TorchASGD([q], lr=0.1)
    for opt, param in ((ours, p), (theirs, q)):
        param.grad = torch.ones(3)
        opt.step()
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["state"][0].keys() == b["state"][0].keys() == {"step", "eta", "mu", "ax"}
    assert set(a["param_groups"][0]) == set(b["param_groups"][0]) | set(flags)
    assert {k: a["param_groups"][0][k] for k in flags} == flags
    assert {k: a["param_groups"][0][k] for k in b["param_groups"][0]} == b["param_groups"][0]
    restored = ASGD([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    restored.load_state_dict(a)
    group = restored.param_groups[0]
    assert (group["immediate_lr"], group["bottou_average"], group["fused"]) == (
        flags.get("immediate_lr", False), flags.get("bottou_average", False), flags.get("fused"))


def test_torch_state_dict_without_flag_keys_loads_with_constructor_flags():
    q = torch.nn.Parameter(torch.ones(3))
    theirs = TorchASGD([q], lr=0.1)
    q.grad = torch.ones(3)
    theirs.step()
    p = torch.nn.Parameter(q.detach().clone())
    ours = ASGD([p], immediate_lr=True)
    ours.load_state_dict(theirs.state_dict())
    group = ours.param_groups[0]
    flags = (group["immediate_lr"], group["bottou_average"], group["fused"])
    assert flags == (True, False, None) and group["lr"] == 0.1


def test_old_checkpoint_with_python_numbers_is_converted_like_torch():
    results = []
    for cls in (ASGD, TorchASGD):
        p = torch.nn.Parameter(torch.ones(2))
        opt = cls([p], lr=0.1, t0=0)
        p.grad = torch.ones(2)
        opt.step()
        sd = opt.state_dict()
        for key in ("step", "eta", "mu"):
            sd["state"][0][key] = sd["state"][0][key].item()
        opt.load_state_dict(sd)
        opt.step()
        results.append(snapshot(opt, [p]))
        assert all(torch.is_tensor(opt.state[p][k]) for k in ("step", "eta", "mu"))
    assert_identical([results[0]], [results[1]])


# --------------------------------------------------------------------------- hypothesis


@settings(max_examples=30, deadline=None)
@given(
    lr=st.floats(0.0, 1.0),
    lambd=st.floats(0.0, 0.5),
    alpha=st.floats(0.0, 1.5),
    t0=st.one_of(st.integers(0, 6), st.just(1e6)),
    weight_decay=st.floats(0.0, 0.2),
    maximize=st.booleans(),
    foreach=st.sampled_from([None, False, True]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.complex64]),
    shape=st.lists(st.integers(1, 4), max_size=3).map(tuple),
    steps=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_hyperparameters_and_shapes_match_torch(
    lr, lambd, alpha, t0, weight_decay, maximize, foreach, dtype, shape, steps, seed
):
    hp = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize,
              foreach=foreach)  # fmt: skip
    p0s = initial_params(dtype, shapes=[shape, (2,)], seed=seed)
    grads = gradients(p0s, steps, seed=seed + 1)
    ours, _, _ = run(ASGD, p0s, grads, hp)
    theirs, _, _ = run(TorchASGD, p0s, grads, hp)
    assert_identical(ours, theirs)


# --------------------------------------------------------------------------- against the NumPy reference


def _reference_run(p0s, grads, hp, lrs):
    """``optim_info.reference_run`` (one group) as snapshots of this file: (params, axs) per step."""
    as_np = [[None if g is None else g.numpy() for g in row] for row in grads]
    snaps = reference_run(ASGD_INFO, [p.numpy() for p in p0s], as_np, hp, lrs)
    return [(ps, [None if st is None else st["ax"] for st in sts]) for ps, sts in snaps]


@settings(max_examples=20, deadline=None)
@given(
    lrs=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=6),
    lambd=st.floats(0.0, 0.5),
    alpha=st.floats(0.0, 1.5),
    t0=st.integers(0, 4),
    weight_decay=st.floats(0.0, 0.2),
    maximize=st.booleans(),
    immediate_lr=st.booleans(),
    bottou_average=st.booleans(),
    foreach=st.booleans(),
    shape=st.lists(st.integers(1, 4), max_size=3).map(tuple),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_fixes_and_lr_changes_match_numpy_reference(
    lrs, lambd, alpha, t0, weight_decay, maximize, immediate_lr, bottou_average, foreach, shape, seed
):
    hp = dict(lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize,
              immediate_lr=immediate_lr, bottou_average=bottou_average)  # fmt: skip
    p0s = initial_params(torch.float64, shapes=[shape], seed=seed)
    grads = gradients(p0s, len(lrs), seed=seed + 1)
    params = [torch.nn.Parameter(p.clone()) for p in p0s]
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # float64 eta/mu, as in the reference
    try:
        opt = ASGD(params, lr=lrs[0], foreach=foreach, **hp)
        ours, _, _ = run(ASGD, p0s, grads, {}, lr_at=dict(enumerate(lrs)), opt_and_params=(opt, params))
    finally:
        torch.set_default_dtype(before)
    want = _reference_run(p0s, grads, hp, lrs)
    for (ps, axs), (wps, waxs) in zip(ours, want, strict=True):
        for u, w in [*zip(ps, wps, strict=True), *zip(axs, waxs, strict=True)]:
            np.testing.assert_allclose(u.numpy(), w, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": -0.1}, {"lr": float("nan")}, {"weight_decay": -1e-3}, {"lr": torch.tensor([0.1, 0.2])},
     {"lr": torch.tensor(-1.0)}],
    ids=["lr<0", "lr=nan", "weight_decay<0", "tensor_lr_2_elements", "tensor_lr<0"],
)  # fmt: skip
def test_invalid_arguments_fail_like_torch(kwargs):
    messages = []
    for cls in (ASGD, TorchASGD):
        with pytest.raises(ValueError) as info:
            cls([torch.nn.Parameter(torch.zeros(2))], **kwargs)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    "kwargs", [{"lr": "0.1"}, {"lr": None}, {"weight_decay": "0"}, {"lr": torch.tensor(0.1j)}], ids=repr
)
def test_wrong_types_fail_with_torchs_error_type_and_message(kwargs):
    errors = []
    for cls in (ASGD, TorchASGD):
        with pytest.raises(Exception) as info:
            cls([torch.nn.Parameter(torch.zeros(2))], **kwargs)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]




@pytest.mark.parametrize("name", ["lambd", "alpha"])
def test_infinite_lambd_alpha_are_refused_but_infinite_t0_means_never_average(name):
    with pytest.raises(ValueError, match=f"Invalid {name} value: inf"):
        ASGD([torch.nn.Parameter(torch.zeros(2))], **{name: float("inf")})
    ASGD([torch.nn.Parameter(torch.zeros(2))], t0=float("inf"))


@pytest.mark.parametrize("name", ["lambd", "alpha", "t0"])
def test_param_group_overrides_of_lambd_alpha_t0_are_validated(name):
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=f"^Invalid {name} value: -1"):
        ASGD([{"params": [p]}, {"params": [q], name: -1}])
    opt = ASGD([p])
    with pytest.raises(ValueError, match=f"^Invalid {name} value: -1"):
        opt.add_param_group({"params": [q], name: -1})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [q], name: 0.5})
    assert opt.param_groups[1][name] == 0.5


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize(
    "kwargs",
    [{"lambd": np.float32(0.01), "alpha": np.float64(0.5), "t0": np.int64(2)},
     {"lambd": torch.tensor(0.01), "alpha": torch.tensor(0.5), "t0": torch.tensor(2.0)}],
    ids=["numpy_scalars", "tensors"],
)  # fmt: skip
def test_numpy_and_tensor_hyperparameters_are_accepted_like_torch(kwargs, foreach):
    # torch computes with them; refusing them would break drop-in use (configs, np.int64 step counts).
    p0s = initial_params(torch.float32)
    grads = gradients(p0s, STEPS)
    hp = {"lr": 0.5, "foreach": foreach, **kwargs}
    ours, opt, _ = run(ASGD, p0s, grads, hp)
    theirs, topt, _ = run(TorchASGD, p0s, grads, hp)
    assert_identical(ours, theirs)
    assert_same_state(opt, topt)


@pytest.mark.parametrize("other", ["foreach", "differentiable"])
def test_fused_with_foreach_or_differentiable_is_refused(other):
    with pytest.raises(ValueError, match=f"`fused` and `{other}` cannot be `True` together"):
        ASGD([torch.nn.Parameter(torch.zeros(2))], fused=True, **{other: True})


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_sparse_gradients_are_refused_like_torch(foreach):
    for cls in (ASGD, TorchASGD):
        p = torch.nn.Parameter(torch.zeros(3))
        p.grad = torch.ones(3).to_sparse()
        with pytest.raises(RuntimeError, match="^ASGD does not support sparse gradients$"):
            cls([p], foreach=foreach).step()
        assert torch.equal(p.detach(), torch.zeros(3))


@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_capturable_on_cpu_fails_like_torch(foreach):
    # torch 2.13 allows capturable only on cuda/xpu/hpu/privateuse1(/xla); CPU raises AssertionError
    # before touching the parameter.
    outcomes = []
    for cls in (ASGD, TorchASGD):
        p = torch.nn.Parameter(torch.ones(3))
        p.grad = torch.ones(3)
        opt = cls([p], capturable=True, foreach=foreach)
        with pytest.raises(AssertionError) as info:
            opt.step()
        outcomes.append((str(info.value), p.detach().clone(), opt.state[p]["step"].item()))
    assert outcomes[0][0] == outcomes[1][0] and "supported devices" in outcomes[0][0]
    assert torch.equal(outcomes[0][1], outcomes[1][1]) and outcomes[0][2] == outcomes[1][2] == 0


@pytest.fixture
def capturable_on_cpu(monkeypatch):
    """Admit CPU as a capturable device in both classes, so the capturable code paths (on-device
    eta/mu, no host syncs) run here as they would on CUDA."""
    import importlib

    for module in map(importlib.import_module, ("asgd_bridge.torch.asgd", "torch.optim.asgd")):
        real = module._get_capturable_supported_devices
        monkeypatch.setattr(module, "_get_capturable_supported_devices",
                            lambda supports_xla=True, real=real: [*real(supports_xla), "cpu"])  # fmt: skip


@pytest.mark.usefixtures("capturable_on_cpu")
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("case", ASGD_CASES, ids=case_id)
def test_capturable_paths_match_torch(case, foreach):
    p0s = initial_params(torch.float32)
    grads = gradients(p0s, STEPS)
    hp = {**case, "foreach": foreach, "capturable": True}
    ours, opt, _ = run(ASGD, p0s, grads, hp)
    theirs, topt, _ = run(TorchASGD, p0s, grads, hp)
    assert_identical(ours, theirs)
    assert_same_state(opt, topt)


@pytest.mark.usefixtures("capturable_on_cpu", "torch_float64_default")
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
@pytest.mark.parametrize("fix", FIXES, ids=case_id)
def test_capturable_fixes_match_numpy_reference(fix, foreach):
    case = FULL_CASE
    p0s = initial_params(torch.float64)
    grads = gradients(p0s, STEPS)
    lrs = [0.3, 0.3, 0.6, 0.6, 0.15, 0.15, 0.15, 0.05]
    params = [torch.nn.Parameter(p.clone()) for p in p0s]
    opt = ASGD(params, **case, **fix, foreach=foreach, capturable=True)
    ours, _, _ = run(ASGD, p0s, grads, {}, lr_at=dict(enumerate(lrs)), opt_and_params=(opt, params))
    want = _reference_run(p0s, grads, {k: v for k, v in {**case, **fix}.items() if k != "lr"}, lrs)
    for (ps, axs), (wps, waxs) in zip(ours, want, strict=True):
        for u, w in [*zip(ps, wps, strict=True), *zip(axs, waxs, strict=True)]:
            assert (u is None) == (w is None)
            if u is not None:
                np.testing.assert_allclose(u.numpy(), w, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- other flags and paths


def test_differentiable_matches_torch_including_gradients():
    results = []
    for cls in (ASGD, TorchASGD):
        leaf = torch.linspace(-1, 1, 4, dtype=torch.float64, requires_grad=True)
        g = torch.linspace(0.5, 2, 4, dtype=torch.float64, requires_grad=True)
        p = leaf.clone()  # non-leaf: the step is recorded by autograd
        # t0 stays ahead: with mu != 1, torch's in-place mu update breaks backward (in both classes).
        opt = cls([p], lr=0.1, lambd=0.1, weight_decay=0.05, maximize=True, differentiable=True)
        for _ in range(3):
            p.grad = g * 1.5
            opt.step()
        (p.pow(2).sum() + opt.state[p]["ax"].pow(3).sum()).backward()
        results.append((p.detach(), leaf.grad, g.grad))
    for u, v in zip(*results, strict=True):
        assert torch.equal(u, v)


def test_fused_dispatches_lazily_to_fused_asgd(monkeypatch):
    calls = []
    fake = types.ModuleType("asgd_bridge.torch._fused")

    def fused_asgd_(params, grads, axs, mus, etas, state_steps, **kwargs):
        calls.append((len(params), kwargs))

    fake.fused_asgd_ = fused_asgd_  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "asgd_bridge.torch._fused", fake)
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    ASGD([p], lr=0.5, t0=3, fused=True, bottou_average=True).step()
    assert calls == [(1, dict(lr=0.5, lambd=1e-4, alpha=0.75, t0=3, weight_decay=0.0, maximize=False,
                              immediate_lr=False, bottou_average=True, capturable=False))]  # fmt: skip


def test_closure_loss_is_returned_and_grads_enabled_inside():
    p = torch.nn.Parameter(torch.ones(2))
    opt = ASGD([p])

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert float(loss.detach()) == 2.0 and opt.state[p]["step"].item() == 1


def test_is_an_optimizer_with_torchs_defaults():
    import inspect

    ours = inspect.signature(ASGD.__init__).parameters
    theirs = inspect.signature(TorchASGD.__init__).parameters
    assert issubclass(ASGD, torch.optim.Optimizer)
    assert list(theirs) == list(ours)[: len(theirs)]
    assert all(ours[k].default == theirs[k].default for k in theirs if k not in ("self", "params"))
    assert all(ours[k].kind is inspect.Parameter.KEYWORD_ONLY for k in list(ours)[len(theirs):])


def test_class_docstring_examples_run():
    import doctest

    import asgd_bridge.torch.asgd as module

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    tests = [t for t in finder.find(module.ASGD, "ASGD", globs={}) if t.examples]
    assert tests
    for t in tests:
        runner.run(t)
    assert runner.summarize(verbose=False).failed == 0


def test_repr_is_torchs_plus_the_flag_keys():
    ours = repr(ASGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, t0=0))
    theirs = repr(TorchASGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, t0=0))
    extras = ("    bottou_average: False", "    fused: None", "    immediate_lr: False")
    assert [line for line in ours.splitlines() if line not in extras] == theirs.splitlines()


def _step_both(make_ours, make_theirs, steps=4):
    """Run one optimizer of each class through the same gradients; params and state after each step."""
    outs = []
    for make in (make_ours, make_theirs):
        opt, params = make()
        outs.append(run(type(opt), [p.detach() for p in params], gradients(params, steps, seed=7), {},
                        opt_and_params=(opt, params))[0])  # fmt: skip
    return outs


@pytest.mark.parametrize("copy_with", ["deepcopy", "pickle"])
def test_deepcopy_and_pickle_continue_like_torch(copy_with):
    import copy
    import pickle

    def make(cls):
        def build():
            params = [torch.nn.Parameter(p) for p in initial_params(torch.float32, shapes=[(3,), (2, 2)])]
            opt = cls(params, lr=0.1, t0=1, weight_decay=0.01)
            run(cls, [p.detach() for p in params], gradients(params, 3), {}, opt_and_params=(opt, params))
            if copy_with == "deepcopy":
                return copy.deepcopy((opt, params))
            return pickle.loads(pickle.dumps((opt, params)))
        return build

    ours, theirs = _step_both(make(ASGD), make(TorchASGD))
    assert_identical(ours, theirs)


def test_add_param_group_zero_grad_and_hooks_behave_like_torch():
    def make(cls):
        def build():
            params = [torch.nn.Parameter(p) for p in initial_params(torch.float32, shapes=[(3,), (2, 2)])]
            opt = cls(params[:1], lr=0.1, t0=1)
            opt.add_param_group({"params": params[1:], "lr": 0.3, "lambd": 0.05})
            calls = []
            opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
            opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
            opt.register_state_dict_post_hook(lambda o, sd: calls.append("sd") or sd)
            opt.register_load_state_dict_post_hook(lambda o: calls.append("load"))
            build.calls = calls
            return opt, params
        return build

    make_ours, make_theirs = make(ASGD), make(TorchASGD)
    ours, theirs = _step_both(make_ours, make_theirs)
    assert_identical(ours, theirs)
    assert make_ours.calls == make_theirs.calls == ["pre", "post"] * 4
    opt, params = make_ours()
    for p in params:
        p.grad = torch.ones_like(p)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.load_state_dict(opt.state_dict())
    assert make_ours.calls == ["sd", "load"]


@pytest.mark.usefixtures("torch_float64_default")
def test_load_state_dict_keeps_step_dtype_in_fused_groups_like_torch():
    # torch's Optimizer.load_state_dict casts "step" to float32 when a group has a truthy "fused" key
    # (the fused CPU kernel then took its slower fallback, with a RuntimeWarning, after every resume).
    p0s = initial_params(torch.float64, shapes=[(3,), (2, 2)])
    grads = gradients(p0s, 6)
    whole, _, _ = run(ASGD, p0s, grads, {"lr": 0.1, "t0": 1, "fused": True})
    first, opt, params = run(ASGD, p0s, grads[:3], {"lr": 0.1, "t0": 1, "fused": True})
    fresh = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = ASGD(fresh, lr=0.1, t0=1, fused=True)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[fresh[0]]["step"].dtype == torch.float64  # (fresh[1] never gets a gradient)
    second, _, _ = run(ASGD, p0s, grads[3:], {}, opt_and_params=(opt2, fresh))
    assert_identical(first + second, whole)


@pytest.mark.parametrize("fix", [{}, *FIXES], ids=["torch", *[case_id(f) for f in FIXES]])
@pytest.mark.parametrize("foreach", [False, True], ids=["loop", "foreach"])
def test_accelerator_path_never_reads_state_on_the_host(monkeypatch, fix, foreach):
    # On a device other than CPU, eta/mu stay device tensors (no .item(): no host-device sync per
    # step, unlike torch). Forced on CPU here by declaring no device host-readable.
    import asgd_bridge.torch._schedule as schedule
    import asgd_bridge.torch.asgd as impl

    p0s = initial_params(torch.float32)
    grads = gradients(p0s, steps=12)
    hp = {"lr": 0.05, "lambd": 0.01, "t0": 3, "weight_decay": 0.01, "foreach": foreach, **fix}
    host, _, _ = run(ASGD, p0s, grads, hp)

    def no_host_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a state scalar was read on the host")

    monkeypatch.setattr(schedule, "_HOST_DEVICES", frozenset())
    monkeypatch.setattr(schedule, "_get_value", no_host_read)
    monkeypatch.setattr(impl, "_get_value", no_host_read)
    monkeypatch.setattr(torch.Tensor, "item", no_host_read)
    device, _, _ = run(ASGD, p0s, grads, hp)
    assert_close_rel(device, host, 1e-6)


@pytest.mark.parametrize("hp", [{"lr": 0.05, "lambd": 1e-4, "alpha": 0.75, "t0": 3.0},
                                {"lr": 0.3, "lambd": 0.1, "alpha": 1.0, "t0": 0.0},
                                {"lr": 1e-2, "lambd": 0.0, "alpha": 0.5, "t0": 1e6}], ids=case_id)
def test_on_device_schedule_is_the_reference(hp: dict[str, float]) -> None:
    """Every form of torch/_schedule.py (host, device, foreach, fused's pair) is the reference's eta/mu:
    the host form to the last bit, the tensor forms to float64 rounding."""
    lr, lambd, alpha, t0 = hp["lr"], hp["lambd"], hp["alpha"], hp["t0"]
    steps = [torch.tensor(float(t), dtype=torch.float64) for t in range(12)]
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the host form makes 0-d tensors of the default dtype
    try:
        _check_schedule_forms(lr, lambd, alpha, t0, steps)
    finally:
        torch.set_default_dtype(before)


def _check_schedule_forms(lr: float, lambd: float, alpha: float, t0: float, steps: list) -> None:
    from asgd_bridge import reference as ref
    from asgd_bridge.torch import _fused, _schedule

    for t, s in enumerate(steps):
        want_eta, want_mu = ref.eta_schedule(lr, lambd, alpha, t), ref.mu_schedule(t, t0)
        assert _schedule.eta(lr, lambd, alpha, s, False).item() == want_eta
        assert _schedule.mu(s, t0, False).item() == want_mu
        for got_eta, got_mu in ((_schedule.eta(lr, lambd, alpha, s, True), _schedule.mu(s, t0, True)),
                                _fused._schedule(s, lr, lambd, alpha, t0)):  # fmt: skip
            assert got_eta.item() == pytest.approx(want_eta, rel=1e-15, abs=0)
            assert got_mu.item() == pytest.approx(want_mu, rel=1e-15, abs=0)
    for on_device in (False, True):
        etas = _schedule.foreach_eta(steps, lr, lambd, alpha, on_device, "cpu")
        mus = _schedule.foreach_mu(steps, t0, on_device, "cpu")
        for t, (e, m) in enumerate(zip(etas, mus, strict=True)):
            assert e.item() == pytest.approx(ref.eta_schedule(lr, lambd, alpha, t), rel=1e-15, abs=0)
            assert m.item() == pytest.approx(ref.mu_schedule(t, t0), rel=1e-15, abs=0)


@pytest.mark.parametrize("foreach", [False, True])
def test_init_state_takes_no_step_and_the_first_step_uses_the_lr_then(foreach):
    # init_state() creates torch's lazy state (step 0, eta = lr, mu 1, ax 0) without stepping; an
    # lr changed before the first real step is honoured, as torch's lazy state would.
    runs = []
    for init in (True, False):
        p = torch.nn.Parameter(torch.arange(3.0))
        opt = ASGD([p], lr=0.1, t0=0, foreach=foreach)
        if init:
            opt.init_state()
            st = opt.state[p]
            assert (float(st["step"]), float(st["mu"])) == (0.0, 1.0)
            assert torch.equal(st["eta"], torch.tensor(0.1)) and torch.equal(st["ax"], torch.zeros(3))
            assert torch.equal(p.detach(), torch.arange(3.0))
        opt.param_groups[0]["lr"] = 0.3
        for _ in range(3):
            p.grad = torch.ones(3)
            opt.step()
        runs.append((p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}))
    assert torch.equal(runs[0][0], runs[1][0])
    for key in ("step", "eta", "mu", "ax"):
        assert torch.equal(runs[0][1][key], runs[1][1][key]), key
