"""Throughput of ``asgd-bridge convert`` on a large real tree: the installed torch package's own sources.

Checks that nothing crashes and that every file which never spells ``ASGD`` comes out byte-identical;
prints files/s and MB/s. ``python benchmarks/convert_tree.py [--root DIR] [--sub optim]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from asgd_bridge.convert.files import convert_paths


def torch_root() -> Path:
    """The installed torch package's folder (found by import, never by a fixed path)."""
    import torch

    return Path(torch.__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict:
    """Convert the tree into a temporary folder, verify, and print the numbers (also returned)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=None, help="tree to convert (default: torch's)")
    parser.add_argument("--sub", default="", help="only this subfolder of the root, e.g. optim")
    args = parser.parse_args(argv)
    root = (args.root or torch_root()) / args.sub
    with tempfile.TemporaryDirectory(prefix="asgd-bridge-bench-") as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        outcomes = convert_paths(root, out)
        elapsed = time.perf_counter() - start
        identical = mismatched = 0
        for o in outcomes:
            if o.error or o.changed:
                continue
            assert o.output is not None
            if o.output.read_bytes() == o.path.read_bytes():
                identical += 1
            else:
                mismatched += 1
    total = sum(o.size for o in outcomes)
    parsed = [o for o in outcomes if b"ASGD" in o.path.read_bytes()]
    result = {
        "root": f"<torch>/{args.sub}" if args.root is None else str(root),
        "files": len(outcomes),
        "megabytes": round(total / 1e6, 2),
        "seconds": round(elapsed, 2),
        "files_per_s": round(len(outcomes) / elapsed, 1),
        "mb_per_s": round(total / 1e6 / elapsed, 2),
        "parsed_files_mentioning_asgd": len(parsed),
        "changed": sum(o.changed for o in outcomes),
        "errors": [o.error for o in outcomes if o.error],
        "unchanged_byte_identical": identical,
        "unchanged_but_different": mismatched,
    }
    print(json.dumps(result, indent=2))
    if mismatched:
        raise SystemExit(f"{mismatched} unchanged file(s) were not byte-identical")
    return result


if __name__ == "__main__":
    main()
