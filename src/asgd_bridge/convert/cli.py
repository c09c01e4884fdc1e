"""``asgd-bridge convert``: migrate ASGD programs (a file or a tree), with ruff/black habits.

``--diff`` and ``--check`` write nothing; ``-o`` writes a converted copy of the file or the whole tree
(every other file copied), ``--in-place`` rewrites the input; ``--report`` saves every decision as JSON.
The exit status says whether the result is a runnable program: see :data:`EXIT_STATUS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .files import FileOutcome
from .isolate import DEFAULT_LIMITS

__all__ = ["EXIT_STATUS", "main", "register", "run"]

#: The exit status of ``asgd-bridge convert``, as its help and docs/migration.md state it.
EXIT_STATUS = """\
exit status:
  0  done: every file converted (and, with --with-paconvert, every output compiles); nothing left to do
  1  something is left to do by hand (a call reported, not converted; a line PaConvert marked >>>>>>; a
     config naming the optimizer), or --check found files that would change
  2  an error: a file could not be read, parsed, converted or written (the others still were), an output
     of --with-paconvert does not compile, or the command itself was wrong"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand to the ``asgd-bridge`` parser."""
    parser = subparsers.add_parser(
        "convert",
        help="convert torch.optim.ASGD programs to Paddle (or paddle.optimizer.ASGD programs to torch)",
        description=(
            "Rewrite every use of torch.optim.ASGD into asgd_bridge.paddle.ASGD (torch's averaged SGD for "
            "Paddle), or into paddle.optimizer.SGD where that is exact. Only the rewritten nodes change. "
            "A folder is converted whole: .py files, notebook code cells, Hydra _target_ lines in YAML/JSON "
            "configs; every other file is copied unchanged."
        ),
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, help="a .py file, a notebook (.ipynb), a config, or a folder")
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
    parser.add_argument(
        "--force", action="store_true", help="with --in-place, rewrite read-only files too (their mode kept)"
    )
    parser.add_argument(
        "-j", "--jobs", type=int, default=None, help="files converted at once (default: cores)"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_LIMITS.seconds, metavar="S", help="per-file time limit (s)"
    )
    parser.add_argument(
        "--max-memory",
        type=int,
        default=(DEFAULT_LIMITS.memory or 0) // 2**20,
        metavar="MB",
        help="per-file memory limit (MiB of address space; 0: none)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-call summary, no progress bar")
    parser.set_defaults(func=run)
    return parser


def _progress(quiet: bool) -> Any:
    def wrap(files: Iterator[Any], total: int) -> Iterator[Any]:
        if quiet or total < 2:
            return files
        from tqdm import tqdm

        return iter(tqdm(files, total=total, unit="file", desc="convert", file=sys.stderr, leave=False))

    return wrap


def _fail(message: str) -> int:
    print(f"asgd-bridge convert: error: {message}", file=sys.stderr)
    return 2


def _report_problem(path: Path) -> str | None:
    """Why ``--report PATH`` could not be written, checked before anything else is (``None``: it can)."""
    if path.is_dir():
        return f"--report {path}: is a folder"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"--report {path}: not writable"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--report {path}: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--report {path}: cannot create files in {parent}"
    return None


def _paconvert(outcomes: list[FileOutcome], staged: Path, final: Path) -> str:
    """Run PaConvert from ``staged`` into ``final``; move the outcomes to their real outputs and attach
    PaConvert's unconverted lines and compile errors. Returns the summary's note."""
    from .files import Finding
    from .paconvert import run_paconvert

    result = run_paconvert(staged, final)
    by_output: dict[Path, FileOutcome] = {}
    for o in outcomes:
        if o.output is not None:
            rel = o.output.relative_to(staged) if staged.is_dir() else None
            o.output = final / rel if rel is not None else final
            by_output[o.output] = o
    for path in result.files:
        if path not in by_output:  # PaConvert made it (not one of ours): still listed
            by_output[path] = FileOutcome(path, path, kind="paconvert")
            outcomes.append(by_output[path])
    for path, line in result.unsupported:
        by_output[path].findings.append(
            Finding(line, "PaConvert could not convert this line (marked >>>>>>)")
        )
    for path, line, col, message in result.invalid:
        o = by_output[path]
        o.error = f"{path}:{line}:{col}: PaConvert's output is not valid Python: {message}"
    return f"; PaConvert wrote {len(result.files)} file(s)"


def run(args: argparse.Namespace) -> int:
    """Execute ``asgd-bridge convert`` with parsed arguments; returns the exit status (see EXIT_STATUS)."""
    from .files import convert_paths
    from .isolate import Limits
    from .paconvert import PaConvertError

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
    if args.report is not None and (problem := _report_problem(args.report)) is not None:
        return _fail(problem)  # before anything is written
    if args.jobs is not None and args.jobs < 1:
        return _fail(f"--jobs {args.jobs}: must be at least 1")
    output: Path | None = args.output
    if output is not None and source.is_file() and output.is_dir():
        output = output / source.name
    if output is not None and source.is_dir() and output.exists() and not output.is_dir():
        return _fail(f"{output}: the input is a folder, the output must be one too")
    limits = Limits(
        seconds=args.timeout if args.timeout and args.timeout > 0 else None,
        memory=args.max_memory * 2**20 if args.max_memory and args.max_memory > 0 else None,
    )

    staging: tempfile.TemporaryDirectory[str] | None = None
    final_output = output if output is not None else source
    if args.with_paconvert:
        # Our rewrite goes to a staging copy; PaConvert then writes OUTPUT, so OUTPUT is never half-done.
        staging = tempfile.TemporaryDirectory(prefix="asgd-bridge-stage-")
        output = Path(staging.name) / source.name

    start = time.perf_counter()
    failure = None
    try:
        outcomes = convert_paths(
            source,
            output,
            to=args.to,
            write=not preview,
            want_diff=args.diff,
            progress=_progress(args.quiet),
            force=args.force,
            limits=limits,
            jobs=args.jobs,
        )
        paconvert_note = ""
        if staging is not None and output is not None:
            if any(o.error for o in outcomes):
                failure = "PaConvert not run: fix the files above first"
                for o in outcomes:
                    o.output = None  # nothing reached OUTPUT
            else:
                try:
                    paconvert_note = _paconvert(outcomes, output, final_output)
                except PaConvertError as exc:
                    failure = str(exc)
                    for o in outcomes:
                        o.output = None
    finally:
        if staging is not None:
            staging.cleanup()
    elapsed = time.perf_counter() - start

    changed = [o for o in outcomes if o.changed]
    errors = [o for o in outcomes if o.error]
    todo = sum(o.todo for o in outcomes)
    for o in outcomes:
        if o.diff:
            sys.stdout.write(o.diff)
        if o.error:
            print(o.error, file=sys.stderr)
        for f in o.findings:
            if f.todo or not args.quiet:
                print(f"{o.output or o.path}:{f.line}: {f.message}", file=sys.stderr)
        if o.changes and not args.quiet and not o.error:
            verb = ("would convert" if preview else "converted") if o.changed else "left as it is"
            print(f"{verb} {o.path}", file=sys.stderr)
            for change in sorted(o.changes, key=lambda c: (c.line, c.column)):
                print(f"  {o.path}:{change.summary()}", file=sys.stderr)
    status = 2 if errors or failure else 1 if todo or (args.check and changed) else 0
    if args.report is not None:
        report = {
            "direction": f"to {args.to}",
            "with_paconvert": bool(args.with_paconvert),
            "exit_status": status,
            "files": [o.as_dict() for o in outcomes if o.changes or o.error or o.findings],
            "totals": {
                "files": sum(o.kind not in ("other", "paconvert") for o in outcomes),
                "copied": sum(o.kind == "other" for o in outcomes),
                "changed": len(changed),
                "errors": len(errors),
                "calls": sum(len(o.changes) for o in outcomes),
                "reported": sum(1 for o in outcomes for c in o.changes if c.kind == "report"),
                "todo": todo,
                "seconds": round(elapsed, 3),
            },
        }
        try:
            from .files import atomic_write

            atomic_write(args.report, (json.dumps(report, indent=2) + "\n").encode())
        except OSError as exc:
            return _fail(f"--report {args.report}: cannot write: {exc.strerror or exc}")
    if failure:
        print(f"asgd-bridge convert: error: {failure}", file=sys.stderr)
    if not args.quiet:
        verb = "would change" if preview else "changed"
        checked = sum(o.kind not in ("other", "paconvert") for o in outcomes)
        copied = sum(o.kind == "other" for o in outcomes)
        print(
            f"{checked} file(s) checked, {len(changed)} {verb}, {copied} copied, {todo} left to do by hand, "
            f"{len(errors)} error(s) in {elapsed:.2f}s{paconvert_note}",
            file=sys.stderr,
        )
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m asgd_bridge.convert ...``: the ``convert`` subcommand on its own."""
    parser = argparse.ArgumentParser(prog="asgd-bridge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)
