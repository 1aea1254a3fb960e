"""The daemon's HTTP API, asked by a real HTTP client: AudioMuse-AI's answers in the shapes its
Navidrome plugin parses, /api/status, /metrics, the token, the limits, a taken port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.daemon import Daemon, Library
from support.http import free_port, get
from support.playlists import cluster_of, fill_store, positions_apart, synthetic_tracks
from tunescout.playlists.catalogue import Track
from tunescout.store.reader import StoreReader

TOKEN = "a-test-token-of-some-length"
# what the AudioMuse-AI Navidrome plugin unmarshals each similar track into (Go: string, float64)
AUDIOMUSE_TRACK = {"item_id": str, "title": str, "author": str, "album": str, "distance": float}


class Api:
    """A daemon with `[http]` on a free port, over a synthetic library of known clusters."""

    def __init__(self, root: Path, start: Callable[..., Daemon], **http: Any) -> None:
        self.port = free_port()
        self.library = Library(root, http={"listen": f"127.0.0.1:{self.port}", **http})
        self.tracks: list[Track] = fill_store(self.library.db, self.library.music,
                                              synthetic_tracks(per_cluster=24, artists=4))
        store = StoreReader.open(self.library.db)
        try:
            self.ids = {row.path: str(row.id) for row in store.playlist_tracks()}
        finally:
            store.close()
        self.by_id = {ident: path for path, ident in self.ids.items()}
        self.base = f"http://127.0.0.1:{self.port}"
        self.daemon = start(self.library)
        self.daemon.wait_for_event("http_indexed")

    def get(self, path: str, **options: Any) -> Any:
        return get(self.base, path, **options)


@pytest.fixture
def api(tmp_path: Path, start_daemon: Callable[..., Daemon]) -> Api:
    return Api(tmp_path, start_daemon)


def _check_shape(items: list[dict[str, Any]]) -> None:
    for item in items:
        assert set(item) == set(AUDIOMUSE_TRACK), item
        for key, kind in AUDIOMUSE_TRACK.items():
            assert isinstance(item[key], kind), (key, item)


def test_similar_tracks_as_audiomuse_answers(api: Api) -> None:
    seed = api.tracks[0]
    seed_id = api.ids[seed.path]
    answer = api.get(f"/api/similar_tracks?item_id={seed_id}&n=8&eliminate_duplicates=true")
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    items = answer.json()
    assert len(items) == 8
    _check_shape(items)
    assert seed_id not in {i["item_id"] for i in items}
    assert {api.by_id[i["item_id"]].parent.name for i in items} == {cluster_of(seed)}
    assert positions_apart([i["author"] for i in items], 3)  # the playlist rules apply

    loose = api.get(f"/api/similar_tracks?item_id={seed_id}&n=8&eliminate_duplicates=false").json()
    _check_shape(loose)
    assert [i["distance"] for i in loose] == sorted(i["distance"] for i in loose)
    assert loose[0]["distance"] <= items[0]["distance"]


def test_find_path_and_similar_artists(api: Api) -> None:
    start, end = api.ids[api.tracks[0].path], api.ids[api.tracks[-1].path]
    answer = api.get(f"/api/find_path?start_song_id={start}&end_song_id={end}&max_steps=10")
    assert answer.status == 200, answer.body
    path = answer.json()["path"]
    _check_shape(path)
    assert path[0]["item_id"] == start and path[-1]["item_id"] == end
    assert 2 <= len(path) <= 10
    assert answer.json()["total_distance"] > 0

    artist = api.tracks[0].tags["artist"]
    artists = api.get(f"/api/similar_artists?artist={artist.replace(' ', '%20')}&n=3"
                      "&include_component_matches=true").json()
    assert len(artists) == 3
    assert all(a["artist"].split(" artist ")[0] == artist.split(" artist ")[0] for a in artists)
    for item in artists:
        assert isinstance(item["artist"], str) and isinstance(item["artist_id"], str)
        match = item["component_matches"][0]
        for side in ("artist1_representative_songs", "artist2_representative_songs"):
            assert match[side] and all(set(s) == {"item_id", "title"} for s in match[side])
        assert all(api.by_id[s["item_id"]] for s in match["artist1_representative_songs"])


def test_status_metrics_and_errors(api: Api) -> None:
    status = api.get("/api/status").json()
    assert status["analysed"] == len(api.tracks) and status["daemon"]["pid"] == api.daemon.pid
    api.daemon.drop("new.flac")  # a real analysis by the test analyser feeds the histogram
    api.daemon.wait_for_event("analysed")
    metrics = api.get("/metrics")
    assert metrics.status == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    text = metrics.body.decode()
    assert f"tunescout_analysed {len(api.tracks) + 1}.0" in text
    for name in ("tunescout_queue_length", "tunescout_paused 0.0", "tunescout_quarantined",
                 "tunescout_analysis_seconds_count 1.0", "tunescout_child_peak_rss_bytes_bucket",
                 "tunescout_memory_available_bytes", 'tunescout_http_requests_total{endpoint="/api/status"'):
        assert name in text, name

    for path, status_code, words in (
            ("/api/similar_tracks?item_id=999999", 404, "no analysed track has the id"),
            ("/api/similar_tracks", 400, "item_id: required"),
            (f"/api/similar_tracks?item_id={api.ids[api.tracks[0].path]}&n=lots", 400, "whole number"),
            (f"/api/similar_tracks?item_id={api.ids[api.tracks[0].path]}&n=100000", 400, "from 1 to 500"),
            ("/api/similar_artists?artist=nobody", 404, "no analysed tracks"),
            ("/etc/passwd", 404, "no endpoint"),
            ("/../../etc/passwd", 404, "no endpoint")):
        answer = api.get(path)
        assert answer.status == status_code, (path, answer.body)
        assert words in answer.json()["error"], (path, answer.body)
    post = api.get("/api/status", method="POST")
    assert post.status == 501 and "error" in post.json()
    assert "Traceback" not in api.daemon.log()


def test_a_token_is_asked_for(tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    api = Api(tmp_path, start_daemon, token=TOKEN)
    assert api.get("/api/status").status == 401
    assert api.get("/api/status", token="wrong").status == 401
    assert api.get("/metrics").status == 401
    assert api.get("/api/status", token=TOKEN).json()["analysed"] == len(api.tracks)


def test_slow_and_too_many_clients_are_bounded(tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    api = Api(tmp_path, start_daemon, max_clients=1)
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as idle:
        idle.sendall(b"GET /api/status HTTP/1.1\r\n")  # and never the rest: holds the one slot
        time.sleep(0.5)
        busy = api.get("/api/status")
        assert busy.status == 503 and "too many" in busy.json()["error"]
        started = time.monotonic()
        assert idle.recv(1024) == b""  # dropped after the client timeout, unanswered
        assert time.monotonic() - started < 20
    assert api.get("/api/status").status == 200
    # the one slot is free again once the last answer's thread has ended, a moment after the
    # client has read it: a 503 until then is the bound working, not the error under test
    deadline = time.monotonic() + 10
    while (long_line := api.get("/api/similar_tracks?item_id=" + "1" * 9000)).status == 503:
        assert time.monotonic() < deadline, long_line
        time.sleep(0.05)
    assert long_line.status == 414 and "error" in long_line.json()


def test_a_second_daemon_on_the_port_says_address_in_use(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    api = Api(tmp_path / "one", start_daemon)
    other = Library(tmp_path / "two", http={"listen": f"127.0.0.1:{api.port}"})
    second = start_daemon(other)
    assert second.proc.wait(timeout=60) != 0
    assert f"http.listen: 127.0.0.1:{api.port} is already in use" in second.log()
    assert "Traceback" not in second.log()
    assert api.get("/api/status").status == 200


def test_opensubsonic_endpoints_with_tunescouts_own_ids(tmp_path: Path,
                                                        start_daemon: Callable[..., Daemon]) -> None:
    api = Api(tmp_path, start_daemon, token=TOKEN)
    seed = api.ids[api.tracks[0].path]
    # getOpenSubsonicExtensions must be public; the rest asks for the token, as a Subsonic error
    public = api.get("/rest/getOpenSubsonicExtensions?f=json").json()["subsonic-response"]
    assert public["openSubsonicExtensions"] == [{"name": "sonicSimilarity", "versions": [1]}]
    refused = api.get(f"/rest/getSonicSimilarTracks?id={seed}&f=json")
    assert refused.status == 401 and refused.json()["subsonic-response"]["error"]["code"] == 40
    answer = api.get(f"/rest/getSonicSimilarTracks.view?id={seed}&count=5&f=json", token=TOKEN)
    matches = answer.json()["subsonic-response"]["sonicMatch"]
    assert len(matches) == 5 and all(m["entry"]["id"] in api.by_id for m in matches)
    assert {api.by_id[m["entry"]["id"]].parent.name for m in matches} == {cluster_of(api.tracks[0])}
    other = api.get("/rest/getArtists?f=json", token=TOKEN)
    assert other.status == 404 and other.json()["subsonic-response"]["status"] == "failed"
    assert api.get("/api/health", token=TOKEN).json() == {"status": "ok"}
    assert "Traceback" not in api.daemon.log()
