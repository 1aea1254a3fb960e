"""The library as the HTTP API answers from it: a playlist Catalogue, each track's external id and
the artists, rebuilt in a thread of its own whenever the analysed tracks change.

Requests never build anything: they take the index there is (an immutable object, swapped whole),
so a rebuild at 100,000 tracks (seconds) never makes a plugin wait, and the main loop and its
watchdog never see the HTTP side at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tunescout.errors import StoreError
from tunescout.playlists.catalogue import Catalogue, Track
from tunescout.playlists.keeper import tracks_from_rows
from tunescout.playlists.request import DEFAULT_WEIGHTS, Rules
from tunescout.playlists.space import Space
from tunescout.playlists.vectors import FloatArray
from tunescout.store.reader import StoreReader, TrackRow
from tunescout.tagexpr import normalise_text, tag_texts

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0  # how often the store is asked whether the analysed tracks changed

ServerIds = Callable[[Sequence[TrackRow]], Mapping[Path, tuple[str, str | None]] | None]
"""Rows → path → (the server's song id, its artist id); None: keep tunescout's own ids."""


@dataclass(frozen=True)
class Artist:
    """One artist as `similar_artists` sees it: the name, an id and the mean of its tracks."""

    name: str
    id: str
    members: tuple[int, ...]  # catalogue indices


@dataclass(frozen=True)
class TrackIndex:
    """The catalogue with ids and artists; immutable, replaced whole on a library change."""

    catalogue: Catalogue
    ids: tuple[str, ...]  # per catalogue index: the id a client names the track by
    by_id: Mapping[str, int]
    artists: tuple[Artist, ...]
    artist_keys: Mapping[str, int]  # folded name, and id, -> position in `artists`
    space: Space  # the weighted matrix (default group weights), its norms, the copy masks
    centroids: FloatArray  # (artists, D): each artist's mean weighted vector
    version: tuple[object, ...]
    server_ids: bool  # the ids are the Subsonic server's
    # each answered track's words, filled as requests name them (a dict: set atomically)
    _names: dict[int, tuple[str, str, str]] = field(default_factory=dict, compare=False, repr=False)

    def names(self, row: int) -> tuple[str, str, str]:
        """Return a track's (title, artist, album) as answers give them, read from its tags once."""
        found = self._names.get(row)
        if found is None:
            track = self.catalogue.tracks[row]
            found = self._names.setdefault(row, (track.title, track.artist, track.album))
        return found

    def weighted(self, rows: npt.NDArray[np.intp] | int) -> FloatArray:
        """Return rows of the catalogue's matrix with the default group weights (float64)."""
        return self.space.rows(rows)

    @classmethod
    def build(cls, rows: Sequence[TrackRow], version: tuple[object, ...],
              server: Mapping[Path, tuple[str, str | None]] | None = None) -> TrackIndex:
        """Index the analysed rows; with `server`, only the tracks the server knows, by its ids."""
        if server is not None:
            rows = [r for r in rows if r.path in server]
        tracks = tracks_from_rows(rows)  # with sizes (the copy preferred) and decode warnings (suspect)
        cat = Catalogue.build(tracks)
        ids = tuple(server[r.path][0] if server is not None else str(r.id) for r in rows)
        artist_ids = [server[r.path][1] if server is not None else None for r in rows]
        artists = _artists(tracks, artist_ids)
        keys: dict[str, int] = {}
        for position, artist in enumerate(artists):
            keys.setdefault(normalise_text(artist.name), position)
            keys.setdefault(artist.id, position)
        space = Space(cat, DEFAULT_WEIGHTS)
        space.base_mask(Rules())  # the requests' masks, made here rather than by the first request
        width = cat.matrix.values.shape[1] if cat.matrix.values.ndim == 2 else 0
        centroids = (np.stack([space.rows(np.asarray(a.members, dtype=np.intp)).mean(axis=0)
                               for a in artists])
                     if artists else np.zeros((0, width)))
        return cls(cat, ids, {ident: i for i, ident in enumerate(ids)}, tuple(artists), keys,
                   space, centroids, version, server is not None)


def _artists(tracks: Sequence[Track], server_ids: Sequence[str | None]) -> list[Artist]:
    """Group tracks by folded artist name (every name of a multi-artist tag counts)."""
    found: dict[str, tuple[str, str | None, list[int]]] = {}
    for i, track in enumerate(tracks):
        names = tag_texts(track.tags, "artist") or tag_texts(track.tags, "albumartist")
        for name in names:
            key = normalise_text(name)
            if not key:
                continue
            entry = found.setdefault(key, (name, server_ids[i] if len(names) == 1 else None, []))
            entry[2].append(i)
    return [Artist(name, ident or name, tuple(members)) for name, ident, members in found.values()]


class IndexKeeper:
    """Keep a TrackIndex current from the database, in one thread with its own read-only connection."""

    def __init__(self, db: Path, server_ids: ServerIds | None = None,
                 check_every_s: float = CHECK_EVERY_S) -> None:
        self._db = db
        self._server_ids = server_ids
        self._check_every_s = check_every_s
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._refresh = threading.Event()
        self._thread: threading.Thread | None = None
        self.index: TrackIndex | None = None  # read by request threads; replaced whole
        self.error: str | None = None  # why there is no index yet

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webapi-index", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def refresh(self) -> None:
        """Rebuild at the next turn even when the tracks look unchanged (the server's ids moved)."""
        self._refresh.set()

    def wait_ready(self, timeout_s: float) -> TrackIndex | None:
        """Return the index, waiting up to `timeout_s` for the first one (a fresh start)."""
        self._ready.wait(timeout_s)
        return self.index

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._check()
            except Exception as exc:  # the index thread must outlive a bad turn; the next one retries
                self.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, StoreError) else str(exc)
                log.warning("http api: cannot index the library: %s", self.error,
                            extra={"EVENT": "http_index_failed"})
            self._stop.wait(self._check_every_s)

    def _check(self) -> None:
        store = StoreReader.open(self._db)
        try:
            version = store.analysed_version()
            current = self.index
            if current is not None and current.version == version and not self._refresh.is_set():
                return
            self._refresh.clear()
            started = time.monotonic()
            rows = store.playlist_tracks()
        finally:
            store.close()
        server = self._server_ids(rows) if self._server_ids is not None else None
        if self._server_ids is not None and server is None:
            # the server is unreachable: keep its ids from before (tunescout's own would mean
            # other songs to the plugin), and ask again at the next turn
            self.error = self.error or "waiting for the Subsonic server's song ids"
            self._refresh.set()
            return
        self.index = TrackIndex.build(rows, version, server)
        self.error = None
        self._ready.set()
        ms = int(1000 * (time.monotonic() - started))
        log.info("http api: indexed %d tracks in %d ms%s", len(self.index.ids), ms,
                 " (the Subsonic server's ids)" if server is not None else "",
                 extra={"EVENT": "http_indexed", "TRACKS": len(self.index.ids), "DURATION_MS": ms})
