"""Output of the benchmark: machine description, text table, JSON, PNG plots, docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(threads: int, env: dict[str, Any]) -> dict[str, Any]:
    """lscpu model, cores, memory, library versions (no host names or paths)."""
    lscpu = _run(["lscpu"])
    field = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lscpu.splitlines()) if v}
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
            mem = f"{kb / MB:.1f} GiB"
    except (OSError, AttributeError):
        pass
    cc = _run([os.environ.get("CC", "cc"), "--version"]).splitlines()
    import numpy

    return {
        "cpu": field.get("Model name", platform.processor()),
        "cpus": field.get("CPU(s)", str(os.cpu_count())),
        "threads_per_core": field.get("Thread(s) per core", ""),
        "l3": field.get("L3 cache", ""),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": env.get("torch", ""),
        "paddle": env.get("paddle", ""),
        "numpy": numpy.__version__,
        "compiler": cc[0] if cc else "",
        "threads_used": threads,
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")


def _fmt_n(n: int) -> str:
    for div, suf in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            v = n / div
            return f"{v:.3g}{suf}"
    return str(n)


def _groups(doc: dict[str, Any]) -> dict[tuple, list[dict]]:
    g: dict[tuple, list[dict]] = defaultdict(list)
    for r in doc["results"]:
        g[(r["dtype"], r["layout"], r["numel"], r["ntensors"])].append(r)
    return g


def table(doc: dict[str, Any], markdown: bool = False) -> str:
    """One block per workload: rows with median step time, paired speed-up vs the family's baseline,
    fraction of the roofline floor and state size."""
    lines = []
    head = ["family", "row", "median ms", "speed-up vs baseline", "of roofline", "state MiB"]
    for (dtype, layout, n, nt), recs in sorted(_groups(doc).items(), key=lambda kv: (kv[0][0] != "float32",
                                                                                   kv[0][1], kv[0][2])):
        roof = [r for r in recs if r["row"] == "roofline"]
        bw = f"{roof[0]['bandwidth_gbs']:.1f} GB/s" if roof else "?"
        title = f"{dtype}, {layout}, {_fmt_n(n)} elements in {nt} tensor(s); roofline {bw}"
        body = []
        for r in recs:
            if r["framework"] == "probe":
                continue
            if "error" in r:
                body.append([r["family"], r["row"], "n/a", r["error"][:60], "", ""])
                continue
            sp = r.get("speedup_vs_baseline")
            st = r.get("state_bytes")
            body.append([
                r["family"], r["row"], f"{r['median_s'] * 1e3:.3f}",
                "baseline" if r.get("baseline") == r["row"] else (f"{sp:.2f}x" if sp else ""),
                f"{r['roofline_fraction'] * 100:.0f}%", f"{st / MB:.1f}" if st is not None else "",
            ])
        if markdown:
            lines += [f"**{title}**", "", "| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(b) + " |" for b in body]
            lines.append("")
        else:
            w = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
            lines += ["", title, "  ".join(h.ljust(k) for h, k in zip(head, w, strict=True))]
            lines += ["  ".join(str(x).ljust(k) for x, k in zip(b, w, strict=True)) for b in body]
    return "\n".join(lines)


def plots(doc: dict[str, Any], out: Path, suffix: str = "") -> list[Path]:
    """step_time.png (fp32, one tensor, vs size), roofline.png (fraction vs size), many_small.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = [r for r in doc["results"] if "median_s" in r and r["framework"] != "probe"]
    paths = []
    for key, ylabel, fname in (("median_s", "step time (s)", "step_time"),
                               ("roofline_fraction", "fraction of roofline floor", "roofline")):
        fig, ax = plt.subplots(figsize=(9, 5.5))
        series: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in res:
            if r["dtype"] == "float32" and r["layout"] == "one" and r["family"] != "fused-paths":
                series[r["row"]].append((r["numel"], r[key]))
        colors = plt.get_cmap("tab20").colors  # more rows than the default 10-colour cycle
        for i, (name, pts) in enumerate(sorted(series.items())):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=colors[i % 20],
                    linestyle="--" if name.startswith(("torch.optim", "paddle.optimizer")) else "-")
        ax.set_xscale("log")
        if key == "median_s":
            ax.set_yscale("log")
        ax.set_xlabel("parameter elements (fp32, one tensor)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"{ylabel} ({doc['machine']['threads_used']} threads)")
        p = out / f"{fname}{suffix}.png"
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    small = [r for r in res if r["layout"] == "many-small" and r["dtype"] == "float32"
             and r["family"] != "fused-paths"]
    if small:
        fig, ax = plt.subplots(figsize=(9, 5.5))
        small.sort(key=lambda r: r["median_s"])
        ax.barh([r["row"] for r in small], [r["median_s"] * 1e3 for r in small])
        ax.set_xlabel("step time (ms)")
        nt = small[0]["ntensors"]
        ax.set_title(f"many small tensors: {nt} x {small[0]['numel'] // nt} fp32")
        fig.tight_layout()
        p = out / f"many_small{suffix}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def _find(doc: dict[str, Any], row: str, **where: Any) -> list[dict]:
    return [r for r in doc["results"] if r["row"] == row and "median_s" in r
            and all(r.get(k) == v for k, v in where.items())]


def targets(doc: dict[str, Any]) -> list[str]:
    """The issue's targets, checked on this run's numbers (paired medians)."""
    out = []
    fused = "asgd_bridge.torch.ASGD (fused=True)"
    big = [r for r in _find(doc, fused, dtype="float32")
           if r["numel"] >= 16_000_000 and r["layout"] != "many-small"]
    for r in big:
        loop = _find(doc, "torch.optim.ASGD (for-loop)", dtype="float32", layout=r["layout"],
                     numel=r["numel"])
        bound = (f"; torch's for-loop itself is at {loop[0]['roofline_fraction'] * 100:.0f}% of roofline, "
                 "so a step at the roofline would be "
                 f"{1 / loop[0]['roofline_fraction']:.1f}x faster than it") if loop else ""
        out.append(f"fused vs torch.optim.ASGD for-loop, {r['layout']} {_fmt_n(r['numel'])}: "
                   f"{r['speedup_vs_baseline']:.2f}x (target >= 2x); {r['roofline_fraction'] * 100:.0f}% "
                   f"of roofline (target >= 80%){bound}")
    for r in _find(doc, fused, layout="many-small", dtype="float32"):
        fe = _find(doc, "torch.optim.ASGD (foreach)", layout="many-small", dtype="float32", numel=r["numel"])
        if fe:
            ratio = fe[0]["median_s"] / r["median_s"]
            out.append(f"many small tensors ({r['ntensors']} x {r['numel'] // r['ntensors']}): fused is "
                       f"{ratio:.2f}x torch's foreach speed (target >= 1x)")
    for r in _find(doc, "asgd_bridge.paddle.ASGD", dtype="float32"):
        if r["numel"] >= 16_000_000 and r.get("speedup_vs_baseline"):
            out.append(f"asgd_bridge.paddle.ASGD vs paddle.optimizer.ASGD(batch_num=1), {r['layout']} "
                       f"{_fmt_n(r['numel'])}: {r['speedup_vs_baseline']:.2f}x (target >= 2x)")
    for bn in (1, 8):
        for cls in ("asgd_bridge.torch.SAG", "asgd_bridge.paddle.SAG"):
            for r in _find(doc, f"{cls} (batch_num={bn})", dtype="float32"):
                if r["numel"] >= 16_000_000 and r.get("speedup_vs_baseline"):
                    out.append(f"{cls} vs paddle.optimizer.ASGD, batch_num={bn}, {r['layout']} "
                               f"{_fmt_n(r['numel'])}: {r['speedup_vs_baseline']:.2f}x (target > 1x)")
    return out


def write_docs(doc: dict[str, Any], plot_paths: list[Path], path: Path) -> None:
    m, c, ot = doc["machine"], doc["config"], doc["one_time"]
    rel = [os.path.relpath(p, path.parent).replace(os.sep, "/") for p in plot_paths]
    L = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python benchmarks/run.py --write-docs`; do not edit by hand. -->",
        "",
        "Step time of averaged SGD (`torch.optim.ASGD` and ours) and of SAG (`paddle.optimizer.ASGD` and "
        "ours), on CPU, against the machine's own memory roofline measured in the same run.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({m['cpus']} CPUs, {m['threads_per_core']} thread(s) per core"
        + (f", L3 {m['l3']}" if m["l3"] else "") + ")",
        f"- memory: {m['memory']}; {m['os']}; Python {m['python']}",
        f"- torch {m['torch']}, paddlepaddle {m['paddle']}, numpy {m['numpy']}; {m['compiler']}",
        f"- **{m['threads_used']} threads for every library**: `OMP_NUM_THREADS`, `MKL_NUM_THREADS`, "
        "`OPENBLAS_NUM_THREADS` set before any import, `torch.set_num_threads`, "
        "`paddle.base.core.set_num_threads`; `paddle.set_device('cpu')`.",
        f"- run: {'--quick' if c['quick'] else 'full'}, {c['repeats']} paired repeats, "
        f">= {c['min_time_s'] * 1e3:.0f} ms of work per sample, {c['wall_s']:.0f} s in all.",
        "",
        "## Method",
        "",
        "- Rows of one *family* share their parameters and are timed interleaved: each repeat runs every "
        "row (in a shuffled order) for at least the sample time, so a noisy neighbour slows all rows of a "
        "repeat alike. Speed-ups are the median over repeats of the paired ratio *baseline / row*; the "
        "baseline is the family's first row.",
        "- Roofline: STREAM-like probes in the same interleaved loop, in torch on the same threads, over "
        "fp32 buffers of the workload's size: copy (8 B/element counted), triad `a = b + s*c` (12 B) and "
        "in-place update `a += s*b` (12 B). The roofline bandwidth of a repeat is the best of the three. "
        "A row's *of roofline* is (its floor bytes / roofline bandwidth) / its step time, where the floor is "
        "what one step must move: averaged SGD 20 B per fp32 element (read p, grad, ax; write p, ax), SAG "
        "28 B (read p, grad, d, y[i]; write p, d, y[i]), SGD 12 B; half that for bf16.",
        "- State: bytes of the tensors in the optimizer's `state_dict()` (each storage once).",
        "- Layouts: `one` is one tensor; `split` is the same number of elements in 64 tensors; "
        "`many-small` is 500 tensors of 4096 elements. When each tensor of `split` fits in the last-level "
        "cache, torch's multi-pass for-loop re-reads it from cache, so its distance to the roofline (and "
        "so the most a one-pass kernel can gain) is smaller there than for one large tensor.",
        "- One-time costs (import, kernel build, an optimizer's first step that creates its state) are "
        "reported apart and never enter the medians (two warm-up steps precede the timing).",
        "",
        "## Targets on this run",
        "",
        *[f"- {t}" for t in targets(doc)],
        "",
        "## One-time costs",
        "",
        *[f"- {k}: {v}" for k, v in ot.items() if k != "notes"],
        *[f"- {n}" for n in ot.get("notes", [])],
        "",
        "First steps (state creation; for `fused=True` also the first kernel load in the process; for "
        "the torch.compile candidate its compilation), fp32, largest one-tensor size and the fused-path "
        "candidates:",
        "",
    ]
    ones = [r for r in doc["results"] if r.get("layout") == "one" and r.get("dtype") == "float32"
            and "first_step_s" in r and r["framework"] != "probe"]
    if ones:
        nmax = max(r["numel"] for r in ones)
        L += ["| row | first step ms | steady step ms |", "|---|---|---|"]
        L += [f"| {r['row']} ({_fmt_n(r['numel'])}) | {r['first_step_s'] * 1e3:.1f} | "
              f"{r['median_s'] * 1e3:.2f} |"
              for r in ones if r["numel"] == nmax or r["family"] == "fused-paths"]
        L.append("")
    L += [
        "## The fused path (`asgd_bridge.torch.ASGD(..., fused=True)`)",
        "",
        "One pass over memory per tensor: a small C kernel (`src/asgd_bridge/torch/_kernels/asgd_cpu.c`) "
        "reads p, grad and ax once and writes p and ax once, OpenMP over elements, all tensors of a dtype "
        "in one call (a list of pointers, so many small tensors cost one launch). It is built with the "
        "system C compiler on first use (no torch headers, so well under a second) and cached in torch's "
        "extension cache (`~/.cache/torch_extensions/asgd_bridge`, or `$TORCH_EXTENSIONS_DIR`). The "
        "schedule (step, eta, mu) is read and written by the kernel from the 0-d state tensors; nothing is "
        "read back to the host. On CUDA the same entry point compiles a per-tensor update with "
        "`torch.compile`, keeping the schedule on the device. Without a compiler (or for a layout the "
        "kernel does not take) it falls back to a `torch._foreach_*` implementation of the same math, with "
        "a `RuntimeWarning` naming the reason. The `fused-paths` family below compares the three on CPU.",
        "",
        "Agreement (tests/test_fused.py): float64 vs `reference.asgd_step` rtol 1e-12; float32 and complex64 "
        "vs `torch.optim.ASGD(foreach=False)` rtol 1e-5, atol 1e-6 after 6 steps (the kernel rounds once "
        "where torch rounds after the multiply and after the add); bf16/fp16 within one ulp of the float64 "
        "reference rounded to the storage dtype each step (computed in fp32, rounded once on store).",
        "",
        "## Plots",
        "",
        *[f"![{Path(p).stem}]({p})" for p in rel],
        "",
        "## Results",
        "",
        table(doc, markdown=True),
        "",
        "## Reproduce",
        "",
        "```",
        "make bench                             # full run: table, JSON + PNG in benchmarks/results/",
        "python benchmarks/run.py --quick       # < 60 s smoke run",
        "python benchmarks/run.py --write-docs  # this page",
        "python benchmarks/run.py --threads 4 --families torch-asgd --dtypes float32 --out my-results",
        "```",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L), encoding="utf-8")
