"""The ``asgd-bridge`` command: ``convert`` (source programs) and ``checkpoint convert`` (optimizer state)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; each subcommand registers itself from its own module."""
    from asgd_bridge import __version__
    from asgd_bridge.checkpoint_cli import register as register_checkpoint
    from asgd_bridge.convert.cli import register as register_convert

    parser = argparse.ArgumentParser(
        prog="asgd-bridge",
        description="Migrate torch.optim.ASGD programs and optimizer checkpoints between PyTorch and Paddle.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    register_convert(sub)
    register_checkpoint(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asgd-bridge`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
