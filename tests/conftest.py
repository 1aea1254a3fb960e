"""Fixtures only; what tests share lives in `support/`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from support.cluster import Cluster, needs_dask
from support.daemon import Daemon, Library

LEAK_GRACE_S = 5.0  # a stopped daemon's zygote takes a moment to follow it


@pytest.fixture(autouse=True)
def no_leaked_threads_or_processes() -> Iterator[None]:
    """Fail a test that leaves a non-daemon thread or a child process of ours running.

    A leak shows up far from its cause (a test that hangs at exit, a daemon answering the next
    test's files), so it fails the test that made it; the leaked processes are killed.
    """
    me = psutil.Process()
    threads_before = set(threading.enumerate())
    children_before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        threads = [t for t in threading.enumerate()
                   if t not in threads_before and t.is_alive() and not t.daemon]
        children = [p for p in _children(me) if p.pid not in children_before]
        if not (threads or children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    leaks = [f"thread {t.name!r}" for t in threads] + [_describe(p) for p in children]
    if leaks:
        pytest.fail(f"the test left these running: {', '.join(leaks)}", pytrace=False)


def _children(me: psutil.Process) -> list[psutil.Process]:
    alive = []
    for child in me.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    return alive


def _describe(process: psutil.Process) -> str:
    try:
        return f"pid {process.pid} ({' '.join(process.cmdline())[:120]})"
    except psutil.Error:
        return f"pid {process.pid}"


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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A real Dask scheduler on 127.0.0.1 (workers are added by the test); stopped by pid."""
    needs_dask()
    running = Cluster(tmp_path / "cluster")
    try:
        yield running
    finally:
        running.stop()
