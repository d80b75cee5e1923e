"""Atomic file writes: a reader sees the old file or the complete new one, never half."""
from __future__ import annotations

import contextlib
import os
import tempfile

#: temporary files being written right now; a forced exit on SIGTERM removes them
_PENDING: set[str] = set()


def remove_pending() -> None:
    """Delete the temporary files of writes still in progress (called on a forced exit)."""
    for tmp in list(_PENDING):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + ``os.replace``)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, flushed and
    fsynced, then ``os.replace``; on any failure the temporary file is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    _PENDING.add(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        _PENDING.discard(tmp)
