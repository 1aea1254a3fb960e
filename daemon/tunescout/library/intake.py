"""Decide which paths are audio worth analysing, and when a file being written is complete."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

TEMP_PREFIXES = (".~", "~$", "._")  # LibreOffice locks, Office owner files, macOS forks


def is_candidate(path: Path, extensions: frozenset[str]) -> bool:
    """Return True when the path names an audio file (by extension) that is not a temp file."""
    return is_candidate_name(path.name, extensions)


def is_candidate_name(name: str, extensions: frozenset[str]) -> bool:
    """Return True when a file name is an audio file's (by extension) and not a temp name."""
    dot = name.rfind(".")
    if dot <= 0 or name[dot:].lower() not in extensions:
        return False
    # with an audio extension, only the prefix forms of temp names remain possible (rsync's
    # ".name.XXXXXX" and "*.part" end otherwise); "._x.mp3" is a macOS resource fork
    return not name.startswith(TEMP_PREFIXES)


@dataclass
class _Pending:
    first_seen: float
    last_event: float
    size: int
    mtime_ns: int


class Settler:
    """Hold files that are being written until they have been quiet for `settle_s`.

    A file is ready when no event arrived for `settle_s` and either its mtime is older than
    `settle_s` or its size and mtime did not change between two looks a quiet period apart.
    The clock (wall time, since it is compared with mtimes) is passed in: tests need no sleeps.
    """

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._pending: dict[Path, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: object) -> bool:
        return path in self._pending

    def touch(self, path: Path, now: float) -> None:
        """Note that something happened to `path` (created, written, closed, moved in)."""
        entry = self._pending.get(path)
        if entry is None:
            self._pending[path] = _Pending(now, now, -1, -1)
        else:
            entry.last_event = now

    def forget(self, path: Path) -> None:
        """Stop waiting for a path that was deleted or moved away."""
        self._pending.pop(path, None)

    def forget_under(self, folder: Path) -> None:
        """Stop waiting for every path under a folder that went away."""
        for path in [p for p in self._pending if p.is_relative_to(folder)]:
            del self._pending[path]

    def next_due(self) -> float | None:
        """Return the earliest time at which a pending file could become ready."""
        if not self._pending:
            return None
        return min(e.last_event for e in self._pending.values()) + self.settle_s

    def ready(self, now: float) -> list[Path]:
        """Return the files that are complete now, and stop holding them."""
        done: list[Path] = []
        for path, entry in list(self._pending.items()):
            if now - entry.last_event < self.settle_s:
                continue
            try:
                st = os.stat(path)
            except OSError:
                del self._pending[path]  # gone before it settled: nothing to analyse
                continue
            if not stat.S_ISREG(st.st_mode):
                del self._pending[path]
                continue
            unchanged = (st.st_size, st.st_mtime_ns) == (entry.size, entry.mtime_ns)
            if not unchanged and now - st.st_mtime_ns / 1e9 < self.settle_s:
                # written within the quiet period: look again one quiet period later
                entry.size, entry.mtime_ns, entry.last_event = st.st_size, st.st_mtime_ns, now
                continue
            done.append(path)
            del self._pending[path]
        return done
