"""Writes the database did not take yet: a full disk or a lock held by another process.

The supervisor runs each result's write (and what follows it: the counts, the journal line)
through `PendingWrites.run`. When the database refuses with DatabaseUnavailable, the write is kept,
in order, with every later one, and tried again every few seconds; nothing is dispatched until all
are stored, so they stay few (one per file of the children already running). No result is lost,
none is stored twice, and no file is blamed for the database's trouble.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tunescout.errors import DatabaseUnavailable

log = logging.getLogger("tunescout.workers.supervisor")

RETRY_S = 2.0  # between tries of the kept writes


class PendingWrites:
    """Database writes in order, run now or kept until the database takes them."""

    def __init__(self) -> None:
        self._kept: list[Callable[[], object]] = []
        self.problem: DatabaseUnavailable | None = None  # why they are kept
        self._retry_at = 0.0

    def __len__(self) -> int:
        return len(self._kept)

    def run(self, write: Callable[[], object]) -> None:
        """Run one write, or keep it behind those already kept."""
        if not self._kept:
            try:
                write()
                return
            except DatabaseUnavailable as exc:
                self._refused(exc, time.monotonic())
        self._kept.append(write)

    def flush(self, now: float, *, force: bool = False) -> bool:
        """Try the kept writes again (every RETRY_S, or now with `force`); return True when none
        is left."""
        if not self._kept:
            return True
        if now < self._retry_at and not force:
            return False
        while self._kept:
            try:
                self._kept[0]()
            except DatabaseUnavailable as exc:
                self._refused(exc, now)
                return False
            self._kept.pop(0)
        log.info("the database takes writes again (%s); the results kept meanwhile are stored",
                 self.problem.status if self.problem else "", extra={"EVENT": "store_resumed"})
        self.problem = None
        return True

    def drop(self) -> None:
        """Let the kept writes go (at a stop): their files are still queued, analysed next time."""
        if self._kept:
            log.warning("stopping with %d results the database did not take (%s); those files stay "
                        "queued", len(self._kept), self.problem.status if self.problem else "",
                        extra={"EVENT": "store_dropped"})
        self._kept.clear()

    def _refused(self, exc: DatabaseUnavailable, now: float) -> None:
        if self.problem is None or type(exc) is not type(self.problem):
            log.warning("%s; %d results kept until then", exc, len(self._kept) + 1,
                        extra={"EVENT": "store_waiting", "ERROR_KIND": type(exc).__name__})
        self.problem = exc
        self._retry_at = now + RETRY_S
