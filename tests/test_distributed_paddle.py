"""asgd_bridge.paddle under paddle.DataParallel and fleet (data parallel, sharding stage 1).

The tests marked ``distributed`` share two ``python -m paddle.distributed.launch --nproc_per_node 2``
launches of ``tests/distributed/paddle_worker.py`` (gloo, CPU; one per fleet topology, since a process
has one: ``dp_degree=2`` and ``sharding_degree=2``), bounded by a timeout; a crash or hang fails every
test. References, computed in the worker independently of the API: a single-process full-batch run of
the same optimizer on a plain layer (1e-6), and the true averages (float64 mean of that run's iterates).
Run alone with ``pytest -m distributed``. The other tests run in this process: a ``paddle.DataParallel``
builds without a process group (one rank), and fleet's wrappers share ``MetaParallelBase``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import pytest
from dist_checks import assert_exact, assert_max, assert_true, free_port
from paddle.distributed.fleet.meta_parallel.meta_parallel_base import MetaParallelBase

from asgd_bridge.paddle import ASGD, NTASGD, ShardingAveraged
from asgd_bridge.paddle.distributed import unwrap_model

WORKER = Path(__file__).parent / "distributed" / "paddle_worker.py"
MODES = ("dp", "sharding")
TOL = 1e-6
distributed = pytest.mark.distributed



@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("paddle_dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    got: dict[str, list[dict[str, Any]]] = {}
    for mode in MODES:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--master", f"127.0.0.1:{free_port()}", "--log_dir", str(out / f"log_{mode}"),
               str(WORKER), str(out), mode]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env)
        logs = "".join(p.read_text()[-3000:] for p in sorted((out / f"log_{mode}").glob("workerlog.*")))
        assert proc.returncode == 0, f"launch ({mode}) exited {proc.returncode}:\n{proc.stderr[-2000:]}{logs}"
        got[mode] = [json.loads((out / f"{mode}.rank{r}.json").read_text()) for r in range(2)]
    return got


def _values(results: dict[str, list[dict[str, Any]]], mode: str, pattern: str) -> dict[str, Any]:
    for r in results[mode]:
        assert "error" not in r, r.get("error")
    got = {f"rank{i}:{k}": v for i, r in enumerate(results[mode]) for k, v in r.items() if pattern in k}
    assert got, f"no {pattern} recorded in {mode}"
    return got





# ------------------------------------------------------------------------- DataParallel, fleet dp


@distributed
def test_data_parallel_steps_equal_single_process(results):
    # paddle.DataParallel and fleet.distributed_optimizer (HybridParallelOptimizer), with and without
    # a global-norm clip, for ASGD, NTASGD (switch after step 2) and SAG
    got = _values(results, "dp", "_vs_single_params")
    assert len(got) == 2 * 2 * 3 * 2  # ranks x wrappers x optimizers x clip
    assert_max(got, TOL)
    assert_max(_values(results, "dp", "_vs_single_ax"), TOL)
    assert set(_values(results, "dp", "_wrapper").values()) == {"HybridParallelOptimizer"}


@distributed
def test_data_parallel_averaged_state_dict_has_plain_keys_true_averages_and_loads(results):
    assert_true(_values(results, "dp", "_sd_keys_plain"))
    assert_max(_values(results, "dp", "_sd_vs_true_avg"), TOL)
    assert_true(_values(results, "dp", "_sd_loads_cleanly"))
    assert_max(_values(results, "dp", "_loaded_vs_true_avg"), TOL)
    assert_max(_values(results, "dp", "_avg_params_vs_true_avg"), TOL)
    assert all(v == [] for v in _values(results, "dp", "_sd_warnings").values())


@distributed
def test_data_parallel_swap_evaluates_averages_inside_and_raw_after(results):
    assert_max(_values(results, "dp", "_swap_inside_vs_true_avg"), TOL)
    assert_true(_values(results, "dp", "_step_inside_raises"))
    assert_exact(_values(results, "dp", "_swap_after_vs_raw"))
    assert_exact(_values(results, "dp", "_params_restored"))


# ------------------------------------------------------------------------------ fleet sharding


@distributed
def test_sharding_stage1_steps_equal_single_process(results):
    # asgd_bridge.paddle.ASGD / NTASGD through _apply_optimize, SAG as before; each rank updates its shard
    assert set(_values(results, "sharding", "_wrapper").values()) == {"DygraphShardingOptimizer"}
    got = _values(results, "sharding", "_vs_single_params")
    assert len(got) == 2 * 3 * 2  # ranks x optimizers x clip
    assert_max(got, TOL)
    assert_max(_values(results, "sharding", "_local_vs_single_ax"), TOL)
    # the shards partition the 6 parameters between the ranks
    for kind in ("asgd", "ntasgd"):
        counts = [r[f"{kind}_local_ax_count"] for r in results["sharding"]]
        assert sum(counts) == 6 and min(counts) > 0, counts


@distributed
def test_sharding_averaged_gives_the_whole_models_true_averages(results):
    assert_true(_values(results, "sharding", "sharded_asgd_sd_keys_plain"))
    assert_max(_values(results, "sharding", "_sd_vs_true_avg"), TOL)
    assert_true(_values(results, "sharding", "_sd_loads_cleanly"))
    assert_max(_values(results, "sharding", "_loaded_vs_true_avg"), TOL)
    assert_max(_values(results, "sharding", "_avg_params_vs_true_avg"), TOL)
    assert_max(_values(results, "sharding", "_swap_inside_vs_true_avg"), TOL)
    assert_true(_values(results, "sharding", "_step_inside_raises"))
    assert_exact(_values(results, "sharding", "_swap_after_vs_raw"))
    assert_exact(_values(results, "sharding", "_params_restored"))


@distributed
def test_sharding_local_optimizer_warns_and_sharding_averaged_refuses_a_plain_optimizer(results):
    assert_true(_values(results, "sharding", "_local_sd_warns"))
    msgs = _values(results, "sharding", "sharding_averaged_refuses_plain").values()
    assert all("DygraphShardingOptimizer" in m for m in msgs), msgs


# ------------------------------------------------------------------------------ one process


def _model() -> paddle.nn.Layer:
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.Tanh(), paddle.nn.Linear(4, 2))


def _train(model: Any, opt: Any, steps: int = 4) -> list[dict[str, np.ndarray]]:
    x = paddle.to_tensor(np.random.RandomState(0).randn(6, 3).astype("float32"))
    iterates = []
    for _ in range(steps):
        (model(x) ** 2).mean().backward()
        opt.step()
        opt.clear_grad()
        state = unwrap_model(model).state_dict()
        iterates.append({k: v.numpy().astype(np.float64) for k, v in state.items()})
    return iterates


def _true_average(iterates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    # t0=0: torch's ax_T is the mean of the iterates p_2..p_T
    return {k: sum(it[k] for it in iterates[1:]) / (len(iterates) - 1) for k in iterates[0]}


@pytest.mark.parametrize("wrap", [paddle.DataParallel, lambda m: MetaParallelBase(m, None, None)],
                         ids=["DataParallel", "MetaParallelBase"])  # fmt: skip
def test_averaged_state_dict_of_a_wrapped_layer_strips_layers_prefix(wrap):
    layer = _model()
    model = wrap(layer)
    assert any(n.startswith("_layers.") for n, _ in model.named_parameters())
    opt = ASGD(parameters=layer.parameters(), learning_rate=0.1, t0=0)
    avg = _true_average(_train(model, opt))
    sd = opt.averaged_state_dict(model)
    assert sorted(sd) == sorted(layer.state_dict())
    for k in avg:
        np.testing.assert_allclose(sd[k].numpy(), avg[k], rtol=0, atol=1e-6, err_msg=k)
    fresh = _model()
    missing, unexpected = fresh.set_state_dict(sd)
    assert not missing and not unexpected
    for k, v in fresh.state_dict().items():
        np.testing.assert_allclose(v.numpy(), avg[k], rtol=0, atol=1e-6, err_msg=k)
    raw = {k: v.numpy().copy() for k, v in layer.state_dict().items()}
    with opt.swap_averaged(model):
        for k, v in layer.state_dict().items():
            np.testing.assert_allclose(v.numpy(), avg[k], rtol=0, atol=1e-6, err_msg=k)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), raw[k])


def test_a_wrapper_nested_inside_the_model_is_refused_by_name():
    inner = _model()
    outer = paddle.nn.Sequential(paddle.DataParallel(inner))
    opt = ASGD(parameters=inner.parameters(), learning_rate=0.1, t0=0)
    _train(inner, opt, steps=2)
    with pytest.raises(ValueError, match=r"sublayer '0' is a DataParallel"):
        opt.averaged_state_dict(outer)


def test_sharding_averaged_refuses_an_optimizer_without_sharding():
    opt = ASGD(parameters=_model().parameters())
    with pytest.raises(TypeError, match="DygraphShardingOptimizer"):
        ShardingAveraged(opt)


def _grads(model: paddle.nn.Layer) -> None:
    x = paddle.to_tensor(np.random.RandomState(1).randn(6, 3).astype("float32"))
    (model(x) ** 2).mean().backward()


@pytest.mark.parametrize("cls", ["ASGD", "NTASGD"])
@pytest.mark.parametrize("form", ["list", "dict"])
def test_apply_optimize_on_given_pairs_equals_step(cls, form):
    # fleet's sharding optimizer calls _apply_optimize(loss=None, startup_program=None, params_grads=...)
    def build(model: paddle.nn.Layer) -> Any:
        layers = list(model.children())
        groups = [{"params": layers[0].parameters()},
                  {"params": layers[2].parameters(), "learning_rate": 0.5}]  # fmt: skip
        clip = paddle.nn.ClipGradByGlobalNorm(0.1)
        if cls == "ASGD":
            return ASGD(parameters=groups, learning_rate=0.1, t0=1, weight_decay=0.01, grad_clip=clip)
        return NTASGD(parameters=groups, learning_rate=0.1, weight_decay=0.01, grad_clip=clip)

    a, b = _model(), _model()
    opt_a, opt_b = build(a), build(b)
    for step in range(4):
        if cls == "NTASGD" and step == 2:
            opt_a.start_averaging(), opt_b.start_averaging()
        _grads(a), _grads(b)
        opt_a.step()
        pairs = [(p, p.grad) for p in b.parameters()]
        opt_b._apply_optimize(None, None, {"params": pairs} if form == "dict" else pairs)
        opt_a.clear_grad(), opt_b.clear_grad()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=n)
        if opt_a.state.get(pa):
            ax_a, ax_b = opt_a.state[pa]["ax"].numpy(), opt_b.state[pb]["ax"].numpy()
            np.testing.assert_array_equal(ax_a, ax_b, err_msg=n)
    assert opt_a.state_dict()["param_groups"] == opt_b.state_dict()["param_groups"]


def test_apply_optimize_updates_only_the_given_pairs_and_refuses_a_foreign_parameter():
    model = _model()
    opt = ASGD(parameters=model.parameters(), learning_rate=0.1, t0=0)
    _grads(model)
    params = model.parameters()
    before = [p.numpy().copy() for p in params]
    opt._apply_optimize(None, None, [(params[0], params[0].grad)])  # the shard of this rank
    assert not np.array_equal(params[0].numpy(), before[0])
    for p, old in zip(params[1:], before[1:], strict=True):
        np.testing.assert_array_equal(p.numpy(), old)
    assert [p.name for p in params if opt.state.get(p)] == [params[0].name]
    foreign = paddle.create_parameter([2], "float32")
    with pytest.raises(ValueError, match=foreign.name):
        opt._apply_optimize(None, None, [(foreign, paddle.ones([2]))])


def test_apply_optimize_inside_swap_averaged_raises():
    model = _model()
    opt = ASGD(parameters=model.parameters(), learning_rate=0.1, t0=0)
    _train(model, opt, steps=2)
    _grads(model)
    with opt.swap_averaged(model), pytest.raises(RuntimeError, match="inside swap_averaged"):
        opt._apply_optimize(None, None, [(p, p.grad) for p in model.parameters()])
