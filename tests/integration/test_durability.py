"""Memory pressure and kill -9: real daemons, real children, a real memory hog."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

from support.daemon import Library
from support.processes import wait_for

GiB = 2**30


def _status(library: Library) -> dict:
    proc = library.cli("status", "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def _files(library: Library, names: list[str]) -> None:
    for name in names:
        (library.music / name).write_bytes(os.urandom(2000))


def test_memory_pressure_pauses_then_resumes(tmp_path: Path, start_daemon) -> None:
    baseline = psutil.virtual_memory().available
    library = Library(tmp_path, workers={"max_workers": 1, "batch_size": 1},
                      memory={"min_available": int(baseline - 1.5 * GiB),
                              "pause_above_percent": 99, "resume_below_percent": 98})
    _files(library, [f"slow-{i:02d}.mp3" for i in range(12)])
    daemon = start_daemon(library)
    daemon.wait_for_event("analysed")
    # a hog bounded in size (3 GiB, touched) and in time (60 s, or until we close its stdin)
    hog = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, select, numpy\n"
         "a = numpy.ones(3 << 30, dtype=numpy.uint8)\n"
         "print('holding', flush=True)\n"
         "select.select([sys.stdin], [], [], 60)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert hog.stdout is not None and hog.stdout.readline() == b"holding\n"
        daemon.wait_for_event("paused", timeout_s=30)
        assert "pausing analysis: memory: " in daemon.log()
        paused = wait_for(lambda: _status(library).get("daemon", {}).get("state") == "paused"
                          and _status(library), 30, what="status to say paused")
        assert "available" in paused["daemon"]["paused_reason"]
        queued_while_paused = paused["queued"]
        time.sleep(3)  # nothing new starts while paused
        assert _status(library)["queued"] >= queued_while_paused - 1  # at most the running child
    finally:
        assert hog.stdin is not None
        hog.stdin.close()
        hog.wait(timeout=30)
        assert hog.stdout is not None
        hog.stdout.close()
    daemon.wait_for_event("resumed", timeout_s=30)
    wait_for(lambda: _status(library).get("analysed") == 12, 120, what="all 12 analysed")
    assert daemon.stop() == 0


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_kill_9_during_backfill_loses_nothing(tmp_path: Path, start_daemon) -> None:
    library = Library(tmp_path, workers={"max_workers": 2, "batch_size": 2})
    names = [f"slow-{i:02d}.flac" for i in range(10)]
    _files(library, names)
    daemon = start_daemon(library)
    daemon.wait_for_event("analysed", count=3)
    # the zygote and at least one analysis child under it
    family = wait_for(lambda: len(_descendants(daemon.proc.pid)) >= 2 and _descendants(daemon.proc.pid),
                      30, what="analysis children running")
    daemon.proc.kill()  # kill -9: no handler runs
    daemon.stop()
    # the zygote and its children die with the daemon (parent-death signals): no orphans
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family),
             15, what="the zygote and children to die with the daemon")
    first = daemon

    conn = sqlite3.connect(f"file:{library.db}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    daemon = start_daemon(library)
    wait_for(lambda: _status(library).get("analysed") == 10 and _status(library).get("queued") == 0,
             120, what="all ten analysed after the restart")
    assert daemon.stop() == 0
    counts = {name: sum(len(d.events("analysed", TRACK_PATH=library.music / name)) for d in (first, daemon))
              for name in names}
    assert all(n >= 1 for n in counts.values()), counts
    # only files in flight at the kill (one per child) may have been analysed twice
    assert sum(counts.values()) <= len(names) + 2, counts
