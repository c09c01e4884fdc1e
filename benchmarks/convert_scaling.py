"""Cost of converting one file that mentions ASGD, against the floor: one libcst parse plus the metadata
the codemod needs (qualified names, scopes, positions, parents), on the same generated file.

Files of 10 KB - 2 MB of realistic training code (functions, classes, loops, an ASGD in every block) are
generated; for each size it prints the seconds of the parse + metadata floor, of ``convert_text`` (the
codemod, in process), of ``convert_paths`` (the same through an isolated child, read and write included)
and their ratios to the floor. Target: ratio <= 1.5.
``python benchmarks/convert_scaling.py [--sizes 10 100 2000]``
(KB).
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


def floor_seconds(code: str) -> float:
    """One libcst parse plus the metadata the converter resolves."""
    import libcst as cst
    from libcst.metadata import (
        MetadataWrapper,
        ParentNodeProvider,
        PositionProvider,
        QualifiedNameProvider,
        ScopeProvider,
    )

    start = time.perf_counter()
    wrapper = MetadataWrapper(cst.parse_module(code))
    wrapper.resolve_many([QualifiedNameProvider, ScopeProvider, PositionProvider, ParentNodeProvider])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure each size and print the table (also returned)."""
    from asgd_bridge.convert.files import convert_paths, convert_text

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 2000], help="file sizes, KB")
    args = parser.parse_args(argv)
    rows = []
    for kb in args.sizes:
        code = generate(kb)
        base = floor_seconds(code)
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
            "convert_s": round(ours, 3),
            "convert_isolated_s": round(isolated, 3),
            "ratio": round(ours / base, 2),
            "ratio_isolated": round(isolated / base, 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
