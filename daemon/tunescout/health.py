"""Tell systemd how we are: READY, STATUS, WATCHDOG, STOPPING, RELOADING (sd_notify)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import systemd.daemon as sd_daemon  # `from systemd import daemon` makes mypy read the repo's systemd/


def watchdog_interval_s(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Return how often to ping systemd's watchdog (half its timeout), or None when it is off."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    watchdog_pid = env.get("WATCHDOG_PID")
    try:
        if watchdog_pid and int(watchdog_pid) != (pid or os.getpid()):
            return None  # meant for another process
        timeout_us = int(usec)
    except ValueError:
        return None
    return timeout_us / 1e6 / 2 if timeout_us > 0 else None


class Health:
    """Send notifications; no-ops when not started by systemd with NOTIFY_SOCKET."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.watchdog_every_s = watchdog_interval_s(env) if self.enabled else None
        self._last_ping = 0.0
        self._last_status = ""

    def _notify(self, text: str) -> None:
        if self.enabled:
            sd_daemon.notify(text)

    def ready(self, status: str) -> None:
        self._last_status = status
        self._notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """Send STATUS= when it changed."""
        if status != self._last_status:
            self._last_status = status
            self._notify(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self._notify(f"STOPPING=1\nSTATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._notify(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration")

    def watchdog_due(self, now: float) -> float | None:
        """Return when the next ping is due (monotonic), or None without a watchdog."""
        if self.watchdog_every_s is None:
            return None
        return self._last_ping + self.watchdog_every_s

    def ping(self, now: float) -> None:
        """Ping the watchdog if due; call only from a healthy main loop."""
        if self.watchdog_every_s is not None and now >= self._last_ping + self.watchdog_every_s:
            self._last_ping = now
            self._notify("WATCHDOG=1")
