from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tunescout.library.intake import Settler, is_candidate
from tunescout.models import AUDIO_EXTENSIONS


@pytest.mark.parametrize("name", ["a.mp3.part", "x.tmp", ".~lock.a.flac#", ".song.flac.Ab12Cd",
                                  "dl.mp3.crdownload"])
def test_temp_names(name: str) -> None:
    assert not is_candidate(Path("/m") / name, AUDIO_EXTENSIONS)


@pytest.mark.parametrize(("name", "audio"), [("a.MP3", True), ("b.flac", True), ("c.jpg", False),
                                             ("._d.mp3", False), ("e.opus", True), ("cue.cue", False)])
def test_candidates(name: str, audio: bool) -> None:
    assert is_candidate(Path("/m") / name, AUDIO_EXTENSIONS) is audio


def _set_mtime(path: Path, wall: float) -> None:
    os.utime(path, ns=(int(wall * 1e9), int(wall * 1e9)))


def test_settles_after_quiet_period(tmp_path: Path) -> None:
    settler = Settler(settle_s=5)
    path = tmp_path / "a.flac"
    t0 = time.time()
    path.write_bytes(b"x" * 100)
    _set_mtime(path, t0)
    settler.touch(path, t0)
    assert settler.ready(t0 + 4.9) == []
    assert settler.next_due() == pytest.approx(t0 + 5)
    assert settler.ready(t0 + 5.0) == [path]
    assert len(settler) == 0


def test_growing_file_waits(tmp_path: Path) -> None:
    """A slow copy keeps writing: each write restarts the quiet period."""
    settler = Settler(settle_s=5)
    path = tmp_path / "slow.mp3"
    t0 = time.time()
    path.write_bytes(b"x" * 100)
    settler.touch(path, t0)
    for step in range(1, 6):  # a write every 3 s: never quiet for 5 s
        now = t0 + 3 * step
        with path.open("ab") as fh:
            fh.write(b"y" * 100)
        _set_mtime(path, now)
        settler.touch(path, now)
        assert settler.ready(now) == []
    assert settler.ready(t0 + 15 + 5) == [path]


def test_change_without_event_is_noticed(tmp_path: Path) -> None:
    """No event arrived (polling), but size and mtime moved: wait one more quiet period."""
    settler = Settler(settle_s=5)
    path = tmp_path / "a.ogg"
    t0 = time.time()
    path.write_bytes(b"x")
    settler.touch(path, t0 - 10)
    _set_mtime(path, t0)  # written just now
    assert settler.ready(t0) == []  # first look: recent mtime, remember size and mtime
    assert settler.ready(t0 + 4) == []
    assert settler.ready(t0 + 5) == [path]  # unchanged after a quiet period


def test_vanished_and_forgotten_files(tmp_path: Path) -> None:
    settler = Settler(settle_s=1)
    gone = tmp_path / "gone.mp3"
    settler.touch(gone, 0)
    kept = tmp_path / "d" / "x.mp3"
    settler.touch(kept, 0)
    settler.forget_under(tmp_path / "d")
    assert settler.ready(time.time() + 10) == []
    assert len(settler) == 0


def test_the_walk_agrees_with_the_watchers_name_check(tmp_path: Path) -> None:
    """The reconcile walk inlines is_candidate_name in its hot loop: the two must agree."""
    from tunescout.library.walk import walk_library

    names = ["a.mp3", "._a.mp3", ".~lock.flac", "~$x.wav", "a.jpg", ".flac", "b.FLAC",
             "c.mp3.part", ".c.mp3.Xy12Zq", "noext", "d.Opus", "e.mp3.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    walk = walk_library((tmp_path,), AUDIO_EXTENSIONS)
    found = sorted(os.fsdecode(p).rsplit("/", 1)[1] for p in walk.files)
    assert found == sorted(n for n in names if is_candidate(tmp_path / n, AUDIO_EXTENSIONS))
    assert found == ["a.mp3", "b.FLAC", "d.Opus"]
