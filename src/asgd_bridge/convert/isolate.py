"""One conversion per child process: a file that crashes, recurses or exhausts a limit loses only itself.

Each job runs in its own process (forked from a ``forkserver`` that has the converter imported, so a job
starts in milliseconds), on a thread with a large stack (libcst's native parser recurses on deep
expressions: on the default 8 MiB stack an 8000-term sum is a segfault, here it is parsed), under an
address-space limit (``RLIMIT_AS``) and a wall-clock limit. Up to ``jobs`` children run at once. A child
that dies (a signal, an abort in native code), overruns its time or runs out of memory yields an
:class:`IsolationFailure` naming what happened; the other jobs are unaffected.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = ["DEFAULT_LIMITS", "IsolationFailure", "Limits", "default_jobs", "run_isolated"]

#: Stack of the thread a job runs on, and the recursion limit that goes with it.
STACK_BYTES = 512 * 1024 * 1024
RECURSION_LIMIT = 200_000


@dataclass(frozen=True)
class Limits:
    """Per-file limits: wall-clock seconds and address space in bytes (``None``: no limit)."""

    seconds: float | None = 300.0
    memory: int | None = 8 * 1024**3


#: What ``asgd-bridge convert`` uses unless told otherwise (``--timeout``, ``--max-memory``).
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class IsolationFailure:
    """Why a job gave no result: ``"crash"``, ``"timeout"``, ``"memory"`` or ``"error"``, in words."""

    kind: str
    message: str


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["asgd_bridge.convert.files"])
        return ctx
    return multiprocessing.get_context("spawn")


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Start children without the parent's ``__main__``: multiprocessing would otherwise run the caller's
    script again in each child (or fail on ``python -`` / ``-c``). The jobs name importable functions."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _child(conn: Connection, func: Callable[..., Any], args: tuple[Any, ...], memory: int | None) -> None:
    if memory is not None:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        except (ImportError, ValueError, OSError):  # no such limit here: the time limit still holds
            pass
    box: list[tuple[str, Any]] = []

    def body() -> None:
        try:
            box.append(("ok", func(*args)))
        except MemoryError:
            box.append(("memory", "ran out of memory"))
        except RecursionError:
            box.append(("error", "nested too deeply to convert"))
        except Exception as exc:  # reported with the file's path by the caller; the run goes on
            box.append(("error", f"{type(exc).__name__}: {exc}"))

    default_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(RECURSION_LIMIT)
    try:
        threading.stack_size(STACK_BYTES)
        worker = threading.Thread(target=body)
        worker.start()
    except (RuntimeError, MemoryError, ValueError):  # no room for the large stack under the limit
        sys.setrecursionlimit(default_limit)
        body()
    else:
        worker.join()
    try:
        conn.send(box[0] if box else ("error", "the conversion thread ended without a result"))
    except MemoryError:
        os._exit(3)
    conn.close()


def _died(code: int | None, memory: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGABRT" and memory is not None:
            name += f": native code aborted, likely out of the {memory // 2**20} MiB per-file memory limit"
        return f"crashed the converter ({name}); left untouched"
    return f"crashed the converter (exit status {code}); left untouched"


def run_isolated(
    func: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, func(*jobs[index]))`` or ``(index, IsolationFailure)`` for every job, as they end.

    ``func`` must be importable by name (it is pickled to the child); so must its results.
    """
    if not jobs:
        return
    ctx = _context()
    width = max(1, workers or default_jobs())
    pending = list(range(len(jobs)))[::-1]
    running: dict[Any, tuple[int, Any, Connection, float | None]] = {}
    try:
        while pending or running:
            while pending and len(running) < width:
                index = pending.pop()
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(send, func, jobs[index], limits.memory), daemon=True)
                with _main_hidden():
                    proc.start()
                send.close()
                deadline = None if limits.seconds is None else time.monotonic() + limits.seconds
                running[recv] = (index, proc, recv, deadline)
            deadlines = [d for (_, _, _, d) in running.values() if d is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = wait(list(running), timeout=timeout)
            for conn in ready:
                index, proc, _, _ = running.pop(conn)
                try:
                    status, value = conn.recv()
                except (EOFError, OSError):
                    proc.join()
                    yield index, IsolationFailure("crash", _died(proc.exitcode, limits.memory))
                    continue
                finally:
                    conn.close()
                proc.join()
                if status == "ok":
                    yield index, value
                else:
                    yield index, IsolationFailure(status, f"{value}; left untouched")
            now = time.monotonic()
            for conn, (index, proc, _, deadline) in list(running.items()):
                if deadline is not None and now >= deadline and conn not in ready:
                    proc.kill()
                    proc.join()
                    conn.close()
                    del running[conn]
                    yield (
                        index,
                        IsolationFailure(
                            "timeout",
                            f"took longer than the per-file limit of {limits.seconds:g} s; left untouched",
                        ),
                    )
    finally:
        for _, proc, conn, _ in running.values():
            proc.kill()
            proc.join()
            conn.close()
