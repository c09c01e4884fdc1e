"""The test matrix as data: ``AlgorithmInfo`` (what to test) x ``BackendInfo`` (what runs it).

Modelled on torch's ``torch/testing/_internal/common_optimizers.py`` (``OptimizerInfo``, ``optim_db``),
whose ASGD rows (``optim_inputs_func_asgd``, ``optim_error_inputs_func_asgd``) are imported here as cases.

* An :class:`AlgorithmInfo` holds one algorithm's constructor rows (:class:`Case`, torch's argument
  names and the framework-neutral specs of ``asgd_bridge.hyperparams`` for clips and regularisers), its
  documented fixes, its bad-input rows (:class:`ErrorInput`), its parameter shapes and step count.
* A :class:`BackendInfo` says how one optimizer class is built from those rows (Paddle's names mapped),
  what it supports, the tolerance it reaches against the reference and against its framework target.
  :meth:`BackendInfo.make` returns a :class:`Run` (set gradients, step, read values and state as float64
  NumPy, save and load through the framework's own format).
* :func:`reference_run` is the one driver of :mod:`asgd_bridge.reference` every shared test compares with.

A new backend is one more ``BackendInfo`` in :data:`BACKENDS`; every test of ``test_backends.py`` that its
``supports`` admit then runs on it. A new flag is one more ``Case``.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asgd_bridge import reference as ref

__all__ = [
    "ALGORITHMS",
    "ASGD_INFO",
    "BACKENDS",
    "AlgorithmInfo",
    "BackendInfo",
    "Case",
    "ErrorInput",
    "Run",
    "SAG_INFO",
    "Snapshot",
    "case_id",
    "cases_for",
    "make_problem",
    "reference_run",
]

# --------------------------------------------------------------------------- rows


def case_id(kwargs: dict[str, Any]) -> str:
    """A readable pytest id for a row of arguments."""
    return ",".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults"


@dataclass(frozen=True)
class Case:
    """One row of constructor arguments (torch's names; clips and regularisers as specs)."""

    kwargs: dict[str, Any]
    desc: str = ""

    @property
    def id(self) -> str:
        return self.desc or case_id(self.kwargs)


@dataclass(frozen=True)
class ErrorInput:
    """A bad constructor call: the arguments, the exception (or warning) type and a regex of its message.

    ``params`` is torch's own bad parameter argument where a row of torch's table has one (used as
    is, so such a row runs on torch backends only); ``frameworks`` limits a row to the frameworks
    whose classes refuse it (a drop-in torch class accepts what torch accepts); ``targets`` says
    whether the framework's own class raises it too.
    """

    kwargs: dict[str, Any]
    error_type: type
    regex: str
    desc: str = ""
    params: Any = None
    frameworks: tuple[str, ...] = ("torch", "paddle")
    targets: bool = False

    @property
    def id(self) -> str:
        return self.desc or case_id(self.kwargs)


@dataclass(frozen=True)
class AlgorithmInfo:
    """One algorithm: its rows, fixes, bad inputs, shapes, defaults, steps and its reference."""

    name: str
    cases: list[Case]
    fixes: list[dict[str, bool]]
    error_inputs: list[ErrorInput]
    shapes: list[tuple[int, ...]]
    defaults: dict[str, Any]
    steps: int = 6
    #: a mid-run lr (factor per step) so immediate_lr and every set_lr path are exercised
    lr_factors: tuple[float, ...] = (1.0, 1.0, 2.0, 2.0, 0.5, 0.5, 0.25, 0.25)

    def lrs(self, kwargs: dict[str, Any], steps: int | None = None) -> list[float]:
        lr = float(kwargs.get("lr", self.defaults["lr"]))
        return [lr * f for f in self.lr_factors[: steps or self.steps]]


# --------------------------------------------------------------------------- torch's own ASGD rows


def _torch_rows() -> tuple[list[Case], list[ErrorInput]]:
    """torch's ``optim_inputs_func_asgd`` / ``optim_error_inputs_func_asgd`` for device "cpu"."""
    import torch
    from torch.testing._internal.common_optimizers import (
        OptimizerErrorEnum,
        optim_error_inputs_func_asgd,
        optim_inputs_func_asgd,
    )

    cases = [Case(dict(o.kwargs), f"torch:{o.desc}") for o in optim_inputs_func_asgd("cpu")]
    errors = []
    for e in optim_error_inputs_func_asgd("cpu", torch.float32):
        assert e.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR, e.error_on
        inp = e.optimizer_error_input
        # a row with torch's own parameter objects or a tensor lr is torch's alone
        torch_only = inp.params is not None or any(torch.is_tensor(v) for v in inp.kwargs.values())
        errors.append(
            ErrorInput(dict(inp.kwargs), e.error_type, e.error_regex, f"torch:{inp.desc}", params=inp.params,
                       frameworks=("torch",) if torch_only else ("torch", "paddle"), targets=True)
        )  # fmt: skip
    return cases, errors


_TORCH_CASES, _TORCH_ERRORS = _torch_rows()

# --------------------------------------------------------------------------- averaged SGD

_FIX_NAMES = ("immediate_lr", "bottou_average")
#: The reference's (and torch's) defaults.
ASGD_DEFAULTS = {k: v for k, v in ref.asgd_step.__kwdefaults__.items() if k not in _FIX_NAMES}

_ASGD_CASES = [
    Case({}),
    Case({"lr": 0.05}),
    Case({"lr": 0.1, "lambd": 0.01, "alpha": 0.5}),
    Case({"lr": 0.05, "t0": 0}),
    Case({"lr": 0.05, "t0": 3, "lambd": 0.0}),
    Case({"lr": 0.02, "weight_decay": 0.1}),
    Case({"lr": 0.05, "maximize": True}),
    Case({"lr": 0.05, "maximize": True, "weight_decay": 0.05, "t0": 2}),
    Case({"lr": 0.3, "lambd": 0.1, "alpha": 1.0, "t0": 5, "weight_decay": 0.01}),
    # Paddle's extras (clip and regulariser objects), as specs; only backends taking them run these
    Case({"lr": 0.05, "t0": 2, "weight_decay": 0.1, "maximize": True, "grad_clip": ("value", 0.5)}),
    Case({"lr": 0.05, "t0": 2, "grad_clip": ("value", -0.8, 0.3)}),
    Case({"lr": 0.05, "t0": 2, "weight_decay": 0.1, "grad_clip": ("norm", 1.0)}),
    Case({"lr": 0.05, "t0": 2, "maximize": True, "grad_clip": ("global_norm", 1.5)}),
    Case({"lr": 0.05, "lambd": 0.01, "t0": 4, "regularizer": ("l2", 0.1)}),
    Case({"lr": 0.05, "lambd": 0.01, "t0": 4, "regularizer": ("l2", 0.1), "maximize": True,
          "grad_clip": ("global_norm", 1.5)}),
    Case({"lr": 0.05, "lambd": 0.01, "t0": 4, "regularizer": ("l1", 0.05),
          "grad_clip": ("global_norm", 1.5)}),
    Case({"lr": 0.05, "lambd": 0.01, "t0": 4, "regularizer": ("l1", 0.05), "maximize": True}),
]

def _tensor(value: Any) -> Any:
    import torch

    return torch.tensor(value)


#: One message per argument, for every backend (``asgd_bridge.hyperparams``): torch.optim.ASGD's text where
#: torch has one; Paddle's ``learning_rate`` argument is named in parentheses.
MESSAGES = {
    "lr": r"^Invalid learning rate( \(learning_rate\))?: ",
    **{name: rf"^Invalid {name} value: " for name in (
        "weight_decay", "lambd", "alpha", "t0", "batch_num", "grad_clip", "maximize", "immediate_lr",
        "bottou_average", "multi_precision", "check_memory", "name")},
}  # fmt: skip


def _refused(kwargs: dict[str, Any], **kw: Any) -> ErrorInput:
    """A row refused with its argument's one message (:data:`MESSAGES`)."""
    (name,) = kwargs
    return ErrorInput(kwargs, ValueError, MESSAGES[name], **kw)


#: What our averaged-SGD classes refuse, naming the argument (torch's rows come on top).
_ASGD_ERRORS = [
    _refused({"lr": -0.1}, targets=True),
    _refused({"lr": float("nan")}, targets=True),
    _refused({"lr": float("inf")}, frameworks=("paddle",)),
    _refused({"lr": True}, frameworks=("paddle",)),
    _refused({"lr": "0.1"}, frameworks=("paddle",)),
    _refused({"weight_decay": -0.01}, targets=True),
    _refused({"weight_decay": "l2"}, frameworks=("paddle",)),
    _refused({"weight_decay": True}, frameworks=("paddle",)),
    *[_refused({name: value})
      for name in ("lambd", "alpha", "t0")
      for value in (-1e-3, -1, float("nan"), float("-inf"), "0.1", None, True, np.float32(-0.5))],
    *[_refused({name: value}, frameworks=("torch",))
      for name in ("lambd", "alpha", "t0") for value in (_tensor(-1.0), _tensor([0.1, 0.2]))],
    _refused({"lambd": float("inf")}),
    _refused({"alpha": float("inf")}),
    _refused({"maximize": 1}, frameworks=("paddle",)),
    _refused({"maximize": "yes"}, frameworks=("paddle",)),
    _refused({"immediate_lr": None}, frameworks=("paddle",)),
    _refused({"bottou_average": 0}, frameworks=("paddle",)),
    _refused({"multi_precision": "no"}),
    _refused({"grad_clip": 1.0}),
    _refused({"name": 3}),
]  # fmt: skip


def _unique(cases: Sequence[Case]) -> list[Case]:
    seen: set[str] = set()
    out = []
    for c in cases:
        key = repr(sorted(c.kwargs.items(), key=lambda kv: kv[0]))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


ASGD_INFO = AlgorithmInfo(
    name="asgd",
    cases=_unique([*_ASGD_CASES, *_TORCH_CASES]),
    fixes=[{"immediate_lr": True}, {"bottou_average": True}, {"immediate_lr": True, "bottou_average": True}],
    error_inputs=[*_ASGD_ERRORS, *_TORCH_ERRORS],
    shapes=[(), (5,), (3, 4), (2, 3, 2)],
    defaults=ASGD_DEFAULTS,
)

# --------------------------------------------------------------------------- SAG

SAG_DEFAULTS = {"lr": 1e-3, "batch_num": 1, "weight_decay": 0.0, "grad_clip": None, "maximize": False}

_SAG_CASES = [
    Case({}),
    Case({"lr": 0.05}),
    Case({"lr": 0.05, "batch_num": 3}),
    Case({"lr": 0.02, "batch_num": 8, "weight_decay": 0.1}),
    Case({"lr": 0.05, "batch_num": 2, "maximize": True}),
    Case({"lr": 0.05, "batch_num": 3, "weight_decay": ("l1", 0.05)}),
    Case({"lr": 0.05, "batch_num": 3, "grad_clip": ("global_norm", 0.5)}),
    Case({"lr": 0.05, "batch_num": 2, "grad_clip": ("norm", 0.5), "weight_decay": 0.1}),
    Case({"lr": 0.05, "batch_num": 4, "grad_clip": ("value", 0.3)}),
    Case({"lr": 0.05, "batch_num": 3, "grad_clip": ("value", -0.2, 0.4), "maximize": True}),
    Case({"lr": 0.05, "batch_num": 2, "maximize": True, "weight_decay": 0.1}),
]

_SAG_ERRORS = [
    _refused({"lr": -0.1}),
    _refused({"lr": float("inf")}),
    _refused({"batch_num": 0}),
    _refused({"batch_num": 2.5}),
    _refused({"batch_num": True}),
    _refused({"weight_decay": -1.0}),
    _refused({"weight_decay": ("l3", 0.1)}),
    _refused({"weight_decay": "0.1"}),
    _refused({"grad_clip": ("max", 1.0)}),
    _refused({"grad_clip": ("norm", 0.0)}),
    _refused({"grad_clip": ("value", 1.0, -1.0)}),
    _refused({"grad_clip": 1.0}),
    _refused({"maximize": "no"}),
    _refused({"multi_precision": 1}),
    _refused({"check_memory": "off"}),
]

SAG_INFO = AlgorithmInfo(
    name="sag",
    cases=_SAG_CASES,
    fixes=[],
    error_inputs=_SAG_ERRORS,
    shapes=[(), (5,), (3, 4), (2, 3, 2)],
    defaults=SAG_DEFAULTS,
    steps=7,
)

ALGORITHMS = {"asgd": ASGD_INFO, "sag": SAG_INFO}

# --------------------------------------------------------------------------- problems and the reference

#: per parameter index, the factor of the group lr: two groups, the second at half the lr
GROUP_LR = 0.5


def lr_factors(n_params: int) -> list[float]:
    return [1.0 if i < 2 else GROUP_LR for i in range(n_params)]


def make_problem(
    info: AlgorithmInfo, seed: int, *, complex_: bool = False, steps: int | None = None,
    shapes: Sequence[tuple[int, ...]] | None = None, skip: bool = True, never: bool = False,
) -> tuple[list[np.ndarray], list[list[np.ndarray | None]]]:
    """Initial values and per-step gradients (float64 or complex128 NumPy).

    With ``skip``, parameter 1 gets no gradient every third step (its own step count and state);
    with ``never``, one more parameter (shape ``(2,)``) never gets one (it must stay as it is, stateless).
    """  # fmt: skip
    rng = np.random.default_rng(seed)
    shapes = list(shapes or info.shapes)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        x = rng.standard_normal(shape)
        return x + 1j * rng.standard_normal(shape) if complex_ else x

    p0s = [draw(s) for s in shapes]
    grads = [
        [None if (skip and i == 1 and t % 3 == 1) else draw(s) for i, s in enumerate(shapes)]
        for t in range(steps or info.steps)
    ]
    if never:
        p0s.append(draw((2,)))
        grads = [[*row, None] for row in grads]
    return p0s, grads


Snapshot = tuple[list[np.ndarray], list[dict[str, np.ndarray] | None]]


def reference_run(
    info: AlgorithmInfo, p0s: Sequence[np.ndarray], grads: Sequence[Sequence[np.ndarray | None]],
    kwargs: dict[str, Any], lrs: Sequence[float], factors: Sequence[float] | None = None,
    clip_groups: Sequence[Sequence[int]] | None = None,
    round_to: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[Snapshot]:
    """The specification's trajectory: parameters and state after every step.

    ``kwargs`` is a case (with fixes); ``lrs`` the global lr of each step, ``factors`` each
    parameter's multiple of it (its group's). A ``None`` gradient skips that parameter for that step.
    Gradients go through :func:`reference.prepare_gradients` (negate, clip, regularise) where the case
    clips or regularises, then :func:`reference.asgd_step` / :func:`reference.sag_step`; a clip acts
    on each part of ``clip_groups`` (the parameters' indices; default: all together) on its own.
    ``round_to`` rounds the parameters and ``ax`` after every step (a storage dtype's rounding).
    """  # fmt: skip
    hp = {**info.defaults, **kwargs}
    hp.pop("lr")
    clip = hp.pop("grad_clip", None)
    factors = list(factors or [1.0] * len(p0s))
    parts = [list(g) for g in clip_groups] if clip_groups else [list(range(len(p0s)))]

    def prepare(row: Sequence[np.ndarray | None], maximize: bool, reg: Any) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for part in parts:
            idx = [i for i in part if row[i] is not None]
            gs = ref.prepare_gradients([ps[i] for i in idx], [np.asarray(row[i]) for i in idx],
                                       maximize=maximize, grad_clip=clip, regularizer=reg)  # fmt: skip
            out.update(zip(idx, gs, strict=True))
        return dict(sorted(out.items()))

    ps = [np.array(p, dtype=np.result_type(p, np.float64)) for p in p0s]
    states: list[Any] = [None] * len(ps)
    out: list[Snapshot] = []
    if info.name == "asgd":
        reg = hp.pop("regularizer", None)
        for t, row in enumerate(grads):
            maximize = hp["maximize"]
            if clip is not None or reg is not None:
                prepared = prepare(row, maximize, reg)
                maximize = False
            else:
                prepared = {i: np.asarray(g) for i, g in enumerate(row) if g is not None}
            for i, g in prepared.items():
                lr = lrs[t] * factors[i]
                if states[i] is None:
                    states[i] = ref.asgd_init(ps[i], lr)
                hp_t = {**hp, "lr": lr, "maximize": maximize}
                ps[i], states[i] = ref.asgd_step(ps[i], g, states[i], **hp_t)
                if round_to is not None:
                    ps[i], states[i] = round_to(ps[i]), states[i]._replace(ax=round_to(states[i].ax))
            out.append(([p.copy() for p in ps], [None if s is None else s._asdict() for s in states]))
        return out
    wd = hp.pop("weight_decay")
    reg = wd if isinstance(wd, tuple) else (("l2", float(wd)) if wd else None)
    for t, row in enumerate(grads):
        for i, g in prepare(row, hp["maximize"], reg).items():
            if states[i] is None:
                states[i] = ref.sag_init(ps[i], hp["batch_num"])
            ps[i], states[i] = ref.sag_step(ps[i], g, states[i], lr=lrs[t] * factors[i])
        out.append(([p.copy() for p in ps], [None if s is None else s._asdict() for s in states]))
    return out


def true_average(iterates: Sequence[np.ndarray], t0: float, bottou: bool) -> np.ndarray:
    """The mean the averaged weights stand for, from the iterates ``p_1 .. p_T`` (closed form).

    torch's schedule averages ``p_{t0+2} .. p_T`` (it leaves out ``p_{t0+1}``); ``bottou_average``
    averages ``p_{t0+1} .. p_T``; before that, the average is the last iterate.
    """
    first = int(t0) + (0 if bottou else 1)
    window = iterates[first:] if first < len(iterates) else iterates[-1:]
    return np.mean(np.stack(window), axis=0)


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float, what: str) -> None:
    """|got - want| <= rtol * max(1, max|want|) elementwise (0: bit for bit)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if rtol == 0:
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def record_launches(monkeypatch: Any, module: Any, entry: str) -> list[tuple[str, int]]:
    """``(dtype, tensors)`` of every call of the native entry point ``module.entry`` (``asgd_step``,
    ``asgd_update``, ``sag_step``: ``(kernel, dtype, addresses, [scalars,] k, **flags)``), in order;
    the kernel still runs."""
    seen: list[tuple[str, int]] = []
    real = getattr(module, entry)

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append((args[1], args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, entry, recording)
    return seen


# --------------------------------------------------------------------------- framework adapters


def _paddle_clip(spec: tuple | None) -> Any:
    """A spec as Paddle's own ``ClipGradBy*`` object (built here, independent of the library's adapter)."""
    import paddle

    if spec is None:
        return None
    kind, *args = spec
    if kind == "global_norm":
        return paddle.nn.ClipGradByGlobalNorm(*args)
    if kind == "norm":
        return paddle.nn.ClipGradByNorm(*args)
    return paddle.nn.ClipGradByValue(max=args[-1], min=args[0] if len(args) == 2 else None)


def _paddle_regularizer(spec: tuple[str, float]) -> Any:
    import paddle

    kind, coeff = spec
    return paddle.regularizer.L2Decay(coeff) if kind == "l2" else paddle.regularizer.L1Decay(coeff)


def _kw_torch(kwargs: dict[str, Any]) -> dict[str, Any]:
    return dict(kwargs)


def _kw_paddle_ours(kwargs: dict[str, Any]) -> dict[str, Any]:
    """torch-style row -> asgd_bridge.paddle's arguments: learning_rate; ASGD's clip and regulariser
    as Paddle objects (as its signature asks); SAG takes specs itself."""
    out = dict(kwargs)
    if "lr" in out:
        out["learning_rate"] = out.pop("lr")
    if "regularizer" in out:
        out["weight_decay"] = _paddle_regularizer(out.pop("regularizer"))
    return out


def _kw_paddle_asgd_ours(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = _kw_paddle_ours(kwargs)
    if isinstance(out.get("grad_clip"), tuple):
        out["grad_clip"] = _paddle_clip(out["grad_clip"])
    return out


def _kw_paddle_target(kwargs: dict[str, Any]) -> dict[str, Any]:
    """torch-style SAG row -> paddle.optimizer.ASGD (no maximize: the run negates the gradients)."""
    out = _kw_paddle_ours(kwargs)
    out.pop("maximize", None)
    wd = out.get("weight_decay")
    if isinstance(wd, tuple):
        out["weight_decay"] = _paddle_regularizer(wd)
    if "grad_clip" in out:
        out["grad_clip"] = _paddle_clip(out["grad_clip"])
    return out


@dataclass(frozen=True)
class BackendInfo:
    """One optimizer class as the shared tests drive it.

    ``cls`` is imported lazily (``"module:Class"``); ``fixed`` are arguments it always gets (the
    implementation path); ``accepts`` the row keys it takes (torch's names); ``reference_rtol`` its
    float64 tolerance against :func:`reference_run`; ``target`` the framework class it must follow
    in float32 and the other dtypes of ``target_tol`` (relative to the largest magnitude; 0 = bit for
    bit; the scalar state ``step``/``eta``/``mu``/``m`` is compared exactly); ``is_target`` marks a
    framework's own class (a comparison target, never patched).
    """

    name: str
    algorithm: str
    framework: str
    cls: str
    accepts: frozenset[str]
    translate: Callable[[dict[str, Any]], dict[str, Any]] = _kw_torch
    fixed: dict[str, Any] = field(default_factory=dict)
    dtypes: tuple[str, ...] = ("float32", "float64")
    complex: bool = False
    averaged: bool = False
    reads_state: bool = True
    restores_lr: bool = True
    is_target: bool = False
    negate_for_maximize: bool = False
    #: a clip acts per param group (Paddle's Optimizer) or over every group together
    clip_per_group: bool = False
    #: (case kwargs, dtype) -> the reason the framework cannot run it (a row left out of the table)
    cannot: Callable[[dict[str, Any], str], str | None] = lambda kwargs, dtype: None
    reference_tol: dict[str, float] = field(default_factory=lambda: {"float64": 1e-12})
    target: str | None = None
    target_tol: dict[str, float] = field(default_factory=dict)
    #: another implementation path of the same class it must agree with (torch's foreach vs for-loop)
    sibling: str | None = None
    sibling_tol: dict[str, float] = field(default_factory=dict)

    @property
    def reference_rtol(self) -> float:
        return self.reference_tol["float64"]

    @property
    def info(self) -> AlgorithmInfo:
        return ALGORITHMS[self.algorithm]

    @property
    def fixes(self) -> bool:
        return {"immediate_lr", "bottou_average"} <= self.accepts

    def takes(self, kwargs: dict[str, Any]) -> bool:
        return set(kwargs) <= self.accepts or (self.negate_for_maximize and set(kwargs) - self.accepts
                                                <= {"maximize"})  # fmt: skip

    def optimizer_class(self) -> type:
        import importlib

        module, name = self.cls.split(":")
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    def make(self, p0s: Sequence[np.ndarray], kwargs: dict[str, Any], dtype: str, *,
             groups: bool = True) -> Run:
        """Build this optimizer on parameters holding ``p0s`` (cast to ``dtype``) with a case's ``kwargs``.

        With ``groups`` and three or more parameters, parameters 2.. form a second group at
        :data:`GROUP_LR` times the lr (torch: an absolute ``lr``; Paddle: a ``learning_rate`` multiplier).
        """  # fmt: skip
        run_cls = TorchRun if self.framework == "torch" else PaddleRun
        run = run_cls(self, p0s, kwargs, dtype, groups and len(p0s) > 2)
        n = len(p0s)
        run.clip_groups = [[0, 1], list(range(2, n))] if self.clip_per_group and n > 2 and groups else None
        return run

    def __str__(self) -> str:
        return self.name


_ASGD_TORCH = frozenset({"lr", "lambd", "alpha", "t0", "weight_decay", "maximize"})
_FIXES = frozenset({"immediate_lr", "bottou_average"})
_SAG_KEYS = frozenset({"lr", "batch_num", "weight_decay", "grad_clip", "maximize"})
_LOW = ("bfloat16", "float16")


def _paddle_cannot(kwargs: dict[str, Any], dtype: str) -> str | None:
    clip = kwargs.get("grad_clip")
    if dtype == "float64" and clip is not None and clip[0] == "norm":
        return "Paddle has no float64 CPU kernel for clip_by_norm (ClipGradByNorm)"
    return None


#: foreach (p - eta * (g + lambd p), eta in float32 arithmetic) against the for-loop, relative to the
#: largest magnitude. Measured worst cases after 6-8 steps: f32/c64 2e-7, f64 4e-8 (a float32 eta when
#: the default dtype is float32), f16 2e-3, bf16 1.3e-2.
FOREACH_TOL = {"float32": 1e-6, "complex64": 1e-6, "float64": 1e-6, "float16": 1e-2, "bfloat16": 5e-2}
_BIT = {"float32": 0, "float64": 0, "bfloat16": 0, "float16": 0, "complex64": 0}

BACKENDS: list[BackendInfo] = [
    # ---- comparison targets: the frameworks' own classes
    BackendInfo("torch.optim.ASGD(loop)", "asgd", "torch", "torch.optim:ASGD", _ASGD_TORCH,
                fixed={"foreach": False}, dtypes=("float32", "float64", *_LOW), complex=True, is_target=True),
    BackendInfo("torch.optim.ASGD(foreach)", "asgd", "torch", "torch.optim:ASGD", _ASGD_TORCH,
                fixed={"foreach": True}, dtypes=("float32", "float64", *_LOW), complex=True, is_target=True,
                reference_tol={"float64": 1e-10}),
    BackendInfo("paddle.optimizer.ASGD", "sag", "paddle", "paddle.optimizer:ASGD", _SAG_KEYS - {"maximize"},
                translate=_kw_paddle_target, reads_state=False, restores_lr=False,
                is_target=True, negate_for_maximize=True, clip_per_group=True, cannot=_paddle_cannot),
    # ---- averaged SGD
    BackendInfo("torch.ASGD(loop)", "asgd", "torch", "asgd_bridge.torch:ASGD", _ASGD_TORCH | _FIXES,
                fixed={"foreach": False}, dtypes=("float32", "float64", *_LOW), complex=True, averaged=True,
                target="torch.optim.ASGD(loop)", target_tol=_BIT),
    # foreach: p - eta * (g + lambd p), a different rounding from the loop's
    BackendInfo("torch.ASGD(foreach)", "asgd", "torch", "asgd_bridge.torch:ASGD", _ASGD_TORCH | _FIXES,
                fixed={"foreach": True}, dtypes=("float32", "float64", *_LOW), complex=True, averaged=True,
                reference_tol={"float64": 1e-10}, target="torch.optim.ASGD(foreach)", target_tol=_BIT,
                sibling="torch.ASGD(loop)", sibling_tol=FOREACH_TOL),
    # fused: the kernel rounds once (p * keep - eta * g may be one FMA); torch rounds after each op
    BackendInfo("torch.ASGD(fused)", "asgd", "torch", "asgd_bridge.torch:ASGD", _ASGD_TORCH | _FIXES,
                fixed={"fused": True}, dtypes=("float32", "float64"), complex=True, averaged=True,
                reference_tol={"float64": 1e-12}, target="torch.optim.ASGD(loop)",
                target_tol={"float32": 1e-5, "complex64": 1e-5}),
    # Paddle ASGD: float32 against the reference too (Paddle's clip_by_norm has float32 kernels only)
    BackendInfo("paddle.ASGD", "asgd", "paddle", "asgd_bridge.paddle:ASGD",
                _ASGD_TORCH | _FIXES | {"grad_clip", "regularizer"}, translate=_kw_paddle_asgd_ours,
                averaged=True, reference_tol={"float64": 1e-12, "float32": 1e-5},
                target="torch.optim.ASGD(loop)", target_tol={"float32": 1e-5}),
    # ---- SAG
    BackendInfo("torch.SAG", "sag", "torch", "asgd_bridge.torch:SAG", _SAG_KEYS, clip_per_group=True,
                target="paddle.optimizer.ASGD", target_tol={"float32": 1e-5}),
    BackendInfo("paddle.SAG", "sag", "paddle", "asgd_bridge.paddle:SAG", _SAG_KEYS,
                translate=_kw_paddle_ours, restores_lr=False, clip_per_group=True,
                target="paddle.optimizer.ASGD", target_tol={"float32": 1e-5}),
]  # fmt: skip

BY_NAME = {b.name: b for b in BACKENDS}


def cases_for(name: str) -> list[Case]:
    """The rows of its algorithm that backend ``name`` takes."""
    b = BY_NAME[name]
    return [c for c in b.info.cases if b.takes(c.kwargs)]

#: constructor arguments that every backend of a framework takes besides the row keys (for error rows)
EXTRA_ARGS = {
    ("asgd", "torch"): set(),
    ("asgd", "paddle"): {"multi_precision", "grad_clip", "name"},
    ("sag", "torch"): {"multi_precision", "check_memory"},
    ("sag", "paddle"): {"multi_precision", "check_memory", "name"},
}


# --------------------------------------------------------------------------- runs


class Run:
    """One optimizer on its parameters. Values are returned as float64 (complex128) NumPy arrays."""

    backend: BackendInfo
    opt: Any
    params: list[Any]
    factors: list[float]
    #: how a clip partitions the parameters (``reference_run``'s ``clip_groups``)
    clip_groups: list[list[int]] | None = None

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        raise NotImplementedError

    def values(self) -> list[np.ndarray]:
        raise NotImplementedError

    def states(self) -> list[dict[str, np.ndarray] | None]:
        raise NotImplementedError

    def save(self) -> bytes:
        raise NotImplementedError

    def load(self, data: bytes) -> None:
        raise NotImplementedError

    def model(self) -> Any:
        """A framework model owning the parameters, plus a parameter the optimizer does not own
        (``frozen``) and a buffer (``buf``), for ``averaged_state_dict``."""
        raise NotImplementedError

    def snapshot(self) -> Snapshot:
        return self.values(), self.states() if self.backend.reads_state else [None] * len(self.params)

    def run(self, grads: Sequence[Sequence[np.ndarray | None]], lrs: Sequence[float] | None = None) -> list:
        out = []
        for t, row in enumerate(grads):
            if lrs is not None:
                self.set_lr(lrs[t])
            self.step(row)
            out.append(self.snapshot())
        return out


def _wide(x: np.ndarray) -> np.ndarray:
    """A float64 (complex128) copy (never a view of a tensor's memory)."""
    return np.array(x, dtype=np.complex128 if np.iscomplexobj(x) else np.float64, copy=True)


class TorchRun(Run):
    def __init__(self, backend: BackendInfo, p0s: Sequence[np.ndarray], kwargs: dict[str, Any], dtype: str,
                 groups: bool) -> None:  # fmt: skip
        import torch

        self.backend, self.dtype = backend, getattr(torch, dtype)
        self.params = [torch.nn.Parameter(torch.tensor(np.asarray(p)).to(self.dtype)) for p in p0s]
        self.factors = lr_factors(len(p0s)) if groups else [1.0] * len(p0s)
        self.group_factors = [1.0, GROUP_LR] if groups else [1.0]
        kw = {**backend.translate(kwargs), **backend.fixed}
        lr = float(kwargs.get("lr", backend.info.defaults["lr"]))
        spec: Any = self.params
        if groups:
            spec = [{"params": self.params[:2]}, {"params": self.params[2:], "lr": lr * GROUP_LR}]
        self.opt = backend.optimizer_class()(spec, **kw)

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        import torch

        for p, g in zip(self.params, grads, strict=True):
            p.grad = None if g is None else torch.tensor(np.asarray(g)).to(self.dtype)
        self.opt.step()

    def set_lr(self, lr: float) -> None:
        for group, f in zip(self.opt.param_groups, self.group_factors, strict=True):
            group["lr"] = lr * f

    def values(self) -> list[np.ndarray]:
        return [_wide(p.detach().cpu().to(_torch_wide(p.dtype)).numpy()) for p in self.params]

    def states(self) -> list[dict[str, np.ndarray] | None]:
        out: list[dict[str, np.ndarray] | None] = []
        for p in self.params:
            st = self.opt.state.get(p)
            out.append(None if not st else {k: _torch_np(v) for k, v in st.items()})
        return out

    def save(self) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(self.opt.state_dict(), buf)
        return buf.getvalue()

    def load(self, data: bytes) -> None:
        import torch

        self.opt.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))

    def model(self) -> Any:
        import torch

        module = torch.nn.Module()
        for i, p in enumerate(self.params):
            module.register_parameter(f"p{i}", p)
        module.register_parameter("frozen", torch.nn.Parameter(torch.ones(2, dtype=self.dtype)))
        module.register_buffer("buf", torch.arange(3.0))
        return module


def _torch_wide(dtype: Any) -> Any:
    import torch

    return torch.complex128 if dtype.is_complex else torch.float64


def _torch_np(value: Any) -> np.ndarray:
    import torch

    if torch.is_tensor(value):
        return _wide(value.detach().cpu().to(_torch_wide(value.dtype)).numpy())
    return np.asarray(value, dtype=np.float64)


@contextmanager
def _tempdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield d


class PaddleRun(Run):
    def __init__(self, backend: BackendInfo, p0s: Sequence[np.ndarray], kwargs: dict[str, Any], dtype: str,
                 groups: bool) -> None:  # fmt: skip
        import paddle

        self.backend, self.dtype = backend, dtype
        self.negate = backend.negate_for_maximize and bool(kwargs.get("maximize"))
        self.params = [self._param(np.asarray(p)) for p in p0s]
        self.factors = lr_factors(len(p0s)) if groups else [1.0] * len(p0s)
        kw = {**backend.translate(kwargs), **backend.fixed}
        if backend.negate_for_maximize:
            kw.pop("maximize", None)
        spec: Any = self.params
        if groups:
            spec = [{"params": self.params[:2]}, {"params": self.params[2:], "learning_rate": GROUP_LR}]
        self.opt = backend.optimizer_class()(parameters=spec, **kw)
        self._paddle = paddle

    def _param(self, value: np.ndarray) -> Any:
        import paddle

        init = value.astype(np.float32 if self.dtype in _LOW else self.dtype)
        return paddle.create_parameter(list(value.shape), self.dtype,
                                       default_initializer=paddle.nn.initializer.Assign(init))  # fmt: skip

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        paddle = self._paddle
        sign = -1.0 if self.negate else 1.0
        for p, g in zip(self.params, grads, strict=True):
            p.clear_gradient(False)
            if g is not None:
                p.grad = paddle.to_tensor(sign * np.asarray(g), dtype=self.dtype)
        self.opt.step()

    def set_lr(self, lr: float) -> None:
        self.opt.set_lr(lr)

    def values(self) -> list[np.ndarray]:
        return [_wide(p.astype("float64").numpy()) for p in self.params]

    def states(self) -> list[dict[str, np.ndarray] | None]:
        if self.backend.algorithm == "asgd":
            table = self.opt.state
            return [None if p not in table else {k: self._np(table[p][k]) for k in table[p]}
                    for p in self.params]  # fmt: skip
        saved = self.opt.state_dict()["state"]
        return [None if i not in saved else {k: self._np(v) for k, v in saved[i].items() if k != "master"}
                for i in range(len(self.params))]  # fmt: skip

    def _np(self, value: Any) -> np.ndarray:
        if isinstance(value, self._paddle.Tensor):
            return _wide(value.astype("float64").numpy())
        return np.asarray(value, dtype=np.float64)

    def save(self) -> bytes:
        with _tempdir() as d:
            path = os.path.join(d, "opt.pdopt")
            self._paddle.save(self.opt.state_dict(), path)
            with open(path, "rb") as f:
                return f.read()

    def load(self, data: bytes) -> None:
        with _tempdir() as d:
            path = os.path.join(d, "opt.pdopt")
            with open(path, "wb") as f:
                f.write(data)
            self.opt.set_state_dict(self._paddle.load(path))

    def model(self) -> Any:
        paddle = self._paddle
        layer = paddle.nn.Layer()
        for i, p in enumerate(self.params):
            layer.add_parameter(f"p{i}", p)
        layer.add_parameter("frozen", self._param(np.ones(2)))
        layer.register_buffer("buf", paddle.arange(3, dtype="float32"))
        return layer
