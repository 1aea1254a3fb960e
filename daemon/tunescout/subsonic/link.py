"""The daemon's link to the user's Subsonic server: its song ids for the HTTP API and the playlists
pushed to it, from threads of their own (never the main loop's: the watchdog keeps pinging).

One state for the server (connecting, ok, failed) with one journal line per change of it
(EVENT=subsonic_failed REASON=unreachable|refused|not_subsonic|failed, EVENT=subsonic_connected),
and a backoff shared by everything that asks: a server that is down is asked again after 5 s,
10 s, 20 s ... up to 5 minutes, not hammered by every index turn and every playlist.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunescout.config import SubsonicConfig
from tunescout.errors import SubsonicError
from tunescout.store.reader import TrackRow
from tunescout.subsonic.client import SubsonicClient
from tunescout.subsonic.songs import ServerSong, SongList

log = logging.getLogger(__name__)

RETRY_FIRST_S = 5.0
RETRY_MAX_S = 300.0
RELIST_AFTER_S = 60.0  # a listing younger than this is reused when the library changed
RELIST_EVERY_S = 300.0  # songs the server scanned since: looked for this often


@dataclass(frozen=True)
class PlaylistPush:
    """One playlist to put on the server: its name and its files, in order."""

    name: str
    paths: tuple[Path, ...]


class SubsonicLink:
    """Ask the server for its songs and push playlists to it, with one state and one backoff."""

    def __init__(self, config: SubsonicConfig, roots: Sequence[Path], wake: Callable[[], None]) -> None:
        self.config = config
        self.client = SubsonicClient(config)
        self.roots = tuple(roots)
        self.music_folder = config.music_folder or (self.roots[0] if len(self.roots) == 1 else None)
        self._wake = wake
        self.refresh_index: Callable[[], None] | None = None  # the API's IndexKeeper.refresh
        self._lock = threading.Lock()
        self._listing_lock = threading.Lock()
        self._listing: SongList | None = None
        self._pending: dict[str, PlaylistPush] = {}
        self._pushed: dict[str, tuple[str, ...]] = {}  # name -> the song ids last pushed
        self._playlists: dict[str, dict[str, Any]] = {}
        self._extensions: list[dict[str, Any]] = []
        self._asked_ids = False
        self.state = "connecting"
        self.reason: str | None = None  # the REASON word of the failure
        self.error: str | None = None  # its message
        self._since = time.time()
        self._retry_at, self._retry_s = 0.0, RETRY_FIRST_S
        self._matched: int | None = None  # analysed tracks the server has (known once the API asks)
        self._missing: int | None = None
        self.changes = 0  # bumped at every change of what `status` shows
        self._stop = threading.Event()
        self._work = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="subsonic", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._work.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    # --- what the others ask ---------------------------------------------------------------

    def server_ids(self, rows: Sequence[TrackRow]) -> Mapping[Path, tuple[str, str | None]] | None:
        """The IndexKeeper's hook: each analysed file's song id on the server; None: not now."""
        self._asked_ids = True
        listing = self._current(RELIST_AFTER_S)
        if listing is None:
            return None
        found = listing.match((row.path for row in rows), self.roots)
        missing = len(rows) - len(found)
        if (len(found), missing) != (self._matched, self._missing):
            self._matched, self._missing = len(found), missing
            self._changed()
            if missing:
                log.info("subsonic: %d of %d analysed tracks are not on %s (yet); the API leaves "
                         "them out%s", missing, len(rows), self.config.url, self._hint(listing, found),
                         extra={"EVENT": "subsonic_missing", "TRACKS": missing})
        return {path: (song.id, song.artist_id) for path, song in found.items()}

    def song(self, path: Path) -> ServerSong | None:
        """Return the server's ids of one file, from the last listing (for OpenSubsonic entries)."""
        listing = self._listing
        return listing.find(path, self.roots) if listing is not None else None

    def extensions(self) -> list[dict[str, Any]]:
        return list(self._extensions)

    def push(self, playlists: Sequence[PlaylistPush]) -> None:
        """Hand playlists over (from the rebuild thread); the link's thread puts them on the server."""
        with self._lock:
            for playlist in playlists:
                self._pending[playlist.name] = playlist
                self._playlists.setdefault(playlist.name, {"state": "pending"})
        self._work.set()

    def status(self) -> dict[str, Any]:
        """Return what `status` shows of the link: the server's state and each playlist's."""
        listing = self._listing
        with self._lock:
            playlists = {name: dict(info) for name, info in self._playlists.items()}
        return {"url": self.config.url, "state": self.state, "reason": self.reason,
                "error": self.error, "since": self._since,
                "retry_in_s": (round(max(0.0, self._retry_at - time.monotonic()), 1)
                               if self.state == "failed" else None),
                "server": self.client.server.get("type"), "songs": listing.total if listing else None,
                "matched": self._matched, "missing": self._missing, "playlists": playlists}

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception:  # the link's thread must outlive a bug in one turn
                log.exception("subsonic: a turn failed", extra={"EVENT": "error"})
            wait = max(1.0, self._retry_at - time.monotonic()) if self._pending else RELIST_EVERY_S
            self._work.wait(min(wait, RELIST_EVERY_S))
            self._work.clear()

    def _turn(self) -> None:
        if time.monotonic() < self._retry_at:
            return
        if self.state == "ok" and not (self._pending or self._asked_ids):
            return  # connected once (the login works); nobody needs the server's songs now
        before = self._listing
        listing = self._current(RELIST_EVERY_S if not self._pending else RELIST_AFTER_S)
        if listing is None:
            return
        if (before is not None and listing is not before and listing.by_key != before.by_key
                and self._asked_ids and self.refresh_index is not None):
            self.refresh_index()  # the server scanned: the API's ids follow
        with self._lock:
            pending = list(self._pending.values())
        for playlist in pending:
            if not self._push(playlist, listing):
                return

    def _push(self, playlist: PlaylistPush, listing: SongList) -> bool:
        """Put one playlist on the server: create it, or replace the songs of the one of its name."""
        songs = [listing.find(path, self.roots) for path in playlist.paths]
        ids = tuple(song.id for song in songs if song is not None)
        missing = len(songs) - len(ids)
        info = {"state": "pushed", "songs": len(ids), "missing": missing, "at": time.time()}
        if self._pushed.get(playlist.name) != ids:
            try:
                existing = next((p for p in self.client.playlists() if p.get("name") == playlist.name
                                 and p.get("owner", self.config.user) == self.config.user), None)
                self.client.create_playlist(playlist.name, ids,
                                            str(existing["id"]) if existing else None)
            except SubsonicError as exc:
                self._failed(exc)
                with self._lock:
                    self._playlists[playlist.name] = {"state": "failed", "error": str(exc)}
                return False
            self._pushed[playlist.name] = ids
            log.info("subsonic: playlist %s %s on %s (%d songs%s)", playlist.name,
                     "replaced" if existing else "created", self.config.url, len(ids),
                     f"; {missing} tracks not on the server" if missing else "",
                     extra={"EVENT": "subsonic_playlist", "PLAYLIST": playlist.name,
                            "TRACKS": len(ids), "MISSING": missing})
        with self._lock:
            if self._pending.get(playlist.name) is playlist:
                del self._pending[playlist.name]
            self._playlists[playlist.name] = info
        self._changed()
        return True

    # --- the server's state ----------------------------------------------------------------

    def _current(self, max_age_s: float) -> SongList | None:
        """Return a listing no older than `max_age_s`, listing again when needed and allowed;
        in a backoff, the last one there is (or None)."""
        with self._listing_lock:  # the index's thread and the link's: one listing at a time
            listing = self._listing
            if listing is not None and time.time() - listing.listed_at < max_age_s:
                return listing
            if time.monotonic() < self._retry_at:
                return listing
            return self._list()

    def _list(self) -> SongList | None:
        try:
            if self.state != "ok":
                self.client.ping()
                self._extensions = self.client.extensions()
            started = time.time()
            listing = SongList.build(self.client.songs(), self.music_folder, started)
        except SubsonicError as exc:
            self._failed(exc)
            return self._listing
        self._listing = listing
        self._connected(listing)
        return listing

    def _failed(self, exc: SubsonicError) -> None:
        self._retry_at = time.monotonic() + self._retry_s
        told = self.state == "failed" and self.reason == exc.reason
        if not told:
            log.warning("subsonic: %s; trying again in %.0f s, then less and less often", exc,
                        self._retry_s, extra={"EVENT": "subsonic_failed", "REASON": exc.reason,
                                              "SUBSONIC_URL": self.config.url})
            self.state, self.reason, self._since = "failed", exc.reason, time.time()
        else:
            log.debug("subsonic: still failing: %s", exc, extra={"EVENT": "subsonic_retry_failed"})
        self.error = str(exc)
        self._retry_s = min(RETRY_MAX_S, self._retry_s * 2)
        self._changed()

    def _connected(self, listing: SongList) -> None:
        self._retry_at, self._retry_s = 0.0, RETRY_FIRST_S
        if self.state != "ok":
            server = self.client.server
            log.info("subsonic: connected to %s (%s %s): %d songs", self.config.url,
                     server.get("type", "Subsonic"), server.get("serverVersion", server.get("version", "")),
                     listing.total, extra={"EVENT": "subsonic_connected", "SUBSONIC_URL": self.config.url,
                                           "TRACKS": listing.total})
            self.state, self.reason, self.error, self._since = "ok", None, None, time.time()
        self._changed()

    def _changed(self) -> None:
        self.changes += 1
        self._wake()

    def _hint(self, listing: SongList, found: Mapping[Path, ServerSong]) -> str:
        """Say why nothing matched: the paths the server reports are not where tunescout looks."""
        if found or not listing.total:
            return ""
        return (f"; no song matched: the server reports paths like {listing.sample!r}, looked for "
                f"inside subsonic.music_folder ({self.music_folder}); set music_folder to where "
                "the server sees the library (Navidrome: turn on 'Report Real Path' for the player)")


def status_line(data: Mapping[str, Any]) -> str:
    """Return the line `tunescout status` prints of a link's status (read back from JSON)."""
    line = f"subsonic {data.get('url')}: {data.get('state')}"
    if data.get("state") == "failed":
        line += f" ({data.get('error')}; again in {data.get('retry_in_s') or 0:.0f} s)"
    elif data.get("songs") is not None:
        line += f", {data['songs']} songs"
        if data.get("matched") is not None:
            line += f", {data['matched']} tracks matched"
        if data.get("missing"):
            line += f", {data['missing']} not on the server"
    playlists = data.get("playlists") or {}
    if playlists:
        line += "; playlists: " + ", ".join(f"{name} {info.get('state')}" for name, info in playlists.items())
    return line
