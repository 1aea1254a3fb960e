"""A database that refuses writes for a while: a full disk, a lock held by another process.

The daemon stays up, says why (STATUS and the journal), keeps pinging the watchdog, loses no
result, blames no file, and goes on by itself when the database takes writes again. The full disk
is a small tmpfs mounted under the database in the daemon's own mount namespace (`unshare -m`);
the test reaches it through /proc/PID/root.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemon import Daemon, Library
from support.notify import NotifySocket, pings
from support.processes import daemon_env, wait_for

WATCHDOG_USEC = 8_000_000  # a write waits 2 s for a lock (WRITE_WAIT_S): pings every 4 s


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(f"@tunescout-test-{uuid.uuid4().hex}")
    yield sock
    sock.close()


def _in_namespace(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `tunescout ARGS` in the daemon's mount namespace (where the small disk is)."""
    return subprocess.run(["nsenter", f"--mount=/proc/{daemon.pid}/ns/mnt", "--", sys.executable, "-m",
                           "tunescout", "--config", str(daemon.library.config), *args],
                          capture_output=True, env=daemon_env(), timeout=60)


def _fill(path: Path) -> None:
    """Write zeros until the filesystem is full."""
    block = b"\0" * (64 << 10)
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_a_full_disk_pauses_analysis_and_resumes_by_itself(tmp_path: Path, notify: NotifySocket) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        pytest.skip("needs root, unshare and nsenter for a tmpfs in a private mount namespace")
    library = Library(tmp_path, intake={"settle": "0.3 s", "rescan_interval": "1 h"})
    state = library.db.parent
    state.mkdir(parents=True)
    mount = (f"exec unshare --mount --propagation private -- sh -c "
             f"'mount -t tmpfs -o size=3m tunescout-test {state} && exec \"$@\"'")  # $0: the word "exec"
    daemon = Daemon(library, notify=notify.address, shell_prefix=mount,
                    env={"WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        for i in range(3):
            daemon.drop(f"before{i}.flac")
        daemon.wait_for_event("analysed", 3)
        small_disk = Path(f"/proc/{daemon.pid}/root") / state.relative_to("/")
        _fill(small_disk / "filler")
        arrived = [daemon.drop(f"during{i:02d}.flac") for i in range(12)]
        note = notify.expect(lambda n: "disk full:" in n.fields.get("STATUS", ""), 60,
                             "saying the disk is full")
        assert f"disk full: {state} needs ~" in note.fields["STATUS"] and " MB" in note.fields["STATUS"]
        # it stays up and keeps the watchdog fed while it waits (systemd would restart it otherwise)
        assert len(pings(notify.collect(3 * WATCHDOG_USEC / 1e6))) >= 2
        assert daemon.proc.poll() is None
        (small_disk / "filler").unlink()
        daemon.wait_for_event("analysed", 15, timeout_s=120)  # every file that arrived meanwhile
        notify.expect(lambda n: "disk full" not in n.fields.get("STATUS", "disk full"), 30,
                      "a status without the full disk")
        status = _in_namespace(daemon, "status", "--json")
        assert status.returncode == 0, status.stderr
        counts = __import__("json").loads(status.stdout)
        assert (counts["analysed"], counts["failed"], counts["queued"]) == (15, 0, 0)
        log = daemon.log()
        for path in arrived:
            assert len(daemon.events("analysed", TRACK_PATH=path)) == 1, path  # once, none lost
        assert not daemon.events("failed") and not daemon.events("quarantined")
        assert "garbage" not in log and "protocol_error" not in log
        assert daemon.events("store_waiting") and daemon.events("store_resumed")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()


LOCK_S = 90.0  # longer than the watchdog interval many times over, as a stuck backup tool would


def test_a_database_locked_elsewhere_for_90_s(tmp_path: Path, notify: NotifySocket) -> None:
    library = Library(tmp_path, intake={"settle": "0.3 s", "rescan_interval": "1 h"})
    daemon = Daemon(library, notify=notify.address, env={"WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        daemon.drop("first.flac")
        daemon.wait_for_event("analysed", 1)
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3, sys, time\n"
             "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(float(sys.argv[2]))\n"
             "c.execute('COMMIT')", str(library.db), str(LOCK_S)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            started = time.monotonic()
            arrived = [daemon.drop(f"while{i}.flac") for i in range(4)]
            note = notify.expect(lambda n: "database locked by" in n.fields.get("STATUS", ""), 60,
                                 "saying who holds the lock")
            assert f"database locked by pid {holder.pid}" in note.fields["STATUS"]
            # pinging all along: no gap in the pings longer than the watchdog interval
            window = notify.collect(max(0.0, LOCK_S - 15 - (time.monotonic() - started)))
            times = [n.at for n in pings(window)]
            assert times and max(b - a for a, b in itertools.pairwise(times)) < WATCHDOG_USEC / 1e6
            assert daemon.proc.poll() is None
            assert holder.wait(timeout=LOCK_S + 30) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
            holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()
        daemon.wait_for_event("analysed", 5, timeout_s=90)
        for path in arrived:
            assert len(daemon.events("analysed", TRACK_PATH=path)) == 1, path
        assert not daemon.events("failed") and not daemon.events("quarantined")
        conn = sqlite3.connect(f"file:{library.db}?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
        wait_for(lambda: library.json("status")["analysed"] == 5, 30, what="five analysed")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log()
