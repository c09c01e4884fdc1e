"""What the multi-process tests share: a free loopback port for the launcher, and the checks they
run on the numbers each rank's worker recorded (``{"rank0:key": value, ...}``)."""

from __future__ import annotations

import socket
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for torchrun / paddle.distributed.launch)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_max(values: dict[str, Any], bound: float) -> None:
    """Every recorded difference is at most ``bound``."""
    bad = {k: v for k, v in values.items() if not v <= bound}
    assert not bad, bad


def assert_exact(values: dict[str, Any]) -> None:
    """Every recorded difference is exactly 0 (bit-identical)."""
    bad = {k: v for k, v in values.items() if v != 0.0}
    assert not bad, bad


def assert_true(values: dict[str, Any]) -> None:
    """Every recorded check is ``True``."""
    bad = {k: v for k, v in values.items() if v is not True}
    assert not bad, bad
