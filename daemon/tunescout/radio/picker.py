"""Choose the radio's next tracks with the playlist engine, from the songs that seed it.

The index (a `Catalogue`, seconds to build at 100,000 tracks, and its `Space`: the weighted
matrix and the copy masks) is built once and rebuilt when the analysed library changes, never per
addition; a refill is then one product per seed over the matrix and `similar_playlist`'s walk
(see bench/playlist.py for its time at 10k and 100k tracks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from tunescout.errors import PlaylistError
from tunescout.playlists.catalogue import Catalogue
from tunescout.playlists.engine import similar_playlist
from tunescout.playlists.explain import Playlist, label
from tunescout.playlists.keeper import tracks_from_rows
from tunescout.playlists.render import explain_text
from tunescout.playlists.request import Rules
from tunescout.playlists.space import Space
from tunescout.radio.uris import UriMap
from tunescout.store.reader import StoreReader

log = logging.getLogger(__name__)

SEED_DECAY = 0.5  # each older seed weighs half the one after it: the song playing leads
MIN_REBUILD_EVERY_S = 10.0
REBUILD_COST_FACTOR = 5.0  # rebuild at most once per 5 × the last build's duration


@dataclass(frozen=True)
class Pick:
    uri: str
    label: str  # "Artist - Title"
    reason: str  # the words of `playlist --explain`


def choose_next(cat: Catalogue, rules: Rules, seeds: Sequence[int], queued: Sequence[int],
                exclude: Iterable[int], count: int, space: Space | None = None) -> Playlist:
    """Return up to `count` tracks to follow `queued`, near `seeds` (newest first), never one of `exclude`.

    The pure step a refill makes, apart from MPD: bench/playlist.py times it. `space`, built for
    `cat` and the rules' weights, makes it faster, not different.
    """
    digests = frozenset(cat.tracks[i].digest for i in [*exclude, *queued])
    weights = [SEED_DECAY**age for age in range(len(seeds))]
    rules = replace(rules, length=count, exclude_digests=rules.exclude_digests | digests)
    return similar_playlist(cat, seeds, rules, seed_weights=weights, queued=queued, space=space)


class Picker:
    """The radio's view of the analysed library, keyed by MPD URI."""

    def __init__(self, store: StoreReader, uris: UriMap, rules: Rules) -> None:
        self.store = store
        self.uris = uris
        self.rules = rules
        self.catalogue: Catalogue | None = None
        self.space: Space | None = None
        self.by_uri: dict[str, int] = {}
        self.outside = 0  # analysed tracks with no URI: outside MPD's music directory
        self._fingerprint: tuple[int, float, int] | None = None
        self._next_check = 0.0
        self._build_s = 0.0
        self._outside_digests: frozenset[str] = frozenset()

    def refresh(self, now: float, *, force: bool = False) -> bool:
        """Rebuild the index when the analysed library changed (not more often than it is worth)."""
        if not force and now < self._next_check:
            return False
        fingerprint = self.store.analysed_fingerprint()
        self._next_check = now + max(MIN_REBUILD_EVERY_S, REBUILD_COST_FACTOR * self._build_s)
        if fingerprint == self._fingerprint and self.catalogue is not None:
            return False
        started = time.monotonic()
        cat = Catalogue.build(tracks_from_rows(self.store.playlist_tracks()))
        by_uri: dict[str, int] = {}
        for index, track in enumerate(cat.tracks):
            uri = self.uris.to_uri(track.path)
            if uri is not None:
                by_uri.setdefault(uri, index)
        self.space = Space(cat, self.rules.weights)
        self.catalogue, self.by_uri, self._fingerprint = cat, by_uri, fingerprint
        mapped = set(by_uri.values())
        self._outside_digests = frozenset(t.digest for i, t in enumerate(cat.tracks) if i not in mapped)
        self.outside = len(cat) - len(mapped)
        self._build_s = time.monotonic() - started
        log.info("radio index: %d analysed tracks (%d outside the music directory) in %.1f s",
                 len(cat), self.outside, self._build_s,
                 extra={"EVENT": "radio_index", "TRACKS": len(cat),
                        "DURATION_MS": round(1000 * self._build_s)})
        return True

    def index_of(self, uri: str) -> int | None:
        """Return the catalogue row of an MPD URI, or None when that song is not analysed."""
        if uri in self.by_uri:
            return self.by_uri[uri]
        if self.catalogue is None:
            return None
        for path in self.uris.candidates(uri):
            found = self.catalogue.by_path.get(path)
            if found is not None:
                return found
        return None

    def label(self, uri: str) -> str:
        index = self.index_of(uri)
        return label(self.catalogue.tracks[index]) if index is not None and self.catalogue else uri

    def pick(self, seeds: Sequence[str], queued: Sequence[str], exclude: Iterable[str],
             count: int) -> list[Pick]:
        """Return up to `count` new songs as MPD URIs; raise PlaylistError when none can be chosen."""
        cat = self.catalogue
        if cat is None or not len(cat):
            raise PlaylistError("nothing is analysed yet")
        if not self.by_uri:
            raise PlaylistError(f"none of the {len(cat)} analysed tracks is under MPD's music directory "
                                f"{self.uris.music_directory}: set [radio] music_directory to MPD's")
        seed_rows = _rows(self, seeds)
        if not seed_rows:
            raise PlaylistError("the current song is not analysed yet (nothing to seed from)")
        queued_rows = _rows(self, queued, unique=False)
        exclude_rows = _rows(self, exclude)
        rules = replace(self.rules, exclude_digests=self.rules.exclude_digests | self._outside_digests)
        playlist = choose_next(cat, rules, seed_rows, queued_rows, exclude_rows, count, self.space)
        picks = []
        for entry in playlist.entries:
            uri = self.uris.to_uri(entry.track.path)
            if uri is not None:
                picks.append(Pick(uri, label(entry.track), explain_text(entry)))
        return picks


def _rows(picker: Picker, uris: Iterable[str], unique: bool = True) -> list[int]:
    rows: list[int] = []
    for uri in uris:
        index = picker.index_of(uri)
        if index is not None and (not unique or index not in rows):
            rows.append(index)
    return rows
