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
    "CGROUP_ROOT",
    "ENV_SKIP",
    "PROC_ROOT",
    "SUGGESTED_FRACTION",
    "AvailableBytes",
    "SAGMemoryError",
    "StateTensor",
    "available_bytes",
    "check_sag_memory",
    "cpu_memory_bounds",
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


#: Where the kernel's files are read; tests point these at a fake tree written in the kernel's formats.
PROC_ROOT = "/proc"
CGROUP_ROOT = "/sys/fs/cgroup"

#: Fraction of the available memory the *suggested* ``batch_num`` may use (see :func:`check_sag_memory`).
SUGGESTED_FRACTION = 0.8

# cgroup v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages); any
# limit from 2**60 bytes (1 EiB) on is taken as that.
_V1_UNLIMITED = 2**60


class AvailableBytes(int):
    """A number of bytes that also says which limit set it (:attr:`bound`, e.g. ``"RLIMIT_AS ..."``).

    It is an ``int``: compare and add it as one; :func:`check_sag_memory` names :attr:`bound` in its
    error message.
    """

    bound: str

    def __new__(cls, value: int, bound: str) -> AvailableBytes:
        obj = super().__new__(cls, max(int(value), 0))
        obj.bound = bound
        return obj

    def __repr__(self) -> str:
        return f"AvailableBytes({int(self)}, {self.bound!r})"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _fields(text: str | None, sep: str = ":") -> dict[str, str]:
    """``"Key: value"`` lines (``/proc/meminfo``, ``/proc/self/status``) or ``"key value"`` lines
    (``memory.stat``, with ``sep=" "``) as a dict of stripped strings."""
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, found, value = line.partition(sep)
        if found:
            out[key.strip()] = value.strip()
    return out


def _kib(value: str | None) -> int | None:
    """``"23910092 kB"`` -> bytes."""
    try:
        number, unit = (value or "").split()
        return int(number) * 1024 if unit == "kB" else None
    except ValueError:
        return None


def _meminfo_available(proc: str) -> AvailableBytes | None:
    free = _kib(_fields(_read(os.path.join(proc, "meminfo"))).get("MemAvailable"))
    if free is not None:
        return AvailableBytes(free, "MemAvailable of /proc/meminfo")
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return AvailableBytes(pages, "free physical pages (sysconf SC_AVPHYS_PAGES)")


def _rlimit_bounds(proc: str) -> list[AvailableBytes]:
    """``RLIMIT_AS`` minus ``VmSize`` and ``RLIMIT_DATA`` minus ``VmData`` (soft limits, from
    ``/proc/self/limits`` and ``/proc/self/status``): what ``mmap``/``malloc`` may still take before
    the kernel refuses (a refusal surfaces as a bare ``MemoryError`` or an allocator abort)."""
    limits = _read(os.path.join(proc, "self", "limits")) or ""
    status = _fields(_read(os.path.join(proc, "self", "status")))
    out = []
    for row, name, used in (
        ("Max address space", "RLIMIT_AS", "VmSize"),
        ("Max data size", "RLIMIT_DATA", "VmData"),
    ):
        soft = next(
            (line[len(row) :].split()[0] for line in limits.splitlines() if line.startswith(row)), None
        )
        size = _kib(status.get(used))
        if soft is None or not soft.isdigit() or size is None:
            continue  # "unlimited", or not Linux
        limit = int(soft)
        out.append(
            AvailableBytes(limit - size, f"{name} (limit {format_bytes(limit)}, {used} {format_bytes(size)})")
        )
    return out


def _own_cgroups(proc: str) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and cgroup v1 ``memory`` path, from ``/proc/self/cgroup``."""
    v2 = v1 = None
    for line in (_read(os.path.join(proc, "self", "cgroup")) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _cgroup_dirs(mount: str, path: str) -> list[tuple[str, str]]:
    """``(directory, cgroup path)`` of the process's cgroup and of each ancestor up to ``mount``.

    Inside a container without its own cgroup namespace, ``/proc/self/cgroup`` names the host's path
    (``/docker/<id>``) while the mount shows the container's cgroup at its root: leading components
    that do not exist under ``mount`` are dropped (what the JVM and Go's ``automaxprocs`` do).
    """
    parts = [c for c in path.split("/") if c]
    while parts and not os.path.isdir(os.path.join(mount, *parts)):
        parts.pop(0)
    if not os.path.isdir(mount):
        return []
    return [(os.path.join(mount, *parts[:k]), "/" + "/".join(parts[:k])) for k in range(len(parts), -1, -1)]


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def _cgroup_bounds(proc: str, cgroup_root: str) -> list[AvailableBytes]:
    """Limit minus usage of the process's memory cgroup and of every ancestor (v2 and v1).

    The usage counts page cache, which the kernel reclaims before it kills at the limit, so the
    inactive part of it (``inactive_file`` of ``memory.stat``, ``total_inactive_file`` in v1) is
    not counted as used -- the same correction ``docker stats`` and ``MemAvailable`` make.
    """
    v2, v1 = _own_cgroups(proc)
    out = []
    if v2 is not None:
        unified = (
            cgroup_root
            if os.path.exists(os.path.join(cgroup_root, "cgroup.controllers"))
            else os.path.join(cgroup_root, "unified")
        )
        for directory, name in _cgroup_dirs(unified, v2):
            limit = _int(_read(os.path.join(directory, "memory.max")))  # "max": no limit
            used = _int(_read(os.path.join(directory, "memory.current")))
            if limit is None or used is None:
                continue
            cache = (
                _int(_fields(_read(os.path.join(directory, "memory.stat")), " ").get("inactive_file")) or 0
            )
            out.append(
                AvailableBytes(
                    limit - max(used - cache, 0),
                    f"cgroup memory.max of {name} (limit {format_bytes(limit)}, "
                    f"memory.current {format_bytes(used)})",
                )
            )
    if v1 is not None:
        for directory, name in _cgroup_dirs(os.path.join(cgroup_root, "memory"), v1):
            limit = _int(_read(os.path.join(directory, "memory.limit_in_bytes")))
            used = _int(_read(os.path.join(directory, "memory.usage_in_bytes")))
            if limit is None or used is None or limit >= _V1_UNLIMITED:
                continue
            stat = _fields(_read(os.path.join(directory, "memory.stat")), " ")
            cache = _int(stat.get("total_inactive_file", stat.get("inactive_file"))) or 0
            out.append(
                AvailableBytes(
                    limit - max(used - cache, 0),
                    f"cgroup memory.limit_in_bytes of {name} (limit {format_bytes(limit)}, "
                    f"memory.usage_in_bytes {format_bytes(used)})",
                )
            )
    return out


def cpu_memory_bounds(*, proc: str | None = None, cgroup_root: str | None = None) -> list[AvailableBytes]:
    """Every bound on the host memory this process may still allocate, each naming its source.

    * ``MemAvailable`` of ``/proc/meminfo`` (else ``sysconf``): what the machine can give without
      swapping;
    * the memory cgroup (v2 ``memory.max - memory.current``, v1 ``memory.limit_in_bytes -
      memory.usage_in_bytes``) of the process and of each ancestor -- containers, Slurm and
      Kubernetes set these, and the OOM killer enforces them whatever ``MemAvailable`` says;
    * ``RLIMIT_AS - VmSize`` and ``RLIMIT_DATA - VmData`` (``ulimit -v``, ``ulimit -d``).

    Args:
        proc: the ``/proc`` to read (default :data:`PROC_ROOT`).
        cgroup_root: where the cgroup file systems are mounted (default :data:`CGROUP_ROOT`; v2 at
            its top or under ``unified/``, v1's memory controller under ``memory/``).
    """
    proc = PROC_ROOT if proc is None else proc
    cgroup_root = CGROUP_ROOT if cgroup_root is None else cgroup_root
    host = _meminfo_available(proc)
    return [*([host] if host is not None else []), *_cgroup_bounds(proc, cgroup_root), *_rlimit_bounds(proc)]


def available_bytes(device: str = "cpu") -> AvailableBytes | None:
    """Memory this process may still allocate on ``device`` in bytes, or ``None`` when it cannot be told.

    CPU: the tightest of :func:`cpu_memory_bounds` (``MemAvailable``, the cgroup limits, the
    resource limits); its :attr:`AvailableBytes.bound` names which. CUDA: the free bytes of
    ``torch.cuda.mem_get_info`` (``"cuda:i"``) or of Paddle's allocator view (``"gpu:i"``). A
    framework is only asked if it is already imported: the estimate never imports one.
    """
    kind, _, index = device.partition(":")
    idx = int(index) if index.isdigit() else 0
    if kind == "cpu":
        return min(cpu_memory_bounds(), default=None)
    if kind == "cuda" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        try:
            return AvailableBytes(int(torch.cuda.mem_get_info(idx)[0]), "torch.cuda.mem_get_info")
        except Exception:  # no driver, or a device we cannot query: no estimate
            return None
    if kind == "gpu" and "paddle" in sys.modules:
        paddle = sys.modules["paddle"]
        try:
            props = paddle.device.cuda.get_device_properties(idx)
            return AvailableBytes(
                int(props.total_memory) - int(paddle.device.cuda.memory_reserved(idx)),
                "total memory minus Paddle's reserved memory",
            )
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


def _largest_fitting(units: list[tuple[int, int]], budget: float) -> int:
    """The largest ``k >= 1`` whose capped stored gradients fit in ``budget`` bytes, else 0."""
    lo, hi = 0, max((n for n, _ in units), default=0) + 1  # lo == 0 or lo fits; hi does not fit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _capped_bytes(units, mid) <= budget else (lo, mid)
    return lo


def check_sag_memory(
    tensors: Iterable[StateTensor],
    batch_num: int,
    *,
    check: bool = True,
    available: Callable[[str], int | None] | None = None,
    committed: Iterable[StateTensor] = (),
    action: str | None = None,
) -> dict[str, int]:
    r"""Estimate SAG's state per device and raise :class:`SAGMemoryError` when it does not fit.

    The estimate is :math:`\sum_p (n_p\, |p|\, s_p + e_p)` per device, with ``n_p`` the parameter's
    ``batch_num`` (its :attr:`StateTensor.batch_num`, else ``batch_num``), ``s_p`` the stored
    gradients' element size and ``e_p`` the bytes of ``d`` (and of the fp32 master weight), summed
    over *every* parameter of the optimizer at once -- all its groups, each with its own
    ``batch_num`` -- so groups that fit one by one but not together are refused.

    Refusal and suggestion use two thresholds. The estimate is refused when it exceeds
    :func:`available_bytes` (or ``available``) -- what this process may still allocate *now*,
    nothing reserved: such a state cannot be allocated. The suggested ``batch_num`` is the largest
    whose state takes at most :data:`SUGGESTED_FRACTION` (80 %) of it, so that the suggestion does not
    trade one out-of-memory error for the next: the step still allocates around the state (the
    gradients themselves, fp32 temporaries of clipping and ``multi_precision``, the next forward
    pass's activations, allocator rounding). The 20 % kept free is at least one more gradient-sized
    buffer per parameter whenever the state holds four gradients or more (``(n + 1) |p| s <= 0.8 F``
    gives ``0.2 F >= |p| s`` for ``n >= 3``), and costs a setting that just fits at most a fifth of
    its ``batch_num``. A setting between 80 % and 100 % is accepted: the caller may know the rest of
    the program needs little.

    Args:
        tensors: the parameters that will get state (all groups at construction, the new group in
            ``add_param_group``, the parameters about to allocate their state at ``step()``).
        batch_num: stored gradients per parameter, for tensors that do not carry their own.
        check: ``False`` skips the comparison (so does the environment variable :data:`ENV_SKIP`).
        available: free bytes of a device; :func:`available_bytes` by default. An
            :class:`AvailableBytes` names its limit in the message.
        committed: parameters already in the optimizer whose state is not allocated yet (they will
            take memory too, so they count; state already allocated is out of the free memory).
        action: what is about to allocate (``"step()"``, ``"add_param_group"``), named first in the
            message.

    Returns:
        The estimated bytes per device (``tensors`` and ``committed`` together).

    Raises:
        SAGMemoryError: naming the total, the available memory and the limit that bounds it, the
            largest parameters (up to 3) and the largest ``batch_num`` that leaves the headroom.
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
        best = _largest_fitting(units, SUGGESTED_FRACTION * free - base)
        tight = _largest_fitting(units, free - base)
        kept = f"{1 - SUGGESTED_FRACTION:.0%}"
        if best >= 1:
            hint = f"lower batch_num to at most {best} (which keeps {kept} of the available memory free)"
        elif tight >= 1:
            hint = (
                f"even batch_num=1 leaves less than {kept} of the available memory free (batch_num={tight} "
                "would just fit, with nothing left for the rest of the step): free memory or optimise "
                "fewer parameters"
            )
        else:
            hint = "even batch_num=1 does not fit: free memory or optimise fewer parameters"
        ns = [n for _, n in everyone]
        pending = (
            f" (including {format_bytes(sum(sag_state_bytes(t, old_n[id(t)]) for t in cs))} for "
            f"{len(cs)} parameter(s) already in the optimizer, state not allocated yet)"
            if cs
            else ""
        )
        bound = getattr(free, "bound", None)
        names = ", ".join(
            f"{t.name} {list(t.shape)} ({format_bytes(sag_state_bytes(t, n))})" for t, n in largest
        )
        raise SAGMemoryError(
            f"{action + ': ' if action else ''}SAG would need {format_bytes(needed[dev])} on {dev} for "
            f"{_describe_batch_nums(ns)} stored gradients of {len(everyone)} parameter(s){pending}, but "
            f"only {format_bytes(free)} is available{f' (bound by {bound})' if bound else ''}. Largest: "
            f"{names}. To fix: {hint}; or pass check_memory=False (or set {ENV_SKIP}=1) to skip this check."
        )
    return needed
