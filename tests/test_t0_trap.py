"""The t0 trap: reading averages before averaging has started warns once, in both frameworks."""

from __future__ import annotations

import warnings

import numpy as np
import paddle
import pytest
import torch

from asgd_bridge.paddle import ASGD as PaddleASGD
from asgd_bridge.torch import ASGD as TorchASGD


def torch_run(steps, **hp):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = TorchASGD(model.parameters(), lr=0.05, **hp)
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, opt


def paddle_run(steps, **hp):
    paddle.seed(0)
    model = paddle.nn.Linear(3, 2)
    opt = PaddleASGD(learning_rate=0.05, parameters=model.parameters(), **hp)
    rng = np.random.default_rng(0)
    x, y = (
        paddle.to_tensor(rng.normal(size=(8, 3)).astype("float32")),
        paddle.to_tensor(rng.normal(size=(8, 2)).astype("float32")),
    )
    for _ in range(steps):
        paddle.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.clear_grad()
    return model, opt


RUNS = {"torch": torch_run, "paddle": paddle_run}
READS = {
    "averaged_parameters": lambda model, opt: opt.averaged_parameters(),
    "swap_averaged": lambda model, opt: opt.swap_averaged().__enter__(),
    "averaged_state_dict": lambda model, opt: opt.averaged_state_dict(model),
}


@pytest.mark.parametrize("backend", RUNS)
@pytest.mark.parametrize("read", READS)
def test_default_t0_warns_once_naming_t0_and_the_step(backend, read):
    model, opt = RUNS[backend](3)  # torch's default t0=1e6
    with pytest.warns(
        UserWarning, match=r"averaging has not started \(t0=1e\+06, step 3.*t0=0.*NTASGD"
    ) as rec:
        READS[read](model, opt)
    assert len([w for w in rec if "t0=" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # once per optimizer
        opt.averaged_parameters()
    # and it is true: ax is the last iterate
    for p, ax in zip(model.parameters(), opt.averaged_parameters(), strict=True):
        np.testing.assert_array_equal(np.asarray(ax.detach().numpy()), np.asarray(p.detach().numpy()))


@pytest.mark.parametrize("backend", RUNS)
def test_t0_zero_after_two_steps_does_not_warn(backend):
    model, opt = RUNS[backend](2, t0=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        opt.averaged_parameters()
        opt.averaged_state_dict(model)
        with opt.swap_averaged():
            pass


@pytest.mark.parametrize("backend", RUNS)
def test_warns_until_the_step_passes_t0_and_not_after(backend):
    model, opt = RUNS[backend](3, t0=3)  # step 3 <= t0: not started
    with pytest.warns(UserWarning, match=r"t0=3, step 3"):
        opt.averaged_parameters()
    model, opt = RUNS[backend](4, t0=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        opt.averaged_parameters()


@pytest.mark.parametrize("run", [torch_run, paddle_run], ids=["torch", "paddle"])
@pytest.mark.parametrize("what", ["swap_averaged", "averaged_parameters", "averaged_state_dict"])
def test_the_warnings_point_at_the_callers_line(run, what) -> None:
    # Both warnings (t0 trap; a parameter never stepped) are attributed to the line that read the
    # averages, not to averaging.py or contextlib (swap_averaged is a context manager).
    model, opt = run(3)  # default t0: the trap
    frozen = model.bias if hasattr(model, "bias") else None
    unstepped = type(opt)([frozen], lr=0.05) if run is torch_run else type(opt)(
        learning_rate=0.05, parameters=[frozen]
    )
    for o in (opt, unstepped):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if what == "swap_averaged":
                with o.swap_averaged():
                    pass
            elif what == "averaged_parameters":
                o.averaged_parameters()
            else:
                o.averaged_state_dict(model)
        assert caught, what
        assert {w.filename for w in caught} == {__file__}, [(w.filename, str(w.message)) for w in caught]
