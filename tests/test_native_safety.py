"""The native kernel's trust boundary: checked pointers only, a cache nobody else can plant.

Every case that could crash the interpreter (a write past a buffer, a planted library) runs in a
child process: the test fails when the child dies by a signal, and otherwise requires a clean exit
or the expected Python exception naming the problem (see :func:`run_child`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from asgd_bridge.torch import ASGD
from asgd_bridge.torch._fused import fused_asgd_

# The children print one JSON line: the asgd_bridge RuntimeWarnings of the steps, and facts to check.
PRELUDE = """
import json, os, sys, warnings
import torch
from asgd_bridge.torch import ASGD

def steps_match_torch(params, steps=6, **hp):
    '''ASGD(fused=True) against torch.optim.ASGD(foreach=False) on clones of params.'''
    hp = {"lr": 0.05, "t0": 2, "weight_decay": 0.01, "lambd": 0.01, **hp}
    gen = torch.Generator().manual_seed(3)
    ours = [torch.nn.Parameter(p.clone()) for p in params]
    theirs = [torch.nn.Parameter(p.clone()) for p in params]
    a, b = ASGD(ours, fused=True, **hp), torch.optim.ASGD(theirs, foreach=False, **hp)
    for _ in range(steps):
        for x, y in zip(ours, theirs):
            g = torch.randn(x.shape, dtype=x.dtype, generator=gen)
            x.grad, y.grad = g.clone(), g.clone()
        a.step()
        b.step()
    for x, y in zip(ours, theirs):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.state[x]["ax"], b.state[y]["ax"], rtol=1e-5, atol=1e-6)

def report(caught, **facts):
    msgs = [str(w.message) for w in caught
            if issubclass(w.category, RuntimeWarning) and "asgd_bridge" in str(w.message)]
    print(json.dumps({"warnings": msgs, **facts}))
"""


def run_child(
    code: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``PRELUDE + code`` in a fresh interpreter; fail if it is killed by a signal."""
    res = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert res.returncode >= 0, f"child killed by signal {-res.returncode}:\n{res.stderr[-3000:]}"
    return res


def expect_ok(code: str, env: dict[str, str] | None = None) -> dict:
    res = run_child(code, env)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def expect_error(code: str, error: str, pattern: str, env: dict[str, str] | None = None) -> str:
    """The child exits with 1 and its traceback ends in ``error: <message matching pattern>``."""
    res = run_child(code, env)
    last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
    assert res.returncode == 1 and last.startswith(f"{error}: "), res.stderr[-3000:]
    assert re.search(pattern, last), last
    return last


# --------------------------------------------------------------------------- tensors the kernel sees


@pytest.mark.parametrize("n", [8, 1 << 20, 20 << 20], ids=["8", "1M", "20M"])
def test_short_ax_set_by_hand_raises_naming_the_parameter(n: int) -> None:
    # Before: silent corruption at 8 elements, a hang at 1M, SIGSEGV at 20M.
    expect_error(
        f"""
        n = {n}
        keep = torch.nn.Parameter(torch.zeros(3))
        p = torch.nn.Parameter(torch.zeros(n))
        opt = ASGD([keep, p], fused=True)
        keep.grad, p.grad = torch.ones(3), torch.ones(n)
        opt.step()
        opt.state[p]["ax"] = torch.zeros(n // 2)  # edited by hand after loading
        opt.step()
        """,
        "ValueError",
        rf"state 'ax' of params\[1\] has {n // 2} elements .*the parameter has {n}\b",
    )


def test_compiled_step_still_checks_every_tensor() -> None:
    # Under torch.compile the kernel runs as the op asgd_bridge::fused_asgd_: its checks run at
    # every call, not once at trace time (the fake implementation checks nothing).
    expect_error(
        """
        n = 1 << 20
        p = torch.nn.Parameter(torch.zeros(n))
        opt = ASGD([p], fused=True)
        step = torch.compile(opt.step)
        p.grad = torch.ones(n)
        step()
        opt.state[p]["ax"] = torch.zeros(n // 2)  # edited by hand between compiled steps
        step()
        """,
        "ValueError",
        rf"state 'ax' of params\[0\] has {(1 << 20) // 2} elements .*the parameter has {1 << 20}\b",
    )


@pytest.mark.parametrize("order", ["complex-first", "real-first"])
def test_complex64_and_float32_in_one_group_both_update(order: str) -> None:
    # Before: [c, r] aborted ("corrupted size vs. prev_size"); [r, c] left half of c unchanged.
    out = expect_ok(
        f"""
        gen = torch.Generator().manual_seed(0)
        c = torch.randn(1000, dtype=torch.complex64, generator=gen)
        r = torch.randn(1000, generator=gen)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            steps_match_torch([c, r] if {order!r} == "complex-first" else [r, c])
        report(caught)
        """
    )
    assert out["warnings"] == []  # both went through the kernel, not the fallback


def test_dtensor_parameter_steps_on_its_local_shard() -> None:
    # Before: the DTensor's data_ptr() (0) reached the kernel: SIGSEGV on every rank.
    out = expect_ok(
        """
        import torch.distributed as dist
        from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        mesh = init_device_mesh("cpu", (1,))
        gen = torch.Generator().manual_seed(0)
        p0 = torch.randn(8, 4, generator=gen)
        grads = [torch.randn(8, 4, generator=gen) for _ in range(6)]
        d = torch.nn.Parameter(distribute_tensor(p0.clone(), mesh, [Shard(0)]))
        r = torch.nn.Parameter(p0.clone())
        hp = {"lr": 0.05, "t0": 2, "lambd": 0.01}
        a, b = ASGD([d], fused=True, **hp), ASGD([r], fused=False, **hp)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for g in grads:
                d.grad = distribute_tensor(g.clone(), mesh, [Shard(0)])
                r.grad = g.clone()
                a.step()
                b.step()
        torch.testing.assert_close(d.full_tensor(), r.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.state[d]["ax"].full_tensor(), b.state[r]["ax"], rtol=1e-5, atol=1e-6)
        report(caught, version=d._version)
        dist.destroy_process_group()
        """
    )
    assert out["warnings"] == []  # the local shard went through the kernel
    assert out["version"] == 6  # the DTensor's own version counter is bumped, as an in-place op would


def test_meta_params_raise_at_construction_like_torch_fused() -> None:
    # torch's message (torch.optim.Adam(..., fused=True) raises it at the first step).
    p = torch.nn.Parameter(torch.zeros(3, device="meta"))
    q = torch.nn.Parameter(torch.zeros(3, device="meta"))
    q.grad = torch.zeros(3, device="meta")
    adam = torch.optim.Adam([q], fused=True)
    with pytest.raises(RuntimeError) as theirs:
        adam.step()
    assert "`fused=True` requires all the params to be floating point Tensors" in str(theirs.value)
    with pytest.raises(RuntimeError, match=re.escape(str(theirs.value))):
        ASGD([p], fused=True)
    opt = ASGD([torch.nn.Parameter(torch.zeros(2))], fused=True)
    with pytest.raises(RuntimeError, match=re.escape(str(theirs.value))):
        opt.add_param_group({"params": [p]})
    assert len(opt.param_groups) == 1  # the refused group is not kept
    # The functional entry point refuses meta tensors too (no seconds-long torch.compile on meta).
    with pytest.raises(RuntimeError, match=re.escape(str(theirs.value))):
        fused_asgd_(
            [p.detach()], [q.grad], [torch.zeros_like(q)], [torch.ones(())], [torch.tensor(0.01)],
            [torch.zeros(())], lr=0.01, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, maximize=False,
        )  # fmt: skip


def test_capturable_fused_on_cpu_raises_like_the_foreach_path() -> None:
    def step(**kw: bool) -> str:
        p = torch.nn.Parameter(torch.zeros(3))
        p.grad = torch.ones(3)
        with pytest.raises(AssertionError) as e:
            ASGD([p], capturable=True, **kw).step()
        return str(e.value)

    foreach = step(foreach=True)
    assert "capturable=True" in foreach and "supported devices" in foreach
    assert step(fused=True) == foreach


# --------------------------------------------------------------------------- the build cache


EVIL_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(getenv("ASGD_TEST_MARKER"), "w");
    if (f) { fputs("planted code ran\n", f); fclose(f); }
}
int asgd_dtypes(void) { return 0; }
"""

STEP_AND_REPORT = """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    steps_match_torch([torch.randn(64), torch.randn(3, 5)])
from asgd_bridge._native import asgd as native
report(caught, path=native.build_info().path, cached=native.build_info().cached,
       compiler=native.build_info().compiler)
"""


@pytest.fixture(scope="module")
def cache_names(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The record and library stem a clean build of the kernel uses here (built once, in a child)."""
    probe = tmp_path_factory.mktemp("probe")
    expect_ok(STEP_AND_REPORT, env={"TORCH_EXTENSIONS_DIR": str(probe)})
    names = sorted(os.listdir(probe / "asgd_bridge"))
    record = next(n for n in names if n.startswith("asgd_cpu_") and n.endswith(".sha256"))
    return record, record.removesuffix(".sha256")


def _plant(directory: Path, tmp_path: Path, record: str, stem: str) -> Path:
    """A library whose constructor writes a marker, under the names the cache looks up, with its
    correct sha256 record (whoever can write the directory can compute it)."""
    src = tmp_path / "evil.c"
    src.write_text(EVIL_C)
    built = tmp_path / "evil.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(built), str(src)], check=True)
    data = built.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    lib = directory / f"{stem}_{digest[:16]}.so"
    lib.write_bytes(data)
    (directory / record).write_text(digest + "\n")
    os.chmod(lib, 0o755)
    os.chmod(directory / record, 0o644)
    return lib


ATTACKS = ["dir-world-writable", "dir-other-uid", "file-other-uid", "file-group-writable", "hash-mismatch"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_planted_library_is_never_loaded(attack: str, cache_names: tuple[str, str], tmp_path: Path) -> None:
    record, stem = cache_names
    root = tmp_path / "shared"
    directory = root / "asgd_bridge"
    lib = _plant(directory, tmp_path, record, stem)
    if attack == "dir-world-writable":
        os.chmod(directory, 0o1777)  # a shared TORCH_EXTENSIONS_DIR, as on many clusters
    elif attack == "dir-other-uid":
        os.chmod(directory, 0o700)
        os.chown(directory, 65534, 65534)  # tests run as root: a directory of "nobody"
    elif attack == "file-other-uid":
        os.chmod(directory, 0o700)
        os.chown(lib, 65534, 65534)
    elif attack == "file-group-writable":
        os.chmod(directory, 0o700)
        os.chmod(lib, 0o775)
    else:
        os.chmod(directory, 0o700)
        (directory / record).write_text("0" * 64 + "\n")
        lib.rename(directory / f"{stem}_{'0' * 16}.so")
    marker = tmp_path / "marker"
    out = expect_ok(STEP_AND_REPORT, env={"TORCH_EXTENSIONS_DIR": str(root), "ASGD_TEST_MARKER": str(marker)})
    assert not marker.exists(), "the planted library was loaded"
    assert not out["cached"]  # this process built the library it loaded
    if attack.startswith("dir-"):
        assert len(out["warnings"]) == 1, out["warnings"]
        why = "writable by group or others" if attack == "dir-world-writable" else "owned by uid 65534"
        assert str(directory) in out["warnings"][0] and why in out["warnings"][0]
        assert not out["path"].startswith(str(root))  # built in a private temporary directory
    else:
        assert out["warnings"] == []  # the directory is private: rebuilt in place
        assert out["path"].startswith(str(directory))


def test_cache_is_created_private_and_reused(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    first = expect_ok(STEP_AND_REPORT, env={"TORCH_EXTENSIONS_DIR": str(root)})
    assert (os.stat(root / "asgd_bridge").st_mode & 0o777) == 0o700
    assert not first["cached"] and first["warnings"] == []
    second = expect_ok(STEP_AND_REPORT, env={"TORCH_EXTENSIONS_DIR": str(root)})
    assert second["cached"] and second["path"] == first["path"]


def test_uncreatable_cache_falls_back_with_one_warning(tmp_path: Path) -> None:
    # As root, permission bits do not stop writes: a cache under a regular file cannot be created.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = expect_ok(STEP_AND_REPORT, env={"TORCH_EXTENSIONS_DIR": str(blocker / "cache")})
    assert len(out["warnings"]) == 1, out["warnings"]
    message = out["warnings"][0]
    assert str(blocker / "cache" / "asgd_bridge") in message and "cannot be created" in message
    assert out["path"] and not out["path"].startswith(str(blocker))


def test_no_cache_and_no_temporary_directory_falls_back_to_foreach(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = f"import tempfile; tempfile.tempdir = {str(blocker / 'tmp')!r}\n" + STEP_AND_REPORT
    out = expect_ok(code, env={"TORCH_EXTENSIONS_DIR": str(blocker / "cache")})
    assert len(out["warnings"]) == 1, out["warnings"]
    assert "falls back to foreach" in out["warnings"][0] and "cannot be created" in out["warnings"][0]


def test_cc_with_arguments_is_split_like_a_shell(tmp_path: Path) -> None:
    out = expect_ok(STEP_AND_REPORT, env={"TORCH_EXTENSIONS_DIR": str(tmp_path / "cache"), "CC": "env gcc"})
    assert out["compiler"] == "env gcc" and not out["cached"] and out["warnings"] == []
