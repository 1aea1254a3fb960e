"""journald end to end: the real daemon logs structured fields that `journalctl` can filter on.

Needs a running journald (CI runs the suite under /work/shared/tools/journald-ns.sh, which starts
a private one); skips, saying so, where there is none. Each daemon logs under its own
SYSLOG_IDENTIFIER ($TUNESCOUT_LOG_IDENTIFIER), so `journalctl -t ID` reads only its lines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemon import Daemon, Library

JOURNAL_SOCKET = "/run/systemd/journal/socket"


def _journald_missing() -> str | None:
    """Return why journal tests cannot run here, or None when a journald answers."""
    if shutil.which("journalctl") is None:
        return "journalctl is not installed"
    if not os.path.exists(JOURNAL_SOCKET):
        return (f"no journald socket at {JOURNAL_SOCKET}; run the suite under "
                "/work/shared/tools/journald-ns.sh (as .ci/run does)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(JOURNAL_SOCKET)
    except OSError as exc:
        return f"{JOURNAL_SOCKET} exists but no journald listens on it ({exc.strerror})"
    finally:
        probe.close()
    return None


pytestmark = pytest.mark.skipif(_journald_missing() is not None,
                                reason=_journald_missing() or "journald present")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def start(tmp_path: Path, daemons: list[Daemon], *, config_log: str = '[log]\ntarget = "journal"',
          args: list[str] | None = None) -> Daemon:
    library = Library(tmp_path / f"daemon{len(daemons)}",
                      intake={"settle": "0.3 s", "rescan_interval": "1 h"})
    library.write_config(library.config.read_text() + config_log + "\n")
    daemon = Daemon(library, log_target=None, args=args or [],
                    identifier=f"tunescout-test-{uuid.uuid4().hex[:12]}")
    daemons.append(daemon)
    return daemon


def test_analysed_and_failed_files_have_structured_fields(tmp_path: Path,
                                                          daemons: list[Daemon]) -> None:
    daemon = start(tmp_path, daemons)
    started = daemon.wait_for_journal("started")[0]
    assert started["SYSLOG_IDENTIFIER"] == daemon.identifier
    assert started["_PID"] == str(daemon.proc.pid)
    assert started["PRIORITY"] == "6"
    assert started["LOGGER"] == "tunescout.service"

    song = daemon.drop("song.mp3")
    broken = daemon.drop("fail.mp3")
    analysed = daemon.wait_for_journal("analysed")[0]
    failed = daemon.wait_for_journal("failed")[0]

    assert analysed["TRACK_PATH"] == str(song)
    assert analysed["MESSAGE"] == f"analysed {song}"
    assert analysed["PRIORITY"] == "6"
    assert re.fullmatch(rf"{daemon.proc.pid}-\d+", analysed["BATCH_ID"])
    child_pid = int(analysed["CHILD_PID"])
    assert child_pid > 0 and child_pid != daemon.proc.pid
    assert int(analysed["DURATION_MS"]) >= 0
    assert int(analysed["PEAK_RSS_KB"]) > 0
    assert "TEMPO_BPM" not in analysed, "a field without a value is left out, not sent as None"

    assert failed["TRACK_PATH"] == str(broken)
    assert failed["ERROR_KIND"] == "decode"
    assert failed["PRIORITY"] == "4"
    assert int(failed["CHILD_PID"]) > 0

    # what an admin types: a field match finds exactly the failure
    assert [e["TRACK_PATH"] for e in daemon.journal("EVENT=failed")] == [str(broken)]
    assert daemon.stop() == 0
    daemon.wait_for_journal("stopping")
    daemon.wait_for_journal("stopped")
    every = daemon.journal()
    assert {e["_PID"] for e in every} == {str(daemon.proc.pid)}, "only the daemon logs"
    nones = [(e.get("EVENT"), k) for e in every for k, v in e.items() if v == "None"]
    assert nones == []


def test_reload_keeps_logging_to_the_journal(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = start(tmp_path, daemons)
    daemon.wait_for_journal("started")
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_for_journal("reloaded")[0]
    assert reloaded["SYSLOG_IDENTIFIER"] == daemon.identifier

    daemon.library.write_config("[library]\npaths = 5\n")
    daemon.proc.send_signal(signal.SIGHUP)
    failed = daemon.wait_for_journal("reload_failed")[0]
    assert failed["PRIORITY"] == "3"
    assert "library.paths" in failed["MESSAGE"]
    song = daemon.drop("song.mp3")  # still working with the old configuration
    assert daemon.wait_for_journal("analysed")[0]["TRACK_PATH"] == str(song)
    assert daemon.stop() == 0


def test_reload_keeps_the_log_target_given_on_the_command_line(tmp_path: Path,
                                                               daemons: list[Daemon]) -> None:
    daemon = start(tmp_path, daemons, config_log="", args=["--log-target", "journal"])
    daemon.wait_for_journal("started")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_journal("reloaded", timeout_s=15.0)
    assert daemon.stop() == 0
