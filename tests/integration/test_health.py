"""sd_notify end to end: the real daemon talks to real AF_UNIX datagram sockets, as to systemd.

Each test starts `python -m tunescout run` (the cheap test analyser, a tmp library and database)
with NOTIFY_SOCKET pointing at a socket this test bound, at a path or at an abstract address, and
reads what arrives together with the sender's credentials (SO_PASSCRED), the way systemd does.
Waits are deadlines, never fixed sleeps; counts over a window allow a factor of two either way.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from support.daemon import Daemon, Library
from support.notify import START_TIMEOUT_S, Notification, NotifySocket, has, pings
from tunescout.health import watchdog_interval_s

WATCHDOG_USEC = 2_000_000  # so a healthy daemon pings every second
_PRIVATE = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


# --- the daemon --------------------------------------------------------------------------------


def _library(root: Path) -> Library:
    return Library(root, intake={"settle": "0.3 s", "rescan_interval": "1 h"}, log={"level": "debug"})


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(str(tmp_path / "notify.sock"))
    yield sock
    sock.close()


@pytest.fixture
def abstract_notify() -> Iterator[NotifySocket]:
    sock = NotifySocket(f"@tunescout-test-{os.getpid()}-{uuid.uuid4().hex}")
    yield sock
    sock.close()


StartDaemon = Callable[..., Daemon]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    started: list[Daemon] = []

    def start(notify: NotifySocket, *, watchdog_usec: int | None = WATCHDOG_USEC,
              shell_prefix: str | None = None, **extra_env: str) -> Daemon:
        env = dict(extra_env)
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        daemon = Daemon(_library(tmp_path / f"daemon{len(started)}"), notify=notify.address, env=env,
                        shell_prefix=shell_prefix)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def wait_ready(notify: NotifySocket, daemon: Daemon) -> Notification:
    try:
        return notify.expect(has("READY"), why="READY=1")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ndaemon log:\n{daemon.log()}") from None


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "60000000"}, 30.0),
    ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4242"}, 30.0),  # that is us
    ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "me"}, None),
])
def test_watchdog_interval_is_half_the_timeout_for_our_pid(env: dict[str, str],
                                                           expected: float | None) -> None:
    assert watchdog_interval_s(env, pid=4242) == expected



def test_ready_status_and_watchdog_at_half_the_interval(notify: NotifySocket,
                                                        start_daemon: StartDaemon) -> None:
    daemon = start_daemon(notify)
    ready = wait_ready(notify, daemon)
    assert ready.fields.get("STATUS"), "READY=1 comes with a first STATUS="
    window = notify.collect(8.0)  # a ping per second expected
    beats = pings(window)
    assert 4 <= len(beats) <= 16, f"{len(beats)} pings in 8 s with WATCHDOG_USEC=2s"
    gaps = [b.at - a.at for a, b in itertools.pairwise(beats)]
    assert 0.5 <= statistics.median(gaps) <= 2.0, gaps
    senders = {n.pid for n in notify.received}
    assert senders == {daemon.pid}, "every notification comes from the main process"
    daemon.stop()


def test_status_changes_when_a_file_is_dropped_in(notify: NotifySocket,
                                                  start_daemon: StartDaemon) -> None:
    daemon = start_daemon(notify)
    wait_ready(notify, daemon)
    before = [n.fields["STATUS"] for n in notify.received if "STATUS" in n.fields][-1]
    assert "analysed 0/0" in before
    # two seconds of analysis: longer than the status period while busy, so a STATUS is due
    daemon.drop("slow.mp3")
    changed = notify.expect(lambda n: "STATUS" in n.fields and n.fields["STATUS"] != before,
                            why="with a new STATUS after a file was dropped in")
    assert changed.pid == daemon.pid
    daemon.wait_analysed(1)
    assert daemon.stop() == 0


def test_status_shows_the_result_once_idle(notify: NotifySocket, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(notify)
    wait_ready(notify, daemon)
    daemon.drop("song.mp3")
    notify.expect(lambda n: "analysed 1/1" in n.fields.get("STATUS", ""), timeout_s=15.0,
                  why="with STATUS saying 'analysed 1/1'")
    daemon.stop()


def test_abstract_socket_credentials_and_clean_stop(abstract_notify: NotifySocket,
                                                    start_daemon: StartDaemon) -> None:
    daemon = start_daemon(abstract_notify)
    ready = wait_ready(abstract_notify, daemon)
    assert ready.pid == daemon.pid
    abstract_notify.expect(has("WATCHDOG"), timeout_s=10.0, why="WATCHDOG=1")
    daemon.proc.send_signal(signal.SIGTERM)
    stopping = abstract_notify.expect(has("STOPPING"), why="STOPPING=1")
    assert stopping.pid == daemon.pid
    assert daemon.proc.wait(timeout=60) == 0, daemon.log()
    assert "stopped;" in daemon.log()


def test_watchdog_pid_naming_the_daemon_itself_pings(notify: NotifySocket,
                                                     start_daemon: StartDaemon) -> None:
    daemon = start_daemon(notify, shell_prefix="WATCHDOG_PID=$$ export WATCHDOG_PID;")
    wait_ready(notify, daemon)
    beat = notify.expect(has("WATCHDOG"), timeout_s=10.0, why="WATCHDOG=1")
    assert beat.pid == daemon.pid
    daemon.stop()


def test_watchdog_pid_naming_another_process_gives_no_pings(notify: NotifySocket,
                                                            start_daemon: StartDaemon) -> None:
    daemon = start_daemon(notify, WATCHDOG_PID=str(os.getpid()))
    wait_ready(notify, daemon)
    daemon.drop("song.mp3")  # a busy main loop, still no pings: they are meant for another pid
    window = notify.collect(5.0)
    assert pings(window) == []
    daemon.wait_analysed(1)
    assert pings(notify.received) == [], "not one ping from start to end"
    daemon.stop()


def test_reload_sends_reloading_then_ready_and_survives_a_bad_config(
        notify: NotifySocket, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(notify)
    wait_ready(notify, daemon)

    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    daemon.proc.send_signal(signal.SIGHUP)
    reloading = notify.expect(has("RELOADING"), why="RELOADING=1")
    after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before_us <= int(reloading.fields["MONOTONIC_USEC"]) <= after_us
    assert reloading.pid == daemon.pid
    notify.expect(has("READY"), why="READY=1 after the reload")
    daemon.wait_for_event("reloaded", timeout_s=10.0)

    daemon.library.write_config("[library]\npaths = 5\n[wat]\n")
    daemon.proc.send_signal(signal.SIGHUP)
    notify.expect(has("RELOADING"), why="RELOADING=1 on a bad config")
    notify.expect(has("READY"), why="READY=1 after a failed reload")
    assert daemon.proc.poll() is None
    assert "keeping the old configuration" in daemon.log()

    daemon.drop("after-reload.mp3")  # still working, with the old configuration
    daemon.wait_analysed(1)
    daemon.proc.send_signal(signal.SIGTERM)
    notify.expect(has("STOPPING"), why="STOPPING=1")
    assert daemon.proc.wait(timeout=60) == 0, daemon.log()


def _environ(process: psutil.Process) -> dict[str, str]:
    raw = Path(f"/proc/{process.pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_zygote_and_children_cannot_notify(notify: NotifySocket, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(notify)
    wait_ready(notify, daemon)
    assert "NOTIFY_SOCKET" in _environ(psutil.Process(daemon.pid))
    zygote = daemon.zygote()
    zygote_env = _environ(zygote)
    assert [k for k in _PRIVATE if k in zygote_env] == []

    daemon.drop("slow.mp3")  # the test analyser takes two seconds over it: time to look
    deadline = time.monotonic() + START_TIMEOUT_S
    children: list[psutil.Process] = []
    while not children:
        assert time.monotonic() < deadline, f"no analysis child appeared:\n{daemon.log()}"
        children = zygote.children()
        time.sleep(0.02)
    child_env = _environ(children[0])
    assert [k for k in _PRIVATE if k in child_env] == []
    assert child_env.get("OPENBLAS_NUM_THREADS") == "1"
    daemon.wait_analysed(1)
    assert {n.pid for n in notify.received} == {daemon.pid}
    daemon.stop()


def test_watchdog_keeps_pinging_while_another_process_holds_the_database(
        notify: NotifySocket, start_daemon: StartDaemon) -> None:
    """Another writer holds the database (issue 13: it used to silence the watchdog, and systemd
    restarted the daemon into StartLimitBurst): the loop waits alive, says who holds the lock."""
    daemon = start_daemon(notify)
    wait_ready(notify, daemon)
    notify.expect(has("WATCHDOG"), timeout_s=10.0, why="WATCHDOG=1 before the lock")
    other = sqlite3.connect(daemon.library.db, isolation_level=None, timeout=30)
    try:
        other.execute("BEGIN IMMEDIATE")  # what an admin's sqlite3 shell in a transaction holds
        # a file moved in is a rename in the database, or queued once settled: a write, which waits
        daemon.drop("song.mp3")
        note = notify.expect(lambda n: "database locked by" in n.fields.get("STATUS", ""), 30.0,
                             "a STATUS naming the lock's holder")
        assert f"database locked by pid {os.getpid()}" in note.fields["STATUS"]
        assert len(pings(notify.collect(6.0))) >= 2, "WATCHDOG=1 goes on while the lock is held"
        assert daemon.proc.poll() is None
    finally:
        other.execute("COMMIT")
        other.close()
    notify.expect(has("WATCHDOG"), timeout_s=20.0, why="WATCHDOG=1 after the lock is released")
    daemon.wait_analysed(1)
    assert daemon.stop() == 0
