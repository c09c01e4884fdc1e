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
        batch_num: its group's number of stored gradients; ``None``: the ``batch_num`` that
            :func:`check_sag_memory` is given.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    state_itemsize: int
    extra_bytes: int
    device: str = "cpu"
    batch_num: int | None = None


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


def _batch_nums(tensors: list[StateTensor], batch_num: int) -> list[int]:
    return [batch_num if t.batch_num is None else int(t.batch_num) for t in tensors]


def _capped_bytes(units: list[tuple[int, int]], cap: int) -> int:
    """Bytes of stored gradients when each ``(batch_num, bytes of one gradient)`` is capped at ``cap``."""
    return sum(min(n, cap) * size for n, size in units)


def _describe_batch_nums(ns: list[int]) -> str:
    distinct = sorted(set(ns))
    if len(distinct) == 1:
        return f"batch_num={distinct[0]}"
    return f"batch_num={', '.join(map(str, distinct))} (per group)"


def check_sag_memory(
    tensors: Iterable[StateTensor],
    batch_num: int,
    *,
    check: bool = True,
    available: Callable[[str], int | None] | None = None,
    committed: Iterable[StateTensor] = (),
) -> dict[str, int]:
    r"""Estimate SAG's state per device and raise :class:`SAGMemoryError` when it does not fit.

    The estimate is :math:`\sum_p (n_p\, |p|\, s_p + e_p)` per device, with ``n_p`` the parameter's
    ``batch_num`` (its :attr:`StateTensor.batch_num`, else ``batch_num``), ``s_p`` the stored
    gradients' element size and ``e_p`` the bytes of ``d`` (and of the fp32 master weight), summed
    over *every* parameter of the optimizer at once -- all its groups, each with its own
    ``batch_num`` -- so groups that fit one by one but not together are refused. It is compared with
    :func:`available_bytes` (or ``available``), so it must fit in what is free *now*; nothing is
    reserved.

    Args:
        tensors: the parameters that will get state (all groups at construction, the new group in
            ``add_param_group``).
        batch_num: stored gradients per parameter, for tensors that do not carry their own.
        check: ``False`` skips the comparison (so does the environment variable :data:`ENV_SKIP`).
        available: free bytes of a device; :func:`available_bytes` by default.
        committed: parameters already in the optimizer whose state is not allocated yet (they will
            take memory too, so they count; state already allocated is out of the free memory).

    Returns:
        The estimated bytes per device (``tensors`` and ``committed`` together).

    Raises:
        SAGMemoryError: naming the total, the available memory, the largest parameters (up to 3)
            and the largest ``batch_num`` that would fit.
    """
    available = available_bytes if available is None else available
    new = list(tensors)
    old = list(committed)
    new_n = dict(zip(map(id, new), _batch_nums(new, batch_num), strict=True))
    old_n = dict(zip(map(id, old), _batch_nums(old, batch_num), strict=True))
    per_device: dict[str, tuple[list[StateTensor], list[StateTensor]]] = {}
    for t in new:
        per_device.setdefault(t.device, ([], []))[0].append(t)
    for t in old:
        per_device.setdefault(t.device, ([], []))[1].append(t)
    needed = {
        dev: sum(sag_state_bytes(t, new_n[id(t)]) for t in ts)
        + sum(sag_state_bytes(t, old_n[id(t)]) for t in cs)
        for dev, (ts, cs) in per_device.items()
    }
    if not check or _skip_from_env():
        return needed
    for dev, (ts, cs) in per_device.items():
        free = available(dev)
        if free is None or needed[dev] <= free:
            continue
        everyone = [(t, new_n[id(t)]) for t in ts] + [(t, old_n[id(t)]) for t in cs]
        largest = sorted(everyone, key=lambda tn: sag_state_bytes(*tn), reverse=True)[:3]
        base = sum(t.extra_bytes for t in ts) + sum(sag_state_bytes(t, old_n[id(t)]) for t in cs)

        # the new parameters' batch_num lowered to at most k (the committed ones as they are)
        units = [(new_n[id(t)], t.numel * t.state_itemsize) for t in ts]
        budget = free - base
        lo, hi = 0, max((n for n, _ in units), default=0)  # lo == 0 or lo fits; hi does not fit
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _capped_bytes(units, mid) <= budget else (lo, mid)
        best = lo if lo >= 1 and _capped_bytes(units, lo) <= budget else 0
        hint = (
            f"lower batch_num to at most {best}"
            if best >= 1
            else "even batch_num=1 does not fit: free memory or optimise fewer parameters"
        )
        ns = [n for _, n in everyone]
        pending = (
            f" (including {format_bytes(sum(sag_state_bytes(t, old_n[id(t)]) for t in cs))} for "
            f"{len(cs)} parameter(s) already in the optimizer, state not allocated yet)"
            if cs
            else ""
        )
        names = ", ".join(
            f"{t.name} {list(t.shape)} ({format_bytes(sag_state_bytes(t, n))})" for t, n in largest
        )
        raise SAGMemoryError(
            f"SAG would need {format_bytes(needed[dev])} on {dev} for {_describe_batch_nums(ns)} stored "
            f"gradients of {len(everyone)} parameter(s){pending}, but only {format_bytes(free)} is "
            f"available. Largest: {names}. To fix: {hint}; or pass check_memory=False (or set "
            f"{ENV_SKIP}=1) to skip this check."
        )
    return needed
