"""Atomic file replacement, shared by the source converter and the checkpoint converter.

A reader sees the old file or the new one, never half of it; on any failure the temporary file goes.
The new file gets the permission bits a plain ``open(path, "w")`` would leave: an existing file's own,
else ``0o666 & ~umask`` (the temporary file itself is created 0600 by ``mkstemp``).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def default_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` leaves: ``path``'s own if it exists, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the body succeeds it replaces ``path``.

    The body writes the whole new content to the yielded path (any writer: bytes, ``torch.save``,
    ``paddle.save``); the content is flushed to disk and the file gets ``mode`` (default:
    :func:`default_mode`) before the rename, so once this returns the new file is in place, whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    final_mode = default_mode(path) if mode is None else mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{path.suffix}.tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, final_mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
