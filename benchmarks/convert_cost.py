"""Cost of converting one file against libcst's own parse + scope / qualified-name resolution of it.

Generates a torch training file of the given sizes that uses ``torch.optim.ASGD`` (constructor calls,
param-group reads, state-dict reads, bare references, plain code around them), then times
:func:`asgd_bridge.convert.convert_source` and the baseline (``libcst.parse_module`` plus one
``MetadataWrapper.resolve_many`` of ``ScopeProvider`` and ``QualifiedNameProvider``) on the same text.
``python benchmarks/convert_cost.py [--kb 10 200 2000]`` prints one JSON row per size.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import libcst as cst
from libcst.metadata import MetadataWrapper, QualifiedNameProvider, ScopeProvider

from asgd_bridge.convert import convert_source

_HEAD = "import torch\nimport torch.nn as nn\nfrom torch.optim import ASGD\n\n"
_BLOCK = '''

def train_{i}(model, data, lr={lr}):
    """Block {i}: an optimizer, a loop, the NT-ASGD switch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step, (x, y) in enumerate(data):
        loss = ((model(x) - y) ** 2).mean()  # squared error
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == {i} % 7 and "t0" not in optimizer.param_groups[0]:
            optimizer = ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0, weight_decay=1.2e-6)
        optimizer.param_groups[0]["lr"] = lr * (1 + step) / {n}
    state = optimizer.state_dict()
    cls_{i} = torch.optim.ASGD
    return state["param_groups"][0]["lr"], cls_{i}, [v * 2 for v in range({i} % 11)]
'''


def generate(kb: float) -> str:
    """A syntactically valid file of about ``kb`` kilobytes."""
    parts, size, i = [_HEAD], len(_HEAD), 0
    while size < kb * 1000:
        block = _BLOCK.format(i=i, lr=0.01 + i % 5, n=i + 3)
        parts.append(block)
        size += len(block)
        i += 1
    return "".join(parts)


def _timed(fn: object, *args: object) -> tuple[float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak / 1e6


def baseline(code: str) -> None:
    """One libcst parse and one scope + qualified-name resolution."""
    MetadataWrapper(cst.parse_module(code)).resolve_many([ScopeProvider, QualifiedNameProvider])


def measure(kb: float) -> dict[str, float]:
    """Seconds and peak traced MB of the converter and of the baseline on one generated file."""
    code = generate(kb)
    ours_s, ours_mb = _timed(convert_source, code)
    base_s, base_mb = _timed(baseline, code)
    return {
        "kb": round(len(code) / 1000, 1),
        "convert_s": round(ours_s, 2),
        "baseline_s": round(base_s, 2),
        "ratio": round(ours_s / base_s, 2),
        "convert_peak_mb": round(ours_mb, 1),
        "baseline_peak_mb": round(base_mb, 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Print (and return) one row per size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kb", type=float, nargs="+", default=[10.0, 200.0])
    args = parser.parse_args(argv)
    rows = []
    for kb in args.kb:
        row = measure(kb)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
