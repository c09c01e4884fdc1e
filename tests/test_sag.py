"""SAG in torch and Paddle: what is particular to each (multi precision, host syncs, state-dict formats,
groups and schedulers, AMP). The shared table (``optim_info``: every case against the reference and
against paddle.optimizer.ASGD, state-dict round trips, bad arguments) runs in ``test_backends.py``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import paddle
import pytest
import torch
from optim_info import BY_NAME

from asgd_bridge import reference as ref
from asgd_bridge.paddle import SAG as PaddleSAG
from asgd_bridge.torch import SAG as TorchSAG

paddle.set_device("cpu")
warnings.filterwarnings("ignore", message="Accumulating with FP16/BF16")

BACKENDS = ["torch", "paddle"]


def Run(backend: str, params0: list[np.ndarray], case: dict[str, Any], dtype: str) -> Any:
    """The shared driver (``optim_info``) of ``asgd_bridge.<backend>.SAG``, or of the real
    ``paddle.optimizer.ASGD`` for ``"paddle-asgd"``, on one param group."""
    name = "paddle.optimizer.ASGD" if backend == "paddle-asgd" else f"{backend}.SAG"
    return BY_NAME[name].make(params0, case, dtype, groups=False)


def _gradients(rng: np.random.Generator, shapes: list[tuple[int, ...]], steps: int) -> list[list[np.ndarray]]:
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def _paddle_param(value: np.ndarray, dtype: str) -> paddle.Tensor:
    init = value.astype(np.float32 if dtype in ("float16", "bfloat16") else dtype)
    return paddle.create_parameter(
        list(value.shape), dtype, default_initializer=paddle.nn.initializer.Assign(init)
    )


# --------------------------------------------------------------------------- closed forms
# (every case against the reference and against paddle.optimizer.ASGD: test_backends.py)


def test_maximize_negates_before_clip_and_decay() -> None:
    """With maximize, the regulariser still shrinks the weights (torch's convention)."""
    p0 = [np.full((3,), 2.0)]
    grads = [[np.zeros(3)]]
    for backend in BACKENDS:
        run = Run(backend, p0, {"lr": 0.1, "weight_decay": 0.5, "maximize": True}, "float64")
        run.step(grads[0])
        np.testing.assert_allclose(run.values()[0], 2.0 - 0.1 * 0.5 * 2.0)


# --------------------------------------------------------------------------- multi_precision


def _mp_expected(
    p0: np.ndarray, grads_seq: list[np.ndarray], lr: float, n: int, dtype: torch.dtype
) -> np.ndarray:
    """fp32 master, fp32 d, y stored rounded to ``dtype``: d = d - y[i] + round(g); w -= lr d / k."""
    w = p0.astype(np.float32)
    d = np.zeros_like(w)
    y = np.zeros((n, *w.shape), np.float32)
    for m, g in enumerate(grads_seq):
        i = m % n
        g_round = torch.tensor(g, dtype=dtype).float().numpy()  # the gradient as the parameter dtype holds it
        d = d - y[i] + g_round
        y[i] = g_round
        w = (w - np.float32(lr / min(m + 1, n)) * d).astype(np.float32)
    return w


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_precision_keeps_fp32_master(backend: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    tdtype = getattr(torch, dtype)
    p0 = torch.tensor(rng.standard_normal((4, 3)), dtype=tdtype).float().numpy()
    grads = [torch.tensor(rng.standard_normal((4, 3)), dtype=tdtype).float().numpy() for _ in range(9)]
    run = Run(backend, [p0], {"lr": 0.01, "batch_num": 3, "multi_precision": True}, dtype)
    for g in grads:
        run.step([g])
    state = run.opt.state[run.params[0]] if backend == "torch" else run.opt.state_dict()["state"][0]
    master = state["master"]
    assert str(master.dtype).endswith("float32") and str(state["d"].dtype).endswith("float32")
    assert str(state["y"].dtype).endswith(dtype)
    master_np = master.numpy() if backend == "paddle" else master.detach().numpy()
    np.testing.assert_allclose(master_np, _mp_expected(p0, grads, 0.01, 3, tdtype), rtol=1e-5, atol=1e-6)
    # the parameter is the master weight rounded to its dtype
    rounded = torch.tensor(master_np).to(tdtype).float().numpy()
    np.testing.assert_array_equal(run.values()[0].astype(np.float32), rounded)


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_without_master_follows_fp32_run(backend: str) -> None:
    rng = np.random.default_rng(4)
    p0 = torch.tensor(rng.standard_normal(6), dtype=torch.float16).float().numpy()
    grads = [[torch.tensor(rng.standard_normal(6), dtype=torch.float16).float().numpy()] for _ in range(5)]
    with pytest.warns(UserWarning, match="multi_precision=True"):
        half = Run(backend, [p0], {"lr": 0.05, "batch_num": 2}, "float16")
    full = Run(backend, [p0], {"lr": 0.05, "batch_num": 2}, "float32")
    for g in grads:
        half.step(g)
        full.step(g)
    np.testing.assert_allclose(half.values()[0].astype(np.float32), full.values()[0], rtol=0, atol=5e-3)


# --------------------------------------------------------------------------- no host sync, fused vs composed


def test_paddle_step_has_no_host_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    run = Run(
        "paddle", [rng.standard_normal((3, 4))], {"lr": 0.1, "batch_num": 3, "weight_decay": 0.1}, "float32"
    )
    grads = _gradients(rng, [(3, 4)], 5)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("host sync in SAG.step")

    for g in grads:
        loss = (run.params[0] * paddle.to_tensor(g[0], dtype="float32")).sum()
        loss.backward()
        with monkeypatch.context() as mp:
            for name in ("item", "numpy", "tolist", "__float__", "__int__", "__bool__"):
                mp.setattr(paddle.Tensor, name, refuse)
            run.opt.step()
        run.opt.clear_grad()
    # and paddle.optimizer.ASGD does sync (the reason this class exists)
    theirs = Run("paddle-asgd", [np.ones(3)], {"batch_num": 2}, "float32")
    (theirs.params[0] * 2).sum().backward()
    with monkeypatch.context() as mp:
        mp.setattr(paddle.Tensor, "item", refuse)
        with pytest.raises(AssertionError, match="host sync"):
            theirs.opt.step()


def test_torch_step_has_no_host_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    run = Run(
        "torch",
        [rng.standard_normal((3, 4))],
        {"lr": 0.1, "batch_num": 3, "grad_clip": ("global_norm", 1.0)},
        "float32",
    )

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("host sync in SAG.step")

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "__bool__", refuse)
    monkeypatch.setattr(torch.Tensor, "__float__", refuse)
    for g in _gradients(rng, [(3, 4)], 4):
        run.step(g)


def test_paddle_composed_path_equals_fused_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # Paddle's two op paths (its _C_ops.asgd_ and the composed one); our kernel: test_sag_fused.py
    from asgd_bridge.paddle import _fused

    monkeypatch.setattr(_fused, "_FORCE_FALLBACK", True)
    rng = np.random.default_rng(7)
    p0 = [rng.standard_normal((3, 4)).astype(np.float32)]
    grads = _gradients(rng, [(3, 4)], 6)
    case = {"lr": 0.05, "batch_num": 3, "weight_decay": ("l1", 0.01), "grad_clip": ("norm", 1.0)}
    fused = Run("paddle", p0, case, "float32")
    for g in grads:
        fused.step(g)
    import asgd_bridge.paddle.sag as psag

    monkeypatch.setattr(psag, "_FUSED", None)
    composed = Run("paddle", p0, case, "float32")
    for g in grads:
        composed.step(g)
    np.testing.assert_allclose(composed.values()[0], fused.values()[0], rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- state dicts


def test_torch_state_dict_format() -> None:
    # (the round trip mid-run through torch.save: test_backends.py)
    rng = np.random.default_rng(8)
    case = {"lr": 0.05, "batch_num": 3, "grad_clip": ("global_norm", 1.0), "weight_decay": ("l1", 0.01)}
    first = Run("torch", [rng.standard_normal((3, 4)), rng.standard_normal(5)], case, "float64")
    for g in _gradients(rng, [(3, 4), (5,)], 4):
        first.step(g)
    sd = first.opt.state_dict()
    assert set(sd["state"][0]) == {"d", "y", "m"} and sd["state"][0]["m"] == 4
    assert sd["state"][0]["y"].shape == (3, 3, 4)


def test_torch_multi_precision_state_survives_load() -> None:
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float16))
    opt = TorchSAG([p], lr=0.1, batch_num=2, multi_precision=True)
    p.grad = torch.full((4,), 1e-3, dtype=torch.float16)
    opt.step()
    sd = opt.state_dict()
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = TorchSAG([q], lr=0.1, batch_num=2, multi_precision=True)
    opt2.load_state_dict(sd)
    st = opt2.state[q]
    assert st["master"].dtype == torch.float32 and st["d"].dtype == torch.float32
    assert st["y"].dtype == torch.float16
    torch.testing.assert_close(st["master"], opt.state[p]["master"])


def test_paddle_state_dict_format() -> None:
    # (the round trip mid-run through paddle.save into fresh parameters: test_backends.py)
    rng = np.random.default_rng(9)
    case = {"lr": 0.05, "batch_num": 3, "grad_clip": ("value", 0.5), "weight_decay": 0.1}
    first = Run("paddle", [rng.standard_normal((3, 4)), rng.standard_normal(5)], case, "float64")
    for g in _gradients(rng, [(3, 4), (5,)], 4):
        first.step(g)
    sd = first.opt.state_dict()
    assert sd["param_groups"][0]["grad_clip"] == ("value", -0.5, 0.5)
    assert sd["param_groups"][0]["weight_decay"] == 0.1 and sd["param_groups"][0]["params"] == [0, 1]


def test_paddle_state_dict_wrong_shape_names_parameter() -> None:
    run = Run("paddle", [np.ones((2, 3))], {"batch_num": 2}, "float32")
    run.step([np.ones((2, 3))])
    sd = run.opt.state_dict()
    other = Run("paddle", [np.ones((2, 3))], {"batch_num": 3}, "float32")
    with pytest.raises(ValueError, match=r"parameter 0 .*\[2, 2, 3\].*\[3, 2, 3\]"):
        other.opt.set_state_dict(sd)


# --------------------------------------------------------------------------- groups, schedulers


def test_torch_param_groups_and_scheduler() -> None:
    rng = np.random.default_rng(10)
    a0, b0 = rng.standard_normal(4), rng.standard_normal(3)
    a, b = torch.nn.Parameter(torch.tensor(a0)), torch.nn.Parameter(torch.tensor(b0))
    opt = TorchSAG([{"params": [a], "batch_num": 2}, {"params": [b], "lr": 0.2, "weight_decay": 0.1}], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    ra, rb = a0.copy(), b0.copy()
    sa, sb = ref.sag_init(a0, 2), ref.sag_init(b0, 1)
    for t in range(6):
        ga, gb = rng.standard_normal(4), rng.standard_normal(3)
        a.grad, b.grad = torch.tensor(ga), torch.tensor(gb)
        opt.step()
        ra, sa = ref.sag_step(ra, ga, sa, lr=0.1 * 0.5 ** (t // 2))
        rb, sb = ref.sag_step(rb, ref.l2_decay(rb, gb, 0.1), sb, lr=0.2 * 0.5 ** (t // 2))
        sched.step()
    np.testing.assert_allclose(a.detach().numpy(), ra, rtol=1e-12)
    np.testing.assert_allclose(b.detach().numpy(), rb, rtol=1e-12)


def test_paddle_param_groups_and_scheduler() -> None:
    rng = np.random.default_rng(11)
    a0, b0 = rng.standard_normal(4), rng.standard_normal(3)
    a, b = _paddle_param(a0, "float64"), _paddle_param(b0, "float64")
    a0, b0 = a.numpy(), b.numpy()
    sched = paddle.optimizer.lr.StepDecay(0.1, step_size=2, gamma=0.5)
    opt = PaddleSAG(
        learning_rate=sched,
        batch_num=2,
        parameters=[{"params": [a]}, {"params": [b], "learning_rate": 2.0, "weight_decay": ("l1", 0.1)}],
    )
    ra, rb = a0.copy(), b0.copy()
    sa, sb = ref.sag_init(a0, 2), ref.sag_init(b0, 2)
    for t in range(6):
        ga, gb = rng.standard_normal(4), rng.standard_normal(3)
        ((a * paddle.to_tensor(ga)).sum() + (b * paddle.to_tensor(gb)).sum()).backward()
        opt.step()
        opt.clear_grad()
        ra, sa = ref.sag_step(ra, ga, sa, lr=0.1 * 0.5 ** (t // 2))
        rb, sb = ref.sag_step(rb, ref.l1_decay(rb, gb, 0.1), sb, lr=0.2 * 0.5 ** (t // 2))
        sched.step()
    np.testing.assert_allclose(a.numpy(), ra, rtol=1e-12)
    np.testing.assert_allclose(b.numpy(), rb, rtol=1e-12)
    groups = opt.state_dict()["param_groups"]
    assert groups[1]["weight_decay"] == ("l1", 0.1) and groups[1]["lr"] == pytest.approx(2 * groups[0]["lr"])
    assert "LR_Scheduler" in opt.state_dict()


# --------------------------------------------------------------------------- invalid arguments

# (the bad-argument rows of both classes: optim_info.SAG_INFO.error_inputs, run in test_backends.py)


def test_paddle_rejects_custom_regulariser_type() -> None:
    class Custom(paddle.regularizer.WeightDecayRegularizer):
        pass

    with pytest.raises(ValueError, match="weight_decay"):
        PaddleSAG(parameters=[_paddle_param(np.ones(2), "float32")], weight_decay=Custom())


def test_torch_group_hyperparameters_are_validated() -> None:
    with pytest.raises(ValueError, match="batch_num"):
        TorchSAG([{"params": [torch.nn.Parameter(torch.ones(2))], "batch_num": 0}])


def test_paddle_step_is_skipped_when_grad_scaler_found_inf() -> None:
    """GradScaler.step sets ``found_inf`` and calls step(); like Paddle's optimizers, SAG then skips."""
    run = Run("paddle", [np.ones((2, 3)), np.ones(4)], {"lr": 0.1, "batch_num": 2}, "float32")
    run.step([np.ones((2, 3)), np.ones(4)])
    before = run.values()
    for flag, moved in ((True, False), (False, True)):
        loss = sum((p * paddle.full(p.shape, np.inf if flag else 1.0)).sum() for p in run.params)
        loss.backward()
        run.opt._set_auxiliary_var("found_inf", paddle.to_tensor(flag))
        run.opt.step()
        run.opt.clear_grad()
        assert run.opt.state_dict()["state"][0]["m"] == (2 if moved else 1)
        for got, b in zip(run.values(), before, strict=True):
            assert np.isfinite(got).all() and np.array_equal(got, b) != moved


def _pp() -> list:
    return [_paddle_param(np.ones(2), "float32")]


PADDLE_BAD_PARAMETERS = [
    (lambda: [], "parameters"),
    (lambda: _pp()[0], "parameters"),
    (lambda: [{"learning_rate": 0.5}], "parameters"),
    (lambda: [{"params": _pp(), "learning_rate": -1.0}], "learning_rate"),
    (lambda: [{"params": _pp(), "weight_decay": "x"}], "weight_decay"),
    (lambda: [{"params": _pp(), "lr": 0.5}], "'lr' is torch's"),  # silently ignored before
    (lambda: [{"params": _pp(), "maximize": 1}], "maximize"),  # a group key, validated as a flag
    (lambda: [{"params": _pp(), "batch_num": 0}], "batch_num"),
]


@pytest.mark.parametrize(("make", "word"), PADDLE_BAD_PARAMETERS, ids=[w for _, w in PADDLE_BAD_PARAMETERS])
def test_paddle_invalid_parameters_and_groups(make: Any, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        PaddleSAG(parameters=make())
    with pytest.raises(ValueError, match="name"):
        PaddleSAG(parameters=_pp(), name=3)
    PaddleSAG(parameters=[{"params": _pp(), "learning_rate": 2.0, "weight_decay": ("l1", 0.1)}])  # valid


def test_torch_sag_answers_to_paddles_method_names() -> None:
    """A program migrated with ``--to torch`` may still call Paddle's names on the optimizer."""
    import torch

    from asgd_bridge.torch import SAG

    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = SAG([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1, batch_num=2)
    assert opt.get_lr() == 0.1
    opt.set_lr(0.05)
    assert opt.get_lr() == 0.05 and [g["lr"] for g in opt.param_groups] == [0.05, 0.1]
    (a.sum() + b.sum()).backward()
    opt.step()
    opt.clear_grad()
    assert a.grad is not None and torch.count_nonzero(a.grad) == 0
    opt.clear_grad(set_to_zero=False)
    assert a.grad is None
    fresh = SAG([{"params": [a]}, {"params": [b]}], lr=0.1, batch_num=2)
    fresh.set_state_dict(opt.state_dict())
    assert fresh.state[a]["m"] == 1 and torch.equal(fresh.state[b]["d"], opt.state[b]["d"])


@pytest.mark.parametrize("first", ["flat list", "groups"])
def test_paddle_add_param_group_trains_as_paddle_asgd_built_with_both_groups(first: str) -> None:
    """A group added after construction (issue 9: an opaque Paddle ValueError or a KeyError at step)
    trains as the same group given to ``paddle.optimizer.ASGD`` from the start, with its own
    learning-rate multiplier, regulariser and clip."""
    rng = np.random.default_rng(12)
    a0, b0 = rng.standard_normal(4), rng.standard_normal(3)
    new_group = {"learning_rate": 0.5, "weight_decay": 0.01, "grad_clip": paddle.nn.ClipGradByNorm(0.3)}

    def params() -> tuple[paddle.Tensor, paddle.Tensor]:
        return _paddle_param(a0, "float32"), _paddle_param(b0, "float32")

    a, b = params()
    ours = PaddleSAG(
        learning_rate=0.1, batch_num=3, parameters=[a] if first == "flat list" else [{"params": [a]}]
    )
    ours.add_param_group({"params": [b], **new_group})
    pa, pb = params()
    theirs = paddle.optimizer.ASGD(
        learning_rate=0.1, batch_num=3, parameters=[{"params": [pa]}, {"params": [pb], **new_group}]
    )
    for _ in range(5):
        ga, gb = (paddle.to_tensor(rng.standard_normal(s).astype("float32")) for s in (4, 3))
        for opt, (x, y) in ((ours, (a, b)), (theirs, (pa, pb))):
            ((x * ga).sum() + (y * gb).sum()).backward()
            opt.step()
            opt.clear_grad()
    np.testing.assert_allclose(a.numpy(), pa.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b.numpy(), pb.numpy(), rtol=1e-6, atol=1e-7)
    assert b.grad is None or not b.grad.numpy().any()  # clear_grad reaches the new group
    groups = ours.state_dict()["param_groups"]
    assert [g["params"] for g in groups] == [[0], [1]] and groups[1]["lr"] == pytest.approx(0.05)
    assert groups[1]["grad_clip"] == ("norm", pytest.approx(0.3))


def test_paddle_add_param_group_validates_like_the_constructor() -> None:
    a, b = paddle.create_parameter([3], "float32"), paddle.create_parameter([2], "float32")
    opt = PaddleSAG(learning_rate=0.1, batch_num=2, parameters=[a])
    bad = [
        ({"params": [b], "lr": 0.1}, r"unknown param-group key\(s\) \['lr'\]"),
        ({"params": [b], "batch_num": 0}, r"Invalid batch_num value: 0"),
        ({"params": [b], "learning_rate": -1.0}, r"Invalid learning_rate value in a param group: -1.0"),
        ({"params": [b], "weight_decay": "x"}, r"weight_decay"),
        ({"params": [a]}, r"more than one parameter group"),
        ({"params": [b, b]}, r"more than one parameter group"),
        ({"params": []}, r"'params' is empty"),
        ({"params": ["b"]}, r"only parameters"),
        ({"batch_num": 2}, r"no 'params' key"),
    ]
    for group, message in bad:
        with pytest.raises(ValueError, match=message):
            opt.add_param_group(group)
        with pytest.raises(ValueError, match=message):
            opt._add_param_group(group)  # Paddle's own (private) name is the same method
    assert len(opt._param_groups) == 1 and opt.state_dict()["param_groups"][0]["params"] == [0]


def test_torch_sag_get_lr_follows_a_torch_scheduler() -> None:
    """get_lr used to return the constructor's ``defaults['lr']`` after a scheduler moved the lr (the
    path ``convert --to torch`` sends users to); it is the current ``param_groups[0]['lr']``, and
    set_lr keeps each group's ratio to it."""
    import torch

    from asgd_bridge.convert import runtime
    from asgd_bridge.torch import SAG

    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = SAG([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1, batch_num=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    (a.sum() + b.sum()).backward()
    opt.step()
    sched.step()
    assert opt.get_lr() == pytest.approx(0.05) == runtime.get_lr(opt)
    assert opt.defaults["lr"] == 0.1  # torch's schedulers leave it
    opt.set_lr(0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.02])  # ratio 2 kept
    assert opt.get_lr() == pytest.approx(0.01)
