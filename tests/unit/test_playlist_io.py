"""M3U8/JSON output, atomic writes, history, config specs and the daemon's rebuild on a real store."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from support.playlists import fill_store, synthetic_tracks
from tunescout.errors import PlaylistError
from tunescout.playlists.atomic import atomic_write
from tunescout.playlists.catalogue import Catalogue, Track
from tunescout.playlists.engine import similar_playlist
from tunescout.playlists.history import read_history, recent_digests, record_history
from tunescout.playlists.keeper import PlaylistKeeper, rebuild_playlists
from tunescout.playlists.render import read_m3u8, render_json, render_m3u8
from tunescout.playlists.request import PlaylistSpec, Rules, parse_playlist_specs
from tunescout.store.reader import StoreReader
from tunescout.store.writer import StoreWriter


@pytest.fixture(scope="module")
def small() -> Catalogue:
    return Catalogue.build(synthetic_tracks(per_cluster=12))


# --- M3U8 and JSON -------------------------------------------------------------------------------


def test_m3u8_absolute_round_trip(tmp_path: Path, small: Catalogue) -> None:
    playlist = similar_playlist(small, [0], Rules(length=8))
    out = tmp_path / "lists" / "mix.m3u8"
    atomic_write(out, render_m3u8(playlist, "Mix"))
    text = out.read_text("utf-8")
    assert text.startswith("#EXTM3U\n#PLAYLIST:Mix\n#EXTINF:")
    items = read_m3u8(out)
    assert [i.path for i in items] == [t.path for t in playlist.tracks]
    assert [i.duration_s for i in items] == [round(t.duration_s or 0) for t in playlist.tracks]
    assert [i.display for i in items] == [f"{t.artist} - {t.title}" for t in playlist.tracks]


def test_m3u8_relative_paths_and_odd_names(tmp_path: Path) -> None:
    music = tmp_path / "music"
    odd = Path(os.fsdecode(os.fsencode(str(music)) + b"/caf\xe9/na\xefve.flac"))  # Latin-1 bytes
    tracks = [Track(odd, "d1", 61.4, {"artist": "A\nB", "title": "x, y"}, {}),
              Track(music / "b" / "2.flac", "d2", None, {"title": "Only title"}, {})]
    cat = Catalogue.build(tracks)
    playlist = similar_playlist(cat, [1], Rules(length=1))
    out = tmp_path / "playlists" / "rel.m3u8"
    data = render_m3u8(playlist, "rel", relative_to=out.parent, explain=True)
    assert b"\n../music/caf\xe9/na\xefve.flac\n" in data
    assert b"#EXTINF:61,A B - x, y\n" in data
    assert b"\n# seed Only title: distance" in data
    atomic_write(out, data)
    (item,) = read_m3u8(out)
    assert item.path == odd and item.duration_s == 61


def test_json_output(small: Catalogue) -> None:
    playlist = similar_playlist(small, [0], Rules(length=3))
    data = json.loads(render_json(playlist, "j", explain=True))
    assert data["name"] == "j" and data["mode"] == "similar" and len(data["tracks"]) == 3
    assert data["seeds"][0]["path"] == str(small.tracks[0].path)
    first = data["tracks"][0]
    assert set(first["why"]["by_group"]) == {"timbre", "rhythm", "tonal", "loudness"}
    assert first["path"] == str(playlist.tracks[0].path) and first["digest"] == playlist.tracks[0].digest
    plain = json.loads(render_json(playlist, "j"))
    assert "why" not in plain["tracks"][0]


# --- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_replaces_keeps_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.m3u8"
    atomic_write(target, b"one\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    target.chmod(0o640)
    inode = target.stat().st_ino
    atomic_write(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.stat().st_ino != inode  # renamed over, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.m3u8"]


def test_atomic_write_failure_is_a_playlist_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PlaylistError, match="cannot write"):
        atomic_write(blocker / "out.m3u8", b"x")
    folder = tmp_path / "dir"
    target = folder / "out.m3u8"
    atomic_write(target, b"old")
    with pytest.raises(PlaylistError):
        atomic_write(folder, b"x")  # the target is a folder: the rename fails after the write
    assert target.read_bytes() == b"old"
    assert not [p for p in tmp_path.rglob(".*")]  # the temp file was removed


# --- history -------------------------------------------------------------------------------------


def test_history_remembers_the_last_playlists(tmp_path: Path, small: Catalogue) -> None:
    history = tmp_path / "history.json"
    assert read_history(history) == [] and recent_digests(history, 3) == frozenset()
    lists = [similar_playlist(small, [i], Rules(length=3, artist_spacing=0)) for i in (0, 12, 24)]
    for number, playlist in enumerate(lists):
        record_history(history, f"p{number}", playlist, 1000.0 + number, keep=2)
    entries = read_history(history)
    assert [e.name for e in entries] == ["p1", "p2"]
    assert recent_digests(history, 1) == {t.digest for t in lists[2].tracks}
    assert recent_digests(history, 5) == {t.digest for p in lists[1:] for t in p.tracks}
    history.write_text("{broken")
    assert read_history(history) == []


# --- config specs --------------------------------------------------------------------------------


def test_parse_playlist_specs(tmp_path: Path) -> None:
    raw = [
        {"name": "Evening", "output": "lists/evening.m3u8", "seeds": ["/m/a.flac", "/m/b.flac"],
         "length": 40, "order": "ramp", "bpm": "90-120", "key_compatible": True, "duration": "2:00-7:00",
         "loudness": [-16, -8], "where": "genre~jazz and date>=1990", "artist_spacing": 4,
         "album_spacing": 8, "weights": {"timbre": 2, "tonal": 0}, "relative": True, "exclude_recent": 3},
        {"name": "Jazz", "output": "/srv/jazz.json", "query": "genre=jazz"},
        {"name": "Journey", "output": "/srv/j.m3u8", "from": "/m/a.flac", "to": "/m/z.flac"},
    ]
    specs, problems = parse_playlist_specs(raw, tmp_path)
    assert problems == []
    evening, jazz, journey = specs
    assert evening.output == tmp_path / "lists" / "evening.m3u8" and evening.format == "m3u8"
    assert evening.seeds == (Path("/m/a.flac"), Path("/m/b.flac")) and evening.relative
    assert evening.rules == Rules(
        length=40, order="ramp", bpm_range=(90.0, 120.0), key_compatible=True,
        duration_range_s=(120.0, 420.0), loudness_range_lufs=(-16.0, -8.0),
        where="genre~jazz and date>=1990", artist_spacing=4, album_spacing=8,
        weights={"timbre": 2.0, "rhythm": 1.0, "tonal": 0.0, "loudness": 0.5})
    assert evening.exclude_recent == 3
    assert jazz.query == "genre=jazz" and jazz.format == "json"
    assert journey.path_from == Path("/m/a.flac") and journey.path_to == Path("/m/z.flac")


def test_parse_playlist_specs_lists_every_problem() -> None:
    raw = [
        {"name": "a", "output": "/x.m3u8", "seeds": ["/a"], "lenght": 10, "order": "random"},
        {"output": "/y.m3u8", "seeds": ["/a"], "query": "genre=rock"},
        {"name": "a", "output": "/z.m3u8", "query": "genre="},
        {"name": "b", "output": "/w.m3u8", "from": "/a", "weights": {"timbr": 1}, "bpm": "fast"},
    ]
    _, problems = parse_playlist_specs(raw)
    text = "\n".join(problems)
    assert "playlists[0].lenght: unknown key; did you mean 'length'?" in text
    assert "playlists[0].order: must be one of flow, ramp, similarity" in text
    assert "playlists[1].name: required" in text
    assert "playlists[1].seeds: give exactly one of seeds, query, or from + to" in text
    assert "playlists[2].query: --where 'genre='" in text
    assert "playlists[3].to: a path needs both from and to" in text
    assert "playlists[3].weights: unknown group 'timbr'; did you mean 'timbre'?" in text
    assert "playlists[3].bpm:" in text
    assert parse_playlist_specs({"name": "x"})[1] == ["playlists: expected [[playlists]] tables"]


# --- the daemon's playlists, on a real database --------------------------------------------------


def test_rebuild_playlists_on_a_real_store(tmp_path: Path) -> None:
    music, out = tmp_path / "music", tmp_path / "playlists"
    db = tmp_path / "state" / "tunescout.db"
    tracks = fill_store(db, music, synthetic_tracks(per_cluster=16))
    seed, start, end = tracks[0], tracks[16], tracks[32]
    specs = [
        PlaylistSpec("Slow", out / "slow.m3u8", Rules(length=10), seeds=(seed.path,), relative=True),
        PlaylistSpec("Techno", out / "techno.json", Rules(length=6), query="genre=techno", format="json"),
        PlaylistSpec("Journey", out / "journey.m3u8", Rules(length=7), path_from=start.path,
                     path_to=end.path),
        PlaylistSpec("Gone", out / "gone.m3u8", Rules(length=5), seeds=(music / "missing.flac",)),
    ]
    history = tmp_path / "state" / "playlist-history.json"
    store = StoreReader.open(db)
    try:
        written = rebuild_playlists(store, specs, 1000.0, history)
        assert written == [out / "slow.m3u8", out / "techno.json", out / "journey.m3u8"]
        slow = read_m3u8(out / "slow.m3u8")
        assert len(slow) == 10 and all(item.path.parent == music / "slow" for item in slow)
        assert seed.path not in {item.path for item in slow}
        assert b"\n../music/slow/" in (out / "slow.m3u8").read_bytes()
        techno = json.loads((out / "techno.json").read_text())
        assert {t["path"].split("/")[-2] for t in techno["tracks"]} == {"fast"}
        journey = read_m3u8(out / "journey.m3u8")
        assert journey[0].path == start.path and journey[-1].path == end.path and len(journey) == 7
        assert not (out / "gone.m3u8").exists()
        assert [e.name for e in read_history(history)] == ["Slow", "Techno", "Journey"]
        # nothing changed: nothing is rewritten (a music server would rescan the folder)
        mtime = (out / "slow.m3u8").stat().st_mtime_ns
        assert rebuild_playlists(store, specs, 1001.0, history) == []
        assert (out / "slow.m3u8").stat().st_mtime_ns == mtime
    finally:
        store.close()
    # the library changes: the nearest track leaves; the playlist is rewritten without it
    nearest = slow[0].path
    writer = StoreWriter.open(db)
    writer.remove_files([nearest])
    writer.close()
    store = StoreReader.open(db)
    try:
        assert rebuild_playlists(store, specs[:1], 1002.0, history) == [out / "slow.m3u8"]
    finally:
        store.close()
    assert nearest not in {item.path for item in read_m3u8(out / "slow.m3u8")}


def test_exclude_recent_in_daemon_playlists(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    tracks = fill_store(db, tmp_path / "music", synthetic_tracks(per_cluster=20))
    history = tmp_path / "history.json"
    fresh = PlaylistSpec("Fresh", tmp_path / "fresh.m3u8", Rules(length=6), seeds=(tracks[0].path,),
                         exclude_recent=1)
    store = StoreReader.open(db)
    try:
        rebuild_playlists(store, [fresh], 1.0, history)
        first = {i.path for i in read_m3u8(fresh.output)}
        rebuild_playlists(store, [fresh], 2.0, history)
        second = {i.path for i in read_m3u8(fresh.output)}
    finally:
        store.close()
    assert len(first) == len(second) == 6 and not first & second


def test_keeper_debounces_with_a_passed_clock(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    tracks = fill_store(db, tmp_path / "music", synthetic_tracks(per_cluster=8))
    spec = PlaylistSpec("K", tmp_path / "k.m3u8", Rules(length=4), seeds=(tracks[0].path,))
    keeper = PlaylistKeeper([spec], debounce_s=60.0, history=None, now=0.0)
    assert not keeper.due(59.0) and keeper.due(60.0)  # the first build, after start-up settles
    store = StoreReader.open(db)
    try:
        assert keeper.rebuild(store, 60.0) == [spec.output]
        assert not keeper.due(10_000.0)  # nothing changed since
        keeper.note_change(100.0)
        keeper.note_change(150.0)
        assert not keeper.due(200.0) and keeper.due(210.0)  # quiet for 60 s after the last change
        keeper.rebuild(store, 210.0)
        for t in range(300, 900, 30):  # a scan that never goes quiet...
            keeper.note_change(float(t))
        assert keeper.due(900.0)  # ...still gets its playlists every 10 debounce periods
    finally:
        store.close()
    assert not PlaylistKeeper([], 1.0, None, 0.0).due(100.0)
