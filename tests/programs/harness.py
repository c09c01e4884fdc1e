"""Run the torch programs here and their Paddle conversions; compare per-step losses.

``python tests/programs/harness.py`` prints the table of ``docs/migration.md``: each program converted by
ASGD Bridge (+ PaConvert for the model code) and by PaConvert alone, with the max relative loss difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAMS = (
    "defaults",
    "positional",
    "param_groups_alias",
    "awd_lstm",
    "maximize_scheduler",
    "state_dict_resume",
    "subclass",
    "sgd_exact",
    "groups_by_name",
    "resume_before_switch",
    "resume_after_switch",
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run_program(path: Path, timeout: float = 120.0) -> dict[str, float]:
    """Run a program; return its ``loss <i> <x>`` / ``val <i> <x>`` lines as {"loss 3": x}.

    Raises:
        RuntimeError: the program failed (the message holds the tail of its output).
    """
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=timeout, env=ENV, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{path.name} failed: {tail}")
    values = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("loss", "val"):
            values[f"{parts[0]} {parts[1]}"] = float(parts[2])
    return values


def max_rel_diff(ref: dict[str, float], got: dict[str, float]) -> float:
    """Largest ``|got - ref| / |ref|`` over the reference's keys (inf when a key is missing)."""
    if set(ref) != set(got):
        return float("inf")
    return max(abs(got[k] - ref[k]) / max(abs(ref[k]), 1e-12) for k in ref)


def convert_bridge(source: Path, output: Path) -> None:
    """ASGD Bridge, then PaConvert for the model code, in one command."""
    cmd = [
        sys.executable,
        "-m",
        "asgd_bridge.convert",
        str(source),
        "-o",
        str(output),
        "--with-paconvert",
        "-q",
    ]
    subprocess.run(cmd, check=True, env=ENV, capture_output=True, text=True)


def convert_paconvert(source: Path, output: Path) -> None:
    """PaConvert alone, through the library's runner (the one ``--with-paconvert`` uses)."""
    from asgd_bridge.convert.paconvert import run_paconvert

    run_paconvert(source, output)


def stage(names: tuple[str, ...], folder: Path) -> Path:
    """Copy the named programs into ``folder`` (so a whole tree is converted in one run)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.py").write_bytes((HERE / f"{name}.py").read_bytes())
    return folder


def _cell(ref: dict[str, float], path: Path) -> str:
    try:
        return f"{max_rel_diff(ref, run_program(path)):.1e}"
    except RuntimeError as exc:
        message = str(exc).splitlines()[-1].split(". Did you mean")[0]
        return "error: " + message[:90].replace("|", "/")


def measure(names: tuple[str, ...] = PROGRAMS) -> list[tuple[str, str, str]]:
    """Per program: (name, ASGD Bridge cell, PaConvert-alone cell), each a max rel diff or an error."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = stage(names, Path(tmp) / "torch")
        convert_bridge(src, Path(tmp) / "bridge")
        convert_paconvert(src, Path(tmp) / "paconvert")
        for name in names:
            ref = run_program(src / f"{name}.py")
            ours = _cell(ref, Path(tmp) / "bridge" / f"{name}.py")
            theirs = _cell(ref, Path(tmp) / "paconvert" / f"{name}.py")
            rows.append((name, ours, theirs))
    return rows


HEAD = ("program", "ASGD Bridge -> Paddle: max rel diff", "PaConvert alone -> Paddle: max rel diff / error")


def main() -> None:
    """Print the comparison table (markdown); ``benchmarks/migration_table.py`` writes it into the docs."""
    print("| " + " | ".join(HEAD) + " |")
    print("|---|---|---|")
    for row in measure():
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
