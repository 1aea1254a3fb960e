"""Signals that arrive before the daemon has its own handlers (a leaf: the entry point sets it up
before anything heavier is imported).

SIGTERM then is a clean exit 0. SIGHUP (reload) and SIGUSR1 (look at the queue) are remembered,
not obeyed by their default action (which would kill the process): the daemon takes them over
with its own handlers and acts on them once it runs, so a reload sent while it starts is neither
fatal nor lost.
"""

from __future__ import annotations

import signal
from types import FrameType

pending: list[int] = []  # remembered signals, oldest first, for the daemon to take over


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _remember(signum: int, _frame: FrameType | None) -> None:
    pending.append(signum)


def install() -> None:
    signal.signal(signal.SIGTERM, _stop)
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, _remember)


def take() -> list[int]:
    """Return the remembered signals and forget them (the daemon's handlers are in place)."""
    taken = pending[:]
    del pending[:]
    return taken


def restore_defaults() -> None:
    """For a command that is not the daemon: SIGHUP and SIGUSR1 act as by default again (a
    hangup ends `scan`), and one that came meanwhile is delivered now."""
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)
    for signum in take():
        signal.raise_signal(signum)
