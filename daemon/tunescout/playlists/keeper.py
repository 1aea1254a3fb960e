"""The playlists the daemon keeps: rebuild every configured playlist when the library has changed
and gone quiet, and rewrite only the files whose content changed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from tunescout.errors import PlaylistError
from tunescout.playlists.atomic import atomic_write
from tunescout.playlists.catalogue import Catalogue, Track
from tunescout.playlists.engine import path_playlist, query_playlist, similar_playlist
from tunescout.playlists.explain import Playlist
from tunescout.playlists.history import recent_digests, record_history
from tunescout.playlists.render import outside, relative_folder, render
from tunescout.playlists.request import PlaylistSpec
from tunescout.store.reader import TrackRow

log = logging.getLogger(__name__)


class PlaylistSource(Protocol):
    """What rebuilding reads: the store's one playlist read (a `StoreReader` is one)."""

    def playlist_tracks(self) -> list[TrackRow]: ...


def tracks_from_rows(rows: Iterable[TrackRow]) -> list[Track]:
    """Return Tracks from `StoreReader.playlist_tracks()` rows."""
    return [Track(r.path, r.digest, r.duration_s, r.tags, r.features, r.size_bytes, r.decode_warning)
            for r in rows]


def build_from_spec(cat: Catalogue, spec: PlaylistSpec, exclude: frozenset[str] = frozenset()) -> Playlist:
    """Build the playlist a spec describes; raise PlaylistError when it cannot be built."""
    rules = replace(spec.rules, exclude_digests=spec.rules.exclude_digests | exclude)
    if spec.path_from is not None and spec.path_to is not None:
        return path_playlist(cat, cat.index(spec.path_from), cat.index(spec.path_to), rules)
    if spec.query is not None:
        return query_playlist(cat, spec.query, rules)
    return similar_playlist(cat, [cat.index(p) for p in spec.seeds], rules)


Built = Callable[[PlaylistSpec, Playlist], None]
"""Told of each playlist built, written or unchanged (the Subsonic push)."""


def rebuild_playlists(store: PlaylistSource, specs: Sequence[PlaylistSpec], now: float,
                      history: Path | None = None, built: Built | None = None) -> list[Path]:
    """Rebuild every configured playlist; write (atomically) those whose content changed.

    Returns the files written. A playlist that cannot be built (its seed left the library) is
    logged and its old file kept: the next rebuild tries again. `built` hears of every playlist
    that was built, its file rewritten or already up to date.
    """
    if not specs:
        return []
    cat = Catalogue.build(tracks_from_rows(store.playlist_tracks()))
    written: list[Path] = []
    for spec in specs:
        try:
            exclude = recent_digests(history, spec.exclude_recent) if history else frozenset()
            playlist = build_from_spec(cat, spec, exclude)
            folder = relative_folder(spec)
            _warn_outside(spec, playlist, folder)
            data = render(playlist, spec.name, spec.format, relative_to=folder)
            unchanged = _unchanged(spec.output, data)
            if not unchanged:
                atomic_write(spec.output, data)
            if built is not None:
                built(spec, playlist)
            if unchanged:
                continue
            if history is not None:
                record_history(history, spec.name, playlist, now)
        except PlaylistError as exc:
            log.warning("playlist %s not rebuilt: %s", spec.name, exc,
                        extra={"PLAYLIST": spec.name, "EVENT": "playlist_failed"})
            continue
        if playlist.stopped_by is not None:
            log.warning("playlist %s stopped short: %s", spec.name, "; ".join(playlist.notes),
                        extra={"PLAYLIST": spec.name, "EVENT": "playlist_short"})
        log.info("wrote playlist %s (%d tracks)", spec.output, len(playlist.entries),
                 extra={"PLAYLIST": spec.name, "PLAYLIST_PATH": str(spec.output),
                        "TRACKS": len(playlist.entries), "EVENT": "playlist_written"})
        written.append(spec.output)
    return written


def _warn_outside(spec: PlaylistSpec, playlist: Playlist, folder: Path | None) -> None:
    """Say when relative paths leave the folder they are relative to: a server loads none of them."""
    if folder is None:
        return
    left = outside(playlist, folder)
    if left:
        where = "MPD's music_directory" if spec.format == "mpd" else "the playlist's folder"
        log.warning("playlist %s: %d tracks are outside %s %s (%s)%s", spec.name, len(left), where,
                    folder, left[0], "; left out" if spec.format == "mpd" else "",
                    extra={"PLAYLIST": spec.name, "EVENT": "playlist_outside"})


def _unchanged(path: Path, data: bytes) -> bool:
    """Return whether the file already holds exactly `data` (rewriting would make servers rescan)."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


class PlaylistKeeper:
    """Decide when to rebuild: after the library has been quiet for `debounce_s`.

    A library that never goes quiet (a first scan) still gets its playlists every
    `MAX_DELAY_FACTOR` debounce periods. The clock is passed in, so tests need no sleeps.
    """

    MAX_DELAY_FACTOR = 10

    def __init__(self, specs: Sequence[PlaylistSpec], debounce_s: float, history: Path | None,
                 now: float) -> None:
        self.specs = tuple(specs)
        self.debounce_s = debounce_s
        self.history = history
        self._first_change: float | None = now  # build once at start
        self._last_change = now

    def note_change(self, now: float) -> None:
        """Call when an analysis was recorded or files left the library."""
        if self._first_change is None:
            self._first_change = now
        self._last_change = now

    def next_due(self) -> float | None:
        """Return when a rebuild could next be due (the caller's clock), or None when idle."""
        if self._first_change is None or not self.specs:
            return None
        return min(self._last_change + self.debounce_s,
                   self._first_change + self.MAX_DELAY_FACTOR * self.debounce_s)

    def due(self, now: float) -> bool:
        if self._first_change is None or not self.specs:
            return False
        quiet = now - self._last_change >= self.debounce_s
        overdue = now - self._first_change >= self.MAX_DELAY_FACTOR * self.debounce_s
        return quiet or overdue

    def rebuild(self, store: PlaylistSource, now: float, built: Built | None = None) -> list[Path]:
        """Rebuild every playlist now and wait for the next change."""
        self._first_change = None
        return rebuild_playlists(store, self.specs, now, self.history, built)
