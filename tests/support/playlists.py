"""Read back what the daemon wrote (shared by playlist tests)."""

from __future__ import annotations

from pathlib import Path

from tunescout.playlists.io import read_m3u8


def read_paths(path: Path) -> list[Path]:
    """Return the track paths of an M3U8 file (resolved against its folder), [] if absent."""
    if not path.exists():
        return []
    items = read_m3u8(path)
    return [item.path if item.path.is_absolute() else path.parent / item.path for item in items]
