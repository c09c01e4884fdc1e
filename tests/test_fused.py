"""The fused averaged-SGD step (asgd_bridge.torch._fused): the kernel, its build, fallbacks and other paths.

Tolerances (documented in docs/benchmarks.md too):

* float64 parameters and state vs ``reference.asgd_step``: rtol 1e-12 (the kernel may contract
  ``p * keep - eta * g`` into one FMA; nothing else differs) -- ``ASGD(fused=True)`` in the table
  (``optim_info``, run by ``test_backends.py``), every case and fix, with eta/mu/step.
* float32 / complex64 vs ``torch.optim.ASGD(foreach=False)``: rtol 1e-5 after 6 steps, eta/mu/step
  exactly (torch rounds after the multiply and after the add; the kernel rounds once) -- the table too.
* bfloat16 / float16 vs the float64 reference rounded to the storage dtype after every step: one
  unit in the last place at the values' scale, ``rtol = atol / max|p| = eps`` (the kernel computes
  in float32 and rounds once on store, so a double rounding can differ by one ulp).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from optim_info import ASGD_INFO, case_id, cases_for, reference_run

from asgd_bridge import reference as ref
from asgd_bridge._native import asgd as native_asgd
from asgd_bridge._native import build as native_build
from asgd_bridge.torch import _fused

STEPS = 6
ASGD_CASES = [c.kwargs for c in cases_for("torch.ASGD(fused)")]
FIXES = ASGD_INFO.fixes
HP_DEFAULTS = {"lr": 1e-2, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6, "weight_decay": 0.0, "maximize": False}


def lr_at(lr: float, t: int) -> float:
    """A changing lr (as a scheduler would set it), so immediate_lr is exercised."""
    return lr * 0.8**t


def new_state(params: list[Any], lr: float, sdtype: Any = None) -> tuple[list, list, list, list]:
    """axs, mus, etas, steps laid out as torch.optim.ASGD creates them."""
    sdtype = sdtype or torch.float32
    axs = [torch.zeros_like(p) for p in params]
    mus = [torch.ones((), dtype=sdtype) for _ in params]
    etas = [torch.tensor(lr, dtype=sdtype) for _ in params]
    steps = [torch.zeros((), dtype=sdtype) for _ in params]
    return axs, mus, etas, steps


def run_fused(params: list[Any], grads: list[list[Any]], hp: dict[str, Any], sdtype: Any = None) -> list:
    """STEPS fused steps in place on ``params``; returns the axs."""
    full = {**HP_DEFAULTS, **hp}
    axs, mus, etas, steps = new_state(params, full["lr"], sdtype)
    for t, gs in enumerate(grads):
        _fused.fused_asgd_(
            params, gs, axs, mus, etas, steps,
            lr=lr_at(full["lr"], t), lambd=full["lambd"], alpha=full["alpha"], t0=full["t0"],
            weight_decay=full["weight_decay"], maximize=full["maximize"],
            immediate_lr=hp.get("immediate_lr", False), bottou_average=hp.get("bottou_average", False),
        )  # fmt: skip
    return axs


def run_reference(p0: np.ndarray, grads: list[np.ndarray], hp: dict[str, Any], round_to: Any = None):
    """The spec's trajectory (``optim_info.reference_run``) with the lr of :func:`lr_at`; ``round_to``
    (a torch dtype) rounds p and ax after every step."""
    lr = {**HP_DEFAULTS, **hp}["lr"]
    rnd = None if round_to is None else (lambda x: torch.from_numpy(x).to(round_to).double().numpy())
    lrs = [lr_at(lr, t) for t in range(len(grads))]
    params, states = reference_run(ASGD_INFO, [p0], [[g] for g in grads], hp, lrs, round_to=rnd)[-1]
    return params[0], ref.ASGDState(**states[0])


def _fixes(hp: dict[str, Any]) -> dict[str, bool]:
    return {k: hp[k] for k in ("immediate_lr", "bottou_average") if k in hp}


def test_kernel_builds_with_openmp() -> None:
    # CI has gcc: the fused tests below must exercise the kernel, not the fallback.
    assert _fused.load_cpu_kernel() is not None
    info = _fused.build_info()
    assert info.openmp and info.path and not info.error


@pytest.mark.parametrize("fix", [{}, *FIXES], ids=case_id)
@pytest.mark.parametrize("case", ASGD_CASES, ids=case_id)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_within_one_ulp(case: dict, fix: dict, dtype: str, rng: np.random.Generator) -> None:
    hp = {**case, **fix}
    dt = getattr(torch, dtype)
    p = torch.tensor(rng.normal(size=(7, 33))).to(dt)
    p0 = p.double().numpy()
    grads = [torch.tensor(rng.normal(size=(7, 33))).to(dt) for _ in range(STEPS)]
    axs = run_fused([p], [[g] for g in grads], hp)
    want_p, want = run_reference(p0, [g.double().numpy() for g in grads], hp, round_to=dt)
    # One ulp of the values' scale: a double rounding (float32, then storage) can differ by one ulp,
    # and ax averages such values, so an element near a cancellation is judged at the scale of p.
    eps = torch.finfo(dt).eps
    scale = np.abs(want_p).max()
    np.testing.assert_allclose(p.double().numpy(), want_p, rtol=eps, atol=eps * scale)
    np.testing.assert_allclose(axs[0].double().numpy(), want.ax, rtol=eps, atol=eps * scale)


def test_mixed_dtypes_layouts_in_one_call(rng: np.random.Generator) -> None:
    # One call groups by dtype; a channels_last tensor goes through the kernel; a transposed
    # (non-dense-matching) one through the foreach path, with a warning. All match the spec.
    hp = {"lr": 0.05, "t0": 2, "weight_decay": 0.01}
    shapes = [(4, 5), (3,), (2, 3, 4, 5), (6, 4)]
    p0s = [rng.normal(size=s) for s in shapes]
    gs = [[rng.normal(size=s) for s in shapes] for _ in range(STEPS)]
    params = [
        torch.tensor(p0s[0], dtype=torch.float32),
        torch.tensor(p0s[1], dtype=torch.float64),
        torch.tensor(p0s[2], dtype=torch.float32).to(memory_format=torch.channels_last),
        torch.tensor(p0s[3].T.copy(), dtype=torch.float32).t(),
    ]

    def like(g: np.ndarray, p: Any) -> Any:
        out = torch.empty_like(p)  # same layout as p
        out.copy_(torch.tensor(g, dtype=p.dtype))
        return out

    grads = [[like(g, p) for g, p in zip(step, params, strict=True)] for step in gs]
    grads[0][3] = grads[0][3].contiguous()  # a layout that differs from its param's
    with pytest.warns(RuntimeWarning, match="foreach path"):
        native_build._warned.discard("cpu-rest")
        axs = run_fused(params, grads, hp)
    for i, p in enumerate(params):
        want_p, want = run_reference(p0s[i], [g[i] for g in gs], hp)
        rtol = 1e-12 if p.dtype == torch.float64 else 1e-5
        np.testing.assert_allclose(p.numpy(), want_p, rtol=rtol, atol=1e-6)
        np.testing.assert_allclose(axs[i].numpy(), want.ax, rtol=rtol, atol=1e-6)


def test_bumps_autograd_version() -> None:
    p, g = torch.ones(4), torch.ones(4)
    axs, mus, etas, steps = new_state([p], 0.1)
    before = p._version, axs[0]._version
    _fused.fused_asgd_([p], [g], axs, mus, etas, steps, **{**HP_DEFAULTS, "lr": 0.1})
    assert p._version > before[0] and axs[0]._version > before[1]


def test_falls_back_with_a_warning_when_the_build_fails(monkeypatch: pytest.MonkeyPatch, rng) -> None:
    def broken() -> Any:
        raise _fused.FusedUnavailable("no C compiler found (forced by the test)")

    monkeypatch.setattr(native_asgd, "_load", broken)
    monkeypatch.setattr(native_asgd.LOADER, "kernel", None)
    monkeypatch.setattr(native_asgd.LOADER, "error", None)
    monkeypatch.setattr(native_build, "_warned", set())
    hp = {"lr": 0.1, "lambd": 0.01, "alpha": 0.5, "t0": 2, "weight_decay": 0.01, "bottou_average": True}
    p0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(STEPS)]
    p = torch.tensor(p0)
    with pytest.warns(RuntimeWarning, match=r"falls back to foreach: no C compiler found \(forced"):
        axs = run_fused([p], [[torch.tensor(g)] for g in grads], hp, sdtype=torch.float64)
    with pytest.raises(_fused.FusedUnavailable, match="forced"):
        _fused.load_cpu_kernel()
    want_p, want = run_reference(p0, grads, hp)
    np.testing.assert_allclose(p.numpy(), want_p, rtol=1e-12)
    np.testing.assert_allclose(axs[0].numpy(), want.ax, rtol=1e-12)


def test_compiler_errors_are_reported(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # A compiler that fails every flag set: the error names the command and its output.
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    with pytest.raises(_fused.FusedUnavailable, match="could not build the CPU kernel"):
        native_asgd._load()


@pytest.mark.parametrize("fix", [{}, *FIXES], ids=case_id)
@pytest.mark.parametrize("case", ASGD_CASES, ids=case_id)
@pytest.mark.parametrize("path", ["foreach", "device"])
def test_fallback_and_device_paths_match_reference(
    case: dict, fix: dict, path: str, rng: np.random.Generator
) -> None:
    # The paths other devices take (foreach fallback; the per-tensor update that torch.compile fuses
    # on CUDA, run eagerly here), on CPU float64 tensors against the spec.
    hp = {**case, **fix}
    full = {**HP_DEFAULTS, **case}
    p0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(STEPS)]
    p = torch.tensor(p0)
    axs, mus, etas, steps = new_state([p], full["lr"], torch.float64)
    for t, g in enumerate(grads):
        kw = {**full, "lr": lr_at(full["lr"], t), "immediate_lr": False, "bottou_average": False, **fix}
        gt = torch.tensor(g)
        if path == "foreach":
            _fused._foreach_asgd_([p], [gt], axs, mus, etas, steps, **kw)
        else:
            _fused._update_one(p, gt, axs[0], mus[0], etas[0], steps[0], **kw)
    want_p, want = run_reference(p0, grads, hp)
    np.testing.assert_allclose(p.numpy(), want_p, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(axs[0].numpy(), want.ax, rtol=1e-12, atol=1e-14)
    assert etas[0].item() == pytest.approx(want.eta, rel=1e-12)
    assert mus[0].item() == pytest.approx(want.mu, rel=1e-12)


def test_asgd_class_fused_matches_torch() -> None:
    from asgd_bridge.torch import ASGD

    gen = torch.Generator().manual_seed(2)
    p0 = [torch.randn(s, generator=gen) for s in ((8, 3), (3,), ())]
    grads = [[torch.randn_like(p) for p in p0] for _ in range(STEPS)]
    theirs = [p.clone().requires_grad_() for p in p0]
    ours = [p.clone().requires_grad_() for p in p0]
    hp = {"lr": 0.05, "t0": 2, "weight_decay": 0.01, "lambd": 0.01}
    a, b = torch.optim.ASGD(theirs, foreach=False, **hp), ASGD(ours, fused=True, **hp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the kernel must run, not the fallback
        for gs in grads:
            for x, y, g in zip(theirs, ours, gs, strict=True):
                x.grad, y.grad = g.clone(), g.clone()
            a.step()
            b.step()
    for x, y in zip(theirs, ours, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.state[y]["ax"], a.state[x]["ax"], rtol=1e-5, atol=1e-6)


def test_build_shared_library_builds_other_sources(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # The reusable builder (the benchmarks' STREAM probe uses it): same cache, flags and ctypes load.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    src = tmp_path / "twice.c"
    src.write_text("int twice(int x) { return 2 * x; }\n")
    lib = native_build.build_shared_library(src, "twice")
    assert lib.twice(21) == 42
    info = lib.asgd_build_info
    assert not info.cached and Path(info.path).name.startswith("twice_")
    assert native_build.build_shared_library(src, "twice").asgd_build_info.cached


def test_a_changed_header_beside_the_source_is_a_new_cache_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The kernels include share.h from their own directory: a cached library built with another
    # version of it must not be loaded.
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    (tmp_path / "factor.h").write_text("#define FACTOR 2\n")
    src = tmp_path / "scaled.c"
    src.write_text('#include "factor.h"\nint scaled(int x) { return FACTOR * x; }\n')
    assert native_build.build_shared_library(src, "scaled").scaled(21) == 42
    (tmp_path / "factor.h").write_text("#define FACTOR 3\n")
    lib = native_build.build_shared_library(src, "scaled")
    assert not lib.asgd_build_info.cached and lib.scaled(21) == 63
