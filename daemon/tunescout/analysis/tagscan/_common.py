"""What every container scanner shares: the limits, the result, the byte sources, cutting."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

MAX_TAG_BYTES = 4 << 20  # kept for parsing per file; the rest is skipped and noted

VALUE_BYTES = 64 << 10  # one value (frame, comment, atom) is cut to this; ours are cut at 1000 chars

HEAD_BYTES = 96 << 10  # of a picture, for its header (a JPEG's EXIF can push SOF past 64 KiB)

MAX_ENTRIES = 1024  # frames/comments/attributes kept; tags.py reads only the first 100 anyway


class TagScanError(Exception):
    """The tag structure is malformed; the message says where."""


@dataclass
class Picture:
    """A cover seen while scanning: its mime, payload size and first bytes (never all of it)."""

    mime: str
    nbytes: int
    head: bytes
    width: int = 0
    height: int = 0


@dataclass
class Scan:
    """What a container scan kept: a rebuilt tag for mutagen or Vorbis comments, and a cover."""

    kind: str  # "id3", "mp4", "asf", "vorbis" or "none" (a known container without tags)
    data: bytes = b""  # the rebuilt tag ("id3", "mp4", "asf")
    comments: list[tuple[str, str]] = field(default_factory=list)  # "vorbis"
    picture: Picture | None = None
    note: str | None = None  # set when part of the tag was skipped for size
    id3v1: bytes = b""  # an MP3's last 131 bytes, for mutagen to find an ID3v1 tag in


class Budget:
    """Counts kept bytes and entries; past the caps, entries are skipped and a note is left."""

    def __init__(self) -> None:
        self.kept = 0
        self.entries = 0
        self.note: str | None = None

    def take(self, nbytes: int) -> bool:
        if self.entries >= MAX_ENTRIES or self.kept + nbytes > MAX_TAG_BYTES:
            self.note = self.note or (
                f"tag block larger than {MAX_TAG_BYTES >> 20} MiB or {MAX_ENTRIES} entries: "
                "the rest was skipped"
            )
            return False
        self.kept += nbytes
        self.entries += 1
        return True


class Source:
    """Bytes [start, end) of a file, read forwards; skipping seeks."""

    def __init__(self, handle: BinaryIO, start: int, end: int) -> None:
        self.handle, self.pos, self.end = handle, start, end

    def remaining(self) -> int:
        return self.end - self.pos

    def read(self, n: int) -> bytes:
        n = max(0, min(n, self.end - self.pos))
        self.handle.seek(self.pos)
        data = self.handle.read(n)
        self.pos += len(data)
        return data

    def skip(self, n: int) -> int:
        n = max(0, min(n, self.end - self.pos))
        self.pos += n
        return n

    def exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise TagScanError(f"{what} runs past the end of its block")
        return data


class UnsyncSource(Source):
    """An ID3v2.2/2.3 tag with whole-tag unsynchronisation, decoded 64 KiB at a time."""

    def __init__(self, handle: BinaryIO, start: int, end: int) -> None:
        super().__init__(handle, start, end)
        self.buffer = b""
        self.after_ff = False

    def remaining(self) -> int:
        return len(self.buffer) + self.end - self.pos  # an upper bound: stuffing bytes go

    def _fill(self, n: int) -> None:
        while len(self.buffer) < n and self.pos < self.end:
            self.handle.seek(self.pos)
            chunk = self.handle.read(min(64 << 10, self.end - self.pos))
            if not chunk:
                self.end = self.pos
                break
            self.pos += len(chunk)
            if self.after_ff and chunk[:1] == b"\0":
                chunk = chunk[1:]
            self.after_ff = chunk.endswith(b"\xff")
            self.buffer += chunk.replace(b"\xff\x00", b"\xff")

    def read(self, n: int) -> bytes:
        self._fill(n)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def skip(self, n: int) -> int:
        done = 0
        while done < n:
            step = min(n - done, 64 << 10)
            got = len(self.read(step))
            done += got
            if got < step:
                break
        return done


def flac_picture(head: bytes) -> Picture | None:
    """Describe a FLAC PICTURE block (also the payload of METADATA_BLOCK_PICTURE) from its start."""
    try:
        _kind, mime_len = struct.unpack(">II", head[:8])
        mime = head[8 : 8 + mime_len].decode("ascii", errors="replace")
        pos = 8 + mime_len
        (desc_len,) = struct.unpack(">I", head[pos : pos + 4])
        pos += 4 + desc_len
        width, height, _depth, _colours, nbytes = struct.unpack(">IIIII", head[pos : pos + 20])
    except struct.error:
        return None
    return Picture(mime, nbytes, head[pos + 20 :], width, height)


def cut_text(data: bytes, limit: int, utf16: bool, start: int = 0) -> bytes:
    """Cut text at `limit` bytes on a character boundary (`start`: where the UTF-16 text begins)."""
    if len(data) <= limit:
        return data
    if utf16:
        limit -= (limit - start) % 2
        if limit - 2 >= start and 0xD8 <= data[limit - 1] <= 0xDB:  # high surrogate, little end
            limit -= 2
        return data[:limit]
    while limit > start and data[limit] & 0xC0 == 0x80:  # inside a UTF-8 sequence
        limit -= 1
    return data[:limit]


def read_at(handle: BinaryIO, start: int, end: int) -> bytes:
    handle.seek(start)
    return handle.read(max(0, end - start))
