"""Which tracks recent playlists held, for "not in the last K playlists" (`exclude_recent`).

A small JSON file, rewritten atomically; an unreadable one is treated as empty, since losing the
history only means a track may come back sooner.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tunescout.playlists.atomic import atomic_write
from tunescout.playlists.explain import Playlist
from tunescout.playlists.request import HISTORY_KEEP

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoryEntry:
    name: str
    at: float
    digests: tuple[str, ...]


def read_history(path: Path) -> list[HistoryEntry]:
    """Return the remembered playlists, oldest first; a missing or unreadable file is empty."""
    try:
        data = json.loads(path.read_bytes())
        return [HistoryEntry(str(e["name"]), float(e["at"]), tuple(str(d) for d in e["digests"]))
                for e in data["playlists"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable playlist history %s: %s", path, exc,
                    extra={"HISTORY_PATH": str(path), "EVENT": "history_unreadable"})
        return []


def recent_digests(path: Path, count: int) -> frozenset[str]:
    """Return the digests of every track in the last `count` playlists."""
    if count <= 0:
        return frozenset()
    return frozenset(d for entry in read_history(path)[-count:] for d in entry.digests)


def record_history(path: Path, name: str, playlist: Playlist, now: float, keep: int = HISTORY_KEEP) -> None:
    """Append a playlist to the history (atomically), keeping the last `keep`."""
    entries = read_history(path)
    entries.append(HistoryEntry(name, now, tuple(t.digest for t in playlist.tracks)))
    data = {"version": 1, "playlists": [
        {"name": e.name, "at": e.at, "digests": list(e.digests)} for e in entries[-keep:]
    ]}
    atomic_write(path, json.dumps(data).encode())
