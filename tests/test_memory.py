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
