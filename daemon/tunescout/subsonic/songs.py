"""The server's songs, listed once and matched to tunescout's files by path.

A Subsonic song's `path` is where the server sees the file: relative to its music folder
(supysonic, gonic, Navidrome with "report real path"), or absolute (Airsonic, older servers).
`music_folder` is that folder as the server names it; one of tunescout's files is the server's
song when its path inside its library folder is the song's path inside `music_folder`. Paths are
compared in Unicode NFC (a server on another machine may have been handed NFD names).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple


class ServerSong(NamedTuple):
    """What tunescout keeps of a server's song: its ids. A NamedTuple: a listing holds one per
    song, 100,000 at a time, where the server's own objects would take a hundred times more."""

    id: str
    artist_id: str | None
    album_id: str | None
    cover_art: str | None
    parent: str | None


def _key(path: str) -> str:
    return unicodedata.normalize("NFC", path.replace("\\", "/")).strip("/")


def song_keys(song_path: str, music_folder: Path | None) -> tuple[str, ...]:
    """Return the keys a server's song path may be known by: inside the music folder, as given."""
    if not song_path:
        return ()
    if not song_path.startswith("/"):
        return (_key(song_path),)
    absolute = PurePosixPath(song_path)
    if music_folder is not None and absolute.is_relative_to(music_folder.as_posix()):
        return (_key(str(absolute.relative_to(music_folder.as_posix()))), "/" + _key(song_path))
    return ("/" + _key(song_path),)


def file_keys(path: Path, roots: Sequence[Path]) -> tuple[str, ...]:
    """Return the keys one of tunescout's files may be known by: inside its library folder, whole."""
    whole = "/" + _key(path.as_posix())
    for root in roots:
        if path.is_relative_to(root):
            return (_key(path.relative_to(root).as_posix()), whole)
    return (whole,)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class SongList:
    """One listing of the server's songs by path key; replaced whole, never changed."""

    by_key: Mapping[str, ServerSong]
    total: int  # songs the server listed
    listed_at: float
    sample: str | None = None  # one song's path as the server reports it (for a mismatch)

    @classmethod
    def build(cls, songs: Iterable[Mapping[str, Any]], music_folder: Path | None,
              listed_at: float) -> SongList:
        by_key: dict[str, ServerSong] = {}
        total = 0
        sample = None
        for song in songs:
            total += 1
            path = str(song.get("path") or "")
            sample = sample or path or None
            entry = ServerSong(str(song["id"]), _text(song.get("artistId")), _text(song.get("albumId")),
                               _text(song.get("coverArt")), _text(song.get("parent")))
            for key in song_keys(path, music_folder):
                by_key.setdefault(key, entry)
        return cls(by_key, total, listed_at, sample)

    def find(self, path: Path, roots: Sequence[Path]) -> ServerSong | None:
        return next((self.by_key[k] for k in file_keys(path, roots) if k in self.by_key), None)

    def match(self, paths: Iterable[Path], roots: Sequence[Path]) -> dict[Path, ServerSong]:
        """Return the server's song of each file it has; a file the server lacks is left out."""
        found = {}
        for path in paths:
            song = self.find(path, roots)
            if song is not None:
                found[path] = song
        return found
