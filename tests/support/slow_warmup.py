"""A test analyser whose zygote takes a moment to warm up: the window in which a daemon that
stops right after its start closes the control socket before the zygote says "ready"."""

from __future__ import annotations

import time

from support.analysers import by_name

WARMUP_S = 0.4

analyse = by_name


def warm_up() -> None:
    time.sleep(WARMUP_S)
