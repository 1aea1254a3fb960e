"""A real zygote whose daemon goes away: it exits quietly (status 0, nothing on stderr).

A daemon stopped 0.4-1.2 s after its start closed the control socket while the zygote was still
warming up, and the zygote printed a BrokenPipeError traceback as it sent "ready" (issue 13).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.processes import daemon_env, wait_for
from support.slow_warmup import WARMUP_S
from tunescout import protocol
from tunescout.workers.zygote_client import ZygoteHandle

Start = Callable[[Path], tuple[ZygoteHandle, Path]]


@pytest.fixture
def start() -> Iterator[Start]:
    """Start zygotes whose stderr goes to a file; kill any left running by a failed test."""
    handles: list[ZygoteHandle] = []

    def _start(tmp_path: Path) -> tuple[ZygoteHandle, Path]:
        err = tmp_path / "zygote.stderr"
        with err.open("wb") as fh:
            handle = ZygoteHandle("support.slow_warmup:analyse", daemon_env(), stderr=fh)
        handles.append(handle)
        return handle, err

    yield _start
    for handle in handles:
        if handle.proc.poll() is None:
            handle.proc.kill()
            handle.proc.wait()
        handle.sock.close()


def _wait_ready(handle: ZygoteHandle) -> None:
    seen: list[protocol.Report] = []

    def ready() -> bool:
        messages, gone = handle.receive()
        seen.extend(messages)
        assert not gone, "the zygote died"
        return any(isinstance(m, protocol.Ready) for m in seen)

    wait_for(ready, timeout_s=60, interval_s=0.02)


def _assert_quiet_exit(handle: ZygoteHandle, err: Path) -> None:
    assert handle.proc.wait(timeout=60) == 0
    assert err.read_text() == ""


@pytest.mark.parametrize("delay_s", [0.0, WARMUP_S / 2, WARMUP_S * 2])
def test_daemon_gone_during_or_after_warm_up(tmp_path: Path, start: Start, delay_s: float) -> None:
    handle, err = start(tmp_path)
    time.sleep(delay_s)
    handle.sock.close()
    _assert_quiet_exit(handle, err)


def test_daemon_gone_right_after_asking_for_a_child(tmp_path: Path, start: Start) -> None:
    """The spawn is read, the report of it ("spawned") finds nobody."""
    handle, err = start(tmp_path)
    _wait_ready(handle)
    song = tmp_path / "a-hang.mp3"
    song.write_bytes(os.urandom(100))
    read_fd = handle.spawn("b-1", [song], 512 * 2**20, 60)
    handle.sock.close()
    _assert_quiet_exit(handle, err)
    os.close(read_fd)


def test_daemon_gone_while_a_child_runs(tmp_path: Path, start: Start) -> None:
    """The zygote kills its children and leaves; the child's exit is reported to nobody."""
    handle, err = start(tmp_path)
    _wait_ready(handle)
    song = tmp_path / "a-slow.mp3"
    song.write_bytes(os.urandom(100))
    read_fd = handle.spawn("b-1", [song], 512 * 2**20, 60)
    wait_for(lambda: any(isinstance(m, protocol.Spawned) for m in handle.receive()[0]),
             timeout_s=30, interval_s=0.02)
    handle.sock.close()
    _assert_quiet_exit(handle, err)
    os.set_blocking(read_fd, True)
    while os.read(read_fd, 65536):
        pass  # the pipe ends: the child is gone with its zygote
    os.close(read_fd)
