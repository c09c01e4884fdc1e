"""Compile a plain-C source once, keep it in a private cache, load only what was built or verified.

The trust rules are stated in :mod:`asgd_bridge._native`; this module implements them. No framework
is imported here.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BuildInfo",
    "KernelLoader",
    "NativeUnavailable",
    "build_shared_library",
    "cache_dir",
    "compile_to",
    "compiler",
]

#: Flag sets tried from the fastest down, with whether they enable OpenMP.
CANDIDATES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("-O3", "-march=native", "-fopenmp"), True),
    (("-O3", "-fopenmp"), True),
    (("-O3", "-march=native"), False),
    (("-O3",), False),
)

_HASH_LEN = 64  # hex digits of a sha256


class NativeUnavailable(RuntimeError):
    """A native library cannot be built or loaded here; the message says why."""


@dataclass
class BuildInfo:
    """What the one-time build of a library did (reported by the benchmarks apart from steps)."""

    path: str = ""
    compiler: str = ""
    flags: list[str] = field(default_factory=list)
    openmp: bool = False
    cached: bool = False
    build_s: float = 0.0
    load_s: float = 0.0
    error: str = ""


class _Untrusted(Exception):
    """A directory this process must not load from (the message says why)."""


_lock = threading.RLock()
_warned: set[str] = set()
_tmp: str | None = None


def warn_once(key: str, message: str, stacklevel: int = 3) -> None:
    """``warnings.warn(message, RuntimeWarning)`` the first time ``key`` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


class KernelLoader:
    """One native kernel, built and loaded at most once per process.

    Calling it returns the library, or raises the :class:`NativeUnavailable` of the first failed
    attempt again (no rebuild per step); :meth:`or_warn` is the callers' form: the library, or
    ``None`` after one ``RuntimeWarning`` naming what the caller does instead.
    """

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self.kernel: Any = None
        self.error: str | None = None

    def __call__(self) -> Any:
        if self.kernel is None:
            with self._lock:
                if self.kernel is None and self.error is None:
                    try:
                        self.kernel = self._load()
                    except NativeUnavailable as e:
                        self.error = str(e)
        if self.kernel is None:
            raise NativeUnavailable(self.error or "the kernel did not load")
        return self.kernel

    def or_warn(self, key: str, instead: str) -> Any:
        """The library, or ``None`` after warning once (``key``): ``"<instead>: <why>"``."""
        try:
            return self()
        except NativeUnavailable as e:
            warn_once(key, f"{instead}: {e}", stacklevel=4)
            return None


def compiler() -> list[str]:
    """The C compiler command: ``$CC`` split as a shell would (``CC="ccache gcc"``), else the first
    of ``cc``/``gcc``/``clang`` on PATH. Raises :class:`NativeUnavailable` when there is none."""
    cc = shlex.split(os.environ.get("CC", ""))
    if cc:
        return cc
    found = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if found is None:
        raise NativeUnavailable("no C compiler found (set CC or install gcc)")
    return [found]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor()


# --------------------------------------------------------------------------- directories


def cache_root() -> Path:
    """torch's cache root for JIT extensions: ``$TORCH_EXTENSIONS_DIR``, else
    ``$XDG_CACHE_HOME/torch_extensions`` or ``~/.cache/torch_extensions`` (what
    ``torch.utils.cpp_extension.get_default_build_root`` returns on Linux, without importing torch)."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.path.realpath(os.path.join(base, "torch_extensions")))


def _problem(st: os.stat_result, what: str) -> str | None:
    """Why a file or directory this process would load from is not private to it, or None."""
    euid = os.geteuid()
    if st.st_uid != euid:
        return f"{what} is owned by uid {st.st_uid}, not by this process's uid {euid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _check_dir(path: Path) -> None:
    """Raise :class:`_Untrusted` unless ``path`` is a directory only this uid can change.

    ``path`` itself: a real directory (not a symlink), owned by the effective uid, not writable by
    group or others, writable by us. Each ancestor: owned by root or by us, and not writable by
    others unless sticky (as ``/tmp`` is), so nobody else can rename ``path`` away and put theirs.
    """
    try:
        st = os.lstat(path)
    except OSError as e:
        raise _Untrusted(f"cannot be read ({e.strerror or e})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _Untrusted("is not a directory (a symbolic link or a file)")
    problem = _problem(st, "it")
    if problem:
        raise _Untrusted(problem)
    if not os.access(path, os.W_OK | os.X_OK):
        raise _Untrusted("is not writable")
    real = Path(os.path.realpath(path))
    for parent in real.parents:
        pst = os.stat(parent)
        if pst.st_uid not in (0, os.geteuid()):
            raise _Untrusted(f"its parent {parent} is owned by uid {pst.st_uid}")
        if pst.st_mode & stat.S_IWOTH and not pst.st_mode & stat.S_ISVTX:
            raise _Untrusted(f"its parent {parent} is writable by others without the sticky bit")


def cache_dir() -> tuple[Path, str | None]:
    """The directory libraries are cached in, and why the persistent cache was bypassed (or None).

    ``cache_root()/asgd_bridge``, created with mode 0700 when missing, if :func:`_check_dir` admits
    it; else a fresh private temporary directory of this process (``mkdtemp``: mode 0700, an
    unguessable name; removed at exit), with the reason for the caller's one warning. Raises
    :class:`NativeUnavailable` when neither can be had.
    """
    global _tmp
    with _lock:
        try:
            path = cache_root() / "asgd_bridge"
        except (OSError, RuntimeError, KeyError) as e:  # no home directory
            path, reason = None, f"has no home directory ({e})"
        else:
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as e:
                reason = f"cannot be created ({type(e).__name__}: {e.strerror or e})"
            else:
                try:
                    _check_dir(path)
                    return path, None
                except OSError as e:
                    reason = f"cannot be checked ({type(e).__name__}: {e.strerror or e})"
                except _Untrusted as e:
                    reason = str(e)
        if _tmp is None:
            try:
                tmp = tempfile.mkdtemp(prefix="asgd_bridge-")
                _check_dir(Path(tmp))
            except (OSError, _Untrusted) as e:
                raise NativeUnavailable(
                    f"the cache directory {path} {reason}, and no private temporary directory: {e}"
                ) from None
            _tmp = tmp
            atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        return Path(_tmp), f"the cache directory {path} {reason}"


# --------------------------------------------------------------------------- files


def _open_verified(path: Path) -> int | None:
    """An fd of ``path`` if it is a regular file (not a symlink) that passes :func:`_problem`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or _problem(st, "file"):
        os.close(fd)
        return None
    return fd


def _read_fd(fd: int) -> bytes:
    chunks = []
    while chunk := os.pread(fd, 1 << 20, sum(map(len, chunks))):
        chunks.append(chunk)
    return b"".join(chunks)


def _cached(directory: Path, stem: str) -> tuple[int, Path] | None:
    """The verified cached library ``stem``: its fd and path, or None (then it is built).

    ``<stem>.sha256`` records the sha256 of the library, which is ``<stem>_<sha256[:16]>.so``; both
    must pass :func:`_open_verified` and the library's bytes, read from the fd that is then
    loaded, must hash to the record.
    """
    sfd = _open_verified(directory / f"{stem}.sha256")
    if sfd is None:
        return None
    try:
        digest = _read_fd(sfd)[:_HASH_LEN].decode("ascii", "replace")
    finally:
        os.close(sfd)
    path = directory / f"{stem}_{digest[:16]}.so"
    fd = _open_verified(path)
    if fd is None:
        return None
    if hashlib.sha256(_read_fd(fd)).hexdigest() != digest:
        os.close(fd)
        return None
    return fd, path


def _install(directory: Path, stem: str, built: Path) -> tuple[int, Path]:
    """Move a library this process just built into the cache, record its hash; its fd and path."""
    fd = os.open(built, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    os.fchmod(fd, 0o700)
    digest = hashlib.sha256(_read_fd(fd)).hexdigest()
    path = directory / f"{stem}_{digest[:16]}.so"
    os.replace(built, path)  # atomic: concurrent builders never see half a file
    sfd, record = tempfile.mkstemp(suffix=".sha256", dir=directory)  # mode 0600
    with os.fdopen(sfd, "w") as f:
        f.write(digest + "\n")
    os.replace(record, directory / f"{stem}.sha256")
    return fd, path


def _dlopen(fd: int, path: Path) -> ctypes.CDLL:
    """Load the file behind ``fd`` (the one verified), through ``/proc/self/fd`` where it exists.

    The fd stays open once loaded: the dynamic loader knows a library by the name it was opened
    with, so a closed and reused ``/proc/self/fd/N`` would be taken for the library loaded first.
    """
    proc = f"/proc/self/fd/{fd}"
    try:
        return ctypes.CDLL(proc if os.path.exists(proc) else str(path))
    except OSError:
        os.close(fd)
        raise


def compile_to(
    source: Path, out: Path, cc: list[str] | str, flags: list[str] | tuple[str, ...]
) -> tuple[bool, str]:
    """Compile ``source`` into the shared library ``out``; ``(ok, error message)``.

    ``cc`` is a command (a string is split as a shell would). ``out`` appears atomically.
    """
    cmd_cc = shlex.split(cc) if isinstance(cc, str) else list(cc)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [*cmd_cc, *flags, "-shared", "-fPIC", "-o", tmp, str(source)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        os.unlink(tmp)
        return False, f"{shlex.join(cmd)}: {e}"
    if res.returncode != 0:
        os.unlink(tmp)
        return False, f"{shlex.join(cmd)} failed:\n{res.stderr.strip()[-2000:]}"
    os.replace(tmp, out)
    return True, ""


# --------------------------------------------------------------------------- entry points


def build_shared_library(
    source_path: str | os.PathLike[str], name: str, *, what: str | None = None
) -> ctypes.CDLL:
    """Build a plain-C source, cache it, and load it with ctypes.

    Compiler: :func:`compiler`. Flags: :data:`CANDIDATES`, from ``-O3 -march=native -fopenmp``
    down. Cache key: source bytes and those of the ``*.h`` headers beside it, compiler command,
    flags, CPU model. Directory:
    :func:`cache_dir` (one ``RuntimeWarning`` when the persistent cache is bypassed). The
    :class:`BuildInfo` of the build is attached as ``lib.asgd_build_info``; the compiler errors of
    flag sets that failed as ``lib.asgd_build_errors``. Raises :class:`NativeUnavailable` ("could
    not build <what>: ...") when no flag set compiles and loads.
    """
    source = Path(source_path)
    if sys.platform == "win32":
        raise NativeUnavailable("native kernels are built with a POSIX C compiler; not supported on Windows")
    if not source.is_file():
        raise NativeUnavailable(f"kernel source {source.name} is not installed with the package")
    cc = compiler()
    directory, bypassed = cache_dir()
    # the source and the headers beside it (`#include "share.h"` is found in the source's directory)
    code = b"\0".join([source.read_bytes(), *(h.name.encode() + b"\0" + h.read_bytes()
                                               for h in sorted(source.parent.glob("*.h")))])  # fmt: skip
    errors: list[str] = []
    for flags, openmp in CANDIDATES:
        key = hashlib.sha256(
            b"\0".join([code, shlex.join(cc).encode(), " ".join(flags).encode(), _cpu_model().encode()])
        ).hexdigest()[:16]
        stem = f"{name}_{key}"
        t0 = time.perf_counter()
        with _lock:
            try:
                found = _cached(directory, stem)
                cached = found is not None
                if found is None:
                    built = directory / f"{stem}.{os.getpid()}.{threading.get_ident()}.build.so"
                    ok, err = compile_to(source, built, cc, flags)
                    if not ok:
                        errors.append(err)
                        continue
                    found = _install(directory, stem, built)
            except OSError as e:  # a full disk, a directory changed under us: never out of step()
                errors.append(f"writing into {directory}: {type(e).__name__}: {e}")
                continue
        build_s = 0.0 if cached else time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            lib = _dlopen(*found)
        except OSError as e:
            errors.append(f"loading {found[1].name}: {e}")
            continue
        if bypassed:
            warn_once(
                f"bypass:{bypassed}",
                f"asgd_bridge native kernels: {bypassed}; building in the private temporary directory "
                f"{directory} instead (this process only)",
                stacklevel=4,
            )
        lib.asgd_build_info = BuildInfo(
            path=str(found[1]), compiler=shlex.join(cc), flags=list(flags), openmp=openmp, cached=cached,
            build_s=build_s, load_s=time.perf_counter() - t1,
        )  # fmt: skip
        lib.asgd_build_errors = errors
        return lib
    what = what or f"the native library {name} ({source.name})"
    raise NativeUnavailable(f"could not build {what}:\n" + "\n".join(errors))
