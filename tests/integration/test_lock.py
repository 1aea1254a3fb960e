"""One writer per database: the lock beside it, a second daemon, scan beside a daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tunescout.lock import DatabaseBusy, DatabaseLock, lock_path, read_holder

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tunescout.lock import DatabaseLock
    DatabaseLock(Path(sys.argv[1]), "run").acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


@contextlib.contextmanager
def _holder_process(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock (killed and reaped at the end)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_second_holder_is_told_who_holds_it(tmp_path: Path) -> None:
    db = tmp_path / "state" / "tunescout.db"
    with _holder_process(db) as proc:
        with pytest.raises(DatabaseBusy) as caught:
            DatabaseLock(db, "scan").acquire()
        assert caught.value.holder is not None and caught.value.holder.pid == proc.pid
        assert f"run (pid {proc.pid})" in str(caught.value)
        holder = read_holder(db)
        assert holder is not None and (holder.pid, holder.command) == (proc.pid, "run")


def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    """kill -9 leaves the file but no lock: the next daemon starts, nothing stale blocks it."""
    db = tmp_path / "tunescout.db"
    with _holder_process(db) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_path(db).exists() and read_holder(db) is None
    with DatabaseLock(db, "run"):
        holder = read_holder(db)
        assert holder is not None and holder.pid == os.getpid()
    assert read_holder(db) is None


def test_no_lock_file_means_nobody_holds_it(tmp_path: Path) -> None:
    assert read_holder(tmp_path / "never.db") is None


def test_a_second_daemon_exits_naming_the_first(library: Any, start_daemon: Callable[..., Any]) -> None:
    first = start_daemon(library)
    first.wait_log("running")
    second = library.cli("run", "--log-target", "stderr", check=False, timeout=60)
    assert second.returncode == 4
    assert f"tunescout run (pid {first.proc.pid}) is already using the database".encode() in second.stderr
    assert b"Traceback" not in second.stderr
    assert library.json("status")["daemon"]["state"] == "running"  # the first is untouched
    assert first.stop() == 0


def test_scan_beside_a_running_daemon_refuses(library: Any, start_daemon: Callable[..., Any]) -> None:
    (library.music / "a.flac").write_bytes(os.urandom(2000))
    daemon = start_daemon(library)
    daemon.wait_log("running")
    proc = library.cli("scan", str(library.music), check=False)
    assert proc.returncode == 4
    assert b"the daemon analyses the library itself" in proc.stderr
    assert f"(pid {daemon.proc.pid})".encode() in proc.stderr
    assert b"Traceback" not in proc.stderr + proc.stdout
    assert daemon.stop() == 0


def test_scan_outside_the_library_records_nothing(library: Any, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.flac").write_bytes(os.urandom(2000))
    proc = library.cli("scan", str(elsewhere / "b.flac"), check=False)
    assert proc.returncode == 2
    assert b"outside the library" in proc.stderr and b"library.paths" in proc.stderr
    assert not library.db.exists()  # nothing was opened, let alone recorded
