"""Optimizer checkpoints across frameworks: train in one, convert, go on in the other, and land where a run
that never left the first framework lands (ASGD and SAG, with transposed nn.Linear weights)."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest
import torch

from asgd_bridge.checkpoint import CheckpointError, convert_state_dict, detect_kind, target_layout
from asgd_bridge.checkpoint_cli import register
from asgd_bridge.paddle import ASGD as PaddleASGD
from asgd_bridge.paddle import SAG as PaddleSAG
from asgd_bridge.torch import SAG as TorchSAG

paddle.set_device("cpu")

STEPS = 30
ASGD_HP = {"lr": 0.05, "lambd": 1e-3, "alpha": 0.75, "t0": 10.0, "weight_decay": 1e-3}
SAG_HP = {"lr": 0.05, "batch_num": 4, "weight_decay": 1e-3, "grad_clip": ("global_norm", 1.0)}


# --------------------------------------------------------------------------- twin models


def torch_model() -> torch.nn.Module:
    torch.manual_seed(0)
    # the middle layer is square, so only the model (not the shapes) says its weight is transposed
    return torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)
    )


def paddle_model() -> paddle.nn.Layer:
    return paddle.nn.Sequential(
        paddle.nn.Linear(4, 3),
        paddle.nn.Tanh(),
        paddle.nn.Linear(3, 3),
        paddle.nn.Tanh(),
        paddle.nn.Linear(3, 2),
    )


def copy_torch_to_paddle(tm: torch.nn.Module, pm: paddle.nn.Layer) -> None:
    for tp, pp in zip(tm.parameters(), pm.parameters(), strict=True):
        arr = tp.detach().numpy()
        pp.set_value(arr.T.copy() if arr.ndim == 2 else arr.copy())


def torch_weights(pm: paddle.nn.Layer) -> list[np.ndarray]:
    """Paddle parameters in torch's layout."""
    return [p.numpy().T if p.ndim == 2 else p.numpy() for p in pm.parameters()]


def batches(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32))
        for _ in range(n)
    ]


def train_torch(model: torch.nn.Module, opt: Any, data: list) -> None:
    for x, y in data:
        opt.zero_grad()
        loss = ((model(torch.tensor(x)) - torch.tensor(y)) ** 2).mean()
        loss.backward()
        opt.step()


def train_paddle(model: paddle.nn.Layer, opt: Any, data: list) -> None:
    for x, y in data:
        loss = ((model(paddle.to_tensor(x)) - paddle.to_tensor(y)) ** 2).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()


FIXES = {"immediate_lr": True, "bottou_average": True}


def make_torch_opt(kind: str, model: torch.nn.Module) -> Any:
    if kind == "asgd":
        return torch.optim.ASGD(model.parameters(), **ASGD_HP)
    if kind == "asgd-fixes":
        from asgd_bridge.torch import ASGD

        return ASGD(model.parameters(), **ASGD_HP, **FIXES)
    return TorchSAG(model.parameters(), **SAG_HP)


def make_paddle_opt(kind: str, model: paddle.nn.Layer) -> Any:
    hp = dict(SAG_HP if kind == "sag" else ASGD_HP)
    if kind == "asgd-fixes":
        hp.update(FIXES)
    lr = hp.pop("lr")
    cls = PaddleSAG if kind == "sag" else PaddleASGD
    return cls(learning_rate=lr, parameters=model.parameters(), **hp)


def close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))


def averaged(kind: str, state: dict, i: int, paddle_side: bool) -> np.ndarray | None:
    if kind == "sag":
        return None
    ax = state["state"][i]["ax"]
    ax = ax.numpy() if paddle_side else ax.detach().numpy()
    return ax.T if paddle_side and ax.ndim == 2 else ax


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("kind", ["asgd", "asgd-fixes", "sag"])
def test_torch_then_paddle_equals_torch_all_along(kind: str) -> None:
    data = batches(2 * STEPS, seed=1)
    whole = torch_model()
    whole_opt = make_torch_opt(kind, whole)
    train_torch(whole, whole_opt, data)

    first = torch_model()
    first_opt = make_torch_opt(kind, first)
    train_torch(first, first_opt, data[:STEPS])
    pm = paddle_model()
    copy_torch_to_paddle(first, pm)
    popt = make_paddle_opt(kind, pm)
    popt.set_state_dict(convert_state_dict(first_opt.state_dict(), to="paddle", target=pm))
    train_paddle(pm, popt, data[STEPS:])

    want = [p.detach().numpy() for p in whole.parameters()]
    assert not np.allclose(want[0], first.state_dict()["0.weight"].numpy())  # the second half moved it
    for got, w in zip(torch_weights(pm), want, strict=True):
        close(got, w)
    for i in range(len(want)):
        ax_p = averaged(kind, popt.state_dict(), i, paddle_side=True)
        if ax_p is not None:
            close(ax_p, averaged(kind, whole_opt.state_dict(), i, paddle_side=False))


@pytest.mark.parametrize("kind", ["asgd", "asgd-fixes", "sag"])
def test_paddle_then_torch_equals_paddle_all_along(kind: str) -> None:
    data = batches(2 * STEPS, seed=2)
    tm0 = torch_model()
    whole = paddle_model()
    copy_torch_to_paddle(tm0, whole)
    whole_opt = make_paddle_opt(kind, whole)
    train_paddle(whole, whole_opt, data)

    first = paddle_model()
    copy_torch_to_paddle(tm0, first)
    first_opt = make_paddle_opt(kind, first)
    train_paddle(first, first_opt, data[:STEPS])
    tm = torch_model()
    with torch.no_grad():
        for tp, w in zip(tm.parameters(), torch_weights(first), strict=True):
            tp.copy_(torch.tensor(w))
    topt = make_torch_opt(kind, tm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        topt.load_state_dict(convert_state_dict(first_opt.state_dict(), to="torch", target=tm))
    # converting the fixes towards torch says that only asgd_bridge.torch.ASGD honours them
    assert any("immediate_lr" in str(w.message) for w in caught) == (kind == "asgd-fixes")
    train_torch(tm, topt, data[STEPS:])

    for got, w in zip(tm.parameters(), torch_weights(whole), strict=True):
        close(got.detach().numpy(), w)
    for i in range(len(list(tm.parameters()))):
        ax_t = averaged(kind, topt.state_dict(), i, paddle_side=False)
        if ax_t is not None:
            close(ax_t, averaged(kind, whole_opt.state_dict(), i, paddle_side=True))


def test_converted_state_has_the_documented_formats() -> None:
    tm = torch_model()
    opt = torch.optim.ASGD(tm.parameters(), **ASGD_HP)
    train_torch(tm, opt, batches(3, seed=3))
    out = convert_state_dict(opt.state_dict(), to="paddle", target=paddle_model())
    entry = out["state"][0]
    assert isinstance(entry["step"], paddle.Tensor) and entry["step"].shape == []
    assert entry["step"].dtype == paddle.float32 and float(entry["step"]) == 3.0
    assert entry["ax"].shape == [4, 3]  # torch [3, 4] transposed
    group = out["param_groups"][0]
    assert not {"foreach", "differentiable", "capturable"} & set(group)
    assert group["immediate_lr"] is False and group["params"] == [0, 1, 2, 3, 4, 5]
    back = convert_state_dict(out, to="torch", target=tm)
    assert back["param_groups"][0]["foreach"] is None and back["param_groups"][0]["capturable"] is False
    torch.testing.assert_close(back["state"][0]["ax"], opt.state_dict()["state"][0]["ax"])
    assert back["state"][0]["step"].dtype == torch.float32


def test_sag_conversion_transposes_every_stored_gradient() -> None:
    tm = torch_model()
    opt = TorchSAG(tm.parameters(), lr=0.01, batch_num=3)
    train_torch(tm, opt, batches(2, seed=4))
    out = convert_state_dict(opt.state_dict(), to="paddle", target=paddle_model())
    y_t = opt.state_dict()["state"][0]["y"].numpy()
    assert out["state"][0]["y"].shape == [3, 4, 3] and out["state"][0]["m"] == 2
    np.testing.assert_array_equal(out["state"][0]["y"].numpy(), np.swapaxes(y_t, 1, 2))
    assert out["param_groups"][0]["batch_num"] == 3


# --------------------------------------------------------------------------- layout and errors


def test_target_layout_finds_linear_weights_in_both_frameworks() -> None:
    shapes, linear = target_layout(torch_model())
    assert shapes[2] == (3, 3) and linear == {0, 2, 4}
    shapes, linear = target_layout(paddle_model())
    assert shapes[0] == (4, 3) and linear == {0, 2, 4}
    assert target_layout([(2, 3), [4]]) == ([(2, 3), (4,)], set())


def _trained_sag_state() -> dict:
    p = [torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(3))]
    opt = TorchSAG(p, lr=0.1, batch_num=2)
    for q in p:
        q.grad = torch.ones_like(q)
    opt.step()
    return opt.state_dict()


def test_shape_mismatch_names_parameter_and_both_shapes() -> None:
    with pytest.raises(CheckpointError, match=r"parameter 1: .*\[3\].*\[4\]"):
        convert_state_dict(_trained_sag_state(), to="paddle", target=[(3, 2), (4,)])


def test_parameter_count_mismatch_says_both_counts() -> None:
    with pytest.raises(CheckpointError, match="2 parameters but the target has 3"):
        convert_state_dict(_trained_sag_state(), to="paddle", target=[(3, 2), (3,), (1,)])


def test_unknown_format_says_what_was_expected() -> None:
    with pytest.raises(CheckpointError, match="expected an optimizer state dict"):
        detect_kind({"weights": 1})
    p = paddle.create_parameter([2], "float32")
    theirs = paddle.optimizer.ASGD(parameters=[p], batch_num=2)
    (p * 2).sum().backward()
    theirs.step()
    with pytest.raises(CheckpointError, match=r"paddle.optimizer.ASGD's name-keyed"):
        convert_state_dict(theirs.state_dict(), to="torch")


def test_square_shapes_without_a_model_warn_and_explicit_transpose_flips() -> None:
    p = [torch.nn.Parameter(torch.arange(4.0).reshape(2, 2))]
    opt = TorchSAG(p, lr=0.1)
    p[0].grad = torch.arange(4.0).reshape(2, 2)
    opt.step()
    with pytest.warns(UserWarning, match="square shape"):
        kept = convert_state_dict(opt.state_dict(), to="paddle", target=[(2, 2)])
    np.testing.assert_array_equal(kept["state"][0]["d"].numpy(), p[0].grad.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flipped = convert_state_dict(opt.state_dict(), to="paddle", target=[(2, 2)], transpose=[0])
    np.testing.assert_array_equal(flipped["state"][0]["d"].numpy(), p[0].grad.numpy().T)


# --------------------------------------------------------------------------- CLI


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="asgd-bridge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_torch_file_to_paddle_file_and_back(tmp_path: Path) -> None:
    tm = torch_model()
    opt = torch.optim.ASGD(tm.parameters(), **ASGD_HP)
    train_torch(tm, opt, batches(4, seed=5))
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    pm = paddle_model()
    paddle.save(pm.state_dict(), str(tmp_path / "model.pdparams"))
    assert cli(["checkpoint", "convert", str(tmp_path / "opt.pt"), str(tmp_path / "opt.pdopt"),
                "--target-model", str(tmp_path / "model.pdparams"), "--transpose", "2"]) == 0  # fmt: skip
    loaded = paddle.load(str(tmp_path / "opt.pdopt"))
    popt = make_paddle_opt("asgd", pm)
    popt.set_state_dict(loaded)
    np.testing.assert_allclose(
        popt.state_dict()["state"][0]["ax"].numpy(), opt.state_dict()["state"][0]["ax"].numpy().T
    )
    # back, with explicit shapes and --to (a state dict or shapes cannot tell that the square middle
    # weight is a Linear's: --transpose says so, both ways)
    shapes = "[[3, 4], [3], [3, 3], [3], [2, 3], [2]]"
    assert cli(["checkpoint", "convert", str(tmp_path / "opt.pdopt"), str(tmp_path / "again.bin"),
                "--to", "torch", "--shapes", shapes, "--transpose", "2"]) == 0  # fmt: skip
    again = torch.load(tmp_path / "again.bin", weights_only=True)
    for i, entry in opt.state_dict()["state"].items():
        torch.testing.assert_close(again["state"][i]["ax"], entry["ax"])
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "again.bin",
        "model.pdparams",
        "opt.pdopt",
        "opt.pt",
    ]


def test_cli_errors_leave_no_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.save(_trained_sag_state(), tmp_path / "sag.pt")
    out = tmp_path / "sag.pdopt"
    assert (
        cli(["checkpoint", "convert", str(tmp_path / "sag.pt"), str(out), "--shapes", "[[3, 3], [3]]"]) == 2
    )
    assert "parameter 0" in capsys.readouterr().err
    torch.save({"weights": torch.ones(2)}, tmp_path / "model.pt")
    assert cli(["checkpoint", "convert", str(tmp_path / "model.pt"), str(out)]) == 2
    assert "expected an optimizer state dict" in capsys.readouterr().err
    assert cli(["checkpoint", "convert", str(tmp_path / "sag.pt"), str(tmp_path / "x.txt")]) == 2
    assert "--to" in capsys.readouterr().err
    assert cli(["checkpoint", "convert", str(tmp_path / "missing.pt"), str(out)]) == 2
    assert sorted(f.name for f in tmp_path.iterdir()) == ["model.pt", "sag.pt"]


def test_cli_main_dispatches_checkpoint(tmp_path: Path) -> None:
    from asgd_bridge.cli import main

    torch.save(_trained_sag_state(), tmp_path / "sag.pt")
    assert main(["checkpoint", "convert", str(tmp_path / "sag.pt"), str(tmp_path / "sag.pdopt")]) == 0
    loaded = paddle.load(str(tmp_path / "sag.pdopt"))
    assert loaded["state"][0]["y"].shape == [2, 2, 3] and loaded["param_groups"][0]["batch_num"] == 2


# --------------------------------------------------------------------------- explicit name map


class PaddleReordered(paddle.nn.Layer):
    """The torch Sequential(Linear(4, 3), Tanh, Linear(3, 2)) with its layers declared in the other
    order, so its parameters come out (and the optimizer numbers them) as out.*, hidden.*."""

    def __init__(self) -> None:
        super().__init__()
        self.out = paddle.nn.Linear(3, 2)
        self.hidden = paddle.nn.Linear(4, 3)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.out(paddle.tanh(self.hidden(x)))


NAME_MAP = {
    "0.weight": "hidden.weight",
    "0.bias": "hidden.bias",
    "2.weight": "out.weight",
    "2.bias": "out.bias",
}


def test_name_map_pairs_parameters_declared_in_another_order() -> None:
    def tmodel() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))

    data = batches(2 * STEPS, seed=6)
    whole = tmodel()
    whole_opt = torch.optim.ASGD(whole.parameters(), **ASGD_HP)
    train_torch(whole, whole_opt, data)
    first = tmodel()
    first_opt = torch.optim.ASGD(first.parameters(), **ASGD_HP)
    train_torch(first, first_opt, data[:STEPS])

    pm = PaddleReordered()
    tnamed = dict(first.named_parameters())
    for pname, p in pm.named_parameters():
        src = next(k for k, v in NAME_MAP.items() if v == pname)
        arr = tnamed[src].detach().numpy()
        p.set_value(arr.T.copy() if arr.ndim == 2 else arr.copy())
    with pytest.raises(CheckpointError, match="neither equal nor transposed"):  # by order it cannot fit
        convert_state_dict(first_opt.state_dict(), to="paddle", target=pm)
    sd = convert_state_dict(first_opt.state_dict(), to="paddle", target=pm, source=first, name_map=NAME_MAP)
    popt = PaddleASGD(learning_rate=ASGD_HP["lr"], parameters=pm.parameters(), **{
        k: v for k, v in ASGD_HP.items() if k != "lr"})  # fmt: skip
    popt.set_state_dict(sd)
    train_paddle(pm, popt, data[STEPS:])
    want = dict(whole.named_parameters())
    for pname, p in pm.named_parameters():
        src = next(k for k, v in NAME_MAP.items() if v == pname)
        got = p.numpy().T if p.ndim == 2 else p.numpy()
        close(got, want[src].detach().numpy())


def test_name_and_index_map_errors() -> None:
    sd = _trained_sag_state()  # two parameters: [2, 3], [3]
    with pytest.raises(CheckpointError, match="needs source= and target="):
        convert_state_dict(sd, to="paddle", name_map={"w": "w"})
    with pytest.raises(CheckpointError, match=r"parameter 1 \('b'\) maps to 'bias'"):
        convert_state_dict(sd, to="paddle", source=["w", "b"], target=["w", "c"], name_map={"b": "bias"})
    with pytest.raises(CheckpointError, match=r"source parameter\(s\) \['nope'\]"):
        convert_state_dict(sd, to="paddle", source=["w", "b"], target=["w", "b"], name_map={"nope": "w"})
    with pytest.raises(CheckpointError, match="parameters 0 and 1 to the same target parameter 0"):
        convert_state_dict(sd, to="paddle", index_map={1: 0})
    with pytest.raises(CheckpointError, match="outside 0..1"):
        convert_state_dict(sd, to="paddle", index_map={0: 5, 1: 0})
    swapped = convert_state_dict(sd, to="paddle", index_map={0: 1, 1: 0})
    assert swapped["state"][1]["d"].shape == [2, 3] and swapped["param_groups"][0]["params"] == [0, 1]
    # a shape mismatch names the target parameter when the target has names
    pm = {"w": paddle.ones([3, 3]), "b": paddle.ones([3])}
    with pytest.raises(CheckpointError, match=r"parameter 0 \('w'\): .*\[2, 3\].*\[3, 3\]"):
        convert_state_dict(sd, to="paddle", target=pm)


def test_cli_name_map(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    opt = torch.optim.ASGD(tm.parameters(), **ASGD_HP)
    train_torch(tm, opt, batches(3, seed=7))
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    torch.save(tm.state_dict(), tmp_path / "model.pt")
    pm = PaddleReordered()
    paddle.save(pm.state_dict(), str(tmp_path / "model.pdparams"))
    (tmp_path / "names.json").write_text(json.dumps(NAME_MAP))
    argv = ["checkpoint", "convert", str(tmp_path / "opt.pt"), str(tmp_path / "opt.pdopt"),
            "--target-model", str(tmp_path / "model.pdparams")]  # fmt: skip
    assert cli(argv) == 2  # by order the shapes do not fit
    argv += ["--source-model", str(tmp_path / "model.pt"), "--name-map", str(tmp_path / "names.json")]
    assert cli(argv) == 0
    out = paddle.load(str(tmp_path / "opt.pdopt"))
    # target position 2 is hidden.weight [4, 3]: torch's 0.weight [3, 4], transposed
    np.testing.assert_array_equal(out["state"][2]["ax"].numpy(), opt.state_dict()["state"][0]["ax"].numpy().T)
    np.testing.assert_array_equal(out["state"][1]["ax"].numpy(), opt.state_dict()["state"][3]["ax"].numpy())


# --------------------------------------------------------------------------- regularisers and clipping


def _paddle_asgd_with(pm: paddle.nn.Layer, **kw: Any) -> PaddleASGD:
    ps = list(pm.parameters())
    groups = kw.pop("groups", None) or [{"params": ps[:2]}, {"params": ps[2:]}]
    hp = {k: v for k, v in ASGD_HP.items() if k not in ("lr", "weight_decay")}
    return PaddleASGD(learning_rate=0.02, parameters=groups, **hp, **kw)


@pytest.mark.parametrize("maximize", [False, True])
def test_paddle_l2decay_becomes_torch_weight_decay_and_the_run_continues_exactly(maximize: bool) -> None:
    # An L2Decay object used to be saved as weight_decay 0.0, and the conversion dropped the decay.
    data = batches(2 * STEPS, seed=7)
    tm0 = torch_model()

    def build(pm: paddle.nn.Layer) -> PaddleASGD:
        ps = list(pm.parameters())
        groups = [
            {"params": ps[:2]},
            {"params": ps[2:], "weight_decay": paddle.regularizer.L2Decay(0.05)},
        ]
        return _paddle_asgd_with(
            pm, groups=groups, weight_decay=paddle.regularizer.L2Decay(0.2), maximize=maximize
        )

    whole = paddle_model()
    copy_torch_to_paddle(tm0, whole)
    whole_opt = build(whole)
    train_paddle(whole, whole_opt, data)

    first = paddle_model()
    copy_torch_to_paddle(tm0, first)
    first_opt = build(first)
    train_paddle(first, first_opt, data[:STEPS])
    converted = convert_state_dict(first_opt.state_dict(), to="torch", target=torch_model())
    assert [g["weight_decay"] for g in converted["param_groups"]] == [0.2, 0.05]
    assert not {"regularizer", "grad_clip"} & set(converted["param_groups"][0])

    tm = torch_model()
    with torch.no_grad():
        for tp, w in zip(tm.parameters(), torch_weights(first), strict=True):
            tp.copy_(torch.tensor(w))
    tps = list(tm.parameters())
    topt = torch.optim.ASGD([{"params": tps[:2]}, {"params": tps[2:]}], lr=0.02)
    topt.load_state_dict(converted)
    assert [g["weight_decay"] for g in topt.param_groups] == [0.2, 0.05]
    train_torch(tm, topt, data[STEPS:])
    for got, w in zip(tm.parameters(), torch_weights(whole), strict=True):
        close(got.detach().numpy(), w)
    # without the decay the run ends elsewhere: the test sees it
    no_decay = paddle_model()
    copy_torch_to_paddle(tm0, no_decay)
    train_paddle(no_decay, _paddle_asgd_with(no_decay, maximize=maximize), data)
    assert not np.allclose(torch_weights(no_decay)[0], torch_weights(whole)[0], rtol=1e-3)


def test_l2_regulariser_adds_to_the_float_weight_decay_and_torch_to_paddle_keeps_the_float() -> None:
    pm = paddle_model()
    sd = _paddle_asgd_with(pm).state_dict()
    sd["param_groups"][0].update(weight_decay=0.002, regularizer=("l2", 0.01))
    sd["param_groups"][1].update(regularizer=["l2", 0.03])  # paddle.load may give lists
    out = convert_state_dict(sd, to="torch")
    assert out["param_groups"][0]["weight_decay"] == pytest.approx(0.012)
    assert out["param_groups"][1]["weight_decay"] == pytest.approx(0.03)

    tm = torch_model()
    topt = torch.optim.ASGD(tm.parameters(), **ASGD_HP)
    train_torch(tm, topt, batches(2, seed=8))
    back = convert_state_dict(topt.state_dict(), to="paddle", target=pm)
    group = back["param_groups"][0]
    assert group["weight_decay"] == ASGD_HP["weight_decay"] and group["regularizer"] is None
    # loaded into a Paddle ASGD built with an L2Decay, the torch checkpoint's decay is the only one
    popt = PaddleASGD(parameters=pm.parameters(), weight_decay=paddle.regularizer.L2Decay(0.5))
    popt.set_state_dict(back)
    g = popt.state_dict()["param_groups"][0]
    assert g["regularizer"] is None and g["weight_decay"] == ASGD_HP["weight_decay"]


def test_l1_regulariser_or_grad_clip_refuse_towards_torch_unless_dropped() -> None:
    pm = paddle_model()
    ps = list(pm.parameters())
    l1 = _paddle_asgd_with(
        pm,
        groups=[{"params": ps[:2]}, {"params": ps[2:], "weight_decay": paddle.regularizer.L1Decay(0.01)}],
    )
    with pytest.raises(CheckpointError, match=r"param group 1 has an L1Decay\(0.01\)") as err:
        convert_state_dict(l1.state_dict(), to="torch")
    assert isinstance(err.value, ValueError) and "drop_unsupported=True" in str(err.value)
    with pytest.warns(UserWarning, match="param group 1: dropped an L1Decay"):
        out = convert_state_dict(l1.state_dict(), to="torch", drop_unsupported=True)
    assert [g["weight_decay"] for g in out["param_groups"]] == [0.0, 0.0]

    clipped = _paddle_asgd_with(pm, grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
    with pytest.raises(CheckpointError, match="param group 0 has gradient clipping"):
        convert_state_dict(clipped.state_dict(), to="torch")
    # an L2 regulariser next to a clip: the L2 part still converts when the clip is dropped
    both = _paddle_asgd_with(
        pm, grad_clip=paddle.nn.ClipGradByValue(0.5), weight_decay=paddle.regularizer.L2Decay(0.1)
    )
    with pytest.warns(UserWarning, match="gradient clipping"):
        out = convert_state_dict(both.state_dict(), to="torch", drop_unsupported=True)
    assert [g["weight_decay"] for g in out["param_groups"]] == [0.1, 0.1]
    with pytest.raises(CheckpointError, match="drop_unsupported"):
        convert_state_dict(both.state_dict(), to="torch", drop_unsupported="yes")
    # towards Paddle nothing is refused: the regulariser travels as it is
    again = convert_state_dict(l1.state_dict(), to="paddle")
    assert [g["regularizer"] for g in again["param_groups"]] == [None, ("l1", 0.01)]


def test_cli_refuses_an_l1_regulariser_and_drop_unsupported_converts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pm = paddle_model()
    opt = _paddle_asgd_with(pm, weight_decay=paddle.regularizer.L1Decay(0.01))
    train_paddle(pm, opt, batches(2, seed=9))
    paddle.save(opt.state_dict(), str(tmp_path / "opt.pdopt"))
    out = tmp_path / "opt.pt"
    assert cli(["checkpoint", "convert", str(tmp_path / "opt.pdopt"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "param group 0 has an L1Decay(0.01)" in err and "--drop-unsupported" in err
    assert not out.exists()
    assert cli(["checkpoint", "convert", str(tmp_path / "opt.pdopt"), str(out), "--drop-unsupported"]) == 0
    assert "warning: param group 0: dropped an L1Decay" in capsys.readouterr().err
    assert torch.load(out, weights_only=True)["param_groups"][0]["weight_decay"] == 0.0
