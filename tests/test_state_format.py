"""state_format: every loader checks a state dict against its algorithm's format before loading it.

Regressions of the trust-boundary issue (state dicts that loaded and then divided by zero, ascended,
resized a parameter or let a kernel write out of bounds), the format's deliberate choices, and the
migration from ``paddle.optimizer.ASGD``'s own name-keyed state into ``asgd_bridge.paddle.SAG``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import paddle
import pytest
import torch

from asgd_bridge.checkpoint import CheckpointError, convert_state_dict
from asgd_bridge.paddle import ASGD as PaddleASGD
from asgd_bridge.paddle import SAG as PaddleSAG
from asgd_bridge.state_format import StateDictError
from asgd_bridge.torch import ASGD as TorchASGD
from asgd_bridge.torch import SAG as TorchSAG


def run_child(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; a crash (signal) shows as a negative return code."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


def assert_refused_in_child(code: str, *needles: str) -> None:
    """The child must exit normally, having caught a StateDictError whose message names ``needles``."""
    result = run_child(code)
    assert result.returncode == 0, f"child died (rc {result.returncode}): {result.stderr[-2000:]}"
    assert "REFUSED StateDictError" in result.stdout, result.stdout + result.stderr[-2000:]
    for needle in needles:
        assert needle in result.stdout, result.stdout


# --------------------------------------------------------------------------- averaged SGD


def torch_asgd_state(**opts: Any) -> tuple[TorchASGD, dict[str, Any]]:
    p = torch.nn.Parameter(torch.ones(4))
    opt = TorchASGD([p], lr=0.1, **opts)
    p.grad = torch.ones(4)
    opt.step()
    return opt, opt.state_dict()


def paddle_asgd_state() -> tuple[PaddleASGD, dict[str, Any]]:
    p = paddle.create_parameter([4], "float32", default_initializer=paddle.nn.initializer.Constant(1.0))
    opt = PaddleASGD(learning_rate=0.1, parameters=[p])
    (p * 1.0).sum().backward()
    opt.step()
    return opt, opt.state_dict()


def edit(sd: dict[str, Any], *, group: dict | None = None, state: dict | None = None) -> dict[str, Any]:
    return {
        **sd,
        "param_groups": [{**sd["param_groups"][0], **(group or {})}],
        "state": {0: {**sd["state"][0], **(state or {})}},
    }


BAD_ASGD = [
    ({"group": {"lambd": -1.0}}, "'lambd'"),
    ({"group": {"lr": -1.0}}, "'lr'"),
    ({"group": {"alpha": float("inf")}}, "'alpha'"),
    ({"group": {"weight_decay": -0.5}}, "'weight_decay'"),
    ({"group": {"maximize": "yes"}}, "'maximize'"),
    ({"group": {"momentum": 0.9}}, "'momentum'"),
    ({"state": {"eta": float("nan")}}, "'eta'"),
    ({"state": {"step": -10.0}}, "'step'"),
    ({"state": {"step": 2.5}}, "'step'"),
    ({"state": {"mu": 0.0}}, "'mu'"),
    ({"state": {"mu": 1.5}}, "'mu'"),
]


@pytest.mark.parametrize(("change", "key"), BAD_ASGD, ids=[k + "-" + str(c) for c, k in BAD_ASGD])
@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_asgd_state_dicts_with_bad_values_are_refused_at_load(backend, change, key):
    # lambd=-1, lr=-1, eta=nan, step=-10 used to load, then divide by zero or ascend.
    opt, sd = torch_asgd_state() if backend == "torch" else paddle_asgd_state()
    if "state" in change:
        kind = torch.tensor if backend == "torch" else paddle.to_tensor
        change = {"state": {k: kind(v) for k, v in change["state"].items()}}
    before = {k: float(v) for k, v in opt.state_dict()["state"][0].items() if k != "ax"}
    with pytest.raises(StateDictError, match=key) as info:
        opt.load_state_dict(edit(sd, **change))
    assert "expected" in str(info.value) and "found" in str(info.value)
    after = {k: float(v) for k, v in opt.state_dict()["state"][0].items() if k != "ax"}
    assert after == before  # nothing was loaded


def test_error_names_parameter_position_and_name():
    model = torch.nn.Linear(2, 3)
    opt = TorchASGD(model.named_parameters(), lr=0.1)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    sd["state"][1]["ax"] = torch.zeros(2)
    with pytest.raises(StateDictError) as info:
        opt.load_state_dict(sd)
    message = str(info.value)
    for part in ("state[1]", "parameter 1", "'bias'", "'ax'", "shape [3]", "shape [2]"):
        assert part in message


@pytest.mark.parametrize(
    "ax",
    [torch.zeros(3), torch.zeros(4, device="meta"), torch.zeros(4, dtype=torch.int64),
     torch.zeros(4, dtype=torch.complex64), torch.zeros(1).expand(4), "zeros"],
    ids=["fewer-elements", "meta", "int64", "complex-into-real", "overlapping", "str"],
)  # fmt: skip
def test_bad_ax_is_refused_at_load(ax):
    opt, sd = torch_asgd_state()
    with pytest.raises(StateDictError, match="'ax'"):
        opt.load_state_dict(edit(sd, state={"ax": ax}))


def test_short_ax_never_reaches_the_fused_kernel():
    # A short ax used to make the fused C kernel write past its buffer (corruption, hang, SIGSEGV).
    assert_refused_in_child(
        """
        import torch
        from asgd_bridge.torch import ASGD
        from asgd_bridge.state_format import StateDictError
        p = torch.nn.Parameter(torch.ones(1 << 20))
        first = ASGD([p], lr=0.1)
        p.grad = torch.ones_like(p)
        first.step()
        sd = first.state_dict()
        opt = ASGD([p], lr=0.1, fused=True)
        sd["state"][0]["ax"] = torch.zeros(8)
        try:
            opt.load_state_dict(sd)
        except StateDictError as e:
            print("REFUSED", type(e).__name__, e)
        else:
            opt.step()
            print("LOADED")
        """,
        "'ax'",
        "8 elements",
    )


def test_torch_and_old_checkpoint_forms_still_load():
    # torch.optim.ASGD state with a tensor lr, and an old checkpoint's Python-number step/eta/mu.
    p = torch.nn.Parameter(torch.ones(3))
    theirs = torch.optim.ASGD([p], lr=torch.tensor(0.1))
    p.grad = torch.ones(3)
    theirs.step()
    sd = theirs.state_dict()
    sd["state"][0].update({k: sd["state"][0][k].item() for k in ("step", "eta", "mu")})
    q = torch.nn.Parameter(p.detach().clone())
    ours = TorchASGD([q])
    ours.load_state_dict(sd)
    assert torch.is_tensor(ours.param_groups[0]["lr"]) and float(ours.state[q]["step"]) == 1.0


def test_a_pre_hook_may_adapt_the_state_dict_before_it_is_checked():
    opt, sd = torch_asgd_state()
    sd["param_groups"][0]["legacy_key"] = 1
    with pytest.raises(StateDictError, match="legacy_key"):
        opt.load_state_dict(sd)
    opt.register_load_state_dict_pre_hook(
        lambda o, s: {**s, "param_groups": [{k: v for k, v in g.items() if k != "legacy_key"}
                                            for g in s["param_groups"]]}  # fmt: skip
    )
    opt.load_state_dict(sd)
    assert "legacy_key" not in opt.param_groups[0]


def test_paddle_only_keys_are_refused_by_torch_and_empty_entries_mean_no_state():
    opt, sd = torch_asgd_state()
    with pytest.raises(StateDictError, match="'regularizer'"):
        opt.load_state_dict(edit(sd, group={"regularizer": ("l1", 0.1)}))
    with pytest.raises(StateDictError, match="'LR_Scheduler'"):
        opt.load_state_dict({**sd, "LR_Scheduler": {"last_epoch": 3}})
    with pytest.raises(StateDictError, match="no param group's 'params' lists parameter id 7"):
        opt.load_state_dict({**sd, "state": {7: sd["state"][0]}})
    opt.load_state_dict(edit(sd, group={"regularizer": None}))
    opt.load_state_dict({**sd, "state": {0: {}}})
    assert not opt.state[opt.param_groups[0]["params"][0]]


def test_paddle_asgd_master_weights_of_the_wrong_shape_are_refused():
    # They used to silently resize the model parameter.
    p = paddle.create_parameter([2, 3], "float16")
    opt = PaddleASGD(learning_rate=0.1, parameters=[p], multi_precision=True)
    (p.astype("float32") * 1.0).sum().backward()
    opt.step()
    sd = opt.state_dict()
    assert list(sd["master_weights"][0].shape) == [2, 3]
    bad = {**sd, "master_weights": {0: paddle.zeros([7], dtype="float32")}}
    with pytest.raises(StateDictError, match="master_weights"):
        opt.set_state_dict(bad)
    assert list(p.shape) == [2, 3]
    opt.set_state_dict(sd)  # the good one still loads


# --------------------------------------------------------------------------- SAG


def torch_sag_state() -> tuple[TorchSAG, dict[str, Any]]:
    p = torch.nn.Parameter(torch.ones(2, 3))
    opt = TorchSAG([p], lr=0.1, batch_num=3)
    p.grad = torch.ones(2, 3)
    opt.step()
    return opt, opt.state_dict()


def paddle_sag_state() -> tuple[PaddleSAG, dict[str, Any]]:
    p = paddle.create_parameter([2, 3], "float32")
    opt = PaddleSAG(learning_rate=0.1, batch_num=3, parameters=[p])
    (p * 1.0).sum().backward()
    opt.step()
    return opt, opt.state_dict()


BAD_SAG = [
    ({"state": {"m": -3}}, "'m'"),
    ({"state": {"m": 1.5}}, "'m'"),
    ({"state": {"d": "d"}}, "'d'"),
    ({"group": {"batch_num": 0}}, "'batch_num'"),
    ({"group": {"lr": -1.0}}, "'lr'"),
    ({"group": {"grad_clip": ("norm", -1.0)}}, "'grad_clip'"),
    ({"group": {"weight_decay": ("l3", 1.0)}}, "'weight_decay'"),
]


@pytest.mark.parametrize(("change", "key"), BAD_SAG, ids=[k + "-" + str(c) for c, k in BAD_SAG])
@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_sag_state_dicts_with_bad_values_are_refused_at_load(backend, change, key):
    opt, sd = torch_sag_state() if backend == "torch" else paddle_sag_state()
    with pytest.raises(StateDictError, match=key):
        opt.load_state_dict(edit(sd, **change))


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_sag_y_and_d_of_the_wrong_shape_are_refused(backend):
    opt, sd = torch_sag_state() if backend == "torch" else paddle_sag_state()
    zeros = torch.zeros if backend == "torch" else paddle.zeros
    with pytest.raises(StateDictError, match=r"'y'.*\[3, 2, 3\]"):
        opt.load_state_dict(edit(sd, state={"y": zeros([2, 2, 3])}))
    with pytest.raises(StateDictError, match=r"'d'.*\[2, 3\]"):
        opt.load_state_dict(edit(sd, state={"d": zeros([5])}))


def test_paddle_sag_d_of_the_wrong_size_never_reaches_paddles_kernel():
    # A short d used to make Paddle's asgd_ kernel read and write out of bounds (SIGSEGV).
    assert_refused_in_child(
        """
        import paddle
        from asgd_bridge.paddle import SAG
        from asgd_bridge.state_format import StateDictError
        p = paddle.create_parameter([1 << 20], "float32")
        opt = SAG(learning_rate=0.1, batch_num=2, parameters=[p])
        (p * 1.0).sum().backward()
        opt.step()
        sd = opt.state_dict()
        sd["state"][0]["d"] = paddle.zeros([4])
        try:
            opt.set_state_dict(sd)
        except StateDictError as e:
            print("REFUSED", type(e).__name__, e)
        else:
            (p * 1.0).sum().backward()
            opt.step()
            print("LOADED")
        """,
        "'d'",
        "4 elements",
    )


def test_a_torch_sag_checkpoint_with_a_bad_d_is_refused_by_the_converter(tmp_path):
    _, sd = torch_sag_state()
    sd["state"][0]["d"] = torch.zeros(4)
    torch.save(sd, tmp_path / "sag.pt")
    loaded = torch.load(tmp_path / "sag.pt", weights_only=True)
    with pytest.raises(CheckpointError, match=r"'d'") as info:
        convert_state_dict(loaded, to="paddle")
    assert isinstance(info.value, StateDictError)
    with pytest.raises(CheckpointError, match=r"'eta'"):
        _, asgd = torch_asgd_state()
        convert_state_dict(edit(asgd, state={"eta": torch.tensor(float("nan"))}), to="paddle")


# --------------------------------------------------------------------------- paddle.optimizer.ASGD -> SAG


def _paddle_model(seed: int) -> paddle.nn.Layer:
    paddle.seed(seed)
    return paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.Linear(4, 2))


def _train(model: paddle.nn.Layer, opt: Any, batches: list[np.ndarray]) -> None:
    for x in batches:
        loss = (model(paddle.to_tensor(x)) ** 2).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()


@pytest.mark.parametrize("weight_decay", [None, 0.01], ids=["plain", "L2"])
def test_paddle_asgd_state_continues_in_sag_exactly(tmp_path, weight_decay):
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((5, 3)).astype("float32") for _ in range(10)]
    hp = {"learning_rate": 0.05, "batch_num": 3, "weight_decay": weight_decay}

    reference = _paddle_model(1)
    ref_opt = paddle.optimizer.ASGD(parameters=reference.parameters(), **hp)
    _train(reference, ref_opt, batches)

    model = _paddle_model(1)
    theirs = paddle.optimizer.ASGD(parameters=model.parameters(), **hp)
    _train(model, theirs, batches[:5])
    paddle.save(theirs.state_dict(), str(tmp_path / "asgd.pdopt"))
    saved = paddle.load(str(tmp_path / "asgd.pdopt"))
    assert any(k.endswith("_y_0") for k in saved)

    ours = PaddleSAG(parameters=model.parameters(), **hp)
    ours.set_state_dict(saved)
    assert [ours.state_dict()["state"][i]["m"] for i in range(4)] == [5, 5, 5, 5]
    _train(model, ours, batches[5:])
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)


def test_paddle_asgd_state_of_other_parameters_is_refused_naming_them():
    model = _paddle_model(2)
    theirs = paddle.optimizer.ASGD(learning_rate=0.1, batch_num=2, parameters=model.parameters())
    _train(model, theirs, [np.ones((2, 3), dtype="float32")])
    sd = theirs.state_dict()
    other = _paddle_model(2)  # same shapes, new names (linear_2, linear_3)
    ours = PaddleSAG(learning_rate=0.1, batch_num=2, parameters=other.parameters())
    name = model[0].weight.name
    with pytest.raises(StateDictError, match=name):
        ours.set_state_dict(sd)
    assert ours.state_dict()["state"] == {}
    # a different batch_num is refused too, naming the parameter and y
    same = PaddleSAG(learning_rate=0.1, batch_num=3, parameters=model.parameters())
    with pytest.raises(ValueError, match=f"parameter 0 .*{name}"):
        same.set_state_dict(sd)
