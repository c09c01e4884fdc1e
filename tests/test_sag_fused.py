"""The one-pass SAG kernel (``sag_cpu.c``) behind ``asgd_bridge.torch.SAG`` and ``asgd_bridge.paddle.SAG``.

The table rows of both SAG backends (``optim_info``, run by ``test_backends.py``: every case against
the reference at rtol 1e-12 and against paddle.optimizer.ASGD at 1e-5) run the kernel, with no
fallback warning -- shown here by counting launches. Here: the kernel against each class's own
framework-op path (the foreach path in torch, Paddle's ops; forced by ``_FORCE_FOREACH`` /
``_FORCE_FALLBACK``), float64 at 1e-12 and float32 at 1e-6 of the largest magnitude, ``m`` exactly;
no host read in a step; bad state in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import paddle
import pytest
import torch
from optim_info import BY_NAME, SAG_INFO, assert_close, case_id, cases_for, make_problem, record_launches

from asgd_bridge._native import sag as native_sag
from asgd_bridge.paddle import _fused as paddle_fused
from asgd_bridge.torch import _sag_fused as torch_fused

FORCE = {"torch.SAG": (torch_fused, "_FORCE_FOREACH"), "paddle.SAG": (paddle_fused, "_FORCE_FALLBACK")}


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(dtype, tensors) of every SAG kernel launch, in order."""
    return record_launches(monkeypatch, native_sag, "sag_step")


def _rows() -> list[Any]:
    return [
        pytest.param(name, case.kwargs, dtype, id=f"{name}-{case.id}-{dtype}")
        for name in FORCE
        for case in [c for c in SAG_INFO.cases if c in cases_for(name)]
        for dtype in ("float32", "float64")
    ]


@pytest.mark.parametrize(("name", "case", "dtype"), _rows())
def test_table_rows_run_the_kernel_and_match_the_op_path(
    name: str, case: dict, dtype: str, launches: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = BY_NAME[name]
    p0s, grads = make_problem(SAG_INFO, seed=len(case_id(case)), never=True)
    lrs = SAG_INFO.lrs(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback: every tensor takes the kernel
        fused = backend.make(p0s, case, dtype).run(grads, lrs)
    assert launches and all(d == dtype for d, _ in launches)
    stepped = sum(g is not None for row in grads for g in row)
    assert sum(k for _, k in launches) == stepped
    module, flag = FORCE[name]
    monkeypatch.setattr(module, flag, True)
    ops = backend.make(p0s, case, dtype).run(grads, lrs)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    for t, ((fp, fs), (op, os_)) in enumerate(zip(fused, ops, strict=True), start=1):
        for i, (u, v) in enumerate(zip(fp, op, strict=True)):
            assert_close(u, v, rtol, f"param {i} after step {t}")
        for i, (u, v) in enumerate(zip(fs, os_, strict=True)):
            if u is None or v is None:
                assert u is None and v is None
                continue
            for key in ("d", "y"):
                assert_close(u[key], v[key], rtol, f"{key} {i} after step {t}")
            assert int(u["m"]) == int(v["m"])


def test_torch_groups_launch_once_per_dtype(launches: list) -> None:
    from asgd_bridge.torch import SAG

    ps = [torch.nn.Parameter(torch.ones(4, dtype=dt)) for dt in (torch.float32, torch.float64) * 3]
    opt = SAG(ps, lr=0.1, batch_num=2)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    assert sorted(launches) == [("float32", 3), ("float64", 3)]


def test_steps_read_nothing_back(monkeypatch: pytest.MonkeyPatch, launches: list) -> None:
    from asgd_bridge.paddle import SAG as PaddleSAG
    from asgd_bridge.torch import SAG as TorchSAG

    tp = [torch.nn.Parameter(torch.ones(3, 4)), torch.nn.Parameter(torch.ones(5))]
    topt = TorchSAG(tp, lr=0.1, batch_num=3, grad_clip=("global_norm", 1.0), weight_decay=("l1", 0.01))
    pp = [paddle.create_parameter([3, 4], "float32"), paddle.create_parameter([5], "float32")]
    popt = PaddleSAG(learning_rate=0.1, batch_num=3, parameters=pp, weight_decay=0.01)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("host read in SAG.step")

    for _ in range(4):
        for p in tp:
            p.grad = torch.full_like(p, 0.5)
        for p in pp:
            p.grad = paddle.full(p.shape, 0.5)
        with monkeypatch.context() as mp:
            for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
                mp.setattr(torch.Tensor, name, refuse)
            for name in ("item", "numpy", "tolist", "__float__", "__int__", "__bool__"):
                mp.setattr(paddle.Tensor, name, refuse)
            topt.step()
            popt.step()
    assert launches == [("float32", 2), ("float32", 2)] * 4  # torch: one per group; Paddle: one per step


# --------------------------------------------------------------------------- bad state, in a child

TORCH_CHILD = """
import json, warnings
import torch
from asgd_bridge.torch import SAG, _sag_fused

def setup():
    p = torch.nn.Parameter(torch.linspace(-1, 1, 2048).reshape(64, 32))
    opt = SAG([p], lr=0.1, batch_num=2)
    p.grad = torch.ones_like(p)
    opt.step()
    p.grad = torch.ones_like(p)
    return p, opt

out = {}
for name, line in EDITS.items():
    results = []
    for force in (True, False):  # the foreach path on the edited state, then the kernel's caller
        p, opt = setup()
        exec(line)
        _sag_fused._FORCE_FOREACH = force
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                opt.step()
                results.append(p.detach().clone())
            except Exception as e:
                results.append(type(e).__name__)
        _sag_fused._FORCE_FOREACH = False
    same = results[0] == results[1] if isinstance(results[0], str) else bool(torch.equal(*results))
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    out[name] = {"warnings": msgs, "same": same}
print(json.dumps(out))
"""

PADDLE_CHILD = """
import json, warnings
import numpy as np
import paddle
from asgd_bridge.paddle import SAG

def setup():
    init = paddle.nn.initializer.Assign(np.linspace(-1, 1, 2048, dtype=np.float32).reshape(64, 32))
    p = paddle.create_parameter([64, 32], "float32", default_initializer=init)
    opt = SAG(learning_rate=0.1, batch_num=2, parameters=[p])
    p.grad = paddle.ones(p.shape)
    opt.step()
    p.grad = paddle.ones(p.shape)
    return p, opt

out = {}
for name, line in EDITS.items():
    p, opt = setup()
    st = opt._sag_state[0]
    exec(line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            opt.step()
            error = None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    out[name] = {"warnings": msgs, "error": error}
print(json.dumps(out))
"""


def _child(code: str, edits: dict[str, str]) -> dict:
    """Run ``code`` with ``EDITS`` in a fresh interpreter; a signal death fails the test."""
    src = f"EDITS = {edits!r}\n" + textwrap.dedent(code)
    res = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=240)
    assert res.returncode >= 0, f"child killed by signal {-res.returncode}:\n{res.stderr[-3000:]}"
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_torch_state_the_kernel_cannot_take_goes_to_foreach_with_one_warning() -> None:
    """Edited state the kernel must not see: the foreach path runs it (the same result, or the same
    exception), after one warning naming the reason."""
    edits = {
        "d-strided": "opt.state[p]['d'] = torch.zeros(64, 64)[:, ::2]",
        "y-transposed": "opt.state[p]['y'] = opt.state[p]['y'].transpose(1, 2).contiguous().transpose(1, 2)",
        "d-short": "opt.state[p]['d'] = torch.zeros(8)",
        "grad-transposed": "p.grad = torch.ones(32, 64).t()",
    }
    reasons = {
        "d-strided": "state 'd' is not contiguous",
        "y-transposed": "state 'y' is not contiguous",
        "d-short": "state 'd' has 8 elements",
        "grad-transposed": "the gradient is not contiguous",
    }
    out = _child(TORCH_CHILD, edits)
    for name, reason in reasons.items():
        assert len(out[name]["warnings"]) == 1 and reason in out[name]["warnings"][0], (name, out[name])
        assert out[name]["same"], (name, out[name])


def test_paddle_state_the_kernel_cannot_take() -> None:
    """A state of another size raises naming the parameter; a strided one goes to Paddle's ops (or
    their own Python error) after one warning."""
    out = _child(PADDLE_CHILD, {
        "d-short": "st['d'] = paddle.zeros([8])",
        "y-short": "st['y'] = paddle.zeros([2, 8])",
        "d-strided": "st['d'] = paddle.zeros([64, 64])[:, ::2]",
        "d-aliases-p": "st['d'] = p",
    })  # fmt: skip
    for name in ("d-short", "y-short"):
        error = out[name]["error"] or ""
        assert error.startswith("ValueError: "), (name, out[name])
        assert "of parameter 'create_parameter_" in error, (name, out[name])
    strided = out["d-strided"]
    assert len(strided["warnings"]) == 1 and "state 'd' is not contiguous" in strided["warnings"][0], strided
    aliased = out["d-aliases-p"]
    assert aliased["error"] is None and len(aliased["warnings"]) == 1, aliased
    assert "(value, gradient, d, y) overlap" in aliased["warnings"][0], aliased
