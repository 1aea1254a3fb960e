"""The OpenSubsonic `sonicSimilarity` extension (version 1), answered by tunescout's engine:
`/rest/getSonicSimilarTracks(.view)?id=ID&count=N`, `/rest/findSonicPath(.view)?startSongId=A&
endSongId=B&count=N`, and `getOpenSubsonicExtensions` and `ping` around them.

As the contract (opensubsonic.netlify.app) says: the `subsonic-response` envelope (status, version,
type, serverVersion, openSubsonic: true) with a top-level `sonicMatch` array of `{"entry": Child,
"similarity": 0..1}`, most similar first; a path that begins with the start song and ends with
the end song, each similarity relative to the start. JSON with `f=json`, XML otherwise. A
failure is a status "failed" envelope with a Subsonic error code, at HTTP 200 as Subsonic does.
With `[subsonic]` the ids are the server's songs' (and an entry carries its album, artist and
cover art ids), so a client or proxy in front of that server can ask tunescout directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from xml.sax.saxutils import quoteattr

import numpy as np

from tunescout import __version__
from tunescout.errors import ApiError
from tunescout.playlists.catalogue import Track
from tunescout.store.reader import TrackRow
from tunescout.tagexpr import tag_texts
from tunescout.webapi import answers
from tunescout.webapi.index import TrackIndex

API_VERSION = "1.16.1"
EXTENSION = {"name": "sonicSimilarity", "versions": [1]}
METHODS = ("ping", "getOpenSubsonicExtensions", "getSonicSimilarTracks", "findSonicPath")
PUBLIC = ("getOpenSubsonicExtensions",)  # the contract: it "must be publicly accessible"
XMLNS = "http://subsonic.org/restapi"

# Subsonic error codes
GENERIC, MISSING, WRONG_LOGIN, NOT_FOUND = 0, 10, 40, 70


class ServerSong(Protocol):
    """A song's ids on the Subsonic server (subsonic.songs.ServerSong is one)."""

    @property
    def id(self) -> str: ...
    @property
    def artist_id(self) -> str | None: ...
    @property
    def album_id(self) -> str | None: ...
    @property
    def cover_art(self) -> str | None: ...
    @property
    def parent(self) -> str | None: ...


class SubsonicSide(Protocol):
    """What the API asks of the daemon's link to the Subsonic server (subsonic.SubsonicLink)."""

    def server_ids(self, rows: Sequence[TrackRow]) -> Mapping[Path, tuple[str, str | None]] | None: ...
    def song(self, path: Path) -> ServerSong | None: ...
    def extensions(self) -> list[dict[str, Any]]: ...


class SubsonicFailure(Exception):
    """A request answered with a status "failed" envelope."""

    def __init__(self, code: int, message: str, http_status: int = 200) -> None:
        self.code = code
        self.http_status = http_status
        super().__init__(message)


def method_of(path: str) -> str | None:
    """Return the method of "/rest/getSonicSimilarTracks.view" (None: not one tunescout answers)."""
    match = re.fullmatch(r"/rest/(\w+?)(?:\.view)?", path)
    return match[1] if match and match[1] in METHODS else None


def answer(method: str, query: Mapping[str, str], index: TrackIndex | None,
           server: SubsonicSide | None) -> dict[str, Any]:
    """Return the body of a status "ok" envelope for `method`; raise SubsonicFailure."""
    if method == "ping":
        return {}
    if method == "getOpenSubsonicExtensions":
        theirs = [e for e in (server.extensions() if server else []) if e.get("name") != EXTENSION["name"]]
        return {"openSubsonicExtensions": [*theirs, EXTENSION]}
    if index is None:
        raise SubsonicFailure(GENERIC, "not ready: the library is being indexed; try again shortly")
    if method == "getSonicSimilarTracks":
        return {"sonicMatch": _similar(index, query, server)}
    return {"sonicMatch": _path(index, query, server)}


def _similar(index: TrackIndex, query: Mapping[str, str], server: SubsonicSide | None) -> list[Any]:
    seed = _song(index, query, "id")
    count = _count(query, 10, answers.MAX_TRACKS)
    if count == 0:
        return []
    items = _engine(answers.similar_tracks, index, {"item_id": index.ids[seed], "n": str(count)})
    return [_match(index, index.by_id[i["item_id"]], float(i["distance"]), server) for i in items]


def _path(index: TrackIndex, query: Mapping[str, str], server: SubsonicSide | None) -> list[Any]:
    start = _song(index, query, "startSongId")
    end = _song(index, query, "endSongId")
    count = max(2, _count(query, 25, answers.MAX_STEPS))
    found = _engine(answers.find_path, index, {"start_song_id": index.ids[start],
                                              "end_song_id": index.ids[end], "max_steps": str(count)})
    rows = [index.by_id[i["item_id"]] for i in found["path"]]
    if not rows or rows[0] != start:
        rows.insert(0, start)
    if rows[-1] != end:
        rows.append(end)
    origin = index.weighted(start)
    return [_match(index, row, float(np.linalg.norm(index.weighted(row) - origin)), server)
            for row in rows]


def _engine(ask: Any, index: TrackIndex, query: Mapping[str, str]) -> Any:
    try:
        return ask(index, query)
    except ApiError as exc:
        raise SubsonicFailure(NOT_FOUND if exc.status == 404 else GENERIC, str(exc)) from exc


def _match(index: TrackIndex, row: int, distance: float, server: SubsonicSide | None) -> dict[str, Any]:
    """One sonicMatch: the song as a Child and 1 / (1 + distance): 1 for the song itself."""
    return {"entry": child(index.catalogue.tracks[row], index.ids[row], server),
            "similarity": round(1.0 / (1.0 + max(0.0, distance)), 4)}


def child(track: Track, ident: str, server: SubsonicSide | None) -> dict[str, Any]:
    """Return a Subsonic `Child` of a track: its tags, and the server's ids when it has the song."""
    entry: dict[str, Any] = {"id": ident, "isDir": False, "title": track.title, "type": "music",
                             "isVideo": False, "mediaType": "song"}
    song = server.song(track.path) if server is not None else None
    if song is not None:
        entry.update({k: v for k, v in (("parent", song.parent), ("albumId", song.album_id),
                                        ("artistId", song.artist_id), ("coverArt", song.cover_art))
                      if v is not None})
    if track.album:
        entry["album"] = track.album
    if track.artist:
        entry["artist"] = track.artist
    for key, tag in (("genre", "genre"), ("year", "date"), ("track", "tracknumber"),
                     ("discNumber", "discnumber")):
        values = tag_texts(track.tags, tag)
        if not values:
            continue
        if key == "genre":
            entry[key] = values[0]
        elif (number := re.match(r"\d+", values[0])) is not None:
            entry[key] = int(number[0])
    if track.duration_s:
        entry["duration"] = round(track.duration_s)
    suffix = track.path.suffix.lstrip(".").lower()
    if suffix:
        entry["suffix"] = suffix
    return entry


def _song(index: TrackIndex, query: Mapping[str, str], name: str) -> int:
    ident = query.get(name, "").strip()
    if not ident:
        raise SubsonicFailure(MISSING, f"Required parameter is missing: {name}")
    row = index.by_id.get(ident)
    if row is None:
        raise SubsonicFailure(NOT_FOUND, f"Song not found: no analysed track has the id {ident!r}")
    return row


def _count(query: Mapping[str, str], default: int, high: int) -> int:
    raw = query.get("count", "")
    if raw == "":
        return default
    if not raw.isdigit():
        raise SubsonicFailure(GENERIC, f"count: expected a whole number, got {raw!r}")
    return min(int(raw), high)


# --- the envelope ----------------------------------------------------------------------------


def envelope(body: Mapping[str, Any] | None, failure: SubsonicFailure | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"status": "failed" if failure else "ok", "version": API_VERSION,
                                "type": "tunescout", "serverVersion": __version__, "openSubsonic": True}
    if failure is not None:
        response["error"] = {"code": failure.code, "message": str(failure)}
    response.update(body or {})
    return response


def render(response: Mapping[str, Any], fmt: str) -> tuple[bytes, str]:
    """Return the body and content type: JSON for f=json, XML otherwise (the API's default)."""
    if fmt == "json":
        import json

        data = json.dumps({"subsonic-response": response}, ensure_ascii=False, allow_nan=False)
        return data.encode(), "application/json"
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            + _element("subsonic-response", response, XMLNS).encode()), "text/xml; charset=utf-8"


def _element(name: str, value: Mapping[str, Any], xmlns: str | None = None) -> str:
    """Write a Subsonic object as XML: scalars as attributes, objects and lists as elements."""
    attrs = [f' xmlns="{xmlns}"'] if xmlns else []
    children = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            children.append(_element(key, item))
        elif isinstance(item, list):
            children.extend(_element(key, x) if isinstance(x, Mapping)
                            else f"<{key}>{_xml_text(x)}</{key}>" for x in item)
        elif item is not None:
            attrs.append(f" {key}={quoteattr(_scalar(item))}")
    inner = "".join(children)
    return f"<{name}{''.join(attrs)}>{inner}</{name}>" if inner else f"<{name}{''.join(attrs)}/>"


def _scalar(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _xml_text(value: Any) -> str:
    return _scalar(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
