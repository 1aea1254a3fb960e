"""`[subsonic]` against a real Subsonic server: supysonic, started here on real tagged FLAC files.

The HTTP API names tracks by supysonic's song ids (looked up through its own API here), the
OpenSubsonic `sonicSimilarity` endpoints answer with them, playlists with `subsonic = true` appear
on it after a rebuild (the right songs in order) and are replaced, not duplicated, by the next;
a server that is down or refuses the password gets one journal line and a retry that succeeds.
"""

from __future__ import annotations

import json
import re
import signal
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.audio import write_track
from support.config import toml_value
from support.daemon import Daemon, Library
from support.http import free_port, get
from support.playlists import cluster_of, read_paths, synthetic_tracks
from support.processes import wait_for
from support.subsonic import USER, Supysonic
from tunescout.models import FEATURE_VERSIONS, FeatureGroup, FileIdentity, TrackAnalysis
from tunescout.playlists.catalogue import Track
from tunescout.store.writer import StoreWriter

LATE = 2  # files analysed by tunescout that the server never scanned
WAIT_S = 90.0


class World:
    """Real FLAC files (tags as the synthetic clusters have them), supysonic's scan of them and
    tunescout's database with the clusters' features for the same files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.music = root / "music"
        tracks = synthetic_tracks(per_cluster=12, artists=4)
        self.tracks = [_write(self.music, t) for t in tracks]
        self.server = Supysonic(root / "supysonic", self.music)
        self.server.scan()
        others = synthetic_tracks(per_cluster=1, artists=1, seed=7)[:LATE]
        self.late = [_write(self.music, t, name=f"late {i}", digest=f"late-{i}")
                     for i, t in enumerate(others)]
        self.server.start()
        self.ids = {self.music / path: ident for path, ident in self.server.songs().items()}
        assert len(self.ids) == len(self.tracks)

    def library(self, folder: Path, **sections: Any) -> Library:
        """A config and a database (the world's analyses) for one daemon, on the world's music."""
        library = Library(folder, **sections)
        library.sections["library"]["paths"] = [str(self.music)]
        library.write_config()
        _record(library.db, [*self.tracks, *self.late])
        return library


def _write(music: Path, track: Track, name: str | None = None, digest: str | None = None) -> Track:
    """Write a real, tagged FLAC for a synthetic track; return it at its new path."""
    path = music / cluster_of(track) / f"{name or track.path.stem}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    tags = {k: str(v) for k, v in track.tags.items() if k in ("artist", "title", "album", "genre", "date")}
    write_track(path, seconds=0.5, sample_rate=8000, channels=1, tags=tags)
    return Track(path, digest or track.digest, track.duration_s, track.tags, track.features)


def _record(db: Path, tracks: list[Track]) -> None:
    store = StoreWriter.open(db)
    try:
        for track in tracks:
            groups = tuple(FeatureGroup(n, FEATURE_VERSIONS[n], dict(v)) for n, v in track.features.items())
            store.record_analysis(track.path, FileIdentity.from_stat(track.path.stat()), TrackAnalysis(
                digest=track.digest, duration_s=track.duration_s or 0.0, tags=dict(track.tags),
                features=groups))
    finally:
        store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = World(tmp_path_factory.mktemp("subsonic"))
    try:
        yield made
    finally:
        made.server.stop()


def _subsonic(world: World, **overrides: Any) -> dict[str, Any]:
    return {"url": world.server.url, "user": USER, "password": world.server.password, **overrides}


def _with_playlist(library: Library, name: str, seed: Path, length: int) -> None:
    text = library.config.read_text()
    output = library.root / "playlists" / f"{name}.m3u8"
    library.config.write_text(text + f'\n[playlist_keeper]\ndebounce = "1 s"\n\n[[playlists]]\n'
                              f"name = {toml_value(name)}\noutput = {toml_value(str(output))}\n"
                              f"seeds = [{toml_value(str(seed))}]\nlength = {length}\nsubsonic = true\n")


def _status(library: Library) -> dict[str, Any]:
    daemon = library.json("status")["daemon"]
    return dict(daemon.get("subsonic") or {})


@pytest.fixture
def api(world: World, tmp_path: Path, start_daemon: Callable[..., Daemon]) -> tuple[Daemon, str]:
    port = free_port()
    library = world.library(tmp_path, http={"listen": f"127.0.0.1:{port}"}, subsonic=_subsonic(world))
    daemon = start_daemon(library)
    daemon.wait_for_event("http_indexed", timeout_s=WAIT_S)
    return daemon, f"http://127.0.0.1:{port}"


def test_the_api_speaks_the_servers_song_ids(world: World, api: tuple[Daemon, str]) -> None:
    daemon, base = api
    assert "the Subsonic server's ids" in daemon.events("http_indexed")[-1].message
    seed = world.tracks[0]
    answer = get(base, f"/api/similar_tracks?item_id={world.ids[seed.path]}&n=5")
    assert answer.status == 200, answer.body
    items = answer.json()
    assert len(items) == 5
    by_id = {ident: path for path, ident in world.ids.items()}
    assert all(item["item_id"] in by_id for item in items)  # supysonic's ids, nothing else
    assert {by_id[i["item_id"]].parent.name for i in items} == {cluster_of(seed)}
    # similar_artists takes the server's artist id, as the Navidrome plugin sends it
    theirs = world.server.call("search3", query=seed.title, songCount=1)["searchResult3"]["song"][0]
    artists = get(base, f"/api/similar_artists?artist={theirs['artistId']}&n=3")
    assert artists.status == 200, artists.body
    assert len(artists.json()) == 3 and seed.artist not in {a["artist"] for a in artists.json()}
    # tunescout's own ids mean nothing now; the files supysonic lacks have no id at all
    own = get(base, "/api/similar_tracks?item_id=1&n=5")
    assert own.status == 404 and "Subsonic server" in own.json()["error"]
    wait_for(lambda: _status(daemon.library).get("missing") == LATE, WAIT_S,
             what="status to count the tracks the server lacks")
    state = _status(daemon.library)
    assert state["state"] == "ok" and state["matched"] == len(world.tracks), state
    assert len(daemon.events("subsonic_missing")) == 1


def test_opensubsonic_sonic_similarity(world: World, api: tuple[Daemon, str]) -> None:
    _, base = api
    seed, end = world.tracks[0], world.tracks[-1]
    extensions = get(base, "/rest/getOpenSubsonicExtensions.view?f=json").json()["subsonic-response"]
    assert extensions["status"] == "ok" and extensions["openSubsonic"] is True
    assert {"name": "sonicSimilarity", "versions": [1]} in extensions["openSubsonicExtensions"]

    similar = get(base, f"/rest/getSonicSimilarTracks.view?id={world.ids[seed.path]}&count=4&f=json"
                        f"&u=x&t=y&s=z&v=1.16.1&c=test").json()["subsonic-response"]
    assert similar["status"] == "ok" and similar["version"] and similar["type"] == "tunescout"
    matches = similar["sonicMatch"]
    assert len(matches) == 4
    songs = {s["id"]: s for s in world.server.call("search3", query="", songCount=1000)
             ["searchResult3"]["song"]}
    for match in matches:
        assert set(match) == {"entry", "similarity"} and 0.0 <= match["similarity"] <= 1.0
        entry, theirs = match["entry"], songs[match["entry"]["id"]]
        assert entry["isDir"] is False
        for key in ("title", "artist", "album", "albumId", "artistId", "parent"):
            assert entry[key] == theirs[key], key
    assert [m["similarity"] for m in matches] == sorted((m["similarity"] for m in matches), reverse=True)

    path = get(base, f"/rest/findSonicPath?startSongId={world.ids[seed.path]}"
                     f"&endSongId={world.ids[end.path]}&count=6&f=json").json()["subsonic-response"]
    steps = [m["entry"]["id"] for m in path["sonicMatch"]]
    assert steps[0] == world.ids[seed.path] and steps[-1] == world.ids[end.path] and len(steps) <= 6
    assert path["sonicMatch"][0]["similarity"] == 1.0

    xml = get(base, f"/rest/getSonicSimilarTracks?id={world.ids[seed.path]}&count=2")
    assert xml.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(xml.body)
    ns = "{http://subsonic.org/restapi}"
    assert root.tag == f"{ns}subsonic-response" and root.get("status") == "ok"
    assert root.get("openSubsonic") == "true"
    found = root.findall(f"{ns}sonicMatch")
    entries = [m.find(f"{ns}entry") for m in found]
    assert len(found) == 2 and all(e is not None and e.get("id") in songs for e in entries)

    missing = get(base, "/rest/getSonicSimilarTracks?f=json").json()["subsonic-response"]
    assert missing["status"] == "failed" and missing["error"]["code"] == 10
    unknown = get(base, "/rest/findSonicPath?startSongId=nope&endSongId=nope&f=json").json()
    assert unknown["subsonic-response"]["error"]["code"] == 70


def test_playlists_appear_on_the_server_and_are_replaced(world: World, tmp_path: Path,
                                                         start_daemon: Callable[..., Daemon]) -> None:
    library = world.library(tmp_path, subsonic=_subsonic(world))
    seed = world.tracks[12]
    name = f"like {seed.path.stem} {tmp_path.name}"
    _with_playlist(library, name, seed.path, 4)
    daemon = start_daemon(library)
    daemon.wait_for_event("subsonic_playlist", PLAYLIST=name, timeout_s=WAIT_S)
    output = library.root / "playlists" / f"{name}.m3u8"
    _check_on_server(world, name, read_paths(output))
    first = next(p for p in world.server.playlists() if p["name"] == name)["id"]

    text = library.config.read_text()
    library.config.write_text(re.sub(r"length = 4", "length = 6", text))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_event("subsonic_playlist", 2, PLAYLIST=name, timeout_s=WAIT_S)
    assert len(read_paths(output)) == 6
    _check_on_server(world, name, read_paths(output))
    assert [p["id"] for p in world.server.playlists() if p["name"] == name] == [first]
    state = _status(library)["playlists"][name]
    assert state["state"] == "pushed" and state["songs"] == 6, state
    shown = library.cli("status").stdout.decode()
    assert f"subsonic {world.server.url}: ok" in shown and f"{name} pushed" in shown, shown


def _check_on_server(world: World, name: str, paths: list[Path]) -> None:
    mine = [p for p in world.server.playlists() if p["name"] == name]
    assert len(mine) == 1, mine
    assert world.server.playlist_songs(mine[0]["id"]) == [world.ids[p] for p in paths]


def test_a_server_that_is_down_is_retried(world: World, tmp_path: Path,
                                          start_daemon: Callable[..., Daemon]) -> None:
    server = world.server.clone(tmp_path / "supysonic")  # the same ids; stopped and started here
    library = world.library(tmp_path, subsonic={**_subsonic(world), "url": server.url})
    name = f"while down {tmp_path.name}"
    _with_playlist(library, name, world.tracks[24].path, 3)
    try:
        daemon = start_daemon(library)
        failed = daemon.wait_for_event("subsonic_failed", timeout_s=WAIT_S)
        assert failed[0].fields["REASON"] == "unreachable"
        assert "connection refused" in failed[0].message and server.url in failed[0].message
        wait_for(lambda: _status(library).get("state") == "failed"
                 and _status(library)["playlists"].get(name, {}).get("state") in ("pending", "failed"),
                 WAIT_S, what="status: the server failed, the playlist waits")
        assert daemon.proc.poll() is None and "Traceback" not in daemon.log()
        server.start()
        daemon.wait_for_event("subsonic_connected", timeout_s=WAIT_S)
        daemon.wait_for_event("subsonic_playlist", PLAYLIST=name, timeout_s=WAIT_S)
        assert len(daemon.events("subsonic_failed")) == 1  # retried, and said once
        mine = [p for p in server.playlists() if p["name"] == name]
        paths = read_paths(library.root / "playlists" / f"{name}.m3u8")
        assert len(mine) == 1 and server.playlist_songs(mine[0]["id"]) == [world.ids[p] for p in paths]
        assert _status(library)["state"] == "ok"
    finally:
        server.stop()


def test_a_refused_password_is_said_once(world: World, tmp_path: Path,
                                         start_daemon: Callable[..., Daemon]) -> None:
    library = world.library(tmp_path, subsonic=_subsonic(world, password="not the password"))
    daemon = start_daemon(library)
    failed = daemon.wait_for_event("subsonic_failed", timeout_s=WAIT_S)
    assert failed[0].fields["REASON"] == "refused" and "subsonic.password" in failed[0].message
    wait_for(lambda: _status(library).get("reason") == "refused", WAIT_S, what="status: refused")
    library.sections["subsonic"]["password"] = world.server.password
    library.write_config()
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_event("subsonic_connected", timeout_s=WAIT_S)
    assert len(daemon.events("subsonic_failed")) == 1


def test_doctor_checks_the_server(world: World, tmp_path: Path) -> None:
    def subsonic_check(folder: Path, **subsonic: Any) -> dict[str, Any]:
        library = world.library(folder, subsonic=_subsonic(world, **subsonic))
        proc = library.cli("doctor", "--quick", "--json", check=False)
        assert b"Traceback" not in proc.stderr
        return next(c for c in json.loads(proc.stdout) if c["name"] == "subsonic")

    good = subsonic_check(tmp_path / "good")
    assert good["level"] == "ok" and "login accepted" in good["message"], good
    refused = subsonic_check(tmp_path / "refused", password="wrong")
    assert refused["level"] == "fail" and "subsonic.password" in refused["fix"], refused
    elsewhere = subsonic_check(tmp_path / "elsewhere", music_folder="/nowhere")
    assert elsewhere["level"] == "ok", elsewhere  # relative paths need no music_folder
    down = subsonic_check(tmp_path / "down", url=f"http://127.0.0.1:{free_port()}")
    assert down["level"] == "fail" and "connection refused" in down["message"], down


def test_paging_and_a_long_playlist_in_a_post_body(world: World) -> None:
    from tunescout.config import SubsonicConfig
    from tunescout.subsonic.client import GET_SONGS_MAX, SubsonicClient

    client = SubsonicClient(SubsonicConfig(url=world.server.url, user=USER, password=world.server.password))
    client.ping()
    paged = [song["id"] for song in client.songs(page=7)]  # search3 paged, 7 songs a page
    assert sorted(paged) == sorted(world.ids.values())
    ids = [world.ids[t.path] for t in world.tracks] * 3
    assert len(ids) > GET_SONGS_MAX
    client.create_playlist("long one", ids)
    mine = [p for p in world.server.playlists() if p["name"] == "long one"]
    assert len(mine) == 1 and world.server.playlist_songs(mine[0]["id"]) == ids
    client.create_playlist("long one", ids[:3], replace_id=mine[0]["id"])
    assert world.server.playlist_songs(mine[0]["id"]) == ids[:3]
