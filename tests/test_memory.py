"""The memory estimate of SAG's stored gradients (asgd_bridge.memory) and both SAG classes using it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import pytest
import torch

from asgd_bridge import memory
from asgd_bridge.memory import SAGMemoryError, StateTensor, check_sag_memory, sag_state_bytes
from asgd_bridge.paddle import SAG as PaddleSAG
from asgd_bridge.torch import SAG as TorchSAG

paddle.set_device("cpu")

MiB = 1024**2


def test_estimate_counts_batch_num_gradients_plus_d() -> None:
    t = StateTensor("w", (1000,), 1000, 4, 4000)
    assert sag_state_bytes(t, 7) == 7 * 4000 + 4000
    needed = check_sag_memory([t, StateTensor("b", (10,), 10, 4, 40)], 7, available=lambda d: None)
    assert needed == {"cpu": 8 * 4000 + 8 * 40}


def test_refusal_names_sizes_largest_parameter_and_a_batch_num_that_fits() -> None:
    big = StateTensor("fc.weight", (1024, 1024), 1024 * 1024, 4, 4 * MiB)
    small = StateTensor("fc.bias", (1024,), 1024, 4, 4096)
    with pytest.raises(SAGMemoryError) as err:
        check_sag_memory([small, big], 100, available=lambda d: 50 * MiB)
    msg = str(err.value)
    assert isinstance(err.value, MemoryError)
    assert "fc.weight [1024, 1024]" in msg and "batch_num=100" in msg
    assert "only 50.0 MiB" in msg and "check_memory=False" in msg
    # the suggestion's state takes at most 80 % of the 50 MiB: (40 MiB - d of both) // (one stored
    # gradient of both) = 8 (it was 11, all of the 50 MiB, before the headroom)
    fits = int(memory.SUGGESTED_FRACTION * 50 * MiB - (4 * MiB + 4096)) // (4 * MiB + 4096)
    assert f"at most {fits} (which keeps 20% of the available memory free)" in msg
    needed = check_sag_memory([small, big], fits, available=lambda d: 50 * MiB)  # and that one does fit
    assert needed["cpu"] <= memory.SUGGESTED_FRACTION * 50 * MiB < needed["cpu"] + 4 * MiB + 4096


def test_per_device_and_skip_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = StateTensor("a", (10,), 10, 4, 40, "cpu")
    gpu = StateTensor("b", (10,), 10, 4, 40, "cuda:0")
    free = {"cpu": 10**9, "cuda:0": 100}
    with pytest.raises(SAGMemoryError, match="on cuda:0"):
        check_sag_memory([cpu, gpu], 3, available=free.get)
    check_sag_memory([cpu, gpu], 3, available=free.get, check=False)
    monkeypatch.setenv(memory.ENV_SKIP, "1")
    check_sag_memory([cpu, gpu], 3, available=free.get)


def test_available_bytes_reads_this_machine() -> None:
    free = memory.available_bytes("cpu")
    assert free is None or free > 0
    assert memory.available_bytes("tpu:0") is None


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_both_sag_classes_refuse_before_allocating(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    if backend == "torch":
        params = [torch.nn.Parameter(torch.zeros(256, 256)), torch.nn.Parameter(torch.zeros(256))]

        def make(**kw: object) -> object:
            return TorchSAG(params, lr=0.1, batch_num=50, **kw)

        largest = "param_groups[0]['params'][0] [256, 256]"
    else:
        params = [
            paddle.create_parameter([256, 256], "float32"),
            paddle.create_parameter([256], "float32"),
        ]

        def make(**kw: object) -> object:
            return PaddleSAG(learning_rate=0.1, batch_num=50, parameters=params, **kw)

        largest = f"{params[0].name} [256, 256]"
    with pytest.raises(SAGMemoryError) as err:
        make()
    assert largest in str(err.value) and "lower batch_num to at most 2" in str(err.value)
    opt = make(check_memory=False)
    monkeypatch.setenv(memory.ENV_SKIP, "1")
    make()
    assert opt is not None


def test_torch_named_parameters_appear_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    model = torch.nn.Linear(100, 10)
    with pytest.raises(SAGMemoryError, match=r"weight \[10, 100\]"):
        TorchSAG(model.named_parameters(), batch_num=10)


def test_multi_precision_counts_master_and_fp32_d(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def spy(tensors: object, batch_num: int, **kw: object) -> dict:
        seen.extend(tensors)
        return {}

    import asgd_bridge.torch.sag as tsag

    monkeypatch.setattr(tsag, "check_sag_memory", spy)
    TorchSAG([torch.nn.Parameter(torch.zeros(8, dtype=torch.float16))], batch_num=4, multi_precision=True)
    (t,) = seen
    assert (t.state_itemsize, t.extra_bytes) == (2, 8 * 8)  # y in fp16; d and master in fp32
    assert np.isclose(sag_state_bytes(t, 4), 4 * 8 * 2 + 64)


def test_refusal_lists_the_three_largest_parameters_in_order() -> None:
    ts = [StateTensor(f"p{k}", (k * 1000,), k * 1000, 4, k * 4000) for k in (2, 5, 1, 4, 3)]
    with pytest.raises(SAGMemoryError) as err:
        check_sag_memory(ts, 10, available=lambda d: 100_000)
    msg = str(err.value)
    largest = msg[msg.index("Largest: ") : msg.index("To fix")]
    assert [name for name in ("p5", "p4", "p3", "p2", "p1") if name in largest] == ["p5", "p4", "p3"]
    assert largest.index("p5 [5000]") < largest.index("p4 [4000]") < largest.index("p3 [3000]")


def test_per_tensor_batch_num_and_committed_state_count_in_the_total() -> None:
    a = StateTensor("a", (1000,), 1000, 4, 4000, batch_num=8)
    b = StateTensor("b", (1000,), 1000, 4, 4000, batch_num=7)
    old = StateTensor("old", (1000,), 1000, 4, 4000, batch_num=3)
    assert check_sag_memory([a, b], 1, available=lambda d: None) == {"cpu": 9 * 4000 + 8 * 4000}
    assert check_sag_memory([a], 1, committed=[old], available=lambda d: None) == {"cpu": 9 * 4000 + 4 * 4000}
    # 68 KB needed, 60 KB free, 80 % of it = 48 KB: capping both at 5 takes 8 KB of d + 10 * 4 KB
    with pytest.raises(SAGMemoryError, match=r"batch_num=7, 8 \(per group\).*lower batch_num to at most 5"):
        check_sag_memory([a, b], 1, available=lambda d: 60_000)
    # 36 KB free, 80 % = 28.8 KB: old's 16 KB + a's d 4 KB + 2 * 4 KB
    with pytest.raises(SAGMemoryError, match=r"already in the optimizer.*lower batch_num to at most 2"):
        check_sag_memory([a], 1, committed=[old], available=lambda d: 36_000)


# one 128 x 128 float32 parameter with batch_num 8 needs 8 * 64 KiB + 64 KiB (d) = 576 KiB: one fits in
# 1 MiB, two do not
@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_groups_that_fit_one_by_one_but_not_together_are_refused(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    if backend == "torch":
        a, b = (torch.nn.Parameter(torch.zeros(128, 128)) for _ in range(2))
        groups = [{"params": [a]}, {"params": [b], "batch_num": 7}]
        TorchSAG(groups[:1], batch_num=8)  # each group alone fits
        TorchSAG([{"params": [b], "batch_num": 7}], batch_num=8)

        def make() -> object:
            return TorchSAG(groups, batch_num=8)

        names = ("param_groups[0]['params'][0]", "param_groups[1]['params'][0]")
    else:
        a, b = (paddle.create_parameter([128, 128], "float32") for _ in range(2))
        groups = [{"params": [a]}, {"params": [b], "batch_num": 7}]
        PaddleSAG(learning_rate=0.1, batch_num=8, parameters=groups[:1])
        PaddleSAG(learning_rate=0.1, batch_num=8, parameters=groups[1:])

        def make() -> object:
            return PaddleSAG(learning_rate=0.1, batch_num=8, parameters=groups)

        names = (a.name, b.name)
    with pytest.raises(SAGMemoryError) as err:
        make()
    msg = str(err.value)
    assert "1.1 MiB" in msg and "only 1.0 MiB" in msg and "batch_num=7, 8 (per group)" in msg
    assert all(f"{n} [128, 128]" in msg for n in names)
    # 2 * 64 KiB of d + 2 * 5 * 64 KiB <= 80 % of 1 MiB (7, the whole MiB, before the headroom)
    assert "lower batch_num to at most 5" in msg
    monkeypatch.setenv(memory.ENV_SKIP, "1")
    make()


def test_torch_add_param_group_counts_the_state_still_to_be_allocated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    a, b = (torch.nn.Parameter(torch.zeros(128, 128)) for _ in range(2))
    opt = TorchSAG([a], lr=0.1, batch_num=8)
    with pytest.raises(
        SAGMemoryError, match=r"1.1 MiB.*576.0 KiB for 1 parameter\(s\) already in the optimizer"
    ):
        opt.add_param_group({"params": [b]})
    assert len(opt.param_groups) == 1  # the refused group is not added
    # 576 KiB + 512 KiB is refused; the suggestion keeps 20 %: 576 KiB + 64 KiB + 2 * 64 KiB <= 819 KiB
    with pytest.raises(SAGMemoryError, match="lower batch_num to at most 2"):
        opt.add_param_group({"params": [b], "batch_num": 7})
    # 576 KiB + 448 KiB = 1 MiB is accepted: only the suggestion keeps headroom, the refusal does not
    opt.add_param_group({"params": [b], "batch_num": 6})
    assert len(opt.param_groups) == 2
    # state already allocated is out of the free memory: it no longer counts against a new group
    a.grad = torch.ones_like(a)
    b.grad = torch.ones_like(b)
    opt.step()
    c = torch.nn.Parameter(torch.zeros(128, 128))
    opt.add_param_group({"params": [c], "batch_num": 8})
    assert len(opt.param_groups) == 3


# --------------------------------------------------------------------------- the limits this process has

GiB = 1024**3
# /proc/self/limits rows as fs/proc/base.c prints them: "%-25s %-20s %-20s %-10s"
LIMITS_HEADER = f"{'Limit':<25} {'Soft Limit':<20} {'Hard Limit':<20} {'Units':<10}\n"


def _limit_row(name: str, soft: int | None, hard: int | None = None) -> str:
    def text(v: int | None) -> str:
        return "unlimited" if v is None else str(v)

    return f"{name:<25} {text(soft):<20} {text(hard):<20} {'bytes':<10}\n"


def fake_proc(
    root: Path,
    *,
    cgroup: str = "0::/\n",
    mem_available: int = 20 * GiB,
    address_space: int | None = None,
    data: int | None = None,
    vm_size: int = 2 * GiB,
    vm_data: int = GiB,
) -> str:
    """A /proc with meminfo and self/{cgroup,limits,status} in the kernel's formats; returns its path."""
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(
        f"MemTotal:       {64 * GiB // 1024:>8} kB\nMemFree:        {GiB // 1024:>8} kB\n"
        f"MemAvailable:   {mem_available // 1024:>8} kB\nBuffers:          123456 kB\n"
    )
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "limits").write_text(
        LIMITS_HEADER
        + _limit_row("Max cpu time", None).replace("bytes", "seconds")
        + _limit_row("Max data size", data)
        + _limit_row("Max stack size", 8388608)
        + _limit_row("Max address space", address_space)
        + _limit_row("Max file locks", None).replace("bytes", "locks")
    )
    (proc / "self" / "status").write_text(
        f"Name:\tpython\nUmask:\t0022\nState:\tR (running)\nVmPeak:\t{vm_size // 1024 + 4} kB\n"
        f"VmSize:\t{vm_size // 1024:>8} kB\nVmLck:\t       0 kB\nVmData:\t{vm_data // 1024:>8} kB\n"
        "Threads:\t1\n"
    )
    return str(proc)


def fake_cgroup(root: Path, files: dict[str, str]) -> str:
    """A cgroup mount tree: ``{"unified/a/memory.max": "max\\n", ...}`` under root/cgroup."""
    base = root / "cgroup"
    base.mkdir()
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    return str(base)


def _tightest(proc: str, cgroup_root: str) -> memory.AvailableBytes:
    return min(memory.cpu_memory_bounds(proc=proc, cgroup_root=cgroup_root))


def test_cgroup_v2_the_tightest_ancestor_counts_and_inactive_page_cache_is_free(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, cgroup="0::/slurm/job_7/step_0\n")
    cg = fake_cgroup(
        tmp_path,
        {
            "cgroup.controllers": "cpuset cpu io memory pids\n",
            "slurm/memory.max": "max\n",
            "slurm/memory.current": f"{30 * GiB}\n",
            "slurm/job_7/memory.max": f"{3 * GiB // 2}\n",  # the job's 1.5 GiB
            "slurm/job_7/memory.current": f"{GiB}\n",
            "slurm/job_7/memory.stat": f"anon {GiB}\nfile {100 * MiB}\ninactive_file {64 * MiB}\n",
            "slurm/job_7/step_0/memory.max": "max\n",  # no limit of its own
            "slurm/job_7/step_0/memory.current": f"{GiB}\n",
        },
    )
    free = _tightest(proc, cg)
    assert free == 3 * GiB // 2 - (GiB - 64 * MiB)
    assert free.bound.startswith("cgroup memory.max of /slurm/job_7 (limit 1.5 GiB")
    bounds = {b.bound.split(" (")[0] for b in memory.cpu_memory_bounds(proc=proc, cgroup_root=cg)}
    assert bounds == {"MemAvailable of /proc/meminfo", "cgroup memory.max of /slurm/job_7"}
    # a limit below the usage (memory.max lowered under a running job) is no room at all
    (tmp_path / "cgroup" / "slurm/job_7/step_0/memory.max").write_text(f"{GiB // 2}\n")
    assert _tightest(proc, cg) == 0


def test_cgroup_v1_limit_in_bytes_and_its_unlimited_value(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, cgroup="5:devices:/\n4:memory:/process_api/ada0\n0::/\n")
    unlimited = "9223372036854771712\n"  # what the kernel writes with 4 KiB pages
    files = {
        "unified/cgroup.procs": "1\n",  # hybrid: v2 holds no controllers, no memory.max
        "memory/memory.limit_in_bytes": unlimited,
        "memory/memory.usage_in_bytes": f"{12 * GiB}\n",
        "memory/process_api/memory.limit_in_bytes": unlimited,
        "memory/process_api/memory.usage_in_bytes": f"{2 * GiB}\n",
        "memory/process_api/ada0/memory.limit_in_bytes": f"{3 * GiB // 2}\n",
        "memory/process_api/ada0/memory.usage_in_bytes": f"{GiB}\n",
        "memory/process_api/ada0/memory.stat": f"cache 0\ntotal_inactive_file {32 * MiB}\n",
    }
    cg = fake_cgroup(tmp_path, files)
    free = _tightest(proc, cg)
    assert free == 3 * GiB // 2 - GiB + 32 * MiB
    assert free.bound.startswith("cgroup memory.limit_in_bytes of /process_api/ada0")
    (tmp_path / "cgroup/memory/process_api/ada0/memory.limit_in_bytes").write_text(unlimited)
    free = _tightest(proc, cg)
    assert (free, free.bound) == (20 * GiB, "MemAvailable of /proc/meminfo")


def test_a_container_without_its_own_cgroup_namespace_reads_the_mount_root(tmp_path: Path) -> None:
    # /proc/self/cgroup names the host's path; the container's cgroup is mounted at the root
    proc = fake_proc(tmp_path, cgroup="0::/system.slice/docker-1a2b.scope\n")
    cg = fake_cgroup(
        tmp_path,
        {"cgroup.controllers": "memory\n", "memory.max": f"{2 * GiB}\n", "memory.current": f"{GiB}\n"},
    )
    free = _tightest(proc, cg)
    assert (free, free.bound.split(" (")[0]) == (GiB, "cgroup memory.max of /")


def test_rlimit_as_and_rlimit_data_minus_what_is_mapped(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, address_space=4 * GiB, vm_size=3 * GiB, data=None)
    free = _tightest(proc, str(tmp_path / "no-cgroup"))
    assert free == GiB and free.bound == "RLIMIT_AS (limit 4.0 GiB, VmSize 3.0 GiB)"
    proc = fake_proc(tmp_path / "b", address_space=8 * GiB, data=3 * GiB // 2, vm_data=GiB)
    free = _tightest(proc, str(tmp_path / "no-cgroup"))
    assert free == GiB // 2 and free.bound.startswith("RLIMIT_DATA (limit 1.5 GiB, VmData 1.0 GiB)")
    proc = fake_proc(tmp_path / "c")
    assert [b.bound for b in memory.cpu_memory_bounds(proc=proc, cgroup_root=str(tmp_path))] == [
        "MemAvailable of /proc/meminfo"
    ]


def test_available_bytes_is_the_tightest_bound_of_this_machine() -> None:
    bounds = memory.cpu_memory_bounds()
    free = memory.available_bytes("cpu")
    # the two reads are a moment apart: the same limit, about the same number
    assert free is not None and abs(free - min(bounds)) < 256 * MiB
    assert free.bound.split(" (")[0] == min(bounds).bound.split(" (")[0]
    assert all(b >= 0 for b in bounds)
    with open("/proc/meminfo", encoding="ascii") as f:
        meminfo = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    host = next(b for b in bounds if b.bound == "MemAvailable of /proc/meminfo")
    assert abs(host - meminfo) < 256 * MiB  # read a moment apart


def test_the_refusal_names_the_limit_that_bounds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "PROC_ROOT", fake_proc(tmp_path, cgroup="0::/job\n"))
    monkeypatch.setattr(
        memory,
        "CGROUP_ROOT",
        fake_cgroup(
            tmp_path,
            {
                "cgroup.controllers": "memory\n",
                "job/memory.max": f"{8 * MiB}\n",
                "job/memory.current": f"{4 * MiB}\n",
            },
        ),
    )
    with pytest.raises(
        SAGMemoryError, match=r"only 4.0 MiB is available \(bound by cgroup memory.max of /job"
    ):
        TorchSAG([torch.nn.Parameter(torch.zeros(256, 256))], batch_num=20)
    with pytest.raises(SAGMemoryError, match=r"bound by cgroup memory.max of /job"):
        PaddleSAG(batch_num=20, parameters=[paddle.create_parameter([256, 256], "float32")])


# A child under a real RLIMIT_AS 1.5 GiB above what it has mapped, with one 128 MiB parameter: SAG with
# batch_num=23 needs 24 * 128 MiB = 3 GiB. The child prints what each call did; an allocation that the
# kernel refuses would end it with a bare MemoryError (or an abort) instead.
RLIMIT_CHILD = r"""
import re, resource, sys
import torch
from asgd_bridge.memory import SAGMemoryError, available_bytes
from asgd_bridge.torch import SAG

p = torch.nn.Parameter(torch.zeros(32 * 2**20))
p.grad = torch.ones_like(p)
with open("/proc/self/status") as f:
    vm_size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm_size + 3 * 2**29, resource.getrlimit(resource.RLIMIT_AS)[1]))
free = available_bytes("cpu")
print("bound", free.bound.split(" (")[0], round(free / 2**30, 2))

def attempt(label, call):
    try:
        call()
        print(label, "ok")
    except SAGMemoryError as e:
        print(label, "SAGMemoryError", str(e).replace("\n", " "))

attempt("construct", lambda: SAG([p], lr=0.1, batch_num=23))
opt = SAG([p], lr=0.1, batch_num=4)
opt.param_groups[0]["batch_num"] = 23
attempt("step", opt.step)
print("allocated", len(opt.state[p]))
try:  # the same step unguarded: the kernel refuses it, which is what the guard pre-empts
    SAG([p], lr=0.1, batch_num=23, check_memory=False).step()
    print("unguarded ok")
except Exception as e:
    print("unguarded", type(e).__name__)
# the suggested batch_num, taken at its word, trains under the limit
try:
    opt.step()
except SAGMemoryError as e:
    k = int(re.search(r"at most (\d+) ", str(e)).group(1))
opt.param_groups[0]["batch_num"] = k
attempt(f"suggested {k}", lambda: [opt.step() for _ in range(3)])
"""


def _run_child(script: str) -> dict[str, str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def test_a_real_rlimit_as_refuses_sag_before_the_kernel_does() -> None:
    out = _run_child(RLIMIT_CHILD)
    name, gib = out["bound"].split()
    assert name == "RLIMIT_AS" and 1.3 < float(gib) <= 1.5
    assert out["construct"].startswith("SAGMemoryError SAG would need 3.0 GiB on cpu for batch_num=23")
    assert "(bound by RLIMIT_AS (limit " in out["construct"]
    # an edited batch_num: refused at step() before the allocator sees it, nothing allocated
    assert out["step"].startswith("SAGMemoryError step(): SAG would need 3.0 GiB on cpu for batch_num=23")
    assert "bound by RLIMIT_AS" in out["step"] and out["allocated"] == "0"
    assert out["unguarded"] == "RuntimeError"  # torch's "can't allocate memory": the limit is real
    # the suggestion leaves 20 % of the ~1.4 GiB: (0.8 * 1.4 GiB - d) / 128 MiB = 7 or 8 stored gradients
    k, result = out["suggested"].split()
    assert 6 <= int(k) <= 8 and result == "ok"


# --------------------------------------------------------------------------- every path that grows the state


def _torch_grads(*params: torch.Tensor) -> None:
    for p in params:
        p.grad = torch.ones_like(p)


def test_torch_an_edited_batch_num_is_estimated_at_step_before_anything_is_allocated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    a, b = (torch.nn.Parameter(torch.zeros(128, 128)) for _ in range(2))
    opt = TorchSAG([{"params": [a]}, {"params": [b]}], lr=0.1, batch_num=2)
    opt.param_groups[1]["batch_num"] = 100_000  # 6.1 GiB: would go straight to the allocator
    _torch_grads(a, b)
    with pytest.raises(
        SAGMemoryError, match=r"^step\(\): SAG would need 6.1 GiB on cpu for batch_num=2, 100000"
    ):
        opt.step()
    assert not opt.state and not a.detach().any()  # nothing allocated, no group updated
    opt.param_groups[1]["batch_num"] = 3
    opt.step()
    assert opt.state[b]["y"].shape == (3, 128, 128) and a.detach().any()


def test_torch_a_loaded_state_dict_with_a_larger_batch_num_is_estimated_at_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    saved = TorchSAG([torch.nn.Parameter(torch.zeros(128, 128))], batch_num=2).state_dict()
    saved["param_groups"][0]["batch_num"] = 1_000_000  # an edited (or hostile) file: 61 GiB
    p = torch.nn.Parameter(torch.zeros(128, 128))
    opt = TorchSAG([p], batch_num=2)
    opt.load_state_dict(saved)
    _torch_grads(p)
    with pytest.raises(SAGMemoryError, match=r"step\(\): SAG would need 61.0 GiB.*batch_num=1000000"):
        opt.step()
    assert not opt.state[p] and not p.detach().any()


def test_torch_a_group_added_after_the_first_step_is_estimated_before_any_group_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    a, b = (torch.nn.Parameter(torch.zeros(128, 128)) for _ in range(2))
    opt = TorchSAG([a], lr=0.1, batch_num=2)
    _torch_grads(a, b)
    opt.step()
    before = a.detach().clone()
    opt.add_param_group({"params": [b]})
    opt.param_groups[1]["batch_num"] = 50
    with pytest.raises(SAGMemoryError, match=r"step\(\).*batch_num=50"):
        opt.step()
    assert torch.equal(a.detach(), before) and opt.state[a]["m"] == 1 and not opt.state[b]


def test_paddle_an_edited_batch_num_is_estimated_at_step_before_anything_is_allocated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    a, b = (paddle.create_parameter([128, 128], "float32") for _ in range(2))
    a0 = a.numpy()
    opt = PaddleSAG(learning_rate=0.1, batch_num=2, parameters=[{"params": [a]}, {"params": [b]}])
    opt._param_groups[1]["batch_num"] = 100_000
    ((a + b) * 1.0).sum().backward()
    with pytest.raises(
        SAGMemoryError, match=r"^step\(\): SAG would need 6.1 GiB on cpu for batch_num=2, 100000"
    ):
        opt.step()
    assert not opt.state_dict()["state"] and np.array_equal(a.numpy(), a0)
    opt._param_groups[1]["batch_num"] = 3
    opt.step()
    assert opt.state_dict()["state"][1]["y"].shape == [3, 128, 128]


def test_paddle_add_param_group_refused_is_not_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    a, b = (paddle.create_parameter([128, 128], "float32") for _ in range(2))
    opt = PaddleSAG(learning_rate=0.1, batch_num=8, parameters=[a])
    with pytest.raises(
        SAGMemoryError,
        match=r"^add_param_group: SAG would need 1.1 MiB.*576.0 KiB for 1 parameter\(s\) already in the "
        r"optimizer.*lower batch_num to at most 2",
    ):
        opt.add_param_group({"params": [b], "batch_num": 7})
    assert len(opt._param_groups) == 1 and len(opt.state_dict()["param_groups"]) == 1
    b0 = b.numpy()
    ((a + b) * 1.0).sum().backward()
    opt.step()  # b is not optimised
    assert np.array_equal(b.numpy(), b0) and list(opt.state_dict()["state"]) == [0]
    # state already allocated is out of the free memory: the same group now fits
    opt.add_param_group({"params": [b], "batch_num": 7})
    opt.step()
    assert opt.state_dict()["state"][1]["y"].shape == [7, 128, 128] and not np.array_equal(b.numpy(), b0)


@pytest.mark.parametrize("backend", ["torch", "paddle"])
def test_the_estimate_runs_only_when_state_is_about_to_be_allocated(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = memory.check_sag_memory

    def spy(*args: object, **kw: object) -> dict:
        calls.append(kw.get("action"))
        return real(*args, **kw)  # type: ignore[arg-type]

    import asgd_bridge.paddle.sag as psag
    import asgd_bridge.torch.sag as tsag

    monkeypatch.setattr(tsag if backend == "torch" else psag, "check_sag_memory", spy)
    if backend == "torch":
        ps = [torch.nn.Parameter(torch.zeros(3)) for _ in range(3)]
        opt = TorchSAG(ps[:2], batch_num=2)

        def step(params: list) -> None:
            _torch_grads(*params)
            opt.step()
    else:
        ps = [paddle.create_parameter([3], "float32") for _ in range(3)]
        opt = PaddleSAG(batch_num=2, parameters=ps[:2])

        def step(params: list) -> None:
            (sum(p.sum() for p in params) * 1.0).backward()
            opt.step()
            opt.clear_grad(set_to_zero=False)

    step(ps[:1])  # the first parameter gets its state; the second has no gradient
    for _ in range(3):
        step(ps[:1])
    assert calls == [None, "step()"]
    opt.add_param_group({"params": [ps[2]]})
    for _ in range(3):
        step(ps)
    assert calls == [None, "step()", "add_param_group", "step()"]


def test_paddle_a_group_added_after_the_first_step_is_estimated_before_any_group_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * MiB)
    a, b = (paddle.create_parameter([128, 128], "float32") for _ in range(2))
    opt = PaddleSAG(learning_rate=0.1, batch_num=2, parameters=[a])
    ((a + b) * 1.0).sum().backward()
    opt.step()
    before = a.numpy()
    opt.add_param_group({"params": [b]})
    opt._param_groups[1]["batch_num"] = 50
    with pytest.raises(
        SAGMemoryError, match=r"step\(\): SAG would need 3.2 MiB .*batch_num=50 .* 1 parameter"
    ):
        opt.step()
    assert np.array_equal(a.numpy(), before) and list(opt.state_dict()["state"]) == [0]
    # minimize() reaches the update without step(): estimated there, before any update too
    with pytest.raises(SAGMemoryError, match=r"step\(\): SAG would need 3.2 MiB .*batch_num=50"):
        opt.minimize(((a + b) * 1.0).sum())
    assert np.array_equal(a.numpy(), before) and list(opt.state_dict()["state"]) == [0]
