"""Multi-process checks of asgd_bridge.paddle (gloo, CPU), launched by tests/test_distributed_paddle.py.

Run as ``python -m paddle.distributed.launch --nproc_per_node 2 paddle_worker.py OUT_DIR MODE`` with
MODE ``dp`` (fleet topology dp_degree=2: ``paddle.DataParallel`` and fleet's data-parallel
``distributed_optimizer``) or ``sharding`` (sharding_degree=2: fleet sharding stage 1). A process has
one fleet topology, hence one launch per mode. Every scenario trains a tiny model on a fixed full
batch split between the ranks and records numbers (max abs differences, flags) that the tests assert
on, in ``OUT_DIR/MODE.rankR.json``. The references are single-process full-batch runs of the same
optimizer on a plain layer; the *true* averages are the float64 mean of the reference's recorded
iterates (torch's t0=0 definition: the mean of p_2..p_T), computed here, never through the API.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import paddle
import paddle.distributed as dist
from paddle.distributed import fleet

from asgd_bridge.paddle import ASGD, NTASGD, SAG, ShardingAveraged

STEPS = 6
SWITCH = 2  # NTASGD: start_averaging() after this many steps
HP = {"learning_rate": 0.05, "lambd": 1e-3, "alpha": 0.75, "t0": 0, "weight_decay": 0.01}


def make_model() -> paddle.nn.Layer:
    paddle.seed(0)
    nn = paddle.nn
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 2))


def data() -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    rng = np.random.RandomState(1)
    x, y, e = rng.randn(8, 4), rng.randn(8, 2), rng.randn(5, 4)
    return tuple(paddle.to_tensor(a.astype("float32")) for a in (x, y, e))  # type: ignore[return-value]


def rank_rows(x: paddle.Tensor) -> paddle.Tensor:
    n = x.shape[0] // dist.get_world_size()
    return x[dist.get_rank() * n : (dist.get_rank() + 1) * n]


def loss_fn(model: paddle.nn.Layer, x: paddle.Tensor, y: paddle.Tensor) -> paddle.Tensor:
    return ((model(x) - y) ** 2).mean()


def numpy_state(layer: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return {k: v.numpy().astype(np.float64) for k, v in layer.state_dict().items()}


def maxdiff(a: dict[str, Any], b: dict[str, Any]) -> float:
    if set(a) != set(b):
        raise AssertionError(f"keys differ: {sorted(a)} vs {sorted(b)}")
    return max(float(np.abs(_np(a[k]) - _np(b[k])).max()) for k in a)


def _np(v: Any) -> np.ndarray:
    return (v.numpy() if isinstance(v, paddle.Tensor) else np.asarray(v)).astype(np.float64)


def make_opt(kind: str, params: list, **extra: Any) -> Any:
    if kind == "asgd":
        return ASGD(parameters=params, **HP, **extra)
    if kind == "ntasgd":
        return NTASGD(parameters=params, learning_rate=HP["learning_rate"], weight_decay=0.01, **extra)
    if kind == "sag":
        return SAG(parameters=params, learning_rate=HP["learning_rate"], batch_num=3, **extra)
    raise ValueError(kind)


def ax_of(opt: Any, layer: paddle.nn.Layer) -> dict[str, np.ndarray]:
    """``state[p]['ax']`` by parameter name (the parameters this optimizer has stepped)."""
    named = layer.named_parameters()
    return {n: opt.state[p]["ax"].numpy().astype(np.float64) for n, p in named if opt.state.get(p)}


def train(model: Any, opt: Any, x: paddle.Tensor, y: paddle.Tensor, kind: str, steps: int = STEPS,
          record: Callable[[], None] | None = None) -> None:  # fmt: skip
    for step in range(steps):
        if kind == "ntasgd" and step == SWITCH:
            opt._inner_opt.start_averaging() if hasattr(opt, "_inner_opt") else opt.start_averaging()
        loss_fn(model, x, y).backward()
        opt.step()
        opt.clear_grad()
        if record is not None:
            record()


def reference(kind: str, **extra: Any) -> dict[str, Any]:
    """Single process, full batch, a plain layer: final params, ax, true averages (float64)."""
    model = make_model()
    x, y, _ = data()
    opt = make_opt(kind, model.parameters(), **extra)
    iterates: list[dict[str, np.ndarray]] = []
    train(model, opt, x, y, kind, record=lambda: iterates.append(numpy_state(model)))
    # t0=0 (ASGD) / the switch (NTASGD, t0 = the switch step): ax_T = mean of the iterates after the first
    first = 1 if kind == "asgd" else SWITCH + 1
    avg = {k: sum(it[k] for it in iterates[first:]) / (STEPS - first) for k in iterates[0]}
    out = {"params": numpy_state(model), "avg": avg, "model": model}
    if kind != "sag":
        out["ax"] = ax_of(opt, model)
    return out


def forward_with(state: dict[str, np.ndarray], e: paddle.Tensor) -> np.ndarray:
    model = make_model()
    model.set_state_dict({k: paddle.to_tensor(v.astype("float32")) for k, v in state.items()})
    return model(e).numpy().astype(np.float64)


def arr(a: Any) -> np.ndarray:
    return np.asarray(a.numpy() if isinstance(a, paddle.Tensor) else a, dtype=np.float64)


# --------------------------------------------------------------------------------------------- dp


def scenario_dp() -> dict[str, Any]:
    out: dict[str, Any] = {}
    x, y, e = data()
    xs, ys = rank_rows(x), rank_rows(y)
    for kind in ("asgd", "ntasgd", "sag"):
        for clip in (False, True):
            extra = {"grad_clip": paddle.nn.ClipGradByGlobalNorm(0.05)} if clip else {}
            tag = f"{kind}{'_clip' if clip else ''}"
            ref = reference(kind, **extra)
            for wrapper in ("paddle_dp", "fleet_dp"):
                layer = make_model()
                opt = make_opt(kind, layer.parameters(), **extra)
                if wrapper == "paddle_dp":
                    model = paddle.DataParallel(layer)
                else:
                    model, opt = fleet.distributed_model(layer), fleet.distributed_optimizer(opt)
                    out[f"{wrapper}_{tag}_wrapper"] = type(opt).__name__
                train(model, opt, xs, ys, kind)
                out[f"{wrapper}_{tag}_vs_single_params"] = maxdiff(numpy_state(layer), ref["params"])
                if kind == "sag":
                    continue
                inner = opt._inner_opt if hasattr(opt, "_inner_opt") else opt
                out[f"{wrapper}_{tag}_vs_single_ax"] = maxdiff(ax_of(inner, layer), ref["ax"])
                if clip:
                    continue
                averaged_api(out, f"{wrapper}_{kind}", model, layer, inner, ref, e, opt)
    return out


def averaged_api(out: dict[str, Any], tag: str, model: Any, layer: paddle.nn.Layer, opt: Any,
                 ref: dict[str, Any], e: paddle.Tensor, stepper: Any) -> None:  # fmt: skip
    """averaged_state_dict / swap_averaged / averaged_parameters through the wrapper vs the true averages."""
    raw = numpy_state(layer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sd = opt.averaged_state_dict(model)
    out[f"{tag}_sd_warnings"] = [str(w.message) for w in caught]
    out[f"{tag}_sd_keys_plain"] = sorted(sd) == sorted(layer.state_dict())
    out[f"{tag}_sd_vs_true_avg"] = maxdiff(sd, ref["avg"])
    fresh = make_model()  # the unwrapped layer loads the averaged state dict
    missing, unexpected = fresh.set_state_dict(sd)
    out[f"{tag}_sd_loads_cleanly"] = not missing and not unexpected
    out[f"{tag}_loaded_vs_true_avg"] = maxdiff(numpy_state(fresh), ref["avg"])
    avg_params = opt.averaged_parameters()
    names = [n for n, _ in layer.named_parameters()]
    out[f"{tag}_avg_params_vs_true_avg"] = maxdiff(dict(zip(names, avg_params, strict=True)), ref["avg"])
    expected = forward_with(ref["avg"], e)
    with opt.swap_averaged(model):
        out[f"{tag}_swap_inside_vs_true_avg"] = float(np.abs(arr(model(e)) - expected).max())
        try:
            stepper.step()
            out[f"{tag}_step_inside_raises"] = False
        except RuntimeError:
            out[f"{tag}_step_inside_raises"] = True
    out[f"{tag}_swap_after_vs_raw"] = float(np.abs(arr(model(e)) - forward_with(raw, e)).max())
    out[f"{tag}_params_restored"] = maxdiff(numpy_state(layer), raw)


# --------------------------------------------------------------------------------------- sharding


def scenario_sharding() -> dict[str, Any]:
    out: dict[str, Any] = {}
    x, y, e = data()
    xs, ys = rank_rows(x), rank_rows(y)
    for kind in ("asgd", "ntasgd", "sag"):
        for clip in (False, True):
            extra = {"grad_clip": paddle.nn.ClipGradByGlobalNorm(0.05)} if clip else {}
            tag = f"{kind}{'_clip' if clip else ''}"
            ref = reference(kind, **extra)
            layer = make_model()
            model = fleet.distributed_model(layer)
            opt = fleet.distributed_optimizer(make_opt(kind, layer.parameters(), **extra))
            out[f"{tag}_wrapper"] = type(opt._inner_opt).__name__
            train(model, opt, xs, ys, kind)
            out[f"{tag}_vs_single_params"] = maxdiff(numpy_state(layer), ref["params"])
            if kind == "sag":
                continue
            inner = opt._inner_opt._inner_opt  # HybridParallelOptimizer -> DygraphShardingOptimizer -> ours
            local = ax_of(inner, layer)
            out[f"{tag}_local_ax_count"] = len(local)
            out[f"{tag}_local_vs_single_ax"] = maxdiff(local, {k: ref["ax"][k] for k in local})
            if clip:
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                inner.averaged_state_dict(model)
            out[f"{kind}_local_sd_warns"] = any("ShardingAveraged" in str(w.message) for w in caught)
            averaged_api(out, f"sharded_{kind}", model, layer, ShardingAveraged(opt), ref, e, opt)
    try:
        ShardingAveraged(ASGD(parameters=make_model().parameters()))
        out["sharding_averaged_refuses_plain"] = ""
    except TypeError as err:
        out["sharding_averaged_refuses_plain"] = str(err)
    return out


def main() -> None:
    out_dir, mode = sys.argv[1], sys.argv[2]
    paddle.set_device("cpu")
    strategy = fleet.DistributedStrategy()
    degrees = {"dp_degree": 1, "mp_degree": 1, "pp_degree": 1, "sharding_degree": 1}
    degrees["dp_degree" if mode == "dp" else "sharding_degree"] = 2
    strategy.hybrid_configs = degrees
    fleet.init(is_collective=True, strategy=strategy)
    try:
        result = {"dp": scenario_dp, "sharding": scenario_sharding}[mode]()
    except Exception:
        result = {"error": traceback.format_exc()}
    path = os.path.join(out_dir, f"{mode}.rank{dist.get_rank()}.json")
    with open(path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
