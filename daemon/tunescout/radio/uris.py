"""Map tunescout's paths to MPD's URIs and back, through MPD's `music_directory`.

MPD names a song by its path relative to its `music_directory`; tunescout by the path it found
the file at under `[library] paths`. The two meet in several ways on a real server: the library
is the music directory, or a folder inside it, or one of several folders linked into it by
symlinks (MPD follows them), or the same disk seen through a symlinked mount point. So every
prefix a file can be known by is kept with the URI prefix it stands for, longest first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

LINK_DEPTH = 2  # folders of the music directory searched for symlinks into the library


class UriMap:
    """Translate between library paths and MPD URIs."""

    def __init__(self, music_directory: Path, library_paths: Iterable[Path]) -> None:
        self.music_directory = music_directory
        pairs: dict[bytes, str] = {}
        base = os.fsencode(os.path.abspath(music_directory))
        for prefix in _variants(base):
            pairs.setdefault(prefix, "")
        for link, link_uri in _links(base, LINK_DEPTH):
            for prefix in _variants(link):
                pairs.setdefault(prefix, link_uri)
        for root in library_paths:
            raw = os.fsencode(os.path.abspath(root))
            root_uri = self._relative(raw, pairs)
            if root_uri is not None:
                for prefix in _variants(raw):
                    pairs.setdefault(prefix, root_uri)
        self._pairs = sorted(pairs.items(), key=lambda p: len(p[0]), reverse=True)

    @staticmethod
    def _relative(path: bytes, pairs: dict[bytes, str]) -> str | None:
        for prefix, uri in sorted(pairs.items(), key=lambda p: len(p[0]), reverse=True):
            if path == prefix or path.startswith(prefix.rstrip(b"/") + b"/"):
                rest = os.fsdecode(path[len(prefix):].lstrip(b"/"))
                return "/".join(p for p in (uri, rest) if p)
        return None

    def to_uri(self, path: Path) -> str | None:
        """Return the URI MPD knows a library file by, or None when it is outside the music directory."""
        raw = os.fsencode(os.path.abspath(path))
        found = self._match(raw)
        if found is None:
            found = self._match(os.path.realpath(raw))
        return found

    def _match(self, raw: bytes) -> str | None:
        for prefix, uri in self._pairs:
            if raw.startswith(prefix.rstrip(b"/") + b"/"):
                rest = os.fsdecode(raw[len(prefix):].lstrip(b"/"))
                return f"{uri}/{rest}" if uri else rest
        return None

    def candidates(self, uri: str) -> Iterator[Path]:
        """Yield the paths a URI may be known by in the library, most specific first."""
        seen: set[bytes] = set()
        encoded = os.fsencode(uri)
        for prefix, start in self._pairs:
            head = os.fsencode(start)
            if head and not (encoded == head or encoded.startswith(head + b"/")):
                continue
            rest = encoded[len(head):].lstrip(b"/")
            full = os.path.join(prefix, rest)
            if full not in seen:
                seen.add(full)
                yield Path(os.fsdecode(full))


def _variants(path: bytes) -> list[bytes]:
    """Return a folder as written and as resolved (a symlinked mount point, /srv → /mnt/disk)."""
    real = os.path.realpath(path)
    return [path] if real == path else [path, real]


def _links(base: bytes, depth: int) -> Iterator[tuple[bytes, str]]:
    """Yield (target, uri) of symlinked folders in the top `depth` levels of the music directory."""
    level = [(base, "")]
    for _ in range(depth):
        deeper = []
        for folder, uri in level:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                name = os.fsdecode(entry.name)
                child_uri = f"{uri}/{name}" if uri else name
                try:
                    if entry.is_symlink() and entry.is_dir():
                        yield os.path.realpath(entry.path), child_uri
                    elif entry.is_dir(follow_symlinks=False):
                        deeper.append((os.fsencode(entry.path), child_uri))
                except OSError:
                    continue
        level = deeper
