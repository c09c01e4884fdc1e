"""``asgd-bridge checkpoint convert IN OUT``: an optimizer checkpoint from torch to Paddle or back.

Reads with ``torch.load`` / ``paddle.load``, converts with :mod:`asgd_bridge.checkpoint`, writes atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from asgd_bridge._atomic import atomic_path

TORCH_SUFFIXES = (".pt", ".pth")
PADDLE_SUFFIXES = (".pdopt", ".pdparams")


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
            "Paddle) or --to. The output is written atomically."
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
    conv.set_defaults(func=run_convert)


def _framework_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if suffix in PADDLE_SUFFIXES:
        return "paddle"
    return None


def _load(path: Path, framework: str) -> Any:
    if framework == "torch":
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)
    import paddle

    return paddle.load(str(path))


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
        print(f"asgd-bridge checkpoint convert: error: {message}", file=sys.stderr)
        return 2

    source = _framework_of(args.input)
    to = args.to or _framework_of(args.output)
    if to is None:
        return fail(
            f"cannot tell the target framework from {args.output.name!r}: use a suffix "
            f"{TORCH_SUFFIXES + PADDLE_SUFFIXES} or --to torch|paddle"
        )
    if source is None:
        source = "paddle" if to == "torch" else "torch"
    if source == to:
        return fail(f"{args.input.name} is already a {to} checkpoint (pass --to for the other framework)")
    if not args.input.is_file():
        return fail(f"input file {str(args.input)!r} does not exist")
    target = None
    try:
        if args.shapes and args.target_model:
            return fail("give --shapes or --target-model, not both")
        if args.shapes:
            target = [tuple(s) for s in json.loads(args.shapes)]
        elif args.target_model:
            model_fw = _framework_of(args.target_model) or to
            target = _load(args.target_model, model_fw)
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
            source_model = _load(args.source_model, _framework_of(args.source_model) or source)
        state = _load(args.input, source)
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
            print(f"asgd-bridge checkpoint convert: warning: {w.message}", file=sys.stderr)
        _save_atomically(converted, args.output, to)
    except (CheckpointError, ValueError, TypeError, OSError, json.JSONDecodeError) as err:
        return fail(str(err))
    except Exception as err:  # unreadable files: say which, without a traceback
        return fail(f"{type(err).__name__}: {err}")
    print(f"wrote {args.output} ({source} -> {to})")
    return 0
