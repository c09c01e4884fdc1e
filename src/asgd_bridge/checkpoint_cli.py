"""``asgd-bridge checkpoint convert IN OUT``: an optimizer checkpoint from torch to Paddle or back.

Reads every file through :mod:`asgd_bridge.safe_load` (no file runs code unless ``--unsafe-load``), converts
with :mod:`asgd_bridge.checkpoint`, writes atomically, and never overwrites its input unless ``--in-place``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

from asgd_bridge import safe_load
from asgd_bridge._atomic import atomic_path
from asgd_bridge.safe_load import PADDLE_SUFFIXES, TORCH_SUFFIXES

PROG = "asgd-bridge checkpoint convert"


def register(subparsers: Any) -> None:
    """Add ``checkpoint convert`` to the ``asgd-bridge`` parser (``cli.build_parser`` calls this)."""
    parser = subparsers.add_parser(
        "checkpoint", help="convert optimizer checkpoints between PyTorch and Paddle"
    )
    sub = parser.add_subparsers(dest="checkpoint_command", required=True)
    conv = sub.add_parser(
        "convert",
        help="convert an ASGD or SAG optimizer state dict (torch <-> Paddle)",
        description=(
            "Convert an optimizer state dict: torch.optim.ASGD / asgd_bridge.torch.ASGD <-> "
            "asgd_bridge.paddle.ASGD, asgd_bridge.torch.SAG <-> asgd_bridge.paddle.SAG. The direction "
            f"comes from the file names ({'/'.join(TORCH_SUFFIXES)} torch, {'/'.join(PADDLE_SUFFIXES)} "
            "Paddle) or --to, else from the input's content. Files are loaded without running code "
            "they contain (see --unsafe-load). The output is written atomically, and never over the "
            "input unless --in-place."
        ),
    )
    conv.add_argument("input", type=Path, help="the optimizer checkpoint to read")
    conv.add_argument("output", type=Path, help="where to write the converted checkpoint")
    conv.add_argument(
        "--to", choices=("torch", "paddle"), help="target framework (default: from OUT's suffix)"
    )
    conv.add_argument(
        "--target-model",
        type=Path,
        help="state dict of the target model (torch or Paddle file): parameter shapes in order, so "
        "transposed weights (nn.Linear [out, in] vs paddle.nn.Linear [in, out]) are transposed",
    )
    conv.add_argument("--shapes", help='target parameter shapes as JSON, in order, e.g. "[[4, 3], [3]]"')
    conv.add_argument(
        "--transpose",
        default="",
        help="comma-separated parameter indices to transpose whatever their shapes (square Linear weights)",
    )
    conv.add_argument(
        "--name-map",
        help="JSON object (inline or a .json file) source parameter name -> target parameter name, for "
        "parameters that do not correspond by order; needs --source-model and --target-model",
    )
    conv.add_argument(
        "--source-model", type=Path, help="state dict of the source model (its parameter names, in order)"
    )
    conv.add_argument(
        "--drop-unsupported",
        action="store_true",
        help="towards torch: drop (with a warning) what torch.optim.ASGD cannot express -- an L1Decay "
        "regulariser or a grad_clip of asgd_bridge.paddle.ASGD -- instead of refusing",
    )
    conv.add_argument(
        "--unsafe-load",
        action="store_true",
        help="load every input file with the frameworks' full loaders (paddle.load, torch.load with "
        "weights_only=False). WARNING: a checkpoint is a pickle and can run any code as you; use this only "
        "for files you made or trust",
    )
    conv.add_argument(
        "--in-place",
        action="store_true",
        help="allow OUT to be IN itself (the same file, a symlink or a hard link to it): IN is replaced "
        "atomically by the converted checkpoint",
    )
    conv.set_defaults(func=run_convert)


def _load(path: Path, unsafe: bool) -> Any:
    """``safe_load.load``; its ``--unsafe-load`` warning goes to stderr in this command's style."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", safe_load.UnsafeLoadWarning)
            return safe_load.load(path, unsafe=unsafe)
    finally:  # also when the load fails: the user is told what ran
        for w in caught:
            if issubclass(w.category, safe_load.UnsafeLoadWarning):
                print(f"{PROG}: warning: {w.message}", file=sys.stderr)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (equal resolved paths, or a symlink or hard link to it)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _save_atomically(obj: Any, path: Path, framework: str) -> None:
    with atomic_path(path) as tmp:
        if framework == "torch":
            import torch

            torch.save(obj, tmp)
        else:
            import paddle

            paddle.save(obj, str(tmp))


def run_convert(args: argparse.Namespace) -> int:
    """Do the conversion described by ``args``; returns the exit status (0 ok, 2 on any error)."""
    from asgd_bridge.checkpoint import CheckpointError, convert_state_dict

    def fail(message: str) -> int:
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2

    unsafe = bool(getattr(args, "unsafe_load", False))
    to = args.to or safe_load.framework_of(args.output)
    if to is None:
        return fail(
            f"cannot tell the target framework from {args.output.name!r}: use a suffix "
            f"{TORCH_SUFFIXES + PADDLE_SUFFIXES} or --to torch|paddle"
        )
    if not args.input.is_file():
        return fail(f"input file {str(args.input)!r} does not exist")
    output = args.output
    if _same_file(args.input, output):
        if not getattr(args, "in_place", False):
            return fail(
                f"output {str(output)!r} is the input file {str(args.input)!r}: converting would replace "
                "it; pass --in-place to do that, or choose another output path"
            )
        output = Path(os.path.realpath(output))  # replace the input itself, not a link to it
    for flag in ("source_model", "target_model"):
        model = getattr(args, flag, None)
        if model is not None and _same_file(model, output):
            return fail(f"output {str(output)!r} is the --{flag.replace('_', '-')} file")
    target = None
    try:
        source = safe_load.detect_framework(args.input)
        if source == to:
            return fail(f"{args.input.name} is already a {to} checkpoint (pass --to for the other framework)")
        if args.shapes and args.target_model:
            return fail("give --shapes or --target-model, not both")
        if args.shapes:
            target = [tuple(s) for s in json.loads(args.shapes)]
        elif args.target_model:
            target = _load(args.target_model, unsafe)
        transpose = {int(i) for i in args.transpose.split(",") if i.strip()}
        name_map = source_model = None
        if args.name_map:
            text = args.name_map
            if not text.lstrip().startswith("{"):
                text = Path(text).read_text(encoding="utf-8")
            name_map = json.loads(text)
            if not isinstance(name_map, dict):
                return fail("--name-map must be a JSON object {source name: target name}")
        if args.source_model:
            source_model = _load(args.source_model, unsafe)
        state = _load(args.input, unsafe)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = convert_state_dict(
                state,
                to=to,
                target=target,
                transpose=transpose,
                name_map=name_map,
                source=source_model,
                drop_unsupported=bool(getattr(args, "drop_unsupported", False)),
            )
        for w in caught:
            print(f"{PROG}: warning: {w.message}", file=sys.stderr)
        _save_atomically(converted, output, to)
    except (
        CheckpointError,
        ValueError,
        TypeError,
        OSError,
        json.JSONDecodeError,
        pickle.UnpicklingError,
    ) as err:
        return fail(str(err))
    except Exception as err:  # unreadable files: say which, without a traceback
        return fail(f"{type(err).__name__}: {err}")
    print(f"wrote {output} ({source} -> {to})")  # only now: atomic_path returned, the file is in place
    return 0
