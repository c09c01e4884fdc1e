"""Memory estimate for SAG's stored gradients, shared by the torch and Paddle ``SAG`` classes.

SAG keeps ``batch_num`` gradients per parameter; this module says, before anything is allocated,
whether that fits in the memory left on each device, and refuses with a readable message if not.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "ENV_SKIP",
    "SAGMemoryError",
    "StateTensor",
    "available_bytes",
    "check_sag_memory",
    "format_bytes",
    "sag_state_bytes",
]

#: Set this environment variable to ``1`` to skip the check everywhere (same as ``check_memory=False``).
ENV_SKIP = "ASGD_BRIDGE_SKIP_MEMORY_CHECK"


class SAGMemoryError(MemoryError):
    """SAG's state (``batch_num`` stored gradients per parameter) does not fit in available memory."""


@dataclass(frozen=True)
class StateTensor:
    """One parameter as the estimate sees it.

    Attributes:
        name: a readable name (``"fc.weight"``, ``"param 3"``), used in the error message.
        shape: the parameter's shape.
        numel: its number of elements.
        state_itemsize: bytes per element of the stored gradients ``y`` (the parameter's dtype).
        extra_bytes: bytes of the rest of its state: the sum ``d`` and, with ``multi_precision``,
            the fp32 master weight.
        device: where the state lives, ``"cpu"``, ``"cuda:0"`` (torch) or ``"gpu:0"`` (Paddle).
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    state_itemsize: int
    extra_bytes: int
    device: str = "cpu"


def sag_state_bytes(t: StateTensor, batch_num: int) -> int:
    """Bytes of one parameter's SAG state: ``batch_num`` stored gradients plus ``d`` (and master)."""
    return batch_num * t.numel * t.state_itemsize + t.extra_bytes


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def available_bytes(device: str = "cpu") -> int | None:
    """Free memory on ``device`` in bytes, or ``None`` when it cannot be told.

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else ``os.sysconf``. CUDA: the free bytes of
    ``torch.cuda.mem_get_info`` (``"cuda:i"``) or of Paddle's allocator view (``"gpu:i"``). A
    framework is only asked if it is already imported: the estimate never imports one.
    """
    kind, _, index = device.partition(":")
    idx = int(index) if index.isdigit() else 0
    if kind == "cpu":
        return _meminfo_available()
    if kind == "cuda" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        try:
            return int(torch.cuda.mem_get_info(idx)[0])
        except Exception:  # no driver, or a device we cannot query: no estimate
            return None
    if kind == "gpu" and "paddle" in sys.modules:
        paddle = sys.modules["paddle"]
        try:
            props = paddle.device.cuda.get_device_properties(idx)
            return int(props.total_memory) - int(paddle.device.cuda.memory_reserved(idx))
        except Exception:
            return None
    return None


def _skip_from_env() -> bool:
    return os.environ.get(ENV_SKIP, "").strip().lower() in ("1", "true", "yes", "on")


def check_sag_memory(
    tensors: Iterable[StateTensor],
    batch_num: int,
    *,
    check: bool = True,
    available: Callable[[str], int | None] | None = None,
) -> dict[str, int]:
    r"""Estimate SAG's state per device and raise :class:`SAGMemoryError` when it does not fit.

    The estimate is :math:`\sum_p (n\, |p|\, s_p + e_p)` per device, with ``n = batch_num``, ``s_p``
    the stored gradients' element size and ``e_p`` the bytes of ``d`` (and of the fp32 master
    weight). It is compared with :func:`available_bytes` (or ``available``), so it must fit in what
    is free *now*; nothing is reserved.

    Args:
        tensors: the parameters that will get state.
        batch_num: the number of stored gradients per parameter.
        check: ``False`` skips the comparison (so does the environment variable :data:`ENV_SKIP`).
        available: free bytes of a device; :func:`available_bytes` by default.

    Returns:
        The estimated bytes per device.

    Raises:
        SAGMemoryError: naming the total, the available memory, the largest parameter and the
            largest ``batch_num`` that would fit.
    """
    available = available_bytes if available is None else available
    per_device: dict[str, list[StateTensor]] = {}
    for t in tensors:
        per_device.setdefault(t.device, []).append(t)
    needed = {dev: sum(sag_state_bytes(t, batch_num) for t in ts) for dev, ts in per_device.items()}
    if not check or _skip_from_env():
        return needed
    for dev, ts in per_device.items():
        free = available(dev)
        if free is None or needed[dev] <= free:
            continue
        largest = max(ts, key=lambda t: sag_state_bytes(t, batch_num))
        per_batch = sum(t.numel * t.state_itemsize for t in ts)
        fixed = sum(t.extra_bytes for t in ts)
        fits = (free - fixed) // per_batch if per_batch else batch_num
        hint = (
            f"lower batch_num to at most {fits}"
            if fits >= 1
            else "even batch_num=1 does not fit: free memory or optimise fewer parameters"
        )
        raise SAGMemoryError(
            f"SAG would need {format_bytes(needed[dev])} on {dev} for batch_num={batch_num} stored "
            f"gradients of {len(ts)} parameter(s), but only {format_bytes(free)} is available. "
            f"Largest: {largest.name} {list(largest.shape)} "
            f"({format_bytes(sag_state_bytes(largest, batch_num))}). To fix: {hint}; or pass "
            f"check_memory=False (or set {ENV_SKIP}=1) to skip this check."
        )
    return needed
