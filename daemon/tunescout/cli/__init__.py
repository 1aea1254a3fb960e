"""The command line: the entry point and parser, the inspect commands, playlist, doctor.

Sits on top: nothing imports it. `main` here is the console script's entry: it makes SIGTERM a
clean exit before anything heavier is imported (importing the CLI takes a noticeable part of a
second on a busy machine, and a stop then must not die by the signal's default action); the
daemon replaces that handler with its own once it runs.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType


def _stop_early(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `tunescout` command; return its exit status."""
    signal.signal(signal.SIGTERM, _stop_early)
    from tunescout.cli.main import main as run

    return run(sys.argv[1:] if argv is None else argv)
