"""The reconcile with folder fingerprints: real files, a real SQLite database, the daemon's Library.

A folder whose walk matches the fingerprint stored at the last agreeing reconcile costs no row
loads; every other folder is compared file by file; any write to a folder's rows forgets its
fingerprint; a table that does not add up falls back to loading every row.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from support.processes import run_as_nobody
from tunescout.config import Config, parse_config
from tunescout.library.changes import Library
from tunescout.library.walk import Walk, fingerprint, walk_library
from tunescout.models import FileIdentity, TrackAnalysis
from tunescout.store.writer import StoreWriter


def _write(path: Path, data: bytes = b"audio") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - 3600  # long settled
    os.utime(path, (old, old))
    return path


def _analysed(store: StoreWriter, path: Path) -> None:
    """Record a file as the daemon does after analysing it."""
    identity = FileIdentity.from_stat(os.stat(path))
    store.record_analysis(path, identity, TrackAnalysis(digest=f"d{identity.ino}", duration_s=1.0,
                                                        tags={}))


class Setup:
    def __init__(self, root: Path) -> None:
        self.music = root / "music"
        self.music.mkdir()
        self.config: Config = parse_config(
            {"library": {"paths": [str(self.music)]}, "store": {"path": str(root / "t.db")}},
            env={})
        self.store = StoreWriter.open(root / "t.db")
        self.library = Library(self.config, self.store)

    def reconcile(self, caplog: pytest.LogCaptureFixture) -> tuple[Walk, dict[str, Any]]:
        """Do what the daemon does at every rescan; return the walk and the logged figures."""
        caplog.clear()
        walk = walk_library(self.config.library.paths, self.config.library.extensions,
                            self.store.folder_fingerprints())
        with caplog.at_level(logging.INFO, logger="tunescout"):
            self.library.reconcile(walk, time.time())
        [record] = [r for r in caplog.records if getattr(r, "EVENT", None) == "reconciled"]
        return walk, {k: getattr(record, k) for k in ("FILES", "NEW", "CHANGED", "MOVED", "REMOVED")}

    def queued(self) -> list[str]:
        return sorted(os.path.relpath(os.fsdecode(p), self.music) for p in self.store.queued_paths())

    def fingerprint_of(self, folder: Path) -> bytes | None:
        return self.store.folders().get(os.fsencode(folder), (0, None))[1]


@pytest.fixture
def lib(tmp_path: Path) -> Setup:
    setup = Setup(tmp_path)
    for album in "ABCDEFG":
        for n in range(3):
            _analysed(setup.store, _write(setup.music / "artist" / album / f"{n}.flac", b"x" * n))
    return setup


def _rel(setup: Setup, folders: dict[bytes, bytes]) -> list[str]:
    return sorted(os.path.relpath(os.fsdecode(f), setup.music) for f in folders)


def test_unchanged_folders_are_vouched_for_by_their_fingerprint(lib: Setup, caplog) -> None:
    walk, figures = lib.reconcile(caplog)  # the first one compares every file and stores prints
    assert figures == {"FILES": 21, "NEW": 0, "CHANGED": 0, "MOVED": 0, "REMOVED": 0}
    assert len(walk.dirty) == 7 and len(walk.files) == 21
    for album in "ABCDEFG":
        assert lib.fingerprint_of(lib.music / "artist" / album) is not None
    walk, figures = lib.reconcile(caplog)
    assert figures == {"FILES": 21, "NEW": 0, "CHANGED": 0, "MOVED": 0, "REMOVED": 0}
    assert walk.files == {} and walk.dirty == {}  # not one row compared
    assert len(walk.matched) == 7


def test_changes_while_down_are_found_in_their_folders(lib: Setup, caplog) -> None:
    lib.reconcile(caplog)
    artist = lib.music / "artist"
    _write(artist / "A" / "0.flac", b"re-encoded")  # changed
    _write(artist / "B" / "new.flac")  # new
    (artist / "C" / "0.flac").unlink()  # deleted
    d = artist / "D"  # two names swapped: each name now has the other file
    os.rename(d / "1.flac", d / "tmp")
    os.rename(d / "2.flac", d / "1.flac")
    os.rename(d / "tmp", d / "2.flac")
    shutil.rmtree(artist / "E")  # a whole album deleted
    (artist / "G2").mkdir()
    os.rename(artist / "F" / "1.flac", artist / "G2" / "1.flac")  # moved into a new folder
    walk, figures = lib.reconcile(caplog)
    assert figures == {"FILES": 18, "NEW": 1, "CHANGED": 3, "MOVED": 1, "REMOVED": 4}
    assert _rel(lib, walk.dirty) == ["artist/A", "artist/B", "artist/C", "artist/D", "artist/F",
                                     "artist/G2"]
    assert _rel(lib, walk.matched) == ["artist/G"]
    assert lib.queued() == ["artist/A/0.flac", "artist/B/new.flac", "artist/D/1.flac",
                            "artist/D/2.flac"]
    assert lib.store.file_identity(artist / "G2" / "1.flac") is not None  # the row followed
    assert lib.store.file_identity(artist / "E" / "0.flac") is None
    assert os.fsencode(artist / "E") not in lib.store.folders()  # no row for a gone folder
    # the folders that only lost or gained rows agree again and got their fingerprint back
    assert lib.fingerprint_of(artist / "C") is not None
    assert lib.fingerprint_of(artist / "F") is not None
    assert lib.fingerprint_of(artist / "A") is None  # waits for the analysis of its file


def test_every_write_to_a_folders_rows_forgets_its_fingerprint(lib: Setup, caplog) -> None:
    lib.reconcile(caplog)
    artist = lib.music / "artist"
    store = lib.store
    _analysed(store, artist / "A" / "0.flac")
    store.record_failure(artist / "B" / "0.flac", FileIdentity.from_stat(os.stat(artist / "B" / "0.flac")),
                         "decode", "bad", quarantine=False)
    store.remove_files([artist / "C" / "0.flac"])
    store.rename(artist / "D" / "0.flac", artist / "D" / "zero.flac", tree=False)
    store.rename(artist / "E", artist / "E2", tree=True)
    store.retry([artist / "B" / "0.flac"])
    store.remove_tree(artist / "F")
    for album in "ABCD":
        assert lib.fingerprint_of(artist / album) is None, album
    assert lib.fingerprint_of(artist / "G") is not None
    folders = store.folders()
    assert os.fsencode(artist / "E") not in folders and folders[os.fsencode(artist / "E2")][1] is None
    assert os.fsencode(artist / "F") not in folders


def test_a_row_written_during_the_walk_sends_its_folder_to_a_second_look(lib: Setup, caplog) -> None:
    """The walk runs in a thread while the main loop applies watcher events to the database."""
    lib.reconcile(caplog)
    album = lib.music / "artist" / "A"
    walk = walk_library(lib.config.library.paths, lib.config.library.extensions,
                        lib.store.folder_fingerprints())
    assert os.fsencode(album) in walk.matched
    (album / "0.flac").unlink()  # the watcher's delete, applied while the walk finishes
    lib.store.remove_files([album / "0.flac"])
    with caplog.at_level(logging.INFO, logger="tunescout"):
        lib.library.reconcile(walk, time.time())
    assert os.fsencode(album) in walk.dirty
    listing = [(p.name, *FileIdentity.from_stat(p.stat())) for p in album.iterdir()]
    assert lib.fingerprint_of(album) == fingerprint(listing)
    walk, figures = lib.reconcile(caplog)
    assert figures["FILES"] == 20 and figures["REMOVED"] == 0 and walk.dirty == {}


def test_rows_the_fingerprints_do_not_account_for_are_still_compared(lib: Setup, caplog) -> None:
    lib.reconcile(caplog)
    artist = lib.music / "artist"
    conn = sqlite3.connect(lib.store.path)
    with conn:  # a folder row lost (an older tunescout, a hand edit) and its folder deleted
        conn.execute("DELETE FROM folders WHERE path = ?", (os.fsencode(artist / "E"),))
    shutil.rmtree(artist / "E")
    walk, figures = lib.reconcile(caplog)
    assert figures["REMOVED"] == 3 and figures["FILES"] == 18
    assert "fingerprints disagree" not in caplog.text
    with conn:  # a row slipped into a vouched-for folder by hand: the counts no longer add up
        conn.execute("INSERT INTO files (path, dev, ino, size, mtime_ns, state, first_seen) "
                     "VALUES (?, 1, 2, 3, 4, 'analysed', 0)", (os.fsencode(artist / "G" / "ghost.flac"),))
    conn.close()
    walk, figures = lib.reconcile(caplog)
    assert "folder fingerprints disagree with the files table" in caplog.text
    walk, figures = lib.reconcile(caplog)  # every file compared: the ghost is found and removed
    assert figures["REMOVED"] == 1 and lib.store.file_identity(artist / "G" / "ghost.flac") is None
    walk, figures = lib.reconcile(caplog)
    assert walk.dirty == {} and figures["FILES"] == 18


def test_a_missing_root_keeps_its_rows_and_fingerprints(lib: Setup, caplog) -> None:
    lib.reconcile(caplog)
    lib.music.rename(lib.music.with_name("unmounted"))
    walk, figures = lib.reconcile(caplog)
    assert figures["FILES"] == 0 and figures["REMOVED"] == 0
    assert len(lib.store.identities()) == 21
    lib.music.with_name("unmounted").rename(lib.music)
    walk, figures = lib.reconcile(caplog)
    assert figures["FILES"] == 21 and walk.dirty == {}


def test_symlinked_folders_are_walked_once(tmp_path: Path) -> None:
    music, outside = tmp_path / "music", tmp_path / "outside"
    _write(music / "A" / "1.flac")
    _write(outside / "B" / "2.flac")
    os.symlink(outside, music / "linked")  # a folder kept elsewhere: walked through the link
    os.symlink(music / "A", music / "A again")  # inside the library: walked at its real path
    os.symlink(tmp_path, outside / "B" / "up")  # an ancestor of the library: a loop
    walk = walk_library((music,), frozenset({".flac"}))
    assert sorted(os.path.relpath(os.fsdecode(p), music) for p in walk.files) == [
        "A/1.flac", "linked/B/2.flac"]


def test_an_unreadable_folder_keeps_its_rows_and_the_counts_add_up(tmp_path: Path) -> None:
    """As an unprivileged user (root reads everything): lost+found and the like."""
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to hand the files to an unprivileged uid")
    base = Path(tempfile.mkdtemp(prefix="tunescout-perm-"))
    try:
        music = base / "music"
        for name in ("ok/a.flac", "ok/b.flac", "locked/c.flac", "locked/deeper/d.flac"):
            _write(music / name)
        for path in [base, *base.rglob("*")]:
            os.chown(path, 65534, 65534)
        code = (
            "import logging, os, sys, time\n"
            "from pathlib import Path\n"
            "from tunescout.config import parse_config\n"
            "from tunescout.library.changes import Library\n"
            "from tunescout.models import FileIdentity, TrackAnalysis\n"
            "from tunescout.library.walk import walk_library\n"
            "from tunescout.store.writer import StoreWriter\n"
            "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
            "base = Path(sys.argv[1]); music = base / 'music'\n"
            "config = parse_config({'library': {'paths': [str(music)]},\n"
            "                       'store': {'path': str(base / 't.db')}}, env={})\n"
            "store = StoreWriter.open(base / 't.db')\n"
            "for p in sorted(music.rglob('*.flac')):\n"
            "    i = FileIdentity.from_stat(p.stat())\n"
            "    store.record_analysis(p, i, TrackAnalysis(digest=str(i.ino), duration_s=1.0, tags={}))\n"
            "(music / 'locked').chmod(0o000)\n"
            "library = Library(config, store)\n"
            "told = set()\n"
            "for _ in range(2):\n"
            "    walk = walk_library(config.library.paths, config.library.extensions,\n"
            "                        store.folder_fingerprints(), told)\n"
            "    library.reconcile(walk, time.time())\n"
            "print(len(store.identities()))\n"
        )
        proc = run_as_nobody(code, str(base), home=base)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "4"  # the rows under the locked folder are kept
        lines = proc.stderr.splitlines()
        # one warning, not one every rescan (the second walk says it at debug level)
        assert lines.count(f"skipping folder {music / 'locked'}: Permission denied") == 1
        assert [line for line in lines if line.startswith("reconciled")] == [
            "reconciled 2 files: 0 new, 0 changed, 0 moved, 0 removed, 2 unchanged"] * 2
        assert "disagree" not in proc.stderr
    finally:
        (base / "music" / "locked").chmod(0o755)
        shutil.rmtree(base)
