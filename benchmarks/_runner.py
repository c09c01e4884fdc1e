"""Timing: interleaved, paired repeats of every row of a family, plus one-time costs."""

from __future__ import annotations

import gc
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _cases import (
    ASGD_PROBE,
    FALLBACK_ROOFLINE,
    FAMILIES,
    FLOOR_BYTES_FP32,
    PROBE_SPECS,
    PROBES,
    Row,
    Workload,
    state_bytes,
    stream_library,
)


def setup_frameworks(threads: int) -> dict[str, Any]:
    """Import torch and paddle on ``threads`` threads (CPU), build the fused kernel; time each."""
    one_time: dict[str, Any] = {}
    env: dict[str, Any] = {"one_time": one_time}
    t = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    one_time["import torch (s)"] = round(time.perf_counter() - t, 3)
    env["torch"] = torch.__version__
    try:
        t = time.perf_counter()
        import paddle

        paddle.set_device("cpu")
        try:
            paddle.base.core.set_num_threads(threads)
        except AttributeError:
            pass
        one_time["import paddle (s)"] = round(time.perf_counter() - t, 3)
        env["paddle"] = paddle.__version__
    except Exception as e:  # noqa: BLE001
        env["paddle"] = f"missing: {e}"
        print(f"missing: paddle ({e})")
    try:
        from asgd_bridge._native import asgd as native_asgd
        from asgd_bridge._native import compile_to

        t = time.perf_counter()
        native_asgd.load_asgd_kernel()
        info = native_asgd.build_info()
        one_time["fused kernel load, cached or built (s)"] = round(time.perf_counter() - t, 3)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            ok, err = compile_to(native_asgd.SOURCE, Path(d) / "fresh.so", info.compiler, info.flags)
            one_time["fused kernel fresh build (s)"] = round(time.perf_counter() - t, 3) if ok else err
        one_time["fused kernel flags"] = " ".join([info.compiler, *info.flags])
    except Exception as e:  # noqa: BLE001
        one_time["fused kernel"] = f"unavailable: {e}"
        print(f"missing: fused kernel ({e})")
    try:
        t = time.perf_counter()
        info = stream_library().asgd_build_info
        one_time["STREAM probe (benchmarks/stream.c) load, cached or built (s)"] = round(
            time.perf_counter() - t, 3)
        one_time["STREAM probe flags"] = " ".join([info.compiler, *info.flags])
    except Exception as e:  # noqa: BLE001
        one_time["STREAM probe"] = f"unavailable (roofline falls back to the torch probe): {e}"
        print(f"missing: C STREAM probe ({e})")
    return env


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _usable(row: Row, w: Workload, notes: list[str]) -> bool:
    if w.dtype not in row.dtypes:
        return False
    if row.max_numel is not None and w.numel > row.max_numel:
        return False
    try:
        row.import_check()
    except Exception as e:  # noqa: BLE001
        msg = f"missing: {row.name} ({type(e).__name__}: {e})"
        if msg not in notes:
            notes.append(msg)
            print(msg)
        return False
    return True


def time_rows(steps: dict[str, Any], repeats: int, min_time: float, seed: int) -> tuple[dict, dict]:
    """First-call time and per-repeat step times of each callable, interleaved in shuffled order."""
    first: dict[str, float] = {}
    for name, step in steps.items():
        t = time.perf_counter()
        step()
        first[name] = time.perf_counter() - t
    inner: dict[str, int] = {}
    for name, step in steps.items():
        step()  # warm-up
        t = time.perf_counter()
        step()
        dt = max(time.perf_counter() - t, 1e-7)
        inner[name] = max(1, min(2000, math.ceil(min_time / dt)))
    samples: dict[str, list[float]] = {n: [] for n in steps}
    rng = random.Random(seed)
    names = list(steps)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            step, k = steps[name], inner[name]
            t = time.perf_counter()
            for _ in range(k):
                step()
            samples[name].append((time.perf_counter() - t) / k)
    return first, samples


def _q(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=4)[0 if q < 0.5 else 2] if len(xs) >= 2 else xs[0]


def run_family(family: str, w: Workload, repeats: int, min_time: float, notes: list[str]) -> list[dict]:
    rows = [r for r in FAMILIES[family] if _usable(r, w, notes)]
    if not rows:
        return []
    steps: dict[str, Any] = {}
    opts: dict[str, Any] = {}
    errors: dict[str, str] = {}
    first_call: dict[str, float] = {}
    peak_rss: dict[str, int] = {}
    # Parameters (and gradients) first, so that a row's peak RSS growth is its own state and temporaries.
    if any(r.framework == "torch" for r in rows):
        w.torch_params()
    if any(r.framework == "paddle" for r in rows):
        w.paddle_params()
    probes = [p for p in PROBES if _usable(p, w, notes)]
    for r in [*rows, *probes]:
        try:
            rss0 = None
            if r.framework != "probe":
                gc.collect()
                rss0 = _status_kib("VmRSS") if _reset_peak_rss() else None
            steps[r.name], opts[r.name] = r.make(w)
            if r.framework != "probe":
                # The first step creates the state (and compiles, where a path compiles): timed here
                # as a one-time cost; failing here keeps errors out of the timing loop.
                t = time.perf_counter()
                steps[r.name]()
                first_call[r.name] = time.perf_counter() - t
                hwm = _status_kib("VmHWM") if rss0 is not None else None
                if hwm is not None and rss0 is not None:
                    peak_rss[r.name] = max(0, hwm - rss0) * 1024
        except Exception as e:  # noqa: BLE001 - e.g. a dtype a framework has no kernel for
            errors[r.name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]
            steps.pop(r.name, None)
            print(f"error: {r.name}: {errors[r.name]}")
    first, samples = time_rows(steps, repeats, min_time, seed=hash((family, w.layout, w.numel)) & 0xFFFF)
    n, pn = w.numel, w.probe_numel

    passes = {name: _reps(opts, name) for name in PROBE_SPECS}

    def probe_bw(name: str, i: int) -> float:  # actual bytes per second of probe `name` in repeat i
        spec = PROBE_SPECS[name]
        return spec.actual_bytes * spec.span * pn * passes[name] / samples[name][i]

    roof_names = [p for p, spec in PROBE_SPECS.items() if spec.roofline and p in samples]
    roof_names = roof_names or [p for p in FALLBACK_ROOFLINE if p in samples]
    roof_bw = [max(probe_bw(p, i) for p in roof_names) if roof_names else math.nan for i in range(repeats)]
    asgd_bw = [probe_bw(ASGD_PROBE, i) for i in range(repeats)] if ASGD_PROBE in samples else None
    # The family's designated baseline, or none (no ratios) when it cannot run this workload.
    base = FAMILIES[family][0].name if FAMILIES[family][0].name in samples else None
    out = []
    for r in [*rows, *probes]:
        rec: dict[str, Any] = {
            "family": family, "row": r.name, "framework": r.framework, "algo": r.algo,
            "layout": w.layout, "numel": n, "ntensors": len(w.shapes), "dtype": w.dtype,
        }
        if r.name in errors:
            rec["error"] = errors[r.name]
            out.append(rec)
            continue
        s = samples[r.name]
        rec.update(median_s=statistics.median(s), q25_s=_q(s, 0.25), q75_s=_q(s, 0.75),
                   first_step_s=first_call.get(r.name, first[r.name]), samples_s=s)
        if r.framework == "probe":
            spec = PROBE_SPECS[r.name]
            per_pass = statistics.median(s) / _reps(opts, r.name)
            rec.update(
                impl=spec.impl, kind=spec.kind, probe_numel=pn, span=spec.span,
                passes_per_call=_reps(opts, r.name),
                stream_bytes_per_elem=spec.stream_bytes, actual_bytes_per_elem=spec.actual_bytes,
                rmw=spec.rmw, roofline_candidate=r.name in roof_names,
                bandwidth_stream_gbs=spec.stream_bytes * spec.span * pn / per_pass / 1e9,
                bandwidth_actual_gbs=spec.actual_bytes * spec.span * pn / per_pass / 1e9,
            )
        else:
            floor_bytes = FLOOR_BYTES_FP32[r.algo] * w.itemsize / 4 * n
            rec["floor_bytes"] = floor_bytes
            rec["roofline_fraction"] = statistics.median(
                floor_bytes / roof_bw[i] / s[i] for i in range(repeats)
            )
            if asgd_bw is not None:
                # Against the probe with the fused kernel's own pattern (sanity check, not the roofline).
                rec["asgd_probe_fraction"] = statistics.median(
                    floor_bytes / asgd_bw[i] / s[i] for i in range(repeats)
                )
            if r.name in peak_rss:
                rec["peak_rss_growth_bytes"] = peak_rss[r.name]
            if base is not None:
                rec["baseline"] = base
                rec["speedup_vs_baseline"] = statistics.median(
                    samples[base][i] / s[i] for i in range(repeats)
                )
            rec["state_bytes"] = state_bytes(opts.get(r.name))
        out.append(rec)
    rec_roof = {"family": family, "row": "roofline", "framework": "probe", "algo": "probe",
                "layout": w.layout, "numel": n, "ntensors": len(w.shapes), "dtype": w.dtype,
                "bandwidth_gbs": statistics.median(roof_bw) / 1e9, "sources": roof_names,
                "convention": "actual bytes (= STREAM bytes) of read-modify-write probes, best per repeat"}
    out.append(rec_roof)
    del steps, opts
    return out


def _reps(opts: dict[str, Any], name: str) -> int:
    """Passes per call of a probe (its ``make`` returns them in place of an optimizer)."""
    return int(opts.get(name) or 1)


def run_all(works: list[Workload], families: list[str], repeats: int, min_time: float, *, quick: bool):
    """Every family on every workload; the fused-path candidates only on their own sizes."""
    results: list[dict] = []
    notes: list[str] = []
    for w in works:
        for fam in families:
            big_bf16 = w.dtype == "bfloat16" and (w.layout == "split" or w.numel > 16_000_000)
            if fam != "paddle-asgd" and big_bf16:
                continue  # bf16 at 64M and split over 64: the Paddle ASGD target's workloads only
            if fam == "fused-paths" and not (w.dtype == "float32" and (
                    w.layout == "many-small" or (w.layout == "one" and w.numel == 16_000_000))):
                continue
            t = time.perf_counter()
            recs = run_family(fam, w, repeats, min_time, notes)
            results.extend(recs)
            if recs:
                print(f"  {fam:12s} {w.layout:10s} {w.dtype:9s} n={w.numel:>11,d} "
                      f"({time.perf_counter() - t:.1f} s)", flush=True)
            w.release()
            gc.collect()
    return results, {"notes": notes}
