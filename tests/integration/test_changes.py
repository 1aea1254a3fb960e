"""Change detection on real inotify: complete files only, moves keep their analysis."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support.audio import write_tags, write_track
from support.daemon import Daemon, Library
from support.processes import wait_for


def _analysed(daemon: Daemon, path: Path) -> int:
    return len(daemon.events("analysed", TRACK_PATH=path))


def _show(library: Library, path: Path) -> dict:
    proc = library.cli("show", str(path), "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def _started(tmp_path: Path, start_daemon) -> tuple[Library, Daemon]:
    library = Library(tmp_path, intake={"settle": "1 s"})
    daemon = start_daemon(library)
    daemon.wait_for_event("reconciled")
    return library, daemon


def test_slow_copy_is_analysed_once_when_complete(tmp_path: Path, start_daemon) -> None:
    library, daemon = _started(tmp_path, start_daemon)
    path = library.music / "slow.flac"
    with path.open("wb") as fh:  # about 1 MB/s in small writes, for 3 s
        for _ in range(12):
            fh.write(os.urandom(80_000))
            fh.flush()
            time.sleep(0.25)
    wait_for(lambda: _analysed(daemon, path) == 1, 30, what="the copied file analysed")
    time.sleep(2)
    assert _analysed(daemon, path) == 1
    assert _show(library, path)["size_bytes"] == 12 * 80_000  # the complete file, not a prefix
    assert daemon.stop() == 0


def test_temp_names_are_ignored_until_renamed(tmp_path: Path, start_daemon) -> None:
    library, daemon = _started(tmp_path, start_daemon)
    for temp, final in (("a.flac.part", "a.flac"), (".b.flac.Xy12Zq", "b.flac"),
                        ("c.mp3.crdownload", "c.mp3")):
        (library.music / temp).write_bytes(os.urandom(5000))
        time.sleep(1.5)  # longer than settle: a temp name must still not be analysed
        assert daemon.events("analysed", TRACK_PATH=library.music / temp) == []
        os.rename(library.music / temp, library.music / final)
    for final in ("a.flac", "b.flac", "c.mp3"):
        daemon.wait_for_event("analysed", TRACK_PATH=library.music / final, timeout_s=30)
    assert "part" not in library.cli("status").stdout.decode()
    assert library.json("status")["files"] == 3
    assert daemon.stop() == 0


def test_moves_and_folder_renames_keep_the_analysis(tmp_path: Path, start_daemon) -> None:
    library, daemon = _started(tmp_path, start_daemon)
    album = library.music / "Album"
    album.mkdir()
    for name in ("1.flac", "2.flac"):
        (album / name).write_bytes(os.urandom(4000))
    single = library.music / "single.flac"
    single.write_bytes(os.urandom(4000))
    for path in (album / "1.flac", album / "2.flac", single):
        daemon.wait_for_event("analysed", TRACK_PATH=path, timeout_s=30)
    before = _show(library, album / "1.flac")

    os.rename(album, library.music / "Album (2020)")
    (library.music / "Singles").mkdir()
    os.rename(single, library.music / "Singles" / "single.flac")
    moved = library.music / "Album (2020)" / "1.flac"
    wait_for(lambda: _show(library, moved).get("digest") == before["digest"], 30,
             what="the renamed folder's files at their new paths")
    wait_for(lambda: _show(library, library.music / "Singles" / "single.flac"), 30,
             what="the moved file at its new path")
    time.sleep(2)  # settle + a margin: nothing is analysed again
    assert _show(library, moved)["analysed_at"] == before["analysed_at"]
    assert "analysed " + str(library.music / "Album (2020)") not in daemon.log()
    assert _analysed(daemon, library.music / "Singles" / "single.flac") == 0
    assert library.json("status")["files"] == 3
    assert daemon.stop() == 0


def test_delete_and_edit(tmp_path: Path, start_daemon) -> None:
    library, daemon = _started(tmp_path, start_daemon)
    doomed = library.music / "doomed.flac"
    edited = library.music / "edited.flac"
    doomed.write_bytes(os.urandom(3000))
    edited.write_bytes(os.urandom(3000))
    wait_for(lambda: _analysed(daemon, doomed) == 1 and _analysed(daemon, edited) == 1, 30,
             what="both analysed")
    doomed.unlink()
    with edited.open("ab") as fh:
        fh.write(b"more")
    wait_for(lambda: _analysed(daemon, edited) == 2, 30, what="the edited file analysed again")
    wait_for(lambda: library.json("status")["files"] == 1, 30, what="the deleted file forgotten")
    # an event without a change (a player opening the file for writing) costs nothing
    with edited.open("r+b"):
        pass
    time.sleep(2.5)
    assert _analysed(daemon, edited) == 2
    assert daemon.stop() == 0


def test_a_folder_copied_in_is_analysed(tmp_path: Path, start_daemon) -> None:
    library, daemon = _started(tmp_path, start_daemon)
    src = tmp_path / "incoming" / "Artist" / "Album"
    src.mkdir(parents=True)
    for i in range(4):
        (src / f"{i}.flac").write_bytes(os.urandom(3000))
    shutil.move(str(tmp_path / "incoming" / "Artist"), library.music / "Artist")
    wait_for(lambda: library.json("status")["analysed"] == 4, 30, what="the moved-in folder analysed")
    assert daemon.stop() == 0


def _complete(library: Library, daemon: Daemon, path: Path) -> None:
    """Wait until `path` is analysed, then check it was analysed once, from its final bytes."""
    wait_for(lambda: _analysed(daemon, path) >= 1, 30, what=f"{path.name} analysed")
    digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()  # analysers.py's
    assert _show(library, path)["digest"] == digest, f"{path.name} analysed before it was complete"


def test_an_album_copied_file_by_file_over_a_slow_link(tmp_path: Path, start_daemon) -> None:
    library, daemon = _started(tmp_path, start_daemon)
    album = library.music / "Slow Album"
    album.mkdir()
    tracks = [album / f"{n:02d} track.flac" for n in range(1, 5)]
    for path in tracks:  # ~1 MB/s: 64 KiB every 60 ms, one file after the other
        with path.open("wb") as fh:
            for _ in range(6):
                fh.write(os.urandom(65536))
                fh.flush()
                time.sleep(0.06)
    for path in tracks:
        _complete(library, daemon, path)
    time.sleep(2)  # settle + a margin: nothing is analysed twice
    assert [_analysed(daemon, p) for p in tracks] == [1, 1, 1, 1]
    assert daemon.stop() == 0


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_an_album_rsynced_in_at_1_mb_per_s(tmp_path: Path, start_daemon) -> None:
    """rsync writes `.NAME.XXXXXX` beside the target, renames it into place, then sets times."""
    library, daemon = _started(tmp_path, start_daemon)
    src = tmp_path / "nas" / "Rsynced Album"
    src.mkdir(parents=True)
    for n in range(1, 4):
        (src / f"{n:02d}.flac").write_bytes(os.urandom(400_000))
    subprocess.run(["rsync", "-a", "--bwlimit=1000", str(src), str(library.music)], check=True,
                   timeout=60)
    tracks = sorted((library.music / "Rsynced Album").iterdir())
    assert [p.name for p in tracks] == ["01.flac", "02.flac", "03.flac"]
    for path in tracks:
        _complete(library, daemon, path)
    time.sleep(2)
    assert [_analysed(daemon, p) for p in tracks] == [1, 1, 1]
    assert ".flac." not in daemon.log()  # no temp name was ever analysed or failed
    assert library.json("status")["files"] == 3
    assert daemon.stop() == 0


def test_a_beets_import_moves_files_in_then_writes_their_tags(tmp_path: Path, start_daemon) -> None:
    """`beet import -m`: each file is moved into its album folder, then tagged in place."""
    library, daemon = _started(tmp_path, start_daemon)
    staging = tmp_path / "downloads"
    staging.mkdir()
    sources = []
    for n in range(1, 4):
        sources.append(write_track(staging / f"track{n}.flac", seconds=1.0, freq_hz=300.0 + 100 * n))
    album = library.music / "Artist" / "Album"
    album.mkdir(parents=True)
    tracks = []
    for n, src in enumerate(sources, 1):
        dest = album / f"{n:02d} Title {n}.flac"
        os.rename(src, dest)
        time.sleep(0.2)
        write_tags(dest, {"artist": "Artist", "album": "Album", "title": f"Title {n}"})
        tracks.append(dest)
    for path in tracks:
        _complete(library, daemon, path)
    time.sleep(2)
    assert [_analysed(daemon, p) for p in tracks] == [1, 1, 1]
    assert daemon.stop() == 0


def test_polling_mode_by_configuration(tmp_path: Path, start_daemon) -> None:
    library = Library(tmp_path, library={"watch": "poll", "poll_interval": "0.5 s"},
                      intake={"settle": "0.5 s"})
    daemon = start_daemon(library)
    daemon.wait_for_event("watching", WATCH_MODE="poll")
    assert "by polling every 0.5 s (configured)" in daemon.log()
    path = library.music / "polled.flac"
    path.write_bytes(os.urandom(3000))
    wait_for(lambda: _analysed(daemon, path) == 1, 30, what="the file found by polling")
    (library.music / "polled.flac").rename(library.music / "renamed.flac")
    wait_for(lambda: _show(library, library.music / "renamed.flac"), 30, what="the rename seen")
    assert library.json("status")["daemon"]["status"].endswith("poll")
    assert daemon.stop() == 0


def test_symlinked_folders_are_watched_too(tmp_path: Path, start_daemon) -> None:
    """watchdog does not descend into symlinked folders: each followed one gets its own watch."""
    elsewhere = tmp_path / "second disk" / "Albums"
    elsewhere.mkdir(parents=True)
    (elsewhere / "old.flac").write_bytes(os.urandom(3000))
    library = Library(tmp_path, intake={"settle": "1 s", "rescan_interval": "1 h"})
    os.symlink(elsewhere, library.music / "More")
    daemon = start_daemon(library)
    daemon.wait_for_event("reconciled", FILES="1", NEW="1")
    daemon.wait_for_event("watching", TRACK_PATH=library.music / "More")
    wait_for(lambda: _analysed(daemon, library.music / "More" / "old.flac") == 1, 30,
             what="the file behind the symlink analysed")

    (elsewhere / "new.flac").write_bytes(os.urandom(3000))  # seen by the link's own watch
    wait_for(lambda: _analysed(daemon, library.music / "More" / "new.flac") == 1, 30,
             what="a file added behind the symlink analysed without a rescan")

    later = tmp_path / "third disk"
    later.mkdir()
    (later / "x.flac").write_bytes(os.urandom(3000))
    os.symlink(later, library.music / "Later")  # a link made while the daemon runs: a walk
    wait_for(lambda: _analysed(daemon, library.music / "Later" / "x.flac") == 1, 30,
             what="the files of a new symlinked folder analysed")
    (library.music / "More").unlink()  # the link removed: its files leave the library
    wait_for(lambda: library.json("status")["files"] == 1, 30, what="the unlinked files forgotten")
    assert daemon.events("watch_limit") == []  # the links' folders are watched: no false alarm
    assert daemon.stop() == 0


def test_a_reload_with_another_analyser_replaces_the_zygote(tmp_path: Path, start_daemon) -> None:
    """The running batch finishes on the old analyser; later files go to the new one."""
    import signal

    library = Library(tmp_path, intake={"settle": "1 s"}, log={"level": "debug"})
    daemon = start_daemon(library)
    daemon.wait_for_event("zygote_ready")
    (library.music / "slow one.flac").write_bytes(os.urandom(2000))  # 2 s in its child
    daemon.wait_log(": 1 files")  # the debug line of a batch starting
    text = library.config.read_text().replace('"support.analysers:by_name"', '"support.analysers:titled"')
    library.config.write_text(text)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_event("reloaded")
    daemon.wait_for_event("zygote_replacing")
    assert "the analysis zygote restarts when its 1 running batches finish" in daemon.log()
    daemon.wait_for_event("zygote_ready", count=2)  # a second zygote, on the new analyser
    (library.music / "after.flac").write_bytes(os.urandom(2000))
    wait_for(lambda: _analysed(daemon, library.music / "after.flac") == 1, 30, what="after.flac")
    assert _show(library, library.music / "after.flac")["tags"]["title"] == "titled after"
    shown = _show(library, library.music / "slow one.flac")
    assert shown["state"] == "analysed" and shown["tags"]["title"] == "slow one"  # the old one
    assert "quarantined" not in daemon.log() and "killed" not in daemon.log()
    assert daemon.stop() == 0


def test_a_file_changed_then_moved_before_it_settled_is_analysed_at_its_new_name(
        tmp_path: Path, start_daemon) -> None:
    """Found by bench/soak.py: the row followed the move with the old size and mtime, and the
    change, still settling under the old name, was forgotten."""
    library = Library(tmp_path, intake={"settle": "1 s"})
    (library.music / "sorted").mkdir()  # watched from the start: the rename is one move event
    daemon = start_daemon(library)
    daemon.wait_for_event("reconciled")
    path = library.drop("song.flac", os.urandom(6000))
    daemon.wait_for_event("analysed", TRACK_PATH=path)
    with path.open("ab") as fh:  # a tag editor saving, in place
        fh.write(os.urandom(500))
    moved = library.music / "sorted" / "song.flac"
    os.rename(path, moved)  # well within the 1 s settle
    daemon.wait_for_event("analysed", TRACK_PATH=moved, timeout_s=30)
    wait_for(lambda: _show(library, moved).get("size_bytes") == 6500, 30,
             what="the moved file's row with its new size")
    assert daemon.events("moved", TRACK_PATH=moved), daemon.log()
    assert _show(library, path) == {}
    assert daemon.stop() == 0


def test_a_file_deleted_just_before_its_folder_is_renamed_is_forgotten(
        tmp_path: Path, start_daemon) -> None:
    """Found by bench/soak.py: the deleted file's row followed the folder's rename and outlived
    the file, because it was to be forgotten under its old path."""
    library, daemon = _started(tmp_path, start_daemon)
    album = library.music / "album"
    album.mkdir()
    gone, kept = album / "gone.flac", album / "kept.flac"
    gone.write_bytes(os.urandom(5000))
    kept.write_bytes(os.urandom(6000))
    for path in (gone, kept):
        daemon.wait_for_event("analysed", TRACK_PATH=path)
    gone.unlink()
    os.rename(album, library.music / "renamed")  # before the deletion's grace period is over
    daemon.wait_for_event("removed", TRACK_PATH=library.music / "renamed" / "gone.flac")
    assert _show(library, library.music / "renamed" / "gone.flac") == {}
    assert _show(library, library.music / "renamed" / "kept.flac")["state"] == "analysed"
    assert daemon.stop() == 0
