"""asgd_bridge.paddle.ASGD's one-pass CPU kernel (asgd_bridge/paddle/_fused.py).

Tolerances (as for the torch caller, see test_fused.py and docs/benchmarks.md):

* the table rows of ``paddle.ASGD`` (``optim_info``, run by ``test_backends.py``) run the kernel
  with no fallback warning -- shown here by counting launches -- so float64 vs the reference at
  rtol 1e-12 and float32 vs torch.optim.ASGD at 1e-5 are the table's checks on the kernel;
* float32/float64 vs Paddle's ops (the non-fused path, forced by ``_FORCE_FALLBACK``): 1e-6 / 1e-12
  relative to the largest magnitude, the scalar state exactly (the same host formula);
* bfloat16/float16, with and without ``multi_precision``: within one ulp of the float64 reference
  rounded to the storage dtype after every step (for the master: the reference's weight itself).

Bad inputs that could make the kernel read or write out of bounds run in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import numpy as np
import paddle
import pytest
from optim_info import ASGD_INFO, BY_NAME, assert_close, case_id, cases_for, make_problem, record_launches

from asgd_bridge import reference as ref
from asgd_bridge.paddle import ASGD, _fused

BACKEND = BY_NAME["paddle.ASGD"]
CASES = [c.kwargs for c in cases_for("paddle.ASGD")]


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """``(dtype, tensors)`` of every kernel launch of the Paddle caller, in order."""
    return record_launches(monkeypatch, _fused._kernel, "asgd_update")


def _runs(case: dict, dtype: str) -> tuple[list, list, int]:
    """The table's problem run by the kernel and by Paddle's ops; the launches the first made."""
    p0s, grads = make_problem(ASGD_INFO, seed=len(case_id(case)), never=True)
    lrs = ASGD_INFO.lrs(case)
    out = []
    for force in (False, True):
        _fused._FORCE_FALLBACK = force
        try:
            out.append(BACKEND.make(p0s, case, dtype).run(grads, lrs))
        finally:
            _fused._FORCE_FALLBACK = False
    stepped = sum(g is not None for row in grads[1:] for g in row)  # steps after each first step
    return out[0], out[1], stepped


def _rows() -> list[Any]:
    out = []
    for case in CASES:
        fixes = [{}] if {"grad_clip", "regularizer"} & set(case) else [{}, *ASGD_INFO.fixes]
        for fix in fixes:
            for dtype in ("float32", "float64"):
                clip = case.get("grad_clip")
                if dtype == "float64" and clip is not None and clip[0] == "norm":
                    continue  # Paddle's ClipGradByNorm has no float64 CPU kernel (test_backends' xfail)
                out.append(pytest.param({**case, **fix}, dtype, id=f"{case_id({**case, **fix})}-{dtype}"))
    return out


@pytest.mark.parametrize(("case", "dtype"), _rows())
def test_table_rows_run_the_kernel_and_match_paddle_ops(case: dict, dtype: str, launches: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback: every parameter takes the kernel
        fused, ops, stepped = _runs(case, dtype)
    # one launch per step (every parameter of a dtype in it), each parameter from its second step on
    assert all(d == dtype for d, _ in launches) and len(launches) == ASGD_INFO.steps - 1
    assert sum(k for _, k in launches) == stepped
    rtol = 1e-12 if dtype == "float64" else 1e-6
    for t, ((fp, fs), (op, os_)) in enumerate(zip(fused, ops, strict=True), start=1):
        for i, (u, v) in enumerate(zip(fp, op, strict=True)):
            assert_close(u, v, rtol, f"param {i} after step {t}")
        for i, (u, v) in enumerate(zip(fs, os_, strict=True)):
            if v is None:
                assert u is None
                continue
            assert_close(u["ax"], v["ax"], rtol, f"ax {i} after step {t}")
            for key in ("step", "eta", "mu"):
                assert float(u[key]) == float(v[key]), (key, i, t)


def _reference(p0: np.ndarray, grads: list[np.ndarray], hp: dict, lrs: list[float], dt: Any, master: bool):
    """float64 reference with p and ax rounded to ``dt`` after every step (the weight kept unrounded
    under ``master``, as the master weight is; ax averaged from it)."""

    def rnd(x: np.ndarray) -> np.ndarray:
        return paddle.to_tensor(x).astype(dt).astype("float64").numpy()

    p, st = p0, ref.asgd_init(p0, lrs[0])
    for g, lr in zip(grads, lrs, strict=True):
        p, st = ref.asgd_step(p, g, st, lr=lr, **hp)
        st = st._replace(ax=rnd(st.ax))
        if not master:
            p = rnd(p)
    return p, st


@pytest.mark.parametrize("clip", [None, 0.5], ids=["raw-grad", "clipped-fp32-grad"])
@pytest.mark.parametrize("multi_precision", [False, True], ids=["plain", "master"])
@pytest.mark.parametrize("fix", [{}, *ASGD_INFO.fixes], ids=case_id)
@pytest.mark.parametrize("case", [c for c in CASES if not {"grad_clip", "regularizer"} & set(c)], ids=case_id)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_within_one_ulp(case: dict, fix: dict, dtype: str, multi_precision: bool,
                                      clip: float | None, launches: list[str]) -> None:  # fmt: skip
    """The kernel's bf16/fp16 variants: the gradient of the storage dtype, or float32 once a clip
    saw it (computed in fp32, as Paddle's ops do); the weight the parameter or its fp32 master."""
    hp = {**case, **fix}
    rng = np.random.default_rng(len(case_id(hp)))
    lr = hp.pop("lr", 1e-2)
    lrs = [lr * f for f in ASGD_INFO.lr_factors[:6]]
    p = paddle.create_parameter([7, 33], dtype, default_initializer=paddle.nn.initializer.Assign(
        rng.normal(size=(7, 33)).astype(np.float32)))  # fmt: skip
    p0 = p.astype("float64").numpy()
    grads = [paddle.to_tensor(rng.normal(size=(7, 33)).astype(np.float32)).astype(dtype) for _ in lrs]
    grad_clip = None if clip is None else paddle.nn.ClipGradByValue(clip)
    opt = ASGD(parameters=[p], learning_rate=lrs[0], multi_precision=multi_precision, grad_clip=grad_clip,
               **hp)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for g, lr_t in zip(grads, lrs, strict=True):
            opt.set_lr(lr_t)
            p.grad = g
            opt.step()
    assert launches == [(dtype, 1)] * (len(lrs) - 1)
    g64 = [g.astype("float64").numpy() for g in grads]
    if clip is not None:
        g64 = [ref.prepare_gradients([p0], [g], maximize=hp.get("maximize", False),
                                     grad_clip=("value", clip))[0] for g in g64]  # fmt: skip
        hp = {**hp, "maximize": False}  # negated before the clip, as the optimizer does
    want_p, want = _reference(p0, g64, hp, lrs, dtype, multi_precision)
    eps = float(np.finfo(np.float16).eps) if dtype == "float16" else 2.0**-7
    scale = np.abs(want_p).max()
    got_p = p.astype("float64").numpy()
    if multi_precision:  # the stored parameter is the master rounded once
        master = opt._master_weights[p.name].astype("float64").numpy()
        np.testing.assert_allclose(master, want_p, rtol=1e-5, atol=1e-5 * scale)
        want_p = paddle.to_tensor(want_p).astype(dtype).astype("float64").numpy()
    np.testing.assert_allclose(got_p, want_p, rtol=eps, atol=eps * scale)
    got_ax = opt.state[p]["ax"].astype("float64").numpy()
    np.testing.assert_allclose(got_ax, want.ax, rtol=eps, atol=eps * scale)
    assert int(opt.state[p]["step"]) == len(lrs)


def test_step_reads_nothing_back_and_runs_the_kernel(
    monkeypatch: pytest.MonkeyPatch, launches: list[str]
) -> None:
    ps = [paddle.create_parameter([64, 3], "float32"), paddle.create_parameter([5], "float16")]
    opt = ASGD(parameters=ps, learning_rate=0.1, t0=1, multi_precision=True, weight_decay=0.01)

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("host read in ASGD.step")

    for _ in range(4):
        for p in ps:
            p.grad = paddle.full(p.shape, 0.5, dtype=p.dtype)
        with monkeypatch.context() as mp:
            for name in ("numpy", "item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
                mp.setattr(paddle.Tensor, name, refuse)
            opt.step()
    assert sorted(launches) == sorted([("float32", 1), ("float16", 1)] * 3)  # one launch per dtype


# --------------------------------------------------------------------------- bad inputs, in a child

PRELUDE = """
import json, warnings
import numpy as np
import paddle
from asgd_bridge.paddle import ASGD

def setup(dtype="float32", **kw):
    init = paddle.nn.initializer.Assign(np.linspace(-1, 1, 64 * 32, dtype=np.float32).reshape(64, 32))
    p = paddle.create_parameter([64, 32], dtype, default_initializer=init)
    opt = ASGD(parameters=[p], learning_rate=0.1, t0=0, **kw)
    p.grad = paddle.ones(p.shape, dtype=p.dtype)
    opt.step()                                  # creates the state (Paddle's ops)
    p.grad = paddle.ones(p.shape, dtype=p.dtype)
    return p, opt

def ops_result(edit, steps=1, **kw):
    '''The parameter after ``steps`` more steps by Paddle's ops on the same edited state.'''
    from asgd_bridge.paddle import _fused
    p, opt = setup(**kw)
    edit(p, opt)
    _fused._FORCE_FALLBACK = True
    for _ in range(steps):
        p.grad = paddle.ones(p.shape, dtype=p.dtype)
        opt.step()
    _fused._FORCE_FALLBACK = False
    return p.numpy()

def report(caught, **facts):
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    print(json.dumps({"warnings": msgs, **facts}))
"""


def _child(code: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=240)  # fmt: skip
    assert res.returncode >= 0, f"child killed by signal {-res.returncode}:\n{res.stderr[-3000:]}"
    return res


EDITS = {
    # the state's ax replaced by hand, bypassing its shape check: every case Paddle's ops still take
    "ax-aliases-param": ("st.ax = p", "overlap"),
    "ax-float64": ("st.ax = paddle.zeros(p.shape, dtype='float64')", "dtype"),
    "ax-strided-view": ("st.ax = paddle.zeros([64, 64])[:, ::2]", "not contiguous|overlap"),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_state_the_kernel_cannot_take_goes_to_paddle_ops_with_one_warning(edit: str) -> None:
    line, reason = EDITS[edit]
    res = _child(f"""
    def edit(p, opt):
        st = opt.state[p]
        {line}
    want = ops_result(edit, steps=2)
    p, opt = setup()
    edit(p, opt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step()
        p.grad = paddle.ones(p.shape)
        opt.step()
    report(caught, same=bool(np.allclose(p.numpy(), want, rtol=1e-6, atol=1e-6)))
    """)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(out["warnings"]) == 1, out
    assert "not the one-pass CPU kernel" in out["warnings"][0]
    assert __import__("re").search(reason, out["warnings"][0]), out["warnings"][0]
    assert out["same"], out  # and the step is the one Paddle's ops take


@pytest.mark.parametrize("what", ["ax", "master"])
def test_state_of_another_size_raises_naming_the_parameter(what: str) -> None:
    target = "st.ax" if what == "ax" else "opt._master_weights[p.name]"
    dtype = "float32" if what == "ax" else "float16"
    dt = dtype if what == "ax" else "float32"
    res = _child(f"""
    p, opt = setup({dtype!r}, multi_precision=True)
    st = opt.state[p]
    {target} = paddle.zeros([8], dtype={dt!r})
    opt.step()
    """)
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 1 and last.startswith("ValueError: "), res.stderr[-3000:]
    assert "parameter 'create_parameter_0.w_0'" in last and "8 elements" in last, last


def test_no_compiler_falls_back_with_one_warning(tmp_path: Any) -> None:
    res = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent("""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            want = ops_result(lambda p, opt: None)
            p, opt = setup()
            opt.step()
        report(caught, same=bool(np.array_equal(p.numpy(), want)))
        """)],
        capture_output=True, text=True, timeout=240,
        env={**__import__("os").environ, "CC": "false", "TORCH_EXTENSIONS_DIR": str(tmp_path)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["same"] is True
    assert [w for w in out["warnings"] if "asgd_bridge.paddle.ASGD uses Paddle's ops" in w] != []
    assert len([w for w in out["warnings"] if "Paddle's ops" in w]) == 1, out


def test_a_step_failing_half_way_has_updated_the_parameters_before_the_failure(launches: list) -> None:
    """Parameters are queued and launched together at the end of step(); an error on a later
    parameter still launches the queued ones (as the unbatched loop would have updated them)."""
    ps = [paddle.create_parameter([4, 3], "float32", default_initializer=paddle.nn.initializer.Constant(1.0))
          for _ in range(3)]  # fmt: skip
    opt = ASGD(parameters=ps, learning_rate=0.1, t0=0)
    for _ in range(2):
        for p in ps:
            p.grad = paddle.ones(p.shape)
        if _ == 1:
            opt.state[ps[2]].ax = paddle.zeros([5])  # corrupt: the kernel's caller refuses it
            before = [p.numpy().copy() for p in ps]
            with pytest.raises(ValueError, match="state 'ax' of parameter"):
                opt.step()
        else:
            opt.step()
    assert launches == [("float32", 2)]
    assert [int(opt.state[p]["step"]) for p in ps] == [2, 2, 1]
    assert not np.array_equal(ps[0].numpy(), before[0]) and not np.array_equal(ps[1].numpy(), before[1])
    np.testing.assert_array_equal(ps[2].numpy(), before[2])


def _ops_and_kernel(build: Any, steps: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Parameters (and their ``ax``) after ``steps`` steps of ``build()``'s optimizer, by the kernel
    and by Paddle's ops; ``build()`` returns ``(params, optimizer, grads_for_step)``."""
    out = []
    for force in (False, True):
        ps, opt, grads = build()
        _fused._FORCE_FALLBACK = force
        try:
            for t in range(steps):
                for p, g in zip(ps, grads(t), strict=True):
                    p.grad = g
                opt.step()
        finally:
            _fused._FORCE_FALLBACK = False
        out.append([p.numpy().copy() for p in ps] + [opt.state[p]["ax"].numpy().copy() for p in ps])
    return out[0], out[1]


def test_one_group_memo_keeps_groups_lrs_and_ages_apart(launches: list) -> None:
    """The schedule is computed once per distinct (lr, decay, state) of a group: groups with other
    lambd/alpha/t0 but the same lr, a ParamAttr lr multiplier, and a parameter that starts late (so
    is a step behind) each get their own."""

    def build() -> tuple[list, Any, Any]:
        def init(i: int) -> Any:
            return paddle.nn.initializer.Assign(np.linspace(-1, 1, 6) * (i + 1))

        ps = [paddle.create_parameter([6], "float32", default_initializer=init(i)) for i in range(4)]
        ps[1].optimize_attr["learning_rate"] = 0.5
        opt = ASGD(
            parameters=[{"params": ps[:2]}, {"params": ps[2:], "lambd": 0.3, "alpha": 0.5, "t0": 1}],
            learning_rate=0.1, t0=0, lambd=1e-3,
        )  # fmt: skip

        def grads(t: int) -> list:
            gs = [paddle.full([6], 0.1 * (i + 1) + 0.01 * t) for i in range(4)]
            return gs if t > 0 else [gs[0], gs[1], gs[2], None]  # ps[3] starts a step late

        return ps, opt, grads

    kernel, ops = _ops_and_kernel(build)
    assert launches and sum(k for _, k in launches) == 4 * 3 - 1  # every state-holding parameter
    for i, (u, v) in enumerate(zip(kernel, ops, strict=True)):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7, err_msg=f"tensor {i}")


def test_parameters_sharing_memory_are_launched_one_at_a_time_in_order(launches: list) -> None:
    """Two parameters that are views of one buffer (overlapping elements): one launch over both
    would race, so each is launched alone, in order, as Paddle's ops update them."""

    def build() -> tuple[list, Any, Any]:
        base = paddle.to_tensor(np.linspace(-1, 1, 10, dtype=np.float32))
        ps = [base[0:6], base[4:10]]
        assert ps[1].data_ptr() - ps[0].data_ptr() == 16  # views: elements 4 and 5 are shared
        for p in ps:
            p.stop_gradient = False
        opt = ASGD(parameters=ps, learning_rate=0.1, t0=0)
        return ps, opt, lambda t: [paddle.full([6], 0.5 + t), paddle.full([6], -0.25 * t)]

    kernel, ops = _ops_and_kernel(build)
    assert launches == [("float32", 1)] * 6  # steps 2-4, two single launches each
    for i, (u, v) in enumerate(zip(kernel, ops, strict=True)):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7, err_msg=f"tensor {i}")


def test_disjoint_finds_any_shared_byte_across_parameters() -> None:
    from array import array

    def disjoint(p: list[int], g: list[int], counts: list[int]) -> bool:
        return _fused._disjoint(array("Q", p + g + counts), len(counts), (4, 4))

    assert disjoint([0, 400], [800, 1200], [100, 100])
    assert not disjoint([0, 396], [800, 1200], [100, 100])  # p[1] starts in p[0]'s last element
    assert not disjoint([0, 400], [1200, 800], [100, 101])  # g[0] ends in g[1]'s first element
    assert disjoint([0, 0], [800, 1200], [100, 0])  # an empty tensor shares no byte


def test_place_is_read_unless_the_build_holds_host_memory_only(
    monkeypatch: pytest.MonkeyPatch, launches: list
) -> None:
    host_only = not (paddle.is_compiled_with_cuda() or paddle.device.get_all_custom_device_type())
    assert _fused._host_only() is host_only
    for device in ("cuda", "rocm", "xpu", "ipu"):
        probe = f"is_compiled_with_{device}"
        with monkeypatch.context() as mp:
            mp.setattr(paddle, probe, lambda: True)
            assert _fused._host_only() is False
    with monkeypatch.context() as mp:
        mp.setattr(paddle.device, "get_all_custom_device_type", lambda: ["npu"])
        assert _fused._host_only() is False
    # a build with devices reads every tensor's place: CPU tensors still take the kernel
    monkeypatch.setattr(_fused, "_HOST_ONLY", False)
    p = paddle.create_parameter([5], "float32")
    opt = ASGD(parameters=[p], learning_rate=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for _ in range(2):
            p.grad = paddle.ones([5])
            opt.step()
    assert launches == [("float32", 1)]
