"""The memory estimate of SAG's stored gradients (asgd_bridge.memory) and both SAG classes using it."""

from __future__ import annotations

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
    # (50 MiB - d of both) // (bytes of one stored gradient of both) = 11
    fits = (50 * MiB - 4 * MiB - 4096) // (4 * MiB + 4096)
    assert f"at most {fits}" in msg
    check_sag_memory([small, big], fits, available=lambda d: 50 * MiB)  # and that one does fit


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
    # 68 KB needed, 60 KB free: capping both at 6 leaves 8 KB of d + 12 * 4 KB = 56 KB
    with pytest.raises(SAGMemoryError, match=r"batch_num=7, 8 \(per group\).*lower batch_num to at most 6"):
        check_sag_memory([a, b], 1, available=lambda d: 60_000)
    with pytest.raises(SAGMemoryError, match=r"already in the optimizer.*lower batch_num to at most 4"):
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
    assert "lower batch_num to at most 7" in msg  # 2 * 64 KiB of d + 2 * 7 * 64 KiB = 1 MiB
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
    with pytest.raises(SAGMemoryError, match="lower batch_num to at most 6"):
        opt.add_param_group({"params": [b], "batch_num": 7})  # 576 KiB + 512 KiB
    opt.add_param_group({"params": [b], "batch_num": 6})  # 576 KiB + 448 KiB = 1 MiB fits
    assert len(opt.param_groups) == 2
    # state already allocated is out of the free memory: it no longer counts against a new group
    a.grad = torch.ones_like(a)
    b.grad = torch.ones_like(b)
    opt.step()
    c = torch.nn.Parameter(torch.zeros(128, 128))
    opt.add_param_group({"params": [c], "batch_num": 8})
    assert len(opt.param_groups) == 3
