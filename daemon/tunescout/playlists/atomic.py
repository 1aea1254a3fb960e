"""Replace files atomically: a music server scanning the folder sees the old playlist or the new
one, never half of one, and a power cut after the write keeps the new one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tunescout.errors import PlaylistError


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file in the same folder, fsync, rename, fsync the folder.

    A new file gets mode 0644 (the music server usually runs as another user); a replaced one
    keeps its mode.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchmod(handle.fileno(), mode)
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_folder(folder)
    except OSError as exc:
        raise PlaylistError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable: a power cut after this keeps the new playlist."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
