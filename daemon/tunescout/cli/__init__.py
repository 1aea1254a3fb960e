"""The command line: the entry point and parser, the inspect commands, playlist, doctor.

Sits on top: nothing imports it. `main` here is the console script's entry: it makes SIGTERM a
clean exit, and remembers SIGHUP and SIGUSR1, before anything heavier is imported (importing the
CLI takes a noticeable part of a second on a busy machine, and a signal then must not act by its
default action, which kills); the daemon replaces those handlers with its own once it runs and
takes over what was remembered (`tunescout.early`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tunescout import early


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `tunescout` command; return its exit status."""
    early.install()
    from tunescout.cli.main import main as run

    return run(sys.argv[1:] if argv is None else argv)
