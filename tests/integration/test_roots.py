"""A library folder that goes away (an unmounted disk) and comes back: nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from support.daemon import Library
from support.processes import wait_for


def _status(library: Library) -> dict:
    proc = library.cli("status", "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def test_root_vanishing_keeps_the_database_and_resumes(tmp_path: Path, start_daemon) -> None:
    library = Library(tmp_path, library={"poll_interval": "0.5 s"})
    for name in ("a.flac", "b.flac"):
        (library.music / name).write_bytes(os.urandom(3000))
    daemon = start_daemon(library)
    wait_for(lambda: _status(library).get("analysed") == 2, 60, what="two files analysed")

    parked = tmp_path / "parked"
    shutil.move(library.music, parked)  # as if the disk were unmounted
    daemon.wait_log(f"library folder {library.music} went away", timeout_s=30)
    assert _status(library)["files"] == 2  # nothing deleted

    (parked / "c.flac").write_bytes(os.urandom(3000))  # added while away
    shutil.move(parked, library.music)
    daemon.wait_for_event("root_returned", TRACK_PATH=library.music, timeout_s=30)
    wait_for(lambda: _status(library).get("analysed") == 3, 60, what="the new file analysed")
    (library.music / "d.flac").write_bytes(os.urandom(3000))  # watched again
    wait_for(lambda: _status(library).get("analysed") == 4, 60, what="a file added after the return")
    assert daemon.stop() == 0


def test_missing_root_at_start_is_waited_for(tmp_path: Path, start_daemon) -> None:
    library = Library(tmp_path, library={"poll_interval": "0.5 s"})
    shutil.rmtree(library.music)
    daemon = start_daemon(library)
    daemon.wait_log("does not exist or is not a folder")
    library.music.mkdir()
    daemon.wait_for_event("root_returned", TRACK_PATH=library.music, timeout_s=30)
    (library.music / "x.flac").write_bytes(os.urandom(3000))
    wait_for(lambda: _status(library).get("analysed") == 1, 60, what="a file in the returned folder")
    assert daemon.stop() == 0
