"""Step-time benchmark of averaged SGD and SAG in torch and Paddle, against the machine's roofline.

Run ``python benchmarks/run.py`` (``make bench``), ``--quick`` for a < 60 s smoke run, and
``--write-docs`` to regenerate docs/benchmarks.md. Every family of rows is timed interleaved (each
repeat runs every row once, in a shuffled order) so the ratios are paired per repeat and the noise
of a shared machine hits all rows alike; reported numbers are medians. One-time costs (first step,
kernel build) are measured apart from the steady state.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats (< 60 s)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="folder for JSON and PNG output")
    ap.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    ap.add_argument("--repeats", type=int, default=None, help="paired repeats per measurement")
    ap.add_argument("--min-time", type=float, default=None, help="seconds of work per timed sample")
    ap.add_argument("--families", default=None,
                    help="comma-separated families (default: torch-asgd,paddle-asgd,sag-1,sag-8 and, "
                    "except with --quick, fused-paths, whose torch.compile candidate compiles for ~30 s)")
    ap.add_argument("--dtypes", default=None, help="comma-separated dtypes (float32,bfloat16)")
    ap.add_argument("--max-numel", type=float, default=None, help="skip sizes above this many elements")
    ap.add_argument("--write-docs", action="store_true", help="also write docs/benchmarks.md")
    ap.add_argument("--docs", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--note", default=None, help="a sentence for the page (e.g. that the machine was loaded)")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="re-render table, plots and docs from a previous run's JSON (no timing)")
    return ap.parse_args(argv)


def set_threads_env(threads: int) -> None:
    # Before torch / paddle / numpy load their OpenMP / BLAS runtimes: the same count for all.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    # Paddle ships Intel's OpenMP, whose idle threads spin for 200 ms after each op and so steal the
    # cores from the row timed next (torch and our kernel use GNU OpenMP). Sleep at once instead.
    os.environ.setdefault("KMP_BLOCKTIME", "0")


def workloads(quick: bool, dtypes: list[str], max_numel: float | None, families: list[str]) -> list:
    from _cases import Workload

    if quick:
        one = [10_000, 1_000_000]
        split: list[int] = []
        small = (100, 4096)
    else:
        one = [10_000, 100_000, 1_000_000, 4_000_000, 16_000_000, 64_000_000]
        split = [16_000_000, 64_000_000]
        small = (500, 4096)
    out = []
    for dt in dtypes:
        sizes = one if dt == "float32" or quick else [1_000_000, 16_000_000, 64_000_000]
        for n in sizes:
            out.append(Workload("one", [(n,)], dt))
        if dt == "float32" or "paddle-asgd" in families:  # bf16 split: the Paddle ASGD target's
            for n in split:
                out.append(Workload("split", [(n // 64,)] * 64, dt))
        out.append(Workload("many-small", [(small[1],)] * small[0], dt))
    if max_numel:
        out = [w for w in out if w.numel <= max_numel]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads_env(args.threads)
    sys.path.insert(0, str(HERE))
    import _report
    import _runner

    t_start = time.perf_counter()
    if args.from_json:
        import json

        doc = json.loads(args.from_json.read_text(encoding="utf-8"))
        if args.note:
            doc["config"]["note"] = args.note
        return _emit(doc, args, t_start)
    env = _runner.setup_frameworks(args.threads)
    dtypes = (args.dtypes or ("float32,bfloat16")).split(",")
    repeats = args.repeats or (3 if args.quick else 9)
    min_time = args.min_time or (0.002 if args.quick else 0.02)
    default = "torch-asgd,paddle-asgd,sag-1,sag-8" + ("" if args.quick else ",fused-paths")
    fams = [f for f in (args.families or default).split(",") if f]
    results, one_time = _runner.run_all(
        workloads(args.quick, dtypes, args.max_numel, fams), fams, repeats, min_time, quick=args.quick
    )
    one_time.update(env.pop("one_time"))
    doc = {
        "machine": _report.machine_info(args.threads, env),
        "config": {
            "quick": args.quick, "threads": args.threads, "repeats": repeats, "min_time_s": min_time,
            "families": fams, "dtypes": dtypes, "wall_s": round(time.perf_counter() - t_start, 1),
            "note": args.note,
        },
        "one_time": one_time,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / ("results-quick.json" if args.quick else "results.json")
    _report.write_json(doc, json_path)
    print(f"wrote {json_path}")
    return _emit(doc, args, t_start)


def _emit(doc: dict, args: argparse.Namespace, t_start: float) -> int:
    import _report

    args.out.mkdir(parents=True, exist_ok=True)
    print(_report.table(doc))
    print("\ntargets:\n" + "\n".join(f"  {t}" for t in _report.targets(doc)))
    quick = doc["config"]["quick"]
    plots = [] if args.no_plots else _report.plots(doc, args.out, suffix="-quick" if quick else "")
    print("".join(f"\nwrote {p}" for p in plots))
    if args.write_docs:
        _report.write_docs(doc, plots, args.docs)
        print(f"wrote {args.docs}")
    print(f"total {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
