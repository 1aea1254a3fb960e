"""What the radio has heard: the songs MPD played, newest last, for seeds and the repeat window.

Kept in memory and, in the daemon, in a small JSON file beside the database (rewritten
atomically), so that a restart does not forget what was played an hour ago. Losing it only
means a track may come back sooner, so an unreadable file is read as empty.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tunescout.config import Config, RadioConfig
from tunescout.errors import PlaylistError
from tunescout.playlists.atomic import atomic_write

log = logging.getLogger(__name__)

KEEP = 2000  # entries kept at most, whatever the window


def history_path(config: Config) -> Path:
    """Return where the daemon's radio remembers what was played (the foreground one reads it)."""
    radio = config.radio or RadioConfig()
    return radio.history or config.store.path.with_name("radio-history.json")


@dataclass(frozen=True)
class Played:
    uri: str
    at: float  # Unix time it started playing


class PlayHistory:
    """The played songs, oldest first; `path` None: memory only (the foreground command)."""

    def __init__(self, path: Path | None, *, window_tracks: int, window_s: float) -> None:
        self.path = path
        self.window_tracks = window_tracks
        self.window_s = window_s
        self.items: list[Played] = []

    @classmethod
    def load(cls, path: Path | None, read_from: Path | None, *, window_tracks: int,
             window_s: float) -> PlayHistory:
        """Return the history in `read_from` (unreadable: empty), saved to `path` from now on."""
        history = cls(path, window_tracks=window_tracks, window_s=window_s)
        if read_from is None:
            return history
        try:
            data = json.loads(read_from.read_bytes())
            history.items = [Played(str(e["uri"]), float(e["at"])) for e in data["played"]][-KEEP:]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable radio history %s: %s", read_from, exc,
                        extra={"HISTORY_PATH": str(read_from), "EVENT": "history_unreadable"})
        return history

    def note(self, uri: str, now: float) -> bool:
        """Record that `uri` started playing; False when it is the song recorded last."""
        if self.items and self.items[-1].uri == uri:
            return False
        self.items.append(Played(uri, now))
        del self.items[:-KEEP]
        self._save()
        return True

    def recent(self, count: int) -> list[str]:
        """Return the last `count` distinct songs, newest first."""
        out: list[str] = []
        for item in reversed(self.items):
            if item.uri not in out:
                out.append(item.uri)
            if len(out) >= count:
                break
        return out

    def in_window(self, now: float) -> set[str]:
        """Return every song played among the last `window_tracks` or within `window_s`."""
        last = {item.uri for item in self.items[-self.window_tracks:]} if self.window_tracks else set()
        recent = {item.uri for item in self.items if now - item.at <= self.window_s}
        return last | recent

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"version": 1, "played": [{"uri": i.uri, "at": i.at} for i in self.items]}
        try:
            atomic_write(self.path, json.dumps(data).encode())
        except PlaylistError as exc:
            log.warning("cannot save the radio history: %s", exc,
                        extra={"HISTORY_PATH": str(self.path), "EVENT": "history_unwritable"})
            self.path = None  # said once; the history stays in memory
