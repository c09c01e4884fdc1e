"""The e2e table of ``docs/migration.md``, from a real run: each program of ``tests/programs`` converted by
ASGD Bridge (+ PaConvert for the model code) and by PaConvert alone, run, and compared with torch's losses.

``python benchmarks/migration_table.py`` prints the table; ``--write-docs`` replaces it in
docs/migration.md (between the ``migration-table`` markers). ``tests/test_convert_e2e.py`` checks the page's
rows and its ASGD Bridge column against the same programs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "migration.md"
START = "<!-- migration-table:start (python benchmarks/migration_table.py --write-docs) -->"
END = "<!-- migration-table:end -->"

sys.path.insert(0, str(ROOT / "tests" / "programs"))
import harness  # noqa: E402

#: What each program exercises (the page's first column).
DESCRIPTIONS = {
    "defaults": "defaults",
    "positional": "positional (every argument positional)",
    "param_groups_alias": (
        "param_groups_alias (`import torch.optim as optim`, groups with own lr/weight decay)"
    ),
    "awd_lstm": "awd_lstm (SGD -> ASGD on stall, `ax` swapped in for evaluation)",
    "maximize_scheduler": "maximize_scheduler (`maximize=True`, `StepLR`)",
    "state_dict_resume": "state_dict_resume (save, new optimizer, load, go on)",
    "subclass": "subclass (`class AveragedSGD(torch.optim.ASGD)`, reads `ax`)",
    "sgd_exact": "sgd_exact (`lambd=0`: converted to plain `paddle.optimizer.SGD`)",
    "groups_by_name": (
        "groups_by_name (`lambd=0`, groups in names `[body, head]`: SGD not provable, ASGD kept)"
    ),
    "resume_before_switch": (
        "resume_before_switch (NT-ASGD checkpoint saved while still SGD; `'t0' in sd['param_groups'][0]`)"
    ),
    "resume_after_switch": "resume_after_switch (checkpoint saved after the switch to ASGD, `ax` read)",
}

#: Why PaConvert alone goes wrong (read off its output; appended to the measured cell).
WHY_PACONVERT = {
    "defaults": "Paddle's default lr 0.001 instead of 0.01; SAG",
    "positional": "PaConvert leaves an unconvertible line marked `>>>>>>`",
    "param_groups_alias": "group `lr` ignored, `lambd` dropped",
    "maximize_scheduler": "`maximize` marked unsupported",
    "sgd_exact": "with `lambd=0` and `batch_num=1` SAG happens to be SGD",
    "groups_by_name": "group `lr` ignored",
    "resume_before_switch": "Paddle SGD's state dict has no `param_groups`",
    "resume_after_switch": "Paddle SGD's state dict has no `param_groups`",
}


def render(rows: list[tuple[str, str, str]]) -> str:
    """The markdown table, one row per program."""
    lines = ["| " + " | ".join(harness.HEAD) + " |", "|---|---|---|"]
    for name, ours, theirs in rows:
        why = f" ({WHY_PACONVERT[name]})" if name in WHY_PACONVERT else ""
        lines.append(f"| {DESCRIPTIONS.get(name, name)} | {ours} | {theirs}{why} |")
    return "\n".join(lines)


def parse(doc: str) -> dict[str, tuple[str, str]]:
    """The page's table as {program: (ours, theirs)} (the program is the first word of the first cell)."""
    body = doc.split(START, 1)[1].split(END, 1)[0]
    rows = {}
    for line in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].split()[0]] = (cells[1], cells[2])
    return rows


def write_docs(table: str, path: Path = DOC) -> None:
    """Replace the table between the markers in ``path``."""
    doc = path.read_text()
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    """Measure, print, and with ``--write-docs`` update docs/migration.md."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write-docs", action="store_true", help="replace the table in docs/migration.md")
    args = ap.parse_args(argv)
    table = render(harness.measure())
    print(table)
    if args.write_docs:
        write_docs(table)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
