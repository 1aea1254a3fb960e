"""radio/uris.py on real folders and symlinks: tunescout's paths to MPD's URIs and back."""

from __future__ import annotations

import os
from pathlib import Path

from tunescout.radio.uris import UriMap


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_the_library_is_the_music_directory(tmp_path: Path) -> None:
    music = tmp_path / "music"
    song = _touch(music / "Air" / "Moon Safari" / "01 La femme d'argent.flac")
    uris = UriMap(music, [music])
    assert uris.to_uri(song) == "Air/Moon Safari/01 La femme d'argent.flac"
    assert next(uris.candidates("Air/Moon Safari/01 La femme d'argent.flac")) == song


def test_a_library_folder_inside_the_music_directory(tmp_path: Path) -> None:
    music = tmp_path / "mpd"
    song = _touch(music / "flac" / "a" / "b.flac")
    uris = UriMap(music, [music / "flac"])
    assert uris.to_uri(song) == "flac/a/b.flac"
    assert song in list(uris.candidates("flac/a/b.flac"))


def test_several_library_paths_linked_into_the_music_directory(tmp_path: Path) -> None:
    """MPD follows symlinks in its music directory; the library names the link targets."""
    rock, jazz = tmp_path / "disk1" / "rock", tmp_path / "disk2" / "jazz"
    one, two = _touch(rock / "x.flac"), _touch(jazz / "sub" / "y.flac")
    music = tmp_path / "mpd"
    (music / "genres").mkdir(parents=True)
    (music / "rock").symlink_to(rock)
    (music / "genres" / "jazz").symlink_to(jazz)  # a second level is searched too
    uris = UriMap(music, [rock, jazz])
    assert uris.to_uri(one) == "rock/x.flac"
    assert uris.to_uri(two) == "genres/jazz/sub/y.flac"
    assert two in list(uris.candidates("genres/jazz/sub/y.flac"))
    assert one in list(uris.candidates("rock/x.flac"))


def test_a_symlinked_mount_point_on_either_side(tmp_path: Path) -> None:
    disk = tmp_path / "mnt" / "disk" / "music"
    song = _touch(disk / "a.flac")
    srv = tmp_path / "srv-music"
    srv.symlink_to(disk)
    # the library through the link, MPD on the real folder
    assert UriMap(disk, [srv]).to_uri(srv / "a.flac") == "a.flac"
    # MPD through the link, the library on the real folder
    assert UriMap(srv, [disk]).to_uri(song) == "a.flac"
    # a file known by another name than its library path (a symlink inside it) still maps
    link = disk / "alias.flac"
    link.symlink_to(song)
    assert UriMap(disk, [disk]).to_uri(link) == "alias.flac"  # MPD lists the link by its name


def test_paths_outside_the_music_directory_have_no_uri(tmp_path: Path) -> None:
    music = tmp_path / "m"
    inside = _touch(music / "in.flac")
    outside = _touch(tmp_path / "m2" / "out.flac")  # a sibling whose name starts the same
    elsewhere = _touch(tmp_path / "elsewhere" / "x.flac")
    uris = UriMap(music, [music, tmp_path / "elsewhere"])
    assert uris.to_uri(inside) == "in.flac"
    assert uris.to_uri(outside) is None
    assert uris.to_uri(elsewhere) is None


def test_names_that_are_not_utf8_keep_their_bytes(tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    raw = os.path.join(os.fsencode(music), b"caf\xe9.flac")
    with open(raw, "wb"):
        pass
    song = Path(os.fsdecode(raw))
    uri = UriMap(music, [music]).to_uri(song)
    assert uri is not None and os.fsencode(uri) == b"caf\xe9.flac"
    assert os.fsencode(next(UriMap(music, [music]).candidates(uri))) == raw


def test_the_picker_leaves_out_tracks_outside_and_says_why_when_all_are(tmp_path: Path) -> None:
    """A real store: tracks outside MPD's music directory are counted and never picked."""
    from support.mpd import analysed_library
    from support.playlists import synthetic_tracks
    from tunescout.errors import PlaylistError
    from tunescout.playlists.request import Rules
    from tunescout.radio.picker import Picker
    from tunescout.store.reader import StoreReader

    music, db = tmp_path / "music", tmp_path / "db" / "tunescout.db"
    db.parent.mkdir()
    analysed_library(db, music, synthetic_tracks(per_cluster=6, artists=3), seconds=0.5)
    store = StoreReader.open(db)
    try:
        rules = Rules(order="flow", min_duration_s=0.0)
        picker = Picker(store, UriMap(music / "slow", [music]), rules)
        picker.refresh(0.0, force=True)
        assert picker.outside == 18 and len(picker.by_uri) == 6
        picks = picker.pick(["000.wav"], [], [], 5)
        assert picks and all("/" not in p.uri and p.uri != "000.wav" for p in picks)
        nowhere = Picker(store, UriMap(tmp_path / "elsewhere", [music]), rules)
        nowhere.refresh(0.0, force=True)
        try:
            nowhere.pick(["000.wav"], [], [], 5)
        except PlaylistError as exc:
            assert "none of the 24 analysed tracks is under MPD's music directory" in str(exc)
        else:
            raise AssertionError("picked from outside the music directory")
    finally:
        store.close()
