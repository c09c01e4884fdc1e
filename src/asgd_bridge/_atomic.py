"""Atomic file replacement, shared by the source converter and the checkpoint converter.

A reader sees the old file or the new one, never half of it; on any failure the temporary file goes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the body succeeds it replaces ``path``.

    The body writes the whole new content to the yielded path (any writer: bytes, ``torch.save``,
    ``paddle.save``); ``mode`` sets the file's permission bits before the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{path.suffix}.tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
