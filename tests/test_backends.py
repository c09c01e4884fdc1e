"""Shared tests over every backend of ``optim_info.BACKENDS`` that supports them.

Each test is parametrised over the table (``AlgorithmInfo`` rows x ``BackendInfo``), so a new backend or
a new row inherits all of them:

* differential against the float64 reference (every case, fix and a mid-run lr change, with a parameter
  that skips steps and one that is never stepped), at the tolerance each backend reaches;
* differential against the framework's own class in float32 (and the other dtypes of the pair);
* state-dict round trips mid-run through the framework's own save/load: equal to an uninterrupted run;
* the averaged-weights API against the true averages of the reference's iterates;
* bad constructor arguments, including torch's own error rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from optim_info import (
    BACKENDS,
    BY_NAME,
    EXTRA_ARGS,
    BackendInfo,
    Case,
    assert_close,
    make_problem,
    reference_run,
    true_average,
)

warnings.filterwarnings("ignore", message="Accumulating with FP16/BF16")
#: the fused rows must run the kernel, not fall back to the foreach path
pytestmark = pytest.mark.filterwarnings("error:.*updated by the foreach path:RuntimeWarning")


@pytest.fixture(autouse=True)
def _float64_scalars(request: pytest.FixtureRequest) -> Iterator[None]:
    """For float64 / complex128 runs, torch's default dtype float64, so torch's eta/mu scalars are
    float64 as in the reference (with float32 parameters they stay float32, as users have them)."""
    import paddle
    import torch

    paddle.set_device("cpu")
    before = torch.get_default_dtype()
    params = getattr(request.node, "callspec", None)
    dtype = params.params.get("dtype", "float64") if params else "float64"
    torch.set_default_dtype(torch.float64 if dtype in ("float64", "complex128") else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _id(value: Any) -> str:
    return value.id if isinstance(value, Case) else str(value)


def _rows(*, targets: bool, **select: Any) -> list[Any]:
    """pytest params (backend, case, fix, dtype) for every backend that takes the case."""
    out = []
    for b in BACKENDS:
        if b.is_target and not targets:
            continue
        info = b.info
        dtypes = select.get("dtypes", lambda b: ["float64"])(b)
        for case in info.cases:
            if not b.takes(case.kwargs):
                continue
            # the fixes change the schedule: crossed with the schedule's rows, not with clip/regulariser rows
            paddle_extras = {"grad_clip", "regularizer"} & set(case.kwargs) and info.name == "asgd"
            fixes = [{}, *info.fixes] if b.fixes and not paddle_extras else [{}]
            for fix in fixes:
                for dtype in dtypes:
                    if b.cannot(case.kwargs, dtype):
                        continue
                    out.append(pytest.param(b, case, fix, dtype, id=f"{b}-{case.id}-{_fix_id(fix)}-{dtype}"))
    return out


def _fix_id(fix: dict[str, bool]) -> str:
    return "+".join(fix) or "torch-schedule"


SCALAR_KEYS = {"step", "eta", "mu", "m"}


def assert_snapshots(got: list, want: list, rtol: float, *, exact_scalars: bool = False,
                     scalar_rtol: float | None = None) -> None:  # fmt: skip
    """Parameters and (where both sides read it) state, after every step; with ``exact_scalars`` the
    scalar state (``step``, ``eta``, ``mu``, ``m``) must be the same number, with ``scalar_rtol`` within
    that relative tolerance."""
    assert len(got) == len(want)
    for t, ((gps, gss), (wps, wss)) in enumerate(zip(got, want, strict=True), start=1):
        for i, (u, v) in enumerate(zip(gps, wps, strict=True)):
            assert_close(u, v, rtol, f"param {i} after step {t}")
        for i, (u, v) in enumerate(zip(gss, wss, strict=True)):
            if u is None or v is None:
                continue
            for key in sorted(v.keys() & u.keys()):
                what = f"state {key!r} of param {i} after step {t}"
                if key in SCALAR_KEYS and exact_scalars:
                    assert_close(u[key], v[key], 0, what)
                elif key in SCALAR_KEYS and scalar_rtol is not None:
                    np.testing.assert_allclose(u[key], v[key], rtol=scalar_rtol, atol=0, err_msg=what)
                else:
                    assert_close(u[key], v[key], rtol, what)


# --------------------------------------------------------------------------- against the reference


def _reference_dtypes(b: BackendInfo) -> list[str]:
    return [d for d in b.reference_tol if d in b.dtypes] + (["complex128"] if b.complex else [])


@pytest.mark.parametrize(("backend", "case", "fix", "dtype"), _rows(targets=True, dtypes=_reference_dtypes))
def test_matches_reference(backend: BackendInfo, case: Case, fix: dict, dtype: str) -> None:
    info = backend.info
    kwargs = {**case.kwargs, **fix}
    p0s, grads = make_problem(info, seed=len(case.id), complex_=dtype.startswith("complex"), never=True)
    run = backend.make(p0s, kwargs, dtype)
    initial = run.values()
    lrs = info.lrs(kwargs)
    got = run.run(grads, lrs)
    want = reference_run(info, p0s, grads, kwargs, lrs, run.factors, run.clip_groups)
    # eta, mu (and step) are scalars computed by the same formula: float64 agrees to the last bits
    scalar_rtol = 1e-15 if dtype in ("float64", "complex128") else None
    assert_snapshots(got, want, backend.reference_tol[dtype if dtype in backend.reference_tol else "float64"],
                     scalar_rtol=scalar_rtol)  # fmt: skip
    states = got[-1][1]
    if backend.reads_state:
        # the skipping parameter has its own step count; the never-stepped one has no state
        assert states[-1] is None and (states[1] is not None)
        count_key = "step" if info.name == "asgd" else "m"
        assert int(states[1][count_key]) == sum(row[1] is not None for row in grads)
    np.testing.assert_array_equal(got[-1][0][-1], initial[-1])  # never stepped: unchanged


# --------------------------------------------------------------------------- against the framework's class


def _target_rows() -> list[Any]:
    out = []
    for b in BACKENDS:
        if b.target is None:
            continue
        target = BY_NAME[b.target]
        for case in b.info.cases:
            if not (b.takes(case.kwargs) and target.takes(case.kwargs)):
                continue
            for dtype, tol in b.target_tol.items():
                name = f"{b}-vs-{target}-{case.id}-{dtype}"
                out.append(pytest.param(b, target, case, dtype, tol, id=name))
    return out


@pytest.mark.parametrize(("backend", "target", "case", "dtype", "tol"), _target_rows())
def test_follows_framework_class(backend: BackendInfo, target: BackendInfo, case: Case, dtype: str,
                                 tol: float) -> None:  # fmt: skip
    info = backend.info
    p0s, grads = make_problem(info, seed=7 + len(case.id), complex_=dtype.startswith("complex"), never=True)
    lrs = info.lrs(case.kwargs)
    ours = backend.make(p0s, case.kwargs, dtype)
    theirs = target.make(p0s, case.kwargs, dtype)
    got, want = ours.run(grads, lrs), theirs.run(grads, lrs)
    assert not np.array_equal(want[-1][0][0], np.asarray(p0s[0]))  # the run moved the parameters
    assert_snapshots(got, want, tol, exact_scalars=True)


def _sibling_rows() -> list[Any]:
    out = []
    for b in BACKENDS:
        if b.sibling is None:
            continue
        for case in b.info.cases[::2]:
            if b.takes(case.kwargs):
                for dtype, tol in b.sibling_tol.items():
                    out.append(pytest.param(b, BY_NAME[b.sibling], case, dtype, tol,
                                            id=f"{b}-vs-{b.sibling}-{case.id}-{dtype}"))  # fmt: skip
    return out


@pytest.mark.parametrize(("backend", "sibling", "case", "dtype", "tol"), _sibling_rows())
def test_agrees_with_sibling_path(backend: BackendInfo, sibling: BackendInfo, case: Case, dtype: str,
                                  tol: float) -> None:  # fmt: skip
    """torch's foreach-vs-for-loop check: two paths of one class, every dtype, within the measured bound."""
    info = backend.info
    p0s, grads = make_problem(info, seed=11, complex_=dtype.startswith("complex"), steps=8, never=True)
    lrs = info.lrs(case.kwargs, 8)
    got = backend.make(p0s, case.kwargs, dtype).run(grads, lrs)
    want = sibling.make(p0s, case.kwargs, dtype).run(grads, lrs)
    assert_snapshots(got, want, tol)


# --------------------------------------------------------------------------- state dicts


def _round_trip_rows() -> list[Any]:
    out = []
    for b in BACKENDS:
        if b.is_target or not b.reads_state:
            continue
        info = b.info
        # the three rows with the most arguments it takes
        cases = sorted((c for c in info.cases if b.takes(c.kwargs)), key=lambda c: -len(c.kwargs))[:3]
        fixes = [{}, info.fixes[-1]] if b.fixes else [{}]
        dtypes = ["float32", *(["complex64"] if b.complex else [])]
        for case in cases:
            for fix in fixes:
                for dtype in dtypes:
                    out.append(pytest.param(b, case, fix, dtype, id=f"{b}-{case.id}-{_fix_id(fix)}-{dtype}"))
    return out


@pytest.mark.parametrize(("backend", "case", "fix", "dtype"), _round_trip_rows())
def test_state_dict_round_trip_mid_run(backend: BackendInfo, case: Case, fix: dict, dtype: str) -> None:
    info = backend.info
    kwargs = {**case.kwargs, **fix}
    p0s, grads = make_problem(info, seed=3, complex_=dtype.startswith("complex"), never=True)
    lrs, split = info.lrs(kwargs), info.steps // 2
    whole = backend.make(p0s, kwargs, dtype).run(grads, lrs)
    first = backend.make(p0s, kwargs, dtype)
    before = first.run(grads[:split], lrs[:split])
    data = first.save()
    # a fresh optimizer on fresh parameters, built with another lr where the state dict restores it
    fresh_kwargs = {**kwargs, "lr": 7.0 * float(kwargs.get("lr", info.defaults["lr"]))}
    second = backend.make(first.values(), fresh_kwargs if backend.restores_lr else kwargs, dtype)
    second.load(data)
    after = second.run(grads[split:], lrs[split:])
    assert_snapshots(before + after, whole, 0)


# --------------------------------------------------------------------------- the averaged-weights API

AVERAGED = [b for b in BACKENDS if b.averaged]
AVG_CASE = {"lr": 0.1, "lambd": 0.01, "t0": 2, "weight_decay": 0.01}


def _averaged_run(backend: BackendInfo, fix: dict | None = None, steps: int = 6) -> tuple[Any, list, list]:
    """A float64 run, its true averages (the mean of the reference's iterates) and its raw weights."""
    info = backend.info
    kwargs = {**AVG_CASE, **(fix or {})}
    p0s, grads = make_problem(info, seed=5, steps=steps, skip=False)
    run = backend.make(p0s, kwargs, "float64")
    run.run(grads)
    snaps = reference_run(info, p0s, grads, kwargs, info.lrs(kwargs, steps)[:1] * steps, run.factors)
    averages = [
        true_average([ps[i] for ps, _ in snaps], kwargs["t0"], bool(kwargs.get("bottou_average")))
        for i in range(len(p0s))
    ]
    return run, averages, run.values()


def _np(tensor: Any) -> np.ndarray:
    """A torch or Paddle tensor as float64 NumPy."""
    import torch

    if isinstance(tensor, torch.Tensor):
        return tensor.detach().double().numpy()
    return tensor.astype("float64").numpy()


@pytest.mark.parametrize("fix", [{}, {"bottou_average": True}], ids=["torch-schedule", "bottou_average"])
@pytest.mark.parametrize("backend", AVERAGED, ids=str)
def test_averaged_weights_are_the_true_averages(backend: BackendInfo, fix: dict) -> None:
    run, averages, raw = _averaged_run(backend, fix)
    tol = backend.reference_rtol
    ids = [id(p) for p in run.params]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every parameter has stepped: no warning
        got = run.opt.averaged_parameters()
        for i, (a, want) in enumerate(zip(got, averages, strict=True)):
            assert_close(_np(a), want, tol, f"averaged_parameters()[{i}]")
            assert not np.allclose(want, raw[i])  # the average is not the raw weight
        with run.opt.swap_averaged():
            for i, (v, want) in enumerate(zip(run.values(), averages, strict=True)):
                assert_close(v, want, tol, f"param {i} inside swap_averaged()")
            # the optimizer's state stays valid inside: a checkpoint taken here holds the true averages
            inside = run.states()
            for i, want in enumerate(averages):
                assert_close(inside[i]["ax"], want, tol, f"saved ax {i} inside swap_averaged()")
        assert [id(p) for p in run.params] == ids
        for i, (v, r) in enumerate(zip(run.values(), raw, strict=True)):
            np.testing.assert_array_equal(v, r, err_msg=f"param {i} after swap_averaged()")
        model = run.model()
        live = {k: _np(v).copy() for k, v in model.state_dict().items()}
        sd = run.opt.averaged_state_dict(model)
    assert list(sd) == list(live)
    for i, want in enumerate(averages):
        assert_close(_np(sd[f"p{i}"]), want, tol, f"averaged_state_dict()['p{i}']")
    for name in ("frozen", "buf"):  # not the optimizer's: their usual entries
        np.testing.assert_array_equal(_np(sd[name]), live[name])
    for k, v in model.state_dict().items():  # the model is left alone
        np.testing.assert_array_equal(_np(v), live[k])


@pytest.mark.parametrize("backend", AVERAGED, ids=str)
def test_swap_restores_when_the_body_raises(backend: BackendInfo) -> None:
    run, averages, raw = _averaged_run(backend)
    with pytest.raises(ValueError, match="evaluation failed"):
        with run.opt.swap_averaged():
            raise ValueError("evaluation failed")
    for v, r in zip(run.values(), raw, strict=True):
        np.testing.assert_array_equal(v, r)
    with run.opt.swap_averaged():  # usable again
        assert_close(run.values()[0], averages[0], backend.reference_rtol, "param 0")


@pytest.mark.parametrize("backend", AVERAGED, ids=str)
def test_nested_swap_raises_and_the_outer_swap_still_restores(backend: BackendInfo) -> None:
    run, averages, raw = _averaged_run(backend)
    with run.opt.swap_averaged():
        with pytest.raises(RuntimeError, match="already active"):
            with run.opt.swap_averaged():
                pass
        assert_close(run.values()[0], averages[0], backend.reference_rtol, "param 0")
    for v, r in zip(run.values(), raw, strict=True):
        np.testing.assert_array_equal(v, r)


@pytest.mark.parametrize("backend", AVERAGED, ids=str)
def test_step_inside_swap_raises(backend: BackendInfo) -> None:
    run, _, raw = _averaged_run(backend)
    states = run.states()
    with run.opt.swap_averaged(), pytest.raises(RuntimeError, match="inside swap_averaged"):
        run.step([np.ones_like(r) for r in raw])
    for v, r in zip(run.values(), raw, strict=True):
        np.testing.assert_array_equal(v, r)
    for a, b in zip(run.states(), states, strict=True):
        assert int(a["step"]) == int(b["step"])


@pytest.mark.parametrize("backend", AVERAGED, ids=str)
def test_before_the_first_step_parameters_are_their_own_average(backend: BackendInfo) -> None:
    info = backend.info
    p0s, grads = make_problem(info, seed=9, steps=3, skip=False)
    run = backend.make(p0s, AVG_CASE, "float64")
    n = len(p0s)
    raw = run.values()
    with pytest.warns(UserWarning, match=rf"{n} of {n} parameter\(s\) have not been stepped"):
        with run.opt.swap_averaged():
            for v, r in zip(run.values(), raw, strict=True):
                np.testing.assert_array_equal(v, r)
    with pytest.warns(UserWarning, match="not been stepped"):
        got = run.opt.averaged_parameters()
    for a, r in zip(got, raw, strict=True):
        np.testing.assert_array_equal(_np(a), r)
    model = run.model()
    with pytest.warns(UserWarning, match="not been stepped"):
        sd = run.opt.averaged_state_dict(model)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(_np(sd[k]), _np(v))
    assert all(s is None for s in run.states())  # nothing was created
    # partly stepped: the stepped parameter's average is its ax, the others their values
    only_first = [[row[0], *[None] * (n - 1)] for row in grads]
    run.run(only_first)
    snaps = reference_run(info, p0s, only_first, AVG_CASE, info.lrs(AVG_CASE, 3)[:1] * 3, run.factors)
    with pytest.warns(UserWarning, match=rf"{n - 1} of {n}"):
        got = run.opt.averaged_parameters()
    assert_close(_np(got[0]), snaps[-1][1][0]["ax"], backend.reference_rtol, "averaged_parameters()[0]")
    for a, r in zip(got[1:], raw[1:], strict=True):
        np.testing.assert_array_equal(_np(a), r)


# --------------------------------------------------------------------------- bad input


def _error_rows() -> list[Any]:
    out = []
    for b in BACKENDS:
        takes = b.accepts | EXTRA_ARGS.get((b.algorithm, b.framework), set())
        for row in b.info.error_inputs:
            if b.framework not in row.frameworks or (b.is_target and not row.targets):
                continue
            if not set(row.kwargs) <= takes:
                continue
            out.append(pytest.param(b, row, id=f"{b}-{row.id}"))
    return out


@pytest.mark.parametrize(("backend", "row"), _error_rows())
def test_bad_arguments_are_refused(backend: BackendInfo, row: Any) -> None:
    cls = backend.optimizer_class()
    kwargs = {**backend.translate(row.kwargs), **backend.fixed}
    if backend.framework == "torch":
        import torch

        params = row.params if row.params is not None else [torch.nn.Parameter(torch.zeros(2))]
        build = lambda: cls(params, **kwargs)  # noqa: E731
    else:
        import paddle

        params = [paddle.create_parameter([2], "float32")]
        build = lambda: cls(parameters=params, **kwargs)  # noqa: E731
    if issubclass(row.error_type, Warning):
        with pytest.warns(row.error_type, match=row.regex):
            build()
    else:
        with pytest.raises(row.error_type, match=row.regex):
            build()


def test_every_backend_is_exercised_by_every_shared_test_it_supports() -> None:
    """The table is not vacuous: each backend has reference rows; each averaged one the API tests."""
    ref_ids = {p.values[0].name for p in _rows(targets=True, dtypes=_reference_dtypes)}
    assert ref_ids == {b.name for b in BACKENDS if b.dtypes and set(b.dtypes) & {"float64"}}
    assert {p.values[0].name for p in _target_rows()} == {b.name for b in BACKENDS if b.target}
    assert {p.values[0].name for p in _error_rows()} >= {b.name for b in BACKENDS if not b.is_target}
    assert {b.name for b in AVERAGED} == {"torch.ASGD(loop)", "torch.ASGD(foreach)", "torch.ASGD(fused)",
                                          "paddle.ASGD"}  # fmt: skip


# --------------------------------------------------------------------------- one message per argument


OURS = [b for b in BACKENDS if not b.is_target]


def _build(backend: BackendInfo, groups: list[dict[str, Any]] | None = None, **kwargs: Any) -> Any:
    """``backend``'s class on one float32 parameter (or on ``groups``), a ``grad_clip`` given as a spec
    (every class of ours takes one)."""
    cls = backend.optimizer_class()
    kw = {**backend.translate(kwargs), **backend.fixed}
    if "grad_clip" in kwargs:
        kw["grad_clip"] = kwargs["grad_clip"]
    if backend.framework == "torch":
        import torch

        return cls(groups if groups is not None else [torch.nn.Parameter(torch.zeros(2))], **kw)
    import paddle

    return cls(parameters=groups if groups is not None else [paddle.create_parameter([2], "float32")], **kw)


@pytest.mark.parametrize(("arg", "value", "torch_text"), [
    ("lr", -1, "Invalid learning rate: -1"),
    ("weight_decay", -1, "Invalid weight_decay value: -1"),
    ("grad_clip", ("norm", -1.0),
     "Invalid grad_clip value: ('norm', -1.0) (expected ('norm', c) with c > 0)"),
])  # fmt: skip
def test_one_mistake_reads_the_same_in_every_class(arg: str, value: Any, torch_text: str) -> None:
    """lr=-1 used to read three ways; now one text per argument in all four classes (torch.optim.ASGD's
    own where it has one), Paddle's ``learning_rate`` named in parentheses."""
    texts = {}
    for b in OURS:
        if arg not in b.accepts | EXTRA_ARGS[(b.algorithm, b.framework)]:
            continue
        with pytest.raises(ValueError) as e:
            _build(b, **{arg: value})
        texts[b.name] = str(e.value).replace("learning rate (learning_rate)", "learning rate")
    assert set(texts.values()) == {torch_text}, texts
    assert len(texts) >= (4 if arg != "grad_clip" else 3)


def test_state_dict_loading_uses_the_constructors_messages() -> None:
    """A saved lr of -1 is refused on loading with the constructor's text, in every class."""
    for b in OURS:
        opt = _build(b, lr=0.1)
        sd = opt.state_dict()
        sd["param_groups"][0]["lr"] = -1.0
        with pytest.raises(ValueError, match=r"Invalid learning rate: -1\.0"):
            opt.load_state_dict(sd) if b.framework == "torch" else opt.set_state_dict(sd)


# --------------------------------------------------------------------------- maximize is a group key


MAXIMIZE_CASES = {
    "asgd": {"lr": 0.05, "t0": 2, "weight_decay": 0.05},
    "sag": {"lr": 0.05, "batch_num": 2, "weight_decay": 0.1},
}


def _per_group_maximize_run(backend: BackendInfo, steps: int) -> tuple[Any, list, list, list]:
    """``backend`` on two groups, the second maximising; its snapshots and the reference's, per group."""
    info = backend.info
    kwargs = MAXIMIZE_CASES[info.name]
    p0s, grads = make_problem(info, seed=21, steps=steps, skip=False)
    run = backend.make(p0s, kwargs, "float64", groups=False)
    spec = [{"params": run.params[:2]}, {"params": run.params[2:], "maximize": True}]
    run.opt = _build(backend, spec, **kwargs)
    got = run.run(grads)
    want = [reference_run(info, p0s[part], [row[part] for row in grads], {**kwargs, "maximize": m},
                          info.lrs(kwargs, steps)[:1] * steps)
            for part, m in ((slice(0, 2), False), (slice(2, None), True))]  # fmt: skip
    merged = [([*a[0], *b[0]], [*a[1], *b[1]]) for a, b in zip(*want, strict=True)]
    return run, got, merged, grads


@pytest.mark.parametrize("backend", OURS, ids=str)
def test_maximize_per_param_group(backend: BackendInfo) -> None:
    """``maximize`` is a param-group key in every backend (Paddle's SAG used to refuse it)."""
    run, got, want, _ = _per_group_maximize_run(backend, 5)
    assert_snapshots(got, want, backend.reference_rtol)
    groups = run.opt.state_dict()["param_groups"]
    assert [bool(g["maximize"]) for g in groups] == [False, True]


@pytest.mark.parametrize("pair", [("torch.ASGD(loop)", "paddle.ASGD"), ("paddle.ASGD", "torch.ASGD(loop)"),
                                  ("torch.SAG", "paddle.SAG"), ("paddle.SAG", "torch.SAG")], ids=str)
def test_per_group_maximize_round_trips_through_convert_state_dict(pair: tuple[str, str]) -> None:
    """Saved mid-run in one framework, converted, loaded into the other (built with the same groups):
    the run continues as the reference, each group with its own maximize."""
    from asgd_bridge.checkpoint import convert_state_dict

    source, target = BY_NAME[pair[0]], BY_NAME[pair[1]]
    steps, split = 6, 3
    run, got, want, grads = _per_group_maximize_run(source, split)
    converted = convert_state_dict(run.opt.state_dict(), to=target.framework)
    assert [bool(g["maximize"]) for g in converted["param_groups"]] == [False, True]
    _, _, want, grads = _per_group_maximize_run(source, steps)
    second = target.make(run.values(), MAXIMIZE_CASES[target.info.name], "float64", groups=False)
    spec = [{"params": second.params[:2]}, {"params": second.params[2:], "maximize": True}]
    second.opt = _build(target, spec, **MAXIMIZE_CASES[target.info.name])
    if target.framework == "torch":
        second.opt.load_state_dict(converted)
    else:
        second.opt.set_state_dict(converted)
    after = second.run(grads[split:])
    assert_snapshots(after, want[split:], max(source.reference_rtol, target.reference_rtol))
