"""The Subsonic pieces that need no server: songs matched to files by path, the client's words
for a server that is not there or not a Subsonic server (a real loopback HTTP server), and the
OpenSubsonic envelope in XML."""

from __future__ import annotations

import hashlib
import json
import threading
import unicodedata
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from support.http import free_port
from tunescout.config import SubsonicConfig
from tunescout.errors import SubsonicError
from tunescout.subsonic.client import SubsonicClient
from tunescout.subsonic.songs import SongList
from tunescout.webapi import opensubsonic

ROOT = Path("/srv/music")


def _song(ident: str, path: str) -> dict[str, Any]:
    return {"id": ident, "path": path, "artistId": f"ar-{ident}", "albumId": "al", "parent": "p"}


def test_songs_match_files_by_their_path_inside_the_music_folder() -> None:
    nfd = unicodedata.normalize("NFD", "Björk/Début/01.flac")
    songs = [_song("1", "Artist/Album/01.flac"),  # relative: supysonic, gonic, Navidrome
             _song("2", "/data/music/Artist/Album/02.flac"),  # absolute, the server's own mount
             _song("3", nfd),  # decomposed names from another machine
             _song("4", "Somebody - Title.mp3"),  # a made-up path: matches nothing
             _song("5", "/elsewhere/Artist/Album/05.flac")]
    listing = SongList.build(songs, Path("/data/music"), listed_at=0.0)
    files = [ROOT / "Artist/Album/01.flac", ROOT / "Artist/Album/02.flac",
             ROOT / unicodedata.normalize("NFC", "Björk/Début/01.flac"), ROOT / "Artist/Album/05.flac",
             ROOT / "not/on/the/server.flac"]
    found = listing.match(files, [ROOT])
    assert {path: song.id for path, song in found.items()} == {files[0]: "1", files[1]: "2", files[2]: "3"}
    assert found[files[0]].artist_id == "ar-1" and listing.total == 5


def test_a_server_that_shares_the_paths_matches_absolute_paths() -> None:
    listing = SongList.build([_song("7", "/srv/music/a/b.flac")], None, listed_at=0.0)
    assert listing.find(ROOT / "a/b.flac", [ROOT]) is not None
    assert listing.find(Path("/other/a/b.flac"), [ROOT]) is None


class _NotSubsonic(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>a router's login page</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotSubsonic)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Recording(BaseHTTPRequestHandler):
    """A loopback server that answers like a Subsonic server without token auth (supysonic's
    answer: error 10 when `p` is missing) and keeps every query it got."""

    queries: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        self.queries.append(query)
        ok = query.get("p") == "enc:" + "pässword".encode().hex()
        envelope = ({"status": "ok", "version": "1.16.1"} if ok else
                    {"status": "failed", "version": "1.16.1", "error": {"code": 10, "message": "p"}})
        body = json.dumps({"subsonic-response": envelope}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_token_auth_first_then_the_password_for_a_server_without_it() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        client = SubsonicClient(SubsonicConfig(url=url, user="me", password="pässword"), timeout_s=10)
        client.ping()
        client.ping()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    first, second, third = _Recording.queries
    assert first["t"] == hashlib.md5(("pässword" + first["s"]).encode()).hexdigest() and "p" not in first
    assert first["u"] == "me" and first["f"] == "json" and first["c"] == "tunescout"
    assert "t" not in second and "t" not in third  # the fallback is kept


def _client(url: str) -> SubsonicClient:
    return SubsonicClient(SubsonicConfig(url=url, user="u", password="p"), timeout_s=10)


def test_a_web_page_is_not_a_subsonic_server(web_page: str) -> None:
    with pytest.raises(SubsonicError) as caught:
        _client(web_page).ping()
    assert caught.value.reason == "not_subsonic" and "subsonic.url" in str(caught.value)


def test_nothing_listening_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SubsonicError) as caught:
        _client(url).ping()
    assert caught.value.reason == "unreachable"
    assert str(caught.value) == f"cannot reach {url}: connection refused"


def test_the_envelope_in_xml() -> None:
    body = {"sonicMatch": [{"entry": {"id": "a&b", "isDir": False, "title": "<T>"}, "similarity": 0.5}]}
    data, kind = opensubsonic.render(opensubsonic.envelope(body), "xml")
    assert kind.startswith("text/xml")
    root = ET.fromstring(data)
    ns = "{http://subsonic.org/restapi}"
    assert root.tag == f"{ns}subsonic-response" and root.get("status") == "ok"
    assert root.get("openSubsonic") == "true" and root.get("type") == "tunescout"
    match = root.find(f"{ns}sonicMatch")
    assert match is not None and match.get("similarity") == "0.5"
    entry = match.find(f"{ns}entry")
    assert entry is not None and entry.get("id") == "a&b" and entry.get("isDir") == "false"
    assert entry.get("title") == "<T>"
    failed = opensubsonic.envelope(None, opensubsonic.SubsonicFailure(70, "Song not found"))
    error = ET.fromstring(opensubsonic.render(failed, "xml")[0]).find(f"{ns}error")
    assert error is not None and error.get("code") == "70"


def test_a_playlist_for_the_server_needs_the_server(tmp_path: Path) -> None:
    from tunescout.config import parse_config
    from tunescout.errors import ConfigError

    playlist = {"name": "mix", "output": str(tmp_path / "mix.m3u8"), "query": "genre = rock",
                "subsonic": True}
    with pytest.raises(ConfigError) as caught:
        parse_config({"library": {"paths": [str(tmp_path)]}, "playlists": [playlist]}, env={})
    assert "playlists[0].subsonic: needs a [subsonic] section" in str(caught.value)
    config = parse_config({"library": {"paths": [str(tmp_path)]}, "playlists": [playlist],
                           "subsonic": {"url": "http://127.0.0.1:4533", "user": "u", "password": "p"}},
                          env={})
    assert config.playlists.specs[0].subsonic and config.subsonic.url == "http://127.0.0.1:4533"
