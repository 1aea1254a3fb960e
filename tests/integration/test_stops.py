"""A stop at any moment of start-up: exit 0, no traceback from any process, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

REAL_ANALYSER = "tunescout.analysis:analyse_file"
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def _catches_sigterm(pid: int) -> bool:
    """True once the process has a SIGTERM handler (its first Python line ran)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & SIGTERM_BIT)
    except FileNotFoundError:
        pass
    return False


def _tagged(tag: str) -> list[int]:
    """Return the pids of processes whose environment carries `tag` (the daemon's descendants)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if f"TUNESCOUT_TEST_TAG={tag}".encode() in fh.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 3.5, 6.0])
def test_sigterm_during_start_up_is_a_clean_stop(library: Any, delay_s: float) -> None:
    (library.music / "a.flac").write_bytes(os.urandom(3000))
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "TUNESCOUT_CONFIG")}
    env.update(TUNESCOUT_TEST_TAG=tag)
    config = library.config.read_text()
    assert '"support.analysers:by_name"' in config  # stop the real analysis stack, mid-import too
    library.config.write_text(config.replace('"support.analysers:by_name"', f'"{REAL_ANALYSER}"'))
    proc = subprocess.Popen([sys.executable, "-m", "tunescout", "--config", str(library.config), "run",
                             "--log-target", "stderr"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not _catches_sigterm(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "the command never started"
            time.sleep(0.002)
        time.sleep(delay_s)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "Error" not in text, text
    deadline = time.monotonic() + 10
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], f"processes left behind after the stop: {left}"




@pytest.mark.parametrize("delay_s", [0.0, 0.1, 0.5, 2.0])
def test_a_reload_during_start_up_is_neither_fatal_nor_lost(library: Any, delay_s: float) -> None:
    """SIGHUP (systemctl reload, a config tool) while the daemon starts: it keeps running and
    reloads once, whether the signal came before or after its own handlers were in place."""
    from support.daemon import Daemon

    daemon = Daemon(library)
    deadline = time.monotonic() + 30
    while not _catches_sigterm(daemon.pid):  # the entry point's first line, long before the daemon's
        assert daemon.proc.poll() is None and time.monotonic() < deadline, daemon.log()
        time.sleep(0.002)
    time.sleep(delay_s)
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_for_event("reloaded")
    daemon.wait_for_event("started")
    assert daemon.proc.poll() is None, daemon.log()
    assert daemon.stop() == 0, daemon.log()
    assert len(daemon.events("reloaded")) == 1, daemon.log()
    assert "Traceback" not in daemon.log(), daemon.log()
