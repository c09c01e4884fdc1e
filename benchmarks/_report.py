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


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    k = len(xs)
    return xs[k // 2] if k % 2 else (xs[k // 2 - 1] + xs[k // 2]) / 2


def _roofline(recs: list[dict]) -> tuple[float | None, list[str]]:
    """The workload's roofline (median over its families' paired rooflines) and the probes it came from."""
    roof = [r for r in recs if r["row"] == "roofline" and r.get("bandwidth_gbs") == r.get("bandwidth_gbs")]
    if not roof:
        return None, []
    return _median([r["bandwidth_gbs"] for r in roof]), roof[0].get("sources", [])


def probe_summary(recs: list[dict]) -> dict[str, dict[str, Any]]:
    """Per probe of one workload: median over families of its STREAM-convention and actual GB/s."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        if r["framework"] == "probe" and r["row"] != "roofline" and "bandwidth_actual_gbs" in r:
            by[r["row"]].append(r)
    return {name: {"stream": _median([r["bandwidth_stream_gbs"] for r in rs]),
                   "actual": _median([r["bandwidth_actual_gbs"] for r in rs]),
                   "rmw": rs[0]["rmw"], "roofline": rs[0].get("roofline_candidate", False)}
            for name, rs in by.items()}


def _fmt_probe(v: dict[str, Any]) -> str:
    return f"{v['actual']:.1f}" if v["rmw"] else f"{v['stream']:.1f} / {v['actual']:.1f}"


def _order(kv: tuple) -> tuple:
    (dtype, layout, n, _), _ = kv
    return (dtype != "float32", layout, n)


def table(doc: dict[str, Any], markdown: bool = False) -> str:
    """One block per workload: rows with median step time, paired speed-up vs the family's baseline,
    fraction of the roofline, state size and peak RSS growth; then the probes' bandwidths."""
    lines = []
    head = ["family", "row", "median ms", "speed-up vs baseline", "of roofline", "state MiB",
            "peak RSS +MiB"]
    for (dtype, layout, n, nt), recs in sorted(_groups(doc).items(), key=_order):
        bw, src = _roofline(recs)
        roof = f"{bw:.1f} GB/s ({', '.join(x.removeprefix('probe: ') for x in src)})" if bw else "?"
        title = f"{dtype}, {layout}, {_fmt_n(n)} elements in {nt} tensor(s); roofline {roof}"
        body = []
        for r in recs:
            if r["framework"] == "probe":
                continue
            if "error" in r:
                body.append([r["family"], r["row"], "n/a", r["error"][:60], "", "", ""])
                continue
            sp = r.get("speedup_vs_baseline")
            st = r.get("state_bytes")
            pk = r.get("peak_rss_growth_bytes")
            body.append([
                r["family"], r["row"], f"{r['median_s'] * 1e3:.3f}",
                "baseline" if r.get("baseline") == r["row"] else (f"{sp:.2f}x" if sp else ""),
                f"{r['roofline_fraction'] * 100:.0f}%", f"{st / MB:.1f}" if st is not None else "",
                f"{pk / MB:.1f}" if pk is not None else "",
            ])
        probes = probe_summary(recs)
        probe_line = ("probes GB/s (STREAM count / actual traffic; read-modify-write: one number): "
                      + ", ".join(f"{k.removeprefix('probe: ')} {_fmt_probe(v)}" for k, v in probes.items()))
        if markdown:
            lines += [f"**{title}**", "", "| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(b) + " |" for b in body]
            lines += ["", probe_line if probes else "", ""]
        else:
            w = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
            lines += ["", title, "  ".join(h.ljust(k) for h, k in zip(head, w, strict=True))]
            lines += ["  ".join(str(x).ljust(k) for x, k in zip(b, w, strict=True)) for b in body]
            if probes:
                lines.append(probe_line)
    return "\n".join(lines)


def probe_table(doc: dict[str, Any]) -> str:
    """Markdown: every probe's bandwidth per workload (STREAM count / actual traffic)."""
    groups = sorted(_groups(doc).items(), key=_order)
    names: list[str] = []
    for _, recs in groups:
        names += [k for k in probe_summary(recs) if k not in names]
    if not names:
        return ""
    head = ["workload", "roofline GB/s", *[k.removeprefix("probe: ") for k in names]]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (dtype, layout, n, nt), recs in groups:
        ps = probe_summary(recs)
        bw, _ = _roofline(recs)
        label = f"{dtype} {layout} {_fmt_n(n)}" + (f" ({nt} tensors)" if nt > 1 else "")
        cells = [label, f"{bw:.1f}" if bw else "?", *[_fmt_probe(ps[k]) if k in ps else "" for k in names]]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _style(name: str) -> dict[str, Any]:
    # Dashed: the frameworks' own optimizers; marker by framework of the tensors.
    return {"linestyle": "--" if name.startswith(("torch.optim", "paddle.optimizer")) else "-",
            "marker": "s" if "paddle" in name else "o"}


#: The six optimizer classes (their fastest CPU path) and the frameworks' own optimizers they are
#: measured against, for classes.png.
CLASS_ROWS = (
    "asgd_bridge.torch.ASGD (fused=True)", "asgd_bridge.torch.NTASGD (averaging, fused=True)",
    "asgd_bridge.torch.SAG (batch_num=1)", "asgd_bridge.paddle.ASGD (C kernel)",
    "asgd_bridge.paddle.NTASGD (averaging)", "asgd_bridge.paddle.SAG (batch_num=1)",
    "torch.optim.ASGD (foreach)", "torch.optim.ASGD (for-loop)", "paddle.optimizer.SGD",
    "paddle.optimizer.ASGD (SAG, batch_num=1)",
)  # fmt: skip


def plots(doc: dict[str, Any], out: Path, suffix: str = "") -> list[Path]:
    """classes.png (the six classes and the frameworks' baselines), step_time.png and roofline.png
    (every row; fp32, one tensor, vs size), many_small.png, probes.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = [r for r in doc["results"] if "median_s" in r and r["framework"] != "probe"]
    threads = doc["machine"]["threads_used"]
    colors = plt.get_cmap("tab20").colors  # more rows than the default 10-colour cycle
    paths: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = out / f"{name}{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    one_fp32 = [r for r in res if r["dtype"] == "float32" and r["layout"] == "one"]
    for key, ylabel, fname, title, rows in (
        ("median_s", "step time (s)", "classes",
         "Step time of the six classes and the frameworks' optimizers, fp32, one tensor", CLASS_ROWS),
        ("median_s", "step time (s)", "step_time", "Step time, fp32, one tensor", None),
        ("roofline_fraction", "fraction of roofline (floor bytes / roofline bandwidth / step time)",
         "roofline", "Fraction of the roofline (C read-modify-write probe), fp32, one tensor", None),
    ):
        series: dict[str, dict[int, float]] = defaultdict(dict)
        for r in one_fp32:
            if (r["row"] in rows) if rows else r["family"] != "fused-paths":
                series[r["row"]].setdefault(r["numel"], r[key])  # a row in two families: its first
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(12, 5.5))
        names = [n for n in rows if n in series] if rows else sorted(series)
        for i, name in enumerate(names):
            pts = sorted(series[name].items())
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name,
                    color=colors[(2 * i if rows else i) % 20], **_style(name))
        ax.set_xscale("log")
        if key == "median_s":
            ax.set_yscale("log")
        else:
            ax.axhline(1.0, color="black", linewidth=1)
            ax.axhline(0.8, color="grey", linewidth=1, linestyle=":")
            ax.text(ax.get_xlim()[0], 1.0, " roofline", va="bottom", fontsize=8)
            ax.text(ax.get_xlim()[0], 0.8, " target 80% (fused)", va="bottom", fontsize=8, color="grey")
            ax.set_ylim(0, max(1.1, ax.get_ylim()[1]))
        ax.set_xlabel("parameter elements (fp32, one tensor)")
        ax.set_ylabel(ylabel, fontsize=9 if key != "median_s" else 10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                  title="solid: asgd_bridge; dashed: the frameworks' own", title_fontsize=8)
        ax.set_title(f"{title} ({threads} threads)")
        save(fig, fname)
    small = [r for r in res if r["layout"] == "many-small" and r["dtype"] == "float32"
             and r["family"] != "fused-paths"]
    if small:
        fig, ax = plt.subplots(figsize=(9, 5.5))
        small.sort(key=lambda r: r["median_s"])
        bars = ax.barh([r["row"] for r in small], [r["median_s"] * 1e3 for r in small])
        ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
        ax.set_xlabel("step time (ms)")
        ax.margins(x=0.12)
        nt = small[0]["ntensors"]
        ax.set_title(f"Many small tensors: {nt} x {small[0]['numel'] // nt} fp32 ({threads} threads)")
        save(fig, "many_small")
    probe_pts: dict[str, list[tuple[int, float]]] = defaultdict(list)
    probe_rmw: dict[str, bool] = {}
    for (dtype, layout, _n, _nt), recs in _groups(doc).items():
        if dtype == "float32" and layout == "one":
            for name, v in probe_summary(recs).items():
                pn = next(r["probe_numel"] for r in recs if r["row"] == name and "probe_numel" in r)
                probe_pts[name].append((pn * 4, v["actual"]))
                probe_rmw[name] = v["rmw"]
    if probe_pts:
        fig, ax = plt.subplots(figsize=(12, 5.5))
        for i, (name, pts) in enumerate(sorted(probe_pts.items())):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name.removeprefix("probe: "),
                    color=colors[i % 20], marker="o" if name.startswith("probe: C") else "x",
                    linestyle="-" if probe_rmw[name] else "--")
        ax.set_xscale("log")
        ax.set_xlabel("bytes per probe array (fp32; one copy of the parameters)")
        ax.set_ylabel("GB/s, actual traffic (incl. write-allocate)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                  title="solid: read-modify-write", title_fontsize=8)
        ax.set_title(f"Bandwidth probes by array size ({threads} threads)")
        save(fig, "probes")
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
        bw, src = _roofline([x for x in doc["results"] if x["dtype"] == r["dtype"]
                             and x["layout"] == r["layout"] and x["numel"] == r["numel"]])
        roof = (f" ({bw:.1f} GB/s, best of {', '.join(x.removeprefix('probe: ') for x in src)})"
                if bw else "")
        sanity = (f"; {r['asgd_probe_fraction'] * 100:.0f}% of the C probe with the kernel's own access "
                  "pattern (sanity check: same bytes, ~100% expected)") if "asgd_probe_fraction" in r else ""
        out.append(f"fused vs torch.optim.ASGD for-loop, {r['layout']} {_fmt_n(r['numel'])}: "
                   f"{r['speedup_vs_baseline']:.2f}x (target >= 2x); {r['roofline_fraction'] * 100:.0f}% "
                   f"of roofline{roof} (target >= 80%){sanity}{bound}")
    for r in _find(doc, fused, layout="many-small", dtype="float32"):
        fe = _find(doc, "torch.optim.ASGD (foreach)", layout="many-small", dtype="float32", numel=r["numel"])
        if fe:
            ratio = fe[0]["median_s"] / r["median_s"]
            out.append(f"many small tensors ({r['ntensors']} x {r['numel'] // r['ntensors']}): fused is "
                       f"{ratio:.2f}x torch's foreach speed (target >= 1x)")
    kernel = "asgd_bridge.paddle.ASGD (C kernel)"
    for r in _find(doc, kernel, family="paddle-asgd"):
        if r["numel"] < 16_000_000 or r["layout"] == "many-small":
            continue
        old = _find(doc, "asgd_bridge.paddle.ASGD (Paddle ops, old path)", family="paddle-asgd",
                    dtype=r["dtype"], layout=r["layout"], numel=r["numel"])
        vs_old = f"; {old[0]['median_s'] / r['median_s']:.2f}x its old path" if old else ""
        out.append(f"{kernel}, {r['dtype']} {r['layout']} {_fmt_n(r['numel'])}: "
                   f"{r['roofline_fraction'] * 100:.0f}% of roofline (target >= 85%); step "
                   f"{1 / r['speedup_vs_baseline']:.2f}x paddle.optimizer.SGD's (target <= 2.0x){vs_old}"
                   f"{_python_share(doc, r)}")
    for r in _find(doc, kernel, family="paddle-asgd", layout="many-small"):
        out.append(f"{kernel}, many small tensors ({r['ntensors']} x {r['numel'] // r['ntensors']}, "
                   f"{r['dtype']}): step {1 / r['speedup_vs_baseline']:.2f}x paddle.optimizer.SGD's "
                   f"(target <= 1x){_python_share(doc, r)}")
    for r in _find(doc, "asgd_bridge.paddle.ASGD", dtype="float32"):
        if r["numel"] >= 16_000_000 and r.get("speedup_vs_baseline"):
            out.append(f"asgd_bridge.paddle.ASGD vs paddle.optimizer.ASGD(batch_num=1), {r['layout']} "
                       f"{_fmt_n(r['numel'])}: {r['speedup_vs_baseline']:.2f}x (target >= 2x)")
    for bn in (1, 8):
        for cls in ("asgd_bridge.torch.SAG", "asgd_bridge.paddle.SAG"):
            for r in _find(doc, f"{cls} (batch_num={bn})", dtype="float32"):
                if r["numel"] >= 16_000_000 and r.get("speedup_vs_baseline"):
                    out.append(f"{cls} vs paddle.optimizer.ASGD, batch_num={bn}, {r['layout']} "
                               f"{_fmt_n(r['numel'])}: {r['speedup_vs_baseline']:.2f}x (target > 1x); "
                               f"{r['roofline_fraction'] * 100:.0f}% of the 28 B/element roofline "
                               "(target >= 80%)")
    return out


def _python_share(doc: dict[str, Any], r: dict[str, Any]) -> str:
    """For a row of many tensors: its time beyond its kernel alone (same tensors, same family, median
    of the paired per-repeat differences), the Python side of the step, per parameter."""
    alone = _find(doc, "asgd_bridge.paddle.ASGD: its kernel alone", family=r["family"], dtype=r["dtype"],
                  layout=r["layout"], numel=r["numel"])  # fmt: skip
    if not alone or r["ntensors"] < 2:
        return ""
    extra = _median([a - b for a, b in zip(r["samples_s"], alone[0]["samples_s"], strict=True)])
    return (f"; its kernel alone {alone[0]['roofline_fraction'] * 100:.0f}% of roofline, the rest "
            f"{extra * 1e3:.2f} ms = {extra / r['ntensors'] * 1e6:.1f} us per parameter "
            f"({extra / r['median_s'] * 100:.0f}% of the step)")


def _wl_key(label: str) -> tuple:
    lay, _, n = label.partition(" ")
    mult = {"k": 1e3, "M": 1e6}.get(n[-1:], 1)
    return (lay, float(n.rstrip("kM")) * mult)


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
        "`paddle.base.core.set_num_threads`; `paddle.set_device('cpu')`; `KMP_BLOCKTIME=0` so Paddle's "
        "Intel OpenMP threads do not spin into the next row's time.",
        f"- run: {'--quick' if c['quick'] else 'full'}, {c['repeats']} paired repeats, "
        f">= {c['min_time_s'] * 1e3:.0f} ms of work per sample, {c['wall_s']:.0f} s in all.",
        f"- families: {', '.join(c['families'])}." + (f" **Note:** {c['note']}" if c.get("note") else ""),
        "",
        "## Method",
        "",
        "- Rows of one *family* share their parameters and are timed interleaved: each repeat runs every "
        "row (in a shuffled order) for at least the sample time, so a noisy neighbour slows all rows of a "
        "repeat alike. Speed-ups are the median over repeats of the paired ratio *baseline / row*; the "
        "baseline is the family's first row.",
        "- Roofline: STREAM-like probes timed in the same interleaved loop as the rows (so paired with them "
        "per repeat), in plain C with OpenMP (`benchmarks/stream.c`, built by the fused kernel's own builder "
        "with the same compiler and flags), on the same threads, static schedule, over three fp32 arrays of "
        "as many bytes as one copy of the workload's parameters (so larger than the L3 cache from 16M "
        "elements on); small arrays get several passes per call so the call and thread start-up do not "
        "hide their bandwidth. The two roofline probes stream the optimizer's whole working set (three "
        "parameter copies: update1 over one array of all of it, update2 over two halves), so a cache that "
        "holds one copy cannot flatter them. Probes: copy `a = b`, scale `a = s*b`, add `a = b + c`, triad "
        "`a = b + s*c`, the read-modify-write updates update1 `a = s*a` and update2 `a = a + s*b`, and asgd "
        "`p = k*p - e*g; x = x + m*(p - x)` (the fused kernel's own pattern).",
        "- Byte counts: each probe's bandwidth is given two ways. *STREAM count* counts the arrays named in "
        "the source (copy 8 B/element, triad 12 B); *actual traffic* adds the read-for-ownership of lines "
        "that are only written (write-allocate: with ordinary stores a copy moves 12 B/element, a triad "
        "16 B). In a read-modify-write kernel every written line was read in the same pass, so the two "
        "counts agree (update1 8 B, update2 12 B, asgd 20 B).",
        "- One convention for *of roofline*: a row's floor bytes / the roofline bandwidth / its step time "
        "(median over repeats of the paired value). The floor is what one step must move, with no "
        "write-allocate because an optimizer writes only lines it has read: averaged SGD 20 B per fp32 "
        "element (read p, grad, ax; write p, ax), SAG 28 B (read p, grad, d, y[i]; write p, d, y[i]), SGD "
        "12 B; half that for bf16. The roofline of a repeat is the best actual-traffic bandwidth of the C "
        "read-modify-write probes update1 and update2 (no write-allocate either, so numerator and "
        "denominator count bytes alike). The asgd probe has exactly the fused kernel's traffic: it is a "
        "sanity check (the fused row should sit near 100% of it), not the roofline. The torch-op probes of "
        "earlier runs (`torch copy/triad/update`) are kept as extra rows; they are several eager kernels "
        "or not one tuned pass, so they underestimate the bandwidth (earlier pages used them and reported "
        "the fused step above 100% of that roofline). Only if the C probe cannot be built does the roofline "
        "fall back to `torch update`; the table title names the probes it came from.",
        "- State: bytes of the tensors in the optimizer's `state_dict()` (each storage once). Peak RSS "
        "growth: the process's peak resident memory (`VmHWM`, reset through `/proc/self/clear_refs`) "
        "during the row's construction and first step, minus the resident memory before it, with the "
        "parameters and gradients already allocated: state plus the step's temporaries. Paddle's "
        "allocator keeps freed blocks for reuse, and glibc serves allocations below its mmap threshold "
        "(up to 32 MiB) from heap memory it already holds, so the number is meaningful for the large "
        "workloads (16M+ elements) and can read ~0 for small ones.",
        "- Workloads: fp32 " + ", ".join(sorted({f"{lay} {_fmt_n(n)}" for (dt, lay, n, _nt) in _groups(doc)
                                                 if dt == "float32"}, key=_wl_key))
        + "; bf16 " + ", ".join(sorted({f"{lay} {_fmt_n(n)}" for (dt, lay, n, _nt) in _groups(doc)
                                       if dt == "bfloat16"}, key=_wl_key))
        + ". `paddle.optimizer.ASGD` and our SAG classes with batch_num=8 keep 8 gradient copies and run "
        "up to 16M elements; `paddle.optimizer.ASGD` has no bf16 kernel (no baseline there).",
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
        "## Roofline probes",
        "",
        "GB/s per workload, median over the families' paired repeats: `STREAM count / actual traffic` for "
        "kernels with write-only arrays, one number for read-modify-write kernels (both counts agree). "
        "The roofline column is the best of C update1/update2 per repeat (median over repeats).",
        "",
        probe_table(doc),
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
        "## The six classes",
        "",
        "`classes.png` plots the fastest CPU path of each class against the frameworks' own optimizers "
        "(fp32, one tensor): `asgd_bridge.torch.ASGD(fused=True)`, `asgd_bridge.torch.NTASGD(fused=True)` "
        "and `asgd_bridge.paddle.NTASGD` after their switch to averaging (before it they are the "
        "frameworks' SGD, op for op), `asgd_bridge.paddle.ASGD`, and both SAG classes with batch_num=1; "
        "dashed: `torch.optim.ASGD` (for-loop and foreach), `paddle.optimizer.SGD` (the 12 B/element "
        "floor of any first-order step) and `paddle.optimizer.ASGD` (SAG).",
        "",
        "## The fused path (`asgd_bridge.torch.ASGD(..., fused=True)`)",
        "",
        "One pass over memory per tensor: a small C kernel (`src/asgd_bridge/_native/asgd_cpu.c`) "
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
        "## The Paddle and SAG kernels",
        "",
        "`asgd_bridge.paddle.ASGD` runs the same C source (`asgd_cpu.c`, its `asgd_update` entry: the "
        "schedule stays on the host, as Python numbers) through the same builder and private cache, from "
        "`asgd_bridge/paddle/_fused.py`, which checks every Paddle tensor (plain dense initialised CPU "
        "tensor, dtype, element count, contiguity, no two buffers overlapping) before its address reaches C. "
        "fp32/fp64/bf16/fp16, with or without `multi_precision` master weights (the kernel reads and writes "
        "the fp32 master and stores the rounded parameter in the same pass); a bf16/fp16 gradient that no "
        "clip or regulariser sees is read in its own dtype. The parameters of a step are queued and launched "
        "together, one launch per kernel variant. Per parameter the Python side costs a few microseconds, "
        "the price of checking three tensors: the checks are attribute reads written out in one loop per "
        "group (a call per tensor would cost as much as its tests), the schedule is computed once per "
        "distinct (lr, decay, state) of a group, and a Paddle build that can hold tensors in host memory "
        "only (no CUDA/ROCm, XPU, IPU or custom device) skips the place read. Parameters whose buffers "
        "overlap (views of one tensor) are launched one at a time, in order, as Paddle's ops update them. "
        "The `Paddle ops, old path` row is the same class forced "
        "onto its four-pass Paddle ops, the fallback for GPU tensors and layouts the kernel does not take "
        "(one `RuntimeWarning` per reason). Both SAG classes run `sag_cpu.c` (read p, grad, d, y[i]; write "
        "p, d, y[i]: 28 B per fp32 element), with the gradient prepared inside the kernel in "
        "`reference.prepare_gradients`' order (torch: negate, value clip or the norm-clip scale read from "
        "its 0-d tensor, L2/L1; Paddle: after Paddle's own clip, L2/L1), float32/float64.",
        "",
        "Agreement (tests/test_paddle_fused.py, tests/test_sag_fused.py and the shared table): float64 vs "
        "the reference rtol 1e-12; float32 vs the non-fused path 1e-6 and vs torch.optim.ASGD / "
        "paddle.optimizer.ASGD 1e-5; bf16/fp16 within one ulp of the reference rounded to the storage dtype.",
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
