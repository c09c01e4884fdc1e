"""Averaged SGD under DDP, torch.compile, ZeRO, FSDP2, FSDP1 and DCP: 2 processes, gloo, CPU.

One ``torchrun --nproc-per-node 2`` launch of ``tests/distributed/torch_worker.py`` runs every
scenario (bounded by a timeout; a crash or hang fails every test); the tests assert on the numbers
each rank recorded. References, computed in the worker independently of the API: torch.optim.ASGD
under the same wrapper (bit-identical for the loop path and foreach vs torch's foreach), a
single-process full-batch torch.optim.ASGD run (1e-6), and the true averages (float64 mean of that
run's iterates p_2..p_T, torch's t0=0 average). Run alone with ``pytest -m distributed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dist_checks import assert_exact, assert_max, free_port

pytestmark = pytest.mark.distributed

WORKER = Path(__file__).parent / "distributed" / "torch_worker.py"
SCENARIOS = ("ddp", "zero", "fsdp2", "fsdp1", "dcp")
TOL = 1e-6



@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("dist") / "results.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(WORKER), str(out),
           *SCENARIOS]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, f"torchrun exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
    ranks = json.loads(out.read_text())
    assert len(ranks) == 2
    return ranks


def _scenario(results: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    per_rank = [r[name] for r in results]
    for r in per_rank:
        assert "error" not in r, r.get("error")
    return per_rank


def _values(results: list[dict[str, Any]], name: str, suffix: str) -> dict[str, Any]:
    got = {f"rank{i}:{k}": v for i, r in enumerate(_scenario(results, name)) for k, v in r.items()
           if k.endswith(suffix)}  # fmt: skip
    assert got, f"no {suffix} recorded in {name}"
    return got




# ---------------------------------------------------------------------------------------------- DDP


def test_ddp_steps_bit_identical_to_torch_and_close_to_single_process(results):
    for impl in ("loop", "foreach"):
        assert_exact(_values(results, "ddp", f"{impl}_vs_torch_params"))
        assert_exact(_values(results, "ddp", f"{impl}_vs_torch_ax"))
    assert_max(_values(results, "ddp", "fused_vs_torch_params"), TOL)
    assert_max(_values(results, "ddp", "_vs_single_params"), TOL)
    assert_max(_values(results, "ddp", "_vs_single_ax"), TOL)


def test_ddp_and_compiled_averaged_state_dict_has_plain_keys_and_true_averages(results):
    # maxdiff in the worker raises on differing keys: plain-model keys, no module./_orig_mod.
    assert_max(_values(results, "ddp", "_sd_vs_true_avg"), TOL)
    assert_max(_values(results, "ddp", "compiled_sd_vs_true_avg"), TOL)


def test_ddp_swap_evaluates_averages_inside_and_raw_after(results):
    assert_max(_values(results, "ddp", "swap_inside_vs_true_avg"), TOL)
    assert_exact(_values(results, "ddp", "swap_after_vs_raw"))
    assert_exact(_values(results, "ddp", "params_restored"))


# --------------------------------------------------------------------------------------------- ZeRO


def test_zero_steps_match_torch_and_single_process(results):
    assert_exact(_values(results, "zero", "loop_vs_torch_params"))
    assert_max(_values(results, "zero", "_vs_torch_params"), TOL)
    assert_max(_values(results, "zero", "_vs_single_params"), TOL)


def test_zero_averaged_gives_the_whole_models_true_averages(results):
    assert_max(_values(results, "zero", "_sd_vs_true_avg"), TOL)
    assert_max(_values(results, "zero", "avg_params_vs_true_avg"), TOL)
    assert_max(_values(results, "zero", "swap_inside_vs_true_avg"), TOL)
    assert_exact(_values(results, "zero", "swap_after_vs_raw"))
    assert all(_values(results, "zero", "step_inside_raises").values())


def test_zero_local_optimizer_warns_that_other_ranks_own_parameters(results):
    assert all(_values(results, "zero", "local_sd_warns").values())


# -------------------------------------------------------------------------------------------- FSDP2


def test_fsdp2_steps_match_torch_and_single_process(results):
    for layout in ("nested", "root_only"):
        assert_exact(_values(results, "fsdp2", f"loop_{layout}_vs_torch_params"))
        assert_exact(_values(results, "fsdp2", f"loop_{layout}_vs_torch_ax"))
    assert_max(_values(results, "fsdp2", "_vs_torch_params"), TOL)
    assert_max(_values(results, "fsdp2", "_vs_torch_ax"), TOL)
    assert_max(_values(results, "fsdp2", "_vs_single_params"), TOL)
    assert_max(_values(results, "fsdp2", "_vs_single_ax"), TOL)


def test_fsdp2_averaged_state_dict_full_sharded_and_rank0_only(results):
    assert_max(_values(results, "fsdp2", "full_sd_vs_true_avg"), TOL)
    assert_max(_values(results, "fsdp2", "sharded_sd_vs_true_avg"), TOL)
    assert all(_values(results, "fsdp2", "full_sd_plain_tensors").values())
    assert all(_values(results, "fsdp2", "sharded_sd_dtensors").values())
    assert all(_values(results, "fsdp2", "rank0_only_empty_elsewhere").values())


def test_fsdp2_swap_after_a_raw_evaluation_sees_averages_and_training_never_does(results):
    # root-only fully_shard keeps the root all-gathered after a forward: the AWD-LSTM pattern
    assert_max(_values(results, "fsdp2", "swap_inside_vs_true_avg"), TOL)
    assert_exact(_values(results, "fsdp2", "swap_after_vs_raw"))
    assert_exact(_values(results, "fsdp2", "train_after_swap_vs_unswapped"))


# -------------------------------------------------------------------------------------------- FSDP1


def test_fsdp1_steps_match_torch_and_single_process(results):
    # flat parameters (use_orig_params=False) and original ones (True), nested and root-only
    for orig in (0, 1):
        for layout in ("nested", "root_only"):
            assert_exact(_values(results, "fsdp1", f"loop_orig{orig}_{layout}_vs_torch_params"))
    assert_max(_values(results, "fsdp1", "_vs_torch_params"), TOL)
    assert_max(_values(results, "fsdp1", "_vs_single_params"), TOL)


def test_fsdp1_averaged_state_dict_unflattens_and_empty_shards_are_not_unstepped(results):
    assert_max(_values(results, "fsdp1", "full_sd_vs_true_avg"), TOL)
    assert all(_values(results, "fsdp1", "no_unstepped_warning").values())


def test_fsdp1_swap_reshards_on_entry_and_exit_and_refuses_without_the_model(results):
    assert_max(_values(results, "fsdp1", "swap_inside_vs_true_avg"), TOL)
    assert_exact(_values(results, "fsdp1", "swap_after_vs_raw"))
    assert_exact(_values(results, "fsdp1", "train_after_swap_vs_unswapped"))
    assert set(_values(results, "fsdp1", "swap_without_model").values()) == {"ValueError"}


# ---------------------------------------------------------------------------------------------- DCP


def test_dcp_save_load_resume_equals_uninterrupted_torch_and_ours_both_ways(results):
    # dcp.load without allow_partial_load; the flags of our class are not in a default group
    got = _values(results, "dcp", "_resume_vs_uninterrupted")
    assert len(got) == 2 * 2 * 3  # ranks x (fsdp2, ddp) x (torch->ours, ours->torch, ours->ours)
    assert_exact(got)


def test_dcp_init_state_keeps_the_schedule_and_the_dummy_step_would_not(results):
    assert_exact(_values(results, "dcp", "init1_vs_untouched"))
    # without init_state DCP's lr=0 dummy step shifts the schedule (what init_state prevents)
    assert all(v > 1e-3 for v in _values(results, "dcp", "init0_vs_untouched").values())


def test_dcp_averaged_model_state_dict_round_trips_into_a_fresh_model(results):
    assert_max(_values(results, "dcp", "dcp_averaged_model_vs_true_avg"), TOL)
