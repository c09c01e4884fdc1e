"""The migration demo: an AWD-LSTM-style torch program to Paddle, by ASGD Bridge and by PaConvert alone.

Converts ``examples/awd_lstm_torch.py`` (SGD, then NT-ASGD when validation stalls, evaluation with the
averaged weights), runs the torch original and both Paddle programs, prints per-epoch losses side by side
and writes ``out/demo/losses.png``. Run: ``python examples/demo.py`` (or ``make demo``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "awd_lstm_torch.py"
OUT = HERE.parent / "out" / "demo"
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONWARNINGS": "ignore"}


def run(path: Path) -> tuple[list[tuple[float, float]], str]:
    """Run a program; its ``epoch i train x val y`` lines, and its error line ('' when it ran through)."""
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=ENV, check=False)
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] == "epoch":
            rows.append((float(parts[3]), float(parts[5])))
    error = ""
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        error = lines[-1] if lines else f"exit status {proc.returncode}"
    return rows, error


def convert() -> tuple[Path, Path]:
    """ASGD Bridge (+ PaConvert for the model code) and PaConvert alone; the two Paddle programs."""
    OUT.mkdir(parents=True, exist_ok=True)
    ours, theirs = OUT / "awd_lstm_paddle.py", OUT / "awd_lstm_paconvert_alone.py"
    print(
        f"$ asgd-bridge convert {SOURCE.relative_to(HERE.parent)} -o {ours.relative_to(HERE.parent)} "
        "--with-paconvert"
    )
    subprocess.run(
        [sys.executable, "-m", "asgd_bridge.convert", str(SOURCE), "-o", str(ours), "--with-paconvert"],
        check=True,
        env=ENV,
    )
    print(f"$ paconvert -i {SOURCE.relative_to(HERE.parent)} -o {theirs.relative_to(HERE.parent)}")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from paconvert.main import main; sys.exit(main())",
            "--in_dir",
            str(SOURCE),
            "--out_dir",
            str(theirs),
            "--log_dir",
            str(OUT / "paconvert.log"),
        ],
        check=True,
        env=ENV,
        capture_output=True,
    )
    return ours, theirs


def _cell(rows: list[tuple[float, float]], i: int, error: str) -> str:
    if i < len(rows):
        return f"{rows[i][0]:.6f} / {rows[i][1]:.6f}"
    return "crashed" if error else "-"


def plot(curves: dict[str, list[tuple[float, float]]], errors: dict[str, str], path: Path) -> None:
    """Validation and training loss per epoch, one line per program (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {
        "torch": ("k", "-", 6),
        "ASGD Bridge -> Paddle": ("tab:blue", "--", 3),
        "PaConvert alone -> Paddle": ("tab:red", ":", 3),
    }
    for ax, col, title in ((axes[0], 0, "train loss (epoch mean)"), (axes[1], 1, "validation loss")):
        for name, rows in curves.items():
            color, ls, lw = styles[name]
            label = name if rows or not errors[name] else f"{name}: crashed"
            ax.plot(
                range(len(rows)),
                [r[col] for r in rows],
                color=color,
                ls=ls,
                lw=lw,
                label=label,
                marker="o" if rows else None,
                ms=3,
            )
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    theirs = errors["PaConvert alone -> Paddle"]
    if theirs:
        fig.text(0.01, 0.01, f"PaConvert alone: {theirs[:140]}", fontsize=7, color="tab:red")
    fig.suptitle("AWD-LSTM habit (SGD, then NT-ASGD with averaged evaluation): torch vs Paddle")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    """Convert, run the three programs, print and plot; returns 0 when ASGD Bridge matches torch."""
    ours, theirs = convert()
    names = ("torch", "ASGD Bridge -> Paddle", "PaConvert alone -> Paddle")
    results = dict(zip(names, (run(SOURCE), run(ours), run(theirs)), strict=True))
    curves = {k: v[0] for k, v in results.items()}
    errors = {k: v[1] for k, v in results.items()}
    for name in names[:2]:
        if errors[name]:
            print(f"{name} failed: {errors[name]}")
            return 1
    print("\nper-epoch losses (train / val)")
    print(f"{'epoch':>5} | {names[0]:^21} | {names[1]:^21} | {names[2]:^21}")
    for i in range(len(curves["torch"])):
        print(f"{i:>5} | " + " | ".join(f"{_cell(curves[n], i, errors[n]):^21}" for n in names))
    ref, got = curves["torch"], curves[names[1]]
    worst = max(abs(a - b) / abs(a) for r, g in zip(ref, got, strict=True) for a, b in zip(r, g, strict=True))
    print(f"\nASGD Bridge -> Paddle vs torch: max relative difference {worst:.2e} over {len(ref)} epochs")
    if errors[names[2]]:
        print(f"PaConvert alone -> Paddle: {errors[names[2]]}")
    png = OUT / "losses.png"
    plot(curves, errors, png)
    print(f"plot: {png.relative_to(HERE.parent)}")
    return 0 if worst < 1e-4 and len(got) == len(ref) else 1


if __name__ == "__main__":
    sys.exit(main())
