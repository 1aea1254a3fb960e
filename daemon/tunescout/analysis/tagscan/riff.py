"""RIFF LIST/INFO text in WAV files: the chunk walk, seeking past audio and pictures."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

RIFF_INFO = {
    b"INAM": "title", b"IART": "artist", b"IPRD": "album", b"IGNR": "genre", b"ICRD": "date",
    b"ICMT": "comment", b"ITRK": "tracknumber", b"IPRT": "tracknumber", b"IMUS": "composer",
    b"ISFT": "encoder", b"ICOP": "copyright",
}


def riff_info(path: Path, max_value_bytes: int) -> Iterator[tuple[str, bytes | None]]:
    """Yield (name, raw text) of a WAV file's LIST/INFO chunks, reading only the bytes we keep.

    An INFO item we do not map is yielded as ("", None), so the caller's tag count sees it.
    """
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        for chunk_id, size, start in _riff_chunks(handle, 12, None):
            if chunk_id == b"LIST" and handle.read(4) == b"INFO":
                for info_id, info_size, info_start in _riff_chunks(handle, start + 4, start + size):
                    if info_id in RIFF_INFO:
                        handle.seek(info_start)
                        raw = handle.read(min(info_size, max_value_bytes))
                        yield RIFF_INFO[info_id], raw.split(b"\0", 1)[0]
                    else:
                        yield "", None
                return


def _riff_chunks(handle: BinaryIO, offset: int, end: int | None) -> Iterator[tuple[bytes, int, int]]:
    """Yield (id, size, data offset) of consecutive RIFF chunks, seeking past their data."""
    while end is None or offset + 8 <= end:
        handle.seek(offset)
        header = handle.read(8)
        if len(header) < 8:
            return
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        yield chunk_id, size, offset + 8
        offset += 8 + size + (size & 1)
