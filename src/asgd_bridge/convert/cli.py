"""``asgd-bridge convert``: migrate ASGD programs (a file or a tree), with ruff/black habits.

``--diff`` and ``--check`` write nothing (``--check`` exits 1 when something would change); ``-o`` writes a
converted copy, ``--in-place`` rewrites the input; ``--report`` saves every decision as JSON.
Exit status: 0 done, 1 ``--check`` found work, 2 a file could not be converted (others still were).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["main", "register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand to the ``asgd-bridge`` parser."""
    parser = subparsers.add_parser(
        "convert",
        help="convert torch.optim.ASGD programs to Paddle (or paddle.optimizer.ASGD programs to torch)",
        description=(
            "Rewrite every use of torch.optim.ASGD into asgd_bridge.paddle.ASGD (torch's averaged SGD for "
            "Paddle), or into paddle.optimizer.SGD where that is exact. Only the rewritten nodes change."
        ),
    )
    parser.add_argument("input", type=Path, help="a .py file or a folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", type=Path, help="write the converted file or tree here")
    where.add_argument("--in-place", action="store_true", help="rewrite the input files")
    parser.add_argument("--diff", action="store_true", help="print a unified diff; write nothing")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file would change")
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="save the decisions as JSON")
    parser.add_argument(
        "--to",
        choices=("paddle", "torch"),
        default="paddle",
        help="paddle: torch.optim.ASGD -> asgd_bridge.paddle.ASGD (default); "
        "torch: paddle.optimizer.ASGD -> asgd_bridge.torch.SAG",
    )
    parser.add_argument(
        "--with-paconvert",
        action="store_true",
        help="then run PaConvert on the result, so OUTPUT is a whole Paddle program (extra 'convert')",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-call summary, no progress bar")
    parser.set_defaults(func=run)
    return parser


def _progress(quiet: bool) -> Any:
    def wrap(files: Iterator[Path], total: int) -> Iterator[Path]:
        if quiet or total < 2:
            return files
        from tqdm import tqdm

        return iter(tqdm(files, total=total, unit="file", desc="convert", file=sys.stderr, leave=False))

    return wrap


def _fail(message: str) -> int:
    print(f"asgd-bridge convert: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Execute ``asgd-bridge convert`` with parsed arguments; returns the exit status."""
    from .files import convert_paths

    source: Path = args.input
    if not source.exists():
        return _fail(f"{source}: no such file or folder")
    preview = args.diff or args.check
    if not preview and args.output is None and not args.in_place:
        return _fail("say where the result goes: -o OUTPUT, --in-place, or preview with --diff/--check")
    if args.with_paconvert and preview:
        return _fail("--with-paconvert writes files; it cannot be combined with --diff or --check")
    if args.with_paconvert and args.to != "paddle":
        return _fail("--with-paconvert converts torch programs to Paddle; it needs --to paddle")
    output: Path | None = args.output
    if output is not None and source.is_file() and output.is_dir():
        output = output / source.name
    if output is not None and source.is_dir() and output.exists() and not output.is_dir():
        return _fail(f"{output}: the input is a folder, the output must be one too")

    staging: tempfile.TemporaryDirectory[str] | None = None
    final_output = output if output is not None else source
    if args.with_paconvert:
        # Our rewrite goes to a staging copy; PaConvert then writes OUTPUT, so OUTPUT is never half-done.
        staging = tempfile.TemporaryDirectory(prefix="asgd-bridge-stage-")
        output = Path(staging.name) / (source.name if source.is_dir() else "stage.py")

    start = time.perf_counter()
    try:
        outcomes = convert_paths(
            source,
            output,
            to=args.to,
            write=not preview,
            want_diff=args.diff,
            progress=_progress(args.quiet),
        )
        paconvert_note = ""
        if args.with_paconvert and output is not None:
            failed = [o for o in outcomes if o.error]
            if failed:
                for o in failed:
                    print(o.error, file=sys.stderr)
                return _fail("PaConvert not run: fix the files above first")
            from .paconvert import PaConvertError, run_paconvert

            try:
                result = run_paconvert(output, final_output)
            except PaConvertError as exc:
                return _fail(str(exc))
            paconvert_note = f"; PaConvert wrote {len(result.files)} file(s)"
            for where in result.unsupported:
                print(f"{where}: PaConvert could not convert this line (marked >>>>>>)", file=sys.stderr)
    finally:
        if staging is not None:
            staging.cleanup()
    elapsed = time.perf_counter() - start

    changed = [o for o in outcomes if o.changed]
    errors = [o for o in outcomes if o.error]
    for o in outcomes:
        if o.diff:
            sys.stdout.write(o.diff)
        if o.error:
            print(o.error, file=sys.stderr)
        elif o.changes and not args.quiet:
            verb = "would convert" if preview else "converted"
            print(f"{verb} {o.path}", file=sys.stderr)
            for change in sorted(o.changes, key=lambda c: (c.line, c.column)):
                print(f"  {o.path}:{change.summary()}", file=sys.stderr)
    if args.report is not None:
        report = {
            "direction": f"to {args.to}",
            "with_paconvert": bool(args.with_paconvert),
            "files": [o.as_dict() for o in outcomes if o.changes or o.error],
            "totals": {
                "files": len(outcomes),
                "changed": len(changed),
                "errors": len(errors),
                "calls": sum(len(o.changes) for o in outcomes),
                "reported": sum(1 for o in outcomes for c in o.changes if c.kind == "report"),
                "seconds": round(elapsed, 3),
            },
        }
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        verb = "would change" if preview else "changed"
        print(
            f"{len(outcomes)} file(s) checked, {len(changed)} {verb}, {len(errors)} error(s) "
            f"in {elapsed:.2f}s{paconvert_note}",
            file=sys.stderr,
        )
    if errors:
        return 2
    if args.check and changed:
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m asgd_bridge.convert ...``: the ``convert`` subcommand on its own."""
    parser = argparse.ArgumentParser(prog="asgd-bridge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)
