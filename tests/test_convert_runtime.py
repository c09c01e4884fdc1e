"""Run-time helpers of converted programs: torch arguments at run time, param_groups for any optimizer."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from asgd_bridge.convert import runtime
from asgd_bridge.reference import asgd_init, asgd_step


def _param(values: list[float]) -> paddle.Tensor:
    p = paddle.create_parameter([len(values)], "float32")
    p.set_value(paddle.to_tensor(np.array(values, dtype="float32")))
    return p


def test_torch_asgd_kwargs_follow_the_rules() -> None:
    p = _param([1.0])
    kw = runtime.torch_asgd_kwargs([p], 0.1, 1e-3, foreach=True, maximize=True, capturable=False)
    assert kw == {
        "parameters": [p],
        "learning_rate": 0.1,
        "lambd": 1e-3,
        "weight_decay": 0.0,
        "maximize": True,
    }
    assert runtime.torch_asgd_kwargs([p])["learning_rate"] == 0.01


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [((), {}, "params"), (([],), {"momentum": 0.9}, "momentum"), (([], 0.1), {"lr": 0.2}, "multiple")],
)
def test_torch_asgd_kwargs_refuse_what_torch_refuses(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        runtime.torch_asgd_kwargs(*args, **kwargs)


def test_torch_param_groups() -> None:
    a, b = _param([1.0]), _param([2.0])
    assert runtime.torch_param_groups([("w", a), ("b", b)]) == [a, b]
    groups = runtime.torch_param_groups([{"params": [a], "lr": 0.5, "foreach": True}, {"params": [b]}])
    assert groups == [{"params": [a], "lr": 0.5}, {"params": [b]}]


def test_torch_asgd_class_runs_torch_algorithm() -> None:
    p = _param([1.0, -2.0])
    opt = runtime.ASGD([p], lr=0.1, lambd=0.01, t0=0, foreach=True)
    assert isinstance(opt, runtime.ASGD)
    ref, state = np.array([1.0, -2.0]), asgd_init(np.zeros(2), 0.1)
    for _ in range(3):
        loss = (p * p).sum()
        loss.backward()
        opt.step()
        opt.clear_grad()
        ref, state = asgd_step(ref, 2 * ref, state, lr=0.1, lambd=0.01, t0=0)
    np.testing.assert_allclose(p.numpy(), ref, rtol=1e-5)
    np.testing.assert_allclose(opt.state[p]["ax"].numpy(), state.ax, rtol=1e-5)


def test_param_groups_of_plain_paddle_sgd() -> None:
    p = _param([1.0])
    sgd = paddle.optimizer.SGD(learning_rate=0.5, parameters=[p])
    group = runtime.param_groups(sgd)[0]
    assert "t0" not in group and group["lr"] == 0.5
    group["lr"] = 0.25
    assert sgd.get_lr() == 0.25
    (p * 2).sum().backward()
    sgd.step()
    np.testing.assert_allclose(p.numpy(), [0.5])


def test_param_groups_of_averaged_sgd_are_its_own() -> None:
    p = _param([1.0])
    opt = runtime.ASGD([p], lr=0.1, t0=0)
    groups = runtime.param_groups(opt)
    assert groups is opt.param_groups and "t0" in groups[0]


def test_paddle_get_lr_and_set_lr_on_a_torch_optimizer() -> None:
    """``--to torch`` routes Paddle's get_lr/set_lr here: the global lr moves, groups keep their ratio."""
    import torch

    from asgd_bridge.convert import runtime
    from asgd_bridge.torch import SAG

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = SAG([{"params": [a]}, {"params": [b], "lr": 0.3}], lr=0.1)
    assert runtime.get_lr(opt) == 0.1
    runtime.set_lr(opt, 0.05)
    assert runtime.get_lr(opt) == 0.05
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.05 * (0.3 / 0.1)]


@pytest.mark.parametrize("kind", ["torch_sgd", "sag"])
def test_get_lr_follows_a_torch_scheduler(kind: str) -> None:
    """Paddle's get_lr() is the current lr: after a torch scheduler moved it, get_lr says so, and set_lr
    sets it (groups keep their ratio to the first group)."""
    import torch

    from asgd_bridge.torch import SAG

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    groups = [{"params": [a]}, {"params": [b], "lr": 0.3}]
    opt = torch.optim.SGD(groups, lr=0.1) if kind == "torch_sgd" else SAG(groups, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(2):
        opt.step()
        sched.step()
    assert runtime.get_lr(opt) == pytest.approx(0.025)
    runtime.set_lr(opt, 0.05)
    assert runtime.get_lr(opt) == pytest.approx(0.05)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.15])


def test_runtime_class_keeps_torchs_name_and_the_real_class() -> None:
    import pickle

    from asgd_bridge.paddle import ASGD

    cls = runtime.ASGD
    assert cls.__name__ == cls.__qualname__ == "ASGD" and cls.__module__ == "asgd_bridge.convert.runtime"
    assert runtime.TorchASGD is cls and issubclass(cls, ASGD)
    assert pickle.loads(pickle.dumps(cls)) is cls  # found by its name, as pickle looks classes up
    opt = cls([_param([1.0])], lr=0.1)
    assert type(opt).__name__ == "ASGD" and isinstance(opt, ASGD)
    calls = []
    original = ASGD.step
    try:
        ASGD.step = lambda self, *a, **k: calls.append(self) or original(self, *a, **k)  # what a patch does
        opt.step()
    finally:
        ASGD.step = original
    assert calls == [opt]


def _sgd(lr: float = 0.1, decay: float | None = 0.01) -> paddle.optimizer.SGD:
    params = [_param([1.0]), _param([2.0])]
    return paddle.optimizer.SGD(learning_rate=lr, parameters=params, weight_decay=decay)


def test_state_dict_of_a_paddle_sgd_has_torchs_layout() -> None:
    sd = runtime.state_dict(_sgd())
    assert sd["state"] == {}
    assert sd["param_groups"] == [{"lr": 0.1, "weight_decay": 0.01, "params": [0, 1]}]
    assert "t0" not in sd["param_groups"][0]  # the NT-ASGD phase test: still SGD
    assert runtime.state_dict(_sgd(decay=None))["param_groups"][0]["weight_decay"] == 0.0


def test_state_dict_of_averaged_sgd_is_its_own() -> None:
    opt = runtime.ASGD([_param([1.0])], lr=0.1, t0=0)
    assert runtime.state_dict(opt).keys() == opt.state_dict().keys()
    assert "t0" in runtime.state_dict(opt)["param_groups"][0]


def test_load_state_dict_restores_the_saved_lr_into_a_paddle_sgd() -> None:
    saved = runtime.state_dict(_sgd(lr=0.25))
    target = _sgd(lr=1.0)
    runtime.load_state_dict(target, saved)
    assert target.get_lr() == 0.25
    opt = runtime.ASGD([_param([1.0])], lr=0.1, t0=0)
    fresh = runtime.ASGD([_param([1.0])], lr=0.5, t0=0)
    runtime.load_state_dict(fresh, opt.state_dict())
    assert fresh.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize(
    "value",
    [np.float32(0.1), np.float64(0.1), np.array([0.1], dtype="float32"), paddle.to_tensor(0.1), 0.1],
    ids=["np.float32", "np.float64", "array1", "paddle0d", "float"],
)
def test_torch_lr_takes_tensors_and_numpy_scalars(value: object) -> None:
    lr = runtime.torch_lr(value)
    assert isinstance(lr, float) and abs(lr - 0.1) < 1e-7
    opt = runtime.ASGD([_param([1.0])], lr=value)
    assert abs(opt.param_groups[0]["lr"] - 0.1) < 1e-7


def test_torch_lr_leaves_other_values_for_the_optimizer_to_check() -> None:
    many = np.array([0.1, 0.2])
    assert runtime.torch_lr(many) is many
    with pytest.raises(ValueError, match="learning_rate"):
        runtime.ASGD([_param([1.0])], lr=many)


def test_defaults_are_the_constructor_values() -> None:
    from asgd_bridge.paddle import ASGD

    opt = ASGD(parameters=[_param([1.0])], learning_rate=0.1, lambd=0.0, t0=0)
    opt.param_groups[0]["lr"] = 0.5
    d = runtime.defaults(opt)
    assert (d["lr"], d["lambd"], d["t0"]) == (0.1, 0.0, 0.0)
    with pytest.raises(AttributeError, match="defaults"):
        runtime.defaults(object())
