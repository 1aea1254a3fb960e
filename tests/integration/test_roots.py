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
    """A folder that held analysed files (an unmounted disk) is waited for."""
    library = Library(tmp_path, library={"poll_interval": "0.5 s"})
    (library.music / "w.flac").write_bytes(os.urandom(3000))
    library.cli("scan", str(library.music))
    shutil.rmtree(library.music)
    daemon = start_daemon(library)
    daemon.wait_log("does not exist or is not a folder")
    library.music.mkdir()
    daemon.wait_for_event("root_returned", TRACK_PATH=library.music, timeout_s=30)
    (library.music / "x.flac").write_bytes(os.urandom(3000))
    wait_for(lambda: _status(library).get("analysed") == 1, 60, what="a file in the returned folder")
    wait_for(lambda: _shown_state(library, library.music / "x.flac") == "analysed", 60,
             what="x.flac analysed (not only w.flac's old row)")
    assert daemon.stop() == 0


def _shown_state(library: Library, path: Path) -> str | None:
    proc = library.cli("show", str(path), "--json", check=False)
    return json.loads(proc.stdout).get("state") if proc.returncode == 0 else None


def test_a_root_that_never_existed_is_an_error_at_start(tmp_path: Path) -> None:
    """A typo in library.paths, or a default ~/Music that is not there, is said at once."""
    library = Library(tmp_path)
    shutil.rmtree(library.music)
    proc = library.cli("run", "--log-target", "stderr", check=False, timeout=60)
    assert proc.returncode == 2
    assert f"library.paths: {library.music} does not exist".encode() in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_files_of_formats_left_out_are_counted(tmp_path: Path, start_daemon) -> None:
    library = Library(tmp_path)
    (library.music / "album").mkdir()
    for name in ("a.xm", "b.xm", "album/c.mp2", "album/d.flac", "cover.jpg"):
        (library.music / name).write_bytes(os.urandom(3000))
    (library.music / "tricky.mod").mkdir()  # a folder with an audio-like name is walked, not counted
    (library.music / "tricky.mod" / "e.flac").write_bytes(os.urandom(3000))
    daemon = start_daemon(library)
    wait_for(lambda: _status(library).get("analysed") == 2, 60, what="the two FLAC files analysed")
    wait_for(lambda: _status(library)["daemon"].get("unanalysed"), 30, what="the count in status")
    assert _status(library)["daemon"]["unanalysed"] == {".xm": 2, ".mp2": 1}
    text = library.cli("status").stdout
    assert b"left out (formats not in library.extensions): .xm 2, .mp2 1" in text
    daemon.wait_log("left out 3 files of formats not in library.extensions: .xm 2, .mp2 1")
    assert daemon.stop() == 0
