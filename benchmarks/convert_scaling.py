"""Cost of converting one file that mentions ASGD, against the floor: one libcst parse plus the metadata
the codemod needs (qualified names, scopes, positions, parents), on the same generated file.

Files of 10 KB - 2 MB of realistic training code (functions, classes, loops, an ASGD in every block) are
generated; for each size it prints the seconds of the parse + metadata floor, of ``convert_text`` (the
codemod, in process), of ``convert_paths`` (the same through an isolated child, read and write included)
and their ratios to the floor. Target: ratio <= 1.5. The floor is the one libcst's documentation shows
(``MetadataWrapper(module)``, which copies the module first); the converter resolves on the parsed module
itself (``unsafe_skip_copy``), so the floor without that copy is printed too.
``python benchmarks/convert_scaling.py [--sizes 10 100 2000] [--out results/convert_scaling.json]``
(KB); prints one JSON row per size, then a Markdown table, and writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

BLOCK = '''

class Trainer{i}:
    """Block {i}: a model, its optimizer and a loop."""

    def __init__(self, model, lr={lr}):
        self.model = model
        self.optimizer = torch.optim.ASGD(model.parameters(), lr=lr, t0={t0})
        self.history = []

    def step(self, batch, target):
        self.optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(self.model(batch), target)
        loss.backward()
        self.optimizer.step()
        self.history.append(float(loss))
        return loss


def evaluate{i}(trainer, data):
    total = 0.0
    for batch, target in data:
        with torch.no_grad():
            total += float(torch.nn.functional.mse_loss(trainer.model(batch), target))
    if "ax" in trainer.optimizer.state[next(iter(trainer.model.parameters()))]:
        total *= 1.0
    return total / max(1, len(data))
'''


def generate(kilobytes: int) -> str:
    """A Python file of about ``kilobytes`` KB that uses torch.optim.ASGD in every block."""
    parts = ["import torch\n"]
    size, i = len(parts[0]), 0
    while size < kilobytes * 1000:
        block = BLOCK.format(i=i, lr=0.01 * (1 + i % 7), t0=100 * (1 + i % 5))
        parts.append(block)
        size += len(block)
        i += 1
    return "".join(parts)


def floor_seconds(code: str, copy: bool = True) -> float:
    """One libcst parse plus the metadata the converter resolves (``copy``: libcst's default wrapper,
    which deep-copies the module before resolving)."""
    import libcst as cst
    from libcst.metadata import (
        MetadataWrapper,
        ParentNodeProvider,
        PositionProvider,
        QualifiedNameProvider,
        ScopeProvider,
    )

    start = time.perf_counter()
    wrapper = MetadataWrapper(cst.parse_module(code), unsafe_skip_copy=not copy)
    wrapper.resolve_many([QualifiedNameProvider, ScopeProvider, PositionProvider, ParentNodeProvider])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure each size and print the table (also returned)."""
    from asgd_bridge.convert.files import convert_paths, convert_text

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 2000], help="file sizes, KB")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "convert_scaling.json"
    )
    args = parser.parse_args(argv)
    convert_text("python", generate(1), "paddle", "warm.py")  # imports and first-call set-up, not timed
    floor_seconds(generate(1))
    rows = []
    for kb in args.sizes:
        code = generate(kb)
        base = floor_seconds(code)
        base_no_copy = floor_seconds(code, copy=False)
        start = time.perf_counter()
        new, changes, errors, _ = convert_text("python", code, "paddle", "bench.py")
        ours = time.perf_counter() - start
        assert not errors and new != code, errors
        with tempfile.TemporaryDirectory(prefix="asgd-bridge-scale-") as tmp:
            src = Path(tmp) / "bench.py"
            src.write_text(code)
            start = time.perf_counter()
            (outcome,) = convert_paths(src, Path(tmp) / "out.py")
            isolated = time.perf_counter() - start
            assert outcome.error is None, outcome.error
        row = {
            "kilobytes": round(len(code) / 1000, 1),
            "calls": len(changes),
            "parse_and_metadata_s": round(base, 3),
            "parse_and_metadata_no_copy_s": round(base_no_copy, 3),
            "convert_s": round(ours, 3),
            "convert_isolated_s": round(isolated, 3),
            "ratio": round(ours / base, 2),
            "ratio_isolated": round(isolated / base, 2),
            "ratio_no_copy": round(ours / base_no_copy, 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def table(rows: list[dict]) -> str:
    """The rows as the Markdown table docs/migration.md shows."""
    lines = [
        "| file | parse + metadata | without the copy | convert (in process) | ratio | ratio to no copy"
        " | through an isolated child | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kilobytes']:g} KB | {r['parse_and_metadata_s']:.2f} s"
            f" | {r['parse_and_metadata_no_copy_s']:.2f} s | {r['convert_s']:.2f} s | {r['ratio']}"
            f" | {r['ratio_no_copy']} | {r['convert_isolated_s']:.2f} s | {r['ratio_isolated']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
