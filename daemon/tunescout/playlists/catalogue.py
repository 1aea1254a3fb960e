"""A library indexed for playlists: tracks, their standardised vectors, tempo, key, loudness, and
which tracks share a recording, an artist or an album. Built once per library change."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tunescout.errors import PlaylistError
from tunescout.playlists.camelot import camelot_index
from tunescout.playlists.copies import acoustic_pairs, preference_key
from tunescout.playlists.vectors import FeatureMatrix, FloatArray, build_matrix
from tunescout.tagexpr import normalise_text, tag_texts

IntArray = npt.NDArray[np.intp]

_REMASTER = re.compile(
    r"\s*(?:[(\[][^()\[\]]*\bremaster(?:ed)?\b[^()\[\]]*[)\]]|-\s*(?:\d{4}\s+)?(?:digital(?:ly)?\s+)?"
    r"remaster(?:ed)?(?:\s+\d{4})?(?:\s+version)?)\s*$"
)


class TrackNotFound(PlaylistError):
    """A seed or path end that is not among the analysed tracks."""


def normalise_title(title: str) -> str:
    """Fold a title and drop a trailing "(2011 Remaster)" / "- Remastered": the same recording."""
    folded = normalise_text(title)
    return _REMASTER.sub("", folded) or folded


@dataclass(frozen=True)
class Track:
    """One analysed file as the store returns it."""

    path: Path
    digest: str
    duration_s: float | None
    tags: Mapping[str, Any]
    features: Mapping[str, Mapping[str, Any]]
    size_bytes: int | None = None
    decode_warning: str | None = None  # decoded only in part: truncated, corrupt packets

    @property
    def suspect(self) -> bool:
        """Whether the analysis measured only part of the audio (left out of playlists by default)."""
        return self.decode_warning is not None

    @property
    def artist(self) -> str:
        return "; ".join(tag_texts(self.tags, "artist") or tag_texts(self.tags, "albumartist"))

    @property
    def title(self) -> str:
        return "; ".join(tag_texts(self.tags, "title")) or os.fsdecode(self.path.stem)

    @property
    def album(self) -> str:
        return "; ".join(tag_texts(self.tags, "album"))

    def feature(self, group: str, key: str) -> Any:
        return (self.features.get(group) or {}).get(key)

    @property
    def tempo_bpm(self) -> float | None:
        value = self.feature("rhythm", "tempo_bpm")
        return float(value) if isinstance(value, int | float) else None

    @property
    def camelot(self) -> str | None:
        value = self.feature("tonal", "camelot")
        return value if isinstance(value, str) else None


class _Groups:
    """Track indices keyed by a small integer id: who shares an artist, an album, a recording."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.members: list[list[int]] = []

    def add(self, key: str, index: int) -> int:
        ident = self.ids.setdefault(key, len(self.ids))
        if ident == len(self.members):
            self.members.append([])
        self.members[ident].append(index)
        return ident


@dataclass(frozen=True)
class Catalogue:
    """A library indexed for playlists; build once per library change with `Catalogue.build`."""

    tracks: tuple[Track, ...]
    matrix: FeatureMatrix
    tempo_bpm: FloatArray
    camelot: IntArray  # 0..23, 24 when unknown
    lufs: FloatArray
    duration_s: FloatArray
    recording: IntArray  # one id, one recording: same digest, artist + title, or acoustic match
    recording_members: Sequence[Sequence[int]]
    artists: Sequence[Sequence[int]]
    artist_members: Sequence[Sequence[int]]
    album: IntArray  # -1 when unknown
    album_members: Sequence[Sequence[int]]
    by_path: Mapping[Path, int]
    suspect: npt.NDArray[np.bool_]

    @classmethod
    def build(cls, tracks: Sequence[Track]) -> Catalogue:
        """Index tracks: vectors standardised over these tracks, and the grouping tables."""
        artists, albums = _Groups(), _Groups()
        artist_ids: list[list[int]] = []
        album_ids = np.full(len(tracks), -1, dtype=np.intp)
        for i, track in enumerate(tracks):
            names = tag_texts(track.tags, "artist") or tag_texts(track.tags, "albumartist")
            artist_ids.append(sorted({artists.add(normalise_text(n), i) for n in names}))
            album_key = _album_key(track)
            if album_key:
                album_ids[i] = albums.add(album_key, i)
        recording, recording_members = _recordings(tracks)
        return cls(
            tracks=tuple(tracks),
            matrix=build_matrix([t.features for t in tracks]),
            tempo_bpm=_floats(t.tempo_bpm for t in tracks),
            camelot=np.array([_camelot_or_unknown(t.camelot) for t in tracks], dtype=np.intp),
            lufs=_floats(t.feature("loudness", "integrated_lufs") for t in tracks),
            duration_s=_floats(t.duration_s for t in tracks),
            recording=recording,
            recording_members=recording_members,
            artists=artist_ids,
            artist_members=artists.members,
            album=album_ids,
            album_members=albums.members,
            by_path={t.path: i for i, t in enumerate(tracks)},
            suspect=np.array([t.suspect for t in tracks], dtype=bool),
        )

    def copies_used(self, prefer: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Return which tracks a playlist may use: of each recording, only the preferred copy."""
        used = np.ones(len(self), dtype=bool)
        for members in self.recording_members:
            if len(members) > 1:
                best = min(members, key=lambda i: preference_key(self.tracks[i], prefer))
                used[list(members)] = False
                used[best] = True
        return used

    def __len__(self) -> int:
        return len(self.tracks)

    def index(self, path: Path) -> int:
        """Return a track's index; raise PlaylistError when it is not in the analysed library."""
        for candidate in dict.fromkeys([path, Path(os.path.abspath(path)), Path(os.path.realpath(path))]):
            if candidate in self.by_path:
                return self.by_path[candidate]
        raise TrackNotFound(f"{path} is not in the analysed library (not yet analysed, or not audio)")


def _floats(values: Iterable[Any]) -> FloatArray:
    return np.array([float(v) if isinstance(v, int | float) else math.nan for v in values], dtype=np.float64)


def _camelot_or_unknown(code: str | None) -> int:
    index = camelot_index(code)
    return 24 if index is None else index


def _album_key(track: Track) -> str | None:
    """Return what identifies a track's album: its MusicBrainz id, else album artist + title."""
    mbid = tag_texts(track.tags, "musicbrainz_albumid")
    if mbid:
        return "mb:" + mbid[0].strip().lower()
    album = tag_texts(track.tags, "album")
    if not album:
        return None
    owner = tag_texts(track.tags, "albumartist") or tag_texts(track.tags, "artist")
    return "t:" + normalise_text("; ".join(owner)) + "\0" + normalise_text(album[0])


def _recordings(tracks: Sequence[Track]) -> tuple[IntArray, list[list[int]]]:
    """Group tracks that are one recording (union-find): same digest, same folded artist and title,
    or the same duration and sound (copies.acoustic_pairs: a transcode with other tags)."""
    parent = list(range(len(tracks)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, track in enumerate(tracks):
        keys = ["d:" + track.digest]
        artist, title = track.artist, tag_texts(track.tags, "title")
        if artist and title:
            keys.append("t:" + normalise_text(artist) + "\0" + normalise_title(title[0]))
        for key in keys:
            if key in owner:
                parent[root(i)] = root(owner[key])
            else:
                owner[key] = i
    for i, j in acoustic_pairs(tracks):
        parent[root(i)] = root(j)
    groups = _Groups()
    ids = np.array([groups.add(str(root(i)), i) for i in range(len(tracks))], dtype=np.intp)
    return ids, groups.members
