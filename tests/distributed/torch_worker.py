"""Multi-process checks of asgd_bridge.torch.ASGD (gloo, CPU), launched by tests/test_distributed.py.

Run as ``torchrun --nproc-per-node 2 torch_worker.py OUT.json SCENARIO...``. Every scenario trains a
tiny model on a fixed full batch split between the ranks, and records numbers (max abs differences,
flags) that the tests assert on. The reference is a single-process full-batch run of
``torch.optim.ASGD(foreach=False)``; the *true* averages are the float64 mean of its recorded iterates
(torch's definition with t0=0: the mean of p_2..p_T), computed here, never through the API.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from asgd_bridge.torch import ASGD

STEPS = 6
HP = {"lr": 0.05, "lambd": 1e-3, "alpha": 0.75, "t0": 0, "weight_decay": 0.01}
IMPLS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 2))


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g), torch.randn(5, 4, generator=g)


def rank_rows(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0] // dist.get_world_size()
    return x[dist.get_rank() * n : (dist.get_rank() + 1) * n]


def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def reference(steps: int = STEPS) -> dict[str, Any]:
    """Single process, full batch, torch.optim.ASGD: final params, ax, true averages (float64)."""
    model = make_model()
    x, y, _ = data()
    opt = torch.optim.ASGD(model.parameters(), foreach=False, **HP)
    iterates: list[dict[str, torch.Tensor]] = []
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model, x, y).backward()
        opt.step()
        iterates.append({k: v.detach().double().clone() for k, v in model.state_dict().items()})
    # torch with t0=0: mu = 1/max(1, t-1) at step t, so ax_T = mean(p_2..p_T)
    avg = {k: sum(it[k] for it in iterates[1:]) / (steps - 1) for k in iterates[0]}
    names = [n for n, _ in model.named_parameters()]
    ax = {n: opt.state[p]["ax"].detach().clone() for n, p in zip(names, model.parameters(), strict=True)}
    return {"params": {k: v.detach().clone() for k, v in model.state_dict().items()}, "ax": ax, "avg": avg}


def maxdiff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if set(a) != set(b):
        raise AssertionError(f"keys differ: {sorted(a)} vs {sorted(b)}")
    return max(float((full(a[k]).double() - full(b[k]).double()).abs().max()) for k in a)


def full(t: Any) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def plain_with(state: dict[str, torch.Tensor]) -> nn.Module:
    m = make_model()
    m.load_state_dict({k: full(v).float() for k, v in state.items()})
    return m


def train(model: nn.Module, opt: Any, steps: int = STEPS) -> None:
    x, y, _ = data()
    xr, yr = rank_rows(x), rank_rows(y)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model, xr, yr).backward()
        opt.step()


def ax_by_name(model: nn.Module, opt: Any, strip: Callable[[str], str]) -> dict[str, torch.Tensor]:
    return {strip(n): opt.state[p]["ax"] for n, p in model.named_parameters()}


def torch_full_sd(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict through torch's own utility (not through our API)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {k: v.detach().clone() for k, v in sd.items()}


def eval_out(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return full(model(data()[2])).detach().clone()


# ------------------------------------------------------------------------------------------ scenarios


def scenario_ddp(ref: dict[str, Any]) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel as DDP

    out: dict[str, Any] = {}
    runs: dict[str, dict[str, Any]] = {}
    for name, cls, kw in [("torch", torch.optim.ASGD, {"foreach": False}),
                          ("torch_foreach", torch.optim.ASGD, {"foreach": True})] + [
                              (k, ASGD, v) for k, v in IMPLS.items()]:  # fmt: skip
        ddp = DDP(make_model())
        opt = cls(ddp.parameters(), **HP, **kw)
        train(ddp, opt)
        strip = lambda n: n.removeprefix("module.")  # noqa: E731
        runs[name] = {"params": {strip(k): v for k, v in ddp.state_dict().items()},
                      "ax": ax_by_name(ddp, opt, strip), "ddp": ddp, "opt": opt}  # fmt: skip
    for name in IMPLS:
        r = runs[name]
        twin = runs["torch_foreach" if name == "foreach" else "torch"]
        out[f"{name}_vs_torch_params"] = maxdiff(r["params"], twin["params"])
        out[f"{name}_vs_torch_ax"] = maxdiff(r["ax"], twin["ax"])
        out[f"{name}_vs_single_params"] = maxdiff(r["params"], ref["params"])
        out[f"{name}_vs_single_ax"] = maxdiff(r["ax"], ref["ax"])
        ddp, opt = r["ddp"], r["opt"]
        sd = opt.averaged_state_dict(ddp)
        out[f"{name}_sd_vs_true_avg"] = maxdiff(sd, ref["avg"])
        compiled = torch.compile(ddp)  # keys only: no forward, nothing is compiled
        sd_c = opt.averaged_state_dict(compiled)
        out[f"{name}_compiled_sd_vs_true_avg"] = maxdiff(sd_c, ref["avg"])
        raw = eval_out(ddp)
        with opt.swap_averaged(ddp):
            inside = eval_out(ddp)
        after = eval_out(ddp)
        out[f"{name}_swap_inside_vs_true_avg"] = float(
            (inside - eval_out(plain_with(ref["avg"]))).abs().max()
        )
        out[f"{name}_swap_after_vs_raw"] = float((after - raw).abs().max())
        now = {k.removeprefix("module."): v for k, v in ddp.state_dict().items()}
        out[f"{name}_params_restored"] = maxdiff(r["params"], now)
    return out


def scenario_zero(ref: dict[str, Any]) -> dict[str, Any]:
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    from asgd_bridge.torch import ZeroAveraged

    out: dict[str, Any] = {}
    finals = {}
    for name, cls, kw in [("torch", torch.optim.ASGD, {"foreach": False})] + [
            (k, ASGD, v) for k, v in IMPLS.items()]:  # fmt: skip
        ddp = DDP(make_model())
        zero = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=cls, **HP, **kw)
        train(ddp, zero)
        finals[name] = {k.removeprefix("module."): v.clone() for k, v in ddp.state_dict().items()}
        if cls is torch.optim.ASGD:
            continue
        out[f"{name}_vs_single_params"] = maxdiff(finals[name], ref["params"])
        out[f"{name}_vs_torch_params"] = maxdiff(finals[name], finals["torch"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            zero.optim.averaged_state_dict(ddp)
        out[f"{name}_local_sd_warns"] = any("ZeroAveraged" in str(w.message) for w in caught)
        averaged = ZeroAveraged(zero)
        sd = averaged.averaged_state_dict(ddp)
        out[f"{name}_sd_vs_true_avg"] = maxdiff(sd, ref["avg"])
        raw = eval_out(ddp)
        with averaged.swap_averaged(ddp):
            inside = eval_out(ddp)
            try:
                zero.step()
                out[f"{name}_step_inside_raises"] = False
            except RuntimeError:
                out[f"{name}_step_inside_raises"] = True
        out[f"{name}_swap_inside_vs_true_avg"] = float(
            (inside - eval_out(plain_with(ref["avg"]))).abs().max()
        )
        out[f"{name}_swap_after_vs_raw"] = float((eval_out(ddp) - raw).abs().max())
        out[f"{name}_avg_params_vs_true_avg"] = max(
            float((a.double() - ref["avg"][k]).abs().max())
            for a, k in zip(averaged.averaged_parameters(), ref["avg"], strict=True)
        )
    return out


def _fsdp2_model(root_only: bool) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    m = make_model()
    if not root_only:
        for layer in m:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
    fully_shard(m)
    return m


def scenario_fsdp2(ref: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    runs = {}
    for name, cls, kw in [("torch", torch.optim.ASGD, {"foreach": False})] + [
            (k, ASGD, v) for k, v in IMPLS.items()]:  # fmt: skip
        for layout in ("nested", "root_only"):
            m = _fsdp2_model(layout == "root_only")
            opt = cls(m.parameters(), **HP, **kw)
            train(m, opt)
            key = f"{name}_{layout}"
            runs[key] = {"params": {k: full(v) for k, v in m.state_dict().items()},
                         "ax": {n: full(opt.state[p]["ax"]) for n, p in m.named_parameters()}}  # fmt: skip
            if cls is torch.optim.ASGD:
                continue
            out[f"{key}_vs_torch_params"] = maxdiff(runs[key]["params"], runs[f"torch_{layout}"]["params"])
            out[f"{key}_vs_torch_ax"] = maxdiff(runs[key]["ax"], runs[f"torch_{layout}"]["ax"])
            out[f"{key}_vs_single_params"] = maxdiff(runs[key]["params"], ref["params"])
            out[f"{key}_vs_single_ax"] = maxdiff(runs[key]["ax"], ref["ax"])
            sd = opt.averaged_state_dict(m)
            out[f"{key}_full_sd_vs_true_avg"] = maxdiff(sd, ref["avg"])
            out[f"{key}_full_sd_plain_tensors"] = all(type(v) is torch.Tensor for v in sd.values())
            sharded = opt.averaged_state_dict(m, full_state_dict=False)
            from torch.distributed.tensor import DTensor

            out[f"{key}_sharded_sd_dtensors"] = all(isinstance(v, DTensor) for v in sharded.values())
            out[f"{key}_sharded_sd_vs_true_avg"] = maxdiff(sharded, ref["avg"])
            r0 = opt.averaged_state_dict(m, rank0_only=True)
            out[f"{key}_rank0_only_empty_elsewhere"] = (len(r0) == 0) == (dist.get_rank() != 0)
            # the AWD-LSTM pattern: evaluate raw, then averaged, then train on
            avg_out = eval_out(plain_with(ref["avg"]))
            raw = eval_out(m)
            with opt.swap_averaged(m):
                inside = eval_out(m)
            after = eval_out(m)
            out[f"{key}_swap_inside_vs_true_avg"] = float((inside - avg_out).abs().max())
            out[f"{key}_swap_after_vs_raw"] = float((after - raw).abs().max())
            # the next training step after the swap runs on the raw weights: equals one more step of
            # the run that never swapped
            train(m, opt, 1)
            twin = _fsdp2_model(layout == "root_only")
            topt = cls(twin.parameters(), **HP, **kw)
            train(twin, topt, STEPS + 1)
            out[f"{key}_train_after_swap_vs_unswapped"] = maxdiff(
                {k: full(v) for k, v in m.state_dict().items()},
                {k: full(v) for k, v in twin.state_dict().items()},
            )
    return out


def scenario_fsdp1(ref: dict[str, Any]) -> dict[str, Any]:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    out: dict[str, Any] = {}
    for orig in (False, True):
        for layout in ("nested", "root_only"):
            policy = None if layout == "root_only" else ModuleWrapPolicy({nn.Linear})
            finals = {}
            impls = [("torch", torch.optim.ASGD, {"foreach": False}), ("loop", ASGD, {"foreach": False}),
                     ("fused", ASGD, {"fused": True})]  # fmt: skip
            for name, cls, kw in impls:
                m = FSDP(
                    make_model(), use_orig_params=orig, auto_wrap_policy=policy, device_id=torch.device("cpu")
                )
                opt = cls(m.parameters(), **HP, **kw)
                train(m, opt)
                key = f"{name}_orig{int(orig)}_{layout}"
                finals[name] = torch_full_sd(m)
                if cls is torch.optim.ASGD:
                    continue
                out[f"{key}_vs_torch_params"] = maxdiff(finals[name], finals["torch"])
                out[f"{key}_vs_single_params"] = maxdiff(finals[name], ref["params"])
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    sd = opt.averaged_state_dict(m)
                out[f"{key}_no_unstepped_warning"] = not any(
                    "not been stepped" in str(w.message) for w in caught
                )
                out[f"{key}_full_sd_vs_true_avg"] = maxdiff(sd, ref["avg"])
                avg_out = eval_out(plain_with(ref["avg"]))
                raw = eval_out(m)
                with opt.swap_averaged(m):
                    inside = eval_out(m)
                after = eval_out(m)
                out[f"{key}_swap_inside_vs_true_avg"] = float((inside - avg_out).abs().max())
                out[f"{key}_swap_after_vs_raw"] = float((after - raw).abs().max())
                train(m, opt, 1)
                twin = FSDP(
                    make_model(), use_orig_params=orig, auto_wrap_policy=policy, device_id=torch.device("cpu")
                )
                topt = cls(twin.parameters(), **HP, **kw)
                train(twin, topt, STEPS + 1)
                out[f"{key}_train_after_swap_vs_unswapped"] = maxdiff(torch_full_sd(m), torch_full_sd(twin))
                try:
                    with opt.swap_averaged():
                        pass
                    out[f"{key}_swap_without_model"] = "ok"
                except ValueError:
                    out[f"{key}_swap_without_model"] = "ValueError"
    return out


def scenario_dcp(ref: dict[str, Any]) -> dict[str, Any]:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    out: dict[str, Any] = {}
    half = STEPS // 2
    tmp = [tempfile.mkdtemp() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(tmp)
    root = tmp[0]
    for layout in ("fsdp2", "ddp"):

        def build(layout: str = layout) -> nn.Module:
            if layout == "fsdp2":
                return _fsdp2_model(False)
            from torch.nn.parallel import DistributedDataParallel as DDP

            return DDP(make_model())

        def snapshot(m: nn.Module, o: Any) -> dict[str, torch.Tensor]:
            sd = {f"p.{k}": full(v) for k, v in m.state_dict().items()}
            sd.update({f"ax.{n}": full(o.state[p]["ax"]) for n, p in m.named_parameters()})
            return sd

        for src_name, dst_name in (("torch", "ours"), ("ours", "torch"), ("ours", "ours")):
            cls = {"torch": torch.optim.ASGD, "ours": ASGD}
            # uninterrupted run of the destination class
            m = build()
            o = cls[dst_name](m.parameters(), **HP, foreach=False)
            train(m, o)
            want = snapshot(m, o)
            # source trains half, saves; a fresh destination loads and resumes
            m1 = build()
            o1 = cls[src_name](m1.parameters(), **HP, foreach=False)
            train(m1, o1, half)
            path = os.path.join(root, f"{layout}_{src_name}_{dst_name}")
            dcp.save(
                {"model": m1.state_dict(), "optim": get_optimizer_state_dict(m1, o1)}, checkpoint_id=path
            )
            m2 = build()
            o2 = cls[dst_name](m2.parameters(), **HP, foreach=False)
            if isinstance(o2, ASGD):
                o2.init_state()
            state = {"model": m2.state_dict(), "optim": get_optimizer_state_dict(m2, o2)}
            dcp.load(state, checkpoint_id=path)  # strict: no allow_partial_load
            m2.load_state_dict(state["model"])
            set_optimizer_state_dict(m2, o2, state["optim"])
            train(m2, o2, STEPS - half)
            out[f"{layout}_{src_name}_to_{dst_name}_resume_vs_uninterrupted"] = maxdiff(
                snapshot(m2, o2), want
            )
        # init_state: a DCP state dict taken before training does not shift the schedule
        for init in (True, False):
            m = build()
            o = ASGD(m.parameters(), **HP, foreach=False)
            if init:
                o.init_state()
            get_optimizer_state_dict(m, o)
            train(m, o)
            plain = build()
            po = ASGD(plain.parameters(), **HP, foreach=False)
            train(plain, po)
            out[f"{layout}_get_osd_before_training_init{int(init)}_vs_untouched"] = maxdiff(
                snapshot(m, o), snapshot(plain, po)
            )
        # a DCP-ready averaged-model state dict, saved and loaded back into a plain model
        m = build()
        o = ASGD(m.parameters(), **HP, foreach=False)
        train(m, o)
        path = os.path.join(root, f"{layout}_averaged")
        dcp.save({"model": o.averaged_state_dict(m, full_state_dict=False)}, checkpoint_id=path)
        target = build()
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

        sd = {"model": get_model_state_dict(target)}
        dcp.load(sd, checkpoint_id=path)
        set_model_state_dict(target, sd["model"])
        out[f"{layout}_dcp_averaged_model_vs_true_avg"] = maxdiff(
            {k: full(v) for k, v in get_model_state_dict(target).items()}, ref["avg"]
        )
    return out


SCENARIOS = {"ddp": scenario_ddp, "zero": scenario_zero, "fsdp2": scenario_fsdp2,
             "fsdp1": scenario_fsdp1, "dcp": scenario_dcp}  # fmt: skip


def main() -> None:
    out_path, names = sys.argv[1], sys.argv[2:]
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    ref = reference()
    results: dict[str, Any] = {}
    for name in names:
        try:
            results[name] = SCENARIOS[name](ref)
        except Exception:  # noqa: BLE001 - recorded for the test to report
            results[name] = {"error": traceback.format_exc()}
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, results)
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(gathered, f)
    gc.collect()  # free FSDP modules held by exception tracebacks while the process group is alive
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
