"""The daemon while its database refuses writes: a full disk, a lock another process holds.

Waiting is not failing: the main loop keeps turning (children are read, their results kept in
order by the supervisor's PendingWrites), systemd is told why (STATUS) and keeps getting watchdog
pings, so it does not restart the daemon into StartLimitBurst. Every PROBE_S one small write asks
whether the database takes writes again; then the kept results are stored and a rescan finds the
files that arrived meanwhile (what the refused turns could not queue).
"""

from __future__ import annotations

import logging

from tunescout.errors import DatabaseUnavailable
from tunescout.store.writer import StoreWriter
from tunescout.workers.pending import PendingWrites

log = logging.getLogger("tunescout.service")

PROBE_S = 2.0  # between tries; a try waits at most WRITE_WAIT_S for a lock


class DatabaseWait:
    """Whether the database takes writes, and why not."""

    def __init__(self) -> None:
        self.problem: DatabaseUnavailable | None = None
        self._probe_at = 0.0

    def refused(self, exc: DatabaseUnavailable, now: float) -> None:
        """A write was refused: say so (once per kind of trouble) and wait."""
        if self.problem is None or type(exc) is not type(self.problem):
            log.warning("%s", exc, extra={"EVENT": "store_waiting", "ERROR_KIND": type(exc).__name__})
        self.problem = exc
        self._probe_at = now + PROBE_S

    def writable(self, now: float, store: StoreWriter, pending: PendingWrites) -> bool | None:
        """Return True when the database takes writes, False while waiting, None at the turn the
        wait ends (the kept results are stored then; the caller rescans)."""
        if self.problem is None:
            return True
        if now < self._probe_at:
            return False
        self._probe_at = now + PROBE_S
        try:
            store.probe_write()
        except DatabaseUnavailable as exc:
            self.refused(exc, now)
            return False
        if not pending.flush(now, force=True):
            return False
        log.info("the database takes writes again (was: %s); looking for what arrived meanwhile",
                 self.problem.status, extra={"EVENT": "store_resumed"})
        self.problem = None
        return None
