"""The daemon's configured playlists, rebuilt in a thread once the library has gone quiet.

The wiring's part of the playlist keeper: it tells the keeper when the library changed, starts a
rebuild in a thread with its own read-only connection (at 100k tracks building the index takes
seconds, and the main loop must keep pinging the watchdog meanwhile) and wakes the loop after.
Playlists with `subsonic = true` are handed to the Subsonic link after each rebuild; its own
thread puts them on the server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tunescout.config import Config
from tunescout.playlists.request import PlaylistSpec
from tunescout.store.reader import StoreReader
from tunescout.subsonic.link import PlaylistPush

if TYPE_CHECKING:
    from tunescout.playlists.explain import Playlist
    from tunescout.playlists.keeper import PlaylistKeeper

Push = Callable[[Sequence[PlaylistPush]], None]

log = logging.getLogger("tunescout.service")


class PlaylistRebuilds:
    """Keep the configured playlists up to date; nothing at all when none are configured."""

    def __init__(self, config: Config, wake: Callable[[], None], push: Push | None = None) -> None:
        self._wake = wake
        self._push = push
        self._db = config.store.path
        self.keeper = _keeper(config)
        self._changes_seen = 0
        self._thread: threading.Thread | None = None

    def reconfigure(self, config: Config) -> None:
        self._db = config.store.path
        self.keeper = _keeper(config)

    def next_due(self) -> float | None:
        return self.keeper.next_due() if self.keeper is not None else None

    def tick(self, now: float, changes: int) -> None:
        """Note library changes (a running count); start a rebuild when one is due."""
        if self.keeper is None:
            return
        if changes != self._changes_seen:
            self._changes_seen = changes
            self.keeper.note_change(now)
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
        if self._thread is None and self.keeper.due(now):
            self._thread = threading.Thread(target=self._rebuild, args=(self.keeper, self._db),
                                            name="playlists", daemon=True)
            self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Let a playlist being written finish (at stop)."""
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _rebuild(self, keeper: PlaylistKeeper, db: Path) -> None:
        store = StoreReader.open(db)
        pushes: list[PlaylistPush] = []

        def built(spec: PlaylistSpec, playlist: Playlist) -> None:
            if spec.subsonic:
                pushes.append(PlaylistPush(spec.name, tuple(t.path for t in playlist.tracks)))

        try:
            for path in keeper.rebuild(store, time.time(), built):
                log.info("playlist written to %s", path,
                         extra={"EVENT": "playlist_written", "TRACK_PATH": str(path)})
            if pushes and self._push is not None:
                self._push(pushes)
        except Exception:  # a playlist thread must not die silently
            log.exception("rebuilding the playlists failed", extra={"EVENT": "error"})
        finally:
            store.close()
            self._wake()


def _keeper(config: Config) -> PlaylistKeeper | None:
    """Return a PlaylistKeeper for the configured playlists, or None when there are none."""
    if not config.playlists.specs:
        return None
    from tunescout.playlists.keeper import PlaylistKeeper  # numpy: only with playlists configured

    history = config.playlists.history or config.store.path.with_name("playlist-history.json")
    return PlaylistKeeper(config.playlists.specs, config.playlists.debounce_s, history, time.monotonic())
