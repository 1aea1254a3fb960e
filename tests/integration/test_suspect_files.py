"""Files that decode only in part: a kind in the database, a count in `status`, a listing in
`failures --warnings`, and a flag the playlists read (a real `tunescout scan`, real files)."""

from __future__ import annotations

from pathlib import Path

from support.audio import write_damaged, write_track, write_truncated
from support.daemon import Library
from tunescout.config import DEFAULT_ANALYSER
from tunescout.store.reader import StoreReader


def test_truncated_and_corrupt_files_are_counted_listed_and_flagged(tmp_path: Path) -> None:
    library = Library(tmp_path, analyser=DEFAULT_ANALYSER)
    source = tmp_path / "source"
    source.mkdir()
    write_track(library.music / "whole.flac", seconds=8.0, kind="chords")
    write_truncated(write_track(source / "cut.mp3", seconds=8.0, kind="chords"),
                    library.music / "cut.mp3", 0.45)
    write_damaged(write_track(source / "bad.flac", seconds=8.0, kind="chords"),
                  library.music / "bad.flac")
    proc = library.cli("scan", str(library.music))
    assert proc.stdout.strip().splitlines()[0] == b"3 analysed, 0 failed, 0 not recorded"

    status = library.json("status")
    assert (status["analysed"], status["suspect"]) == (3, {"corrupt": 1, "truncated": 1})
    text = library.cli("status").stdout.decode()
    assert "suspect (decoded in part, left out of playlists): corrupt 1, truncated 1" in text

    listed = library.json("failures", "--warnings")
    assert [(Path(r["path"]).name, r["kind"]) for r in listed] == [
        ("bad.flac", "corrupt"), ("cut.mp3", "truncated")]
    assert all(r["warning"] and r["duration_s"] < 8.0 for r in listed)
    assert b"no failures" in library.cli("failures").stdout  # failures proper are apart
    lines = library.cli("failures", "--warnings").stdout.decode().splitlines()
    assert lines[0] == str(library.music / "bad.flac")
    assert lines[1].startswith("  corrupt, ") and "damaged frames dropped" in lines[1]

    shown = library.json("show", str(library.music / "cut.mp3"))
    assert shown["warning_kind"] == "truncated"
    store = StoreReader.open(library.db)
    try:
        flags = {t.path.name: (t.suspect, t.warning_kind) for t in store.playlist_tracks()}
    finally:
        store.close()
    assert flags == {"whole.flac": (False, None), "cut.mp3": (True, "truncated"),
                     "bad.flac": (True, "corrupt")}
