"""The answers of the AudioMuse-AI endpoints, shaped as AudioMuse-AI answers them, from a TrackIndex.

Its Navidrome plugin reads `similar_tracks` as `[{"item_id", "title", "author", "album",
"distance"}]` in order, and `similar_artists` as `[{"artist", "artist_id", "component_matches":
[{"artist1_representative_songs": [{"item_id", "title"}], "artist2_representative_songs": …}]}]`;
`find_path` answers `{"path": [...], "total_distance"}`. Everything else is tunescout's engine:
no recording twice, artist and album spacing, a path that never turns back.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from tunescout.errors import ApiError, PlaylistError
from tunescout.playlists.catalogue import Track
from tunescout.playlists.engine import path_playlist, similar_playlist
from tunescout.playlists.explain import Entry
from tunescout.playlists.request import Rules
from tunescout.tagexpr import normalise_text
from tunescout.webapi.index import TrackIndex

MAX_TRACKS = 500  # per answer: bounds the work and the response size of one request
MAX_STEPS = 200
MAX_ARTISTS = 100
REPRESENTATIVE_SONGS = 3  # per artist in a component match, as AudioMuse-AI gives

Query = Mapping[str, str]


def similar_tracks(index: TrackIndex, query: Query) -> list[dict[str, Any]]:
    """`/api/similar_tracks?item_id=ID&n=N&eliminate_duplicates=true|false`."""
    seed = _track(index, query, "item_id")
    n = _int(query, "n", 10, 1, MAX_TRACKS)
    spread = _bool(query, "eliminate_duplicates", True)
    rules = Rules(length=n, order="similarity")
    if not spread:  # duplicate recordings stay out; the same artist may come back to back
        rules = replace(rules, artist_spacing=0, album_spacing=0)
    playlist = _playlist(lambda: similar_playlist(index.catalogue, [seed], rules,
                                                        space=index.space))
    return [_song(index, entry) for entry in playlist]


def find_path(index: TrackIndex, query: Query) -> dict[str, Any]:
    """`/api/find_path?start_song_id=A&end_song_id=B&max_steps=N`: A, the steps, B."""
    start = _track(index, query, "start_song_id")
    end = _track(index, query, "end_song_id")
    steps = _int(query, "max_steps", 25, 2, MAX_STEPS)
    rules = Rules(length=steps, order="flow")
    playlist = _playlist(lambda: path_playlist(index.catalogue, start, end, rules,
                                                     space=index.space))
    songs = [_song(index, entry) for entry in playlist]
    rows = [index.by_id[s["item_id"]] for s in songs]
    total = float(sum(np.linalg.norm(index.weighted(b) - index.weighted(a))
                      for a, b in itertools.pairwise(rows)))
    return {"path": songs, "total_distance": round(total, 4)}


def similar_artists(index: TrackIndex, query: Query) -> list[dict[str, Any]]:
    """`/api/similar_artists?artist=NAME_OR_ID&n=N`: artists whose tracks' mean vector is nearest."""
    wanted = query.get("artist", "").strip()
    if not wanted:
        raise ApiError(400, "artist: required (a name or the server's artist id)")
    position = index.artist_keys.get(wanted, index.artist_keys.get(normalise_text(wanted)))
    if position is None:
        raise ApiError(404, f"artist {wanted!r} has no analysed tracks")
    n = _int(query, "n", 10, 1, MAX_ARTISTS)
    matches = _bool(query, "include_component_matches", False)
    distances = np.linalg.norm(index.centroids - index.centroids[position], axis=1)
    distances[position] = np.inf
    order = np.argsort(distances, kind="stable")[: min(n, len(index.artists) - 1)]
    answer = []
    for other in order:
        artist = index.artists[int(other)]
        item: dict[str, Any] = {"artist": artist.name, "artist_id": artist.id,
                                "distance": round(float(distances[other]), 4)}
        if matches:
            item["component_matches"] = [{
                "artist1_representative_songs": _representatives(index, position, int(other)),
                "artist2_representative_songs": _representatives(index, int(other), position),
            }]
        answer.append(item)
    return answer


def _representatives(index: TrackIndex, artist: int, towards: int) -> list[dict[str, str]]:
    """Return an artist's tracks nearest the other artist's mean: what the two have in common."""
    members = np.asarray(index.artists[artist].members, dtype=np.intp)
    distances = np.linalg.norm(index.weighted(members) - index.centroids[towards], axis=1)
    chosen, recordings = [], set()
    for row in members[np.argsort(distances, kind="stable")]:
        recording = int(index.catalogue.recording[row])
        if recording in recordings:
            continue
        recordings.add(recording)
        chosen.append({"item_id": index.ids[row], "title": index.catalogue.tracks[row].title})
        if len(chosen) == REPRESENTATIVE_SONGS:
            break
    return chosen


# --- pieces ----------------------------------------------------------------------------------


def _song(index: TrackIndex, entry: Entry) -> dict[str, Any]:
    track: Track = entry.track
    row = index.catalogue.by_path[track.path]
    title, author, album = index.names(row)
    return {"item_id": index.ids[row], "title": title, "author": author, "album": album,
            "distance": round(float(entry.why.distance), 4)}


def _playlist(build: Any) -> tuple[Entry, ...]:
    try:
        return tuple(build().entries)
    except PlaylistError as exc:
        raise ApiError(422, str(exc)) from exc


def _track(index: TrackIndex, query: Query, name: str) -> int:
    ident = query.get(name, "").strip()
    if not ident:
        raise ApiError(400, f"{name}: required")
    row = index.by_id.get(ident)
    if row is None:
        whose = ("the Subsonic server's" if index.server_ids
                 else "tunescout's (`tunescout show --json` prints it)")
        raise ApiError(404, f"{name}: no analysed track has the id {ident!r} ({whose} ids)")
    return row


def _int(query: Query, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, f"{name}: expected a whole number, got {raw!r}") from exc
    if not low <= value <= high:
        raise ApiError(400, f"{name}: must be from {low} to {high}, got {value}")
    return value


def _bool(query: Query, name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiError(400, f"{name}: expected true or false, got {raw!r}")
