"""Fixtures only; what tests share lives in `support/`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.daemon import Daemon, Library


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(tmp_path)


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., Daemon]]:
    """Start `Daemon(library, **options)`; whatever is still running at the end is killed."""
    started: list[Daemon] = []

    def start(library: Library, **options: Any) -> Daemon:
        daemon = Daemon(library, **options)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
