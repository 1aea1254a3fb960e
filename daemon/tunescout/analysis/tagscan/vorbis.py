"""Vorbis comments: in FLAC metadata blocks, and in the second packet of Ogg Vorbis and Opus."""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterator
from typing import BinaryIO

from tunescout.analysis.tagscan._common import (
    HEAD_BYTES,
    VALUE_BYTES,
    Budget,
    Picture,
    Scan,
    Source,
    TagScanError,
    flac_picture,
)


def _vorbis_comments(source: Source, result: Scan, budget: Budget) -> None:
    """Read a Vorbis comment block from `source` into `result`, skipping picture payloads."""
    (vendor_len,) = struct.unpack("<I", source.exact(4, "Vorbis comment vendor length"))
    if source.skip(vendor_len) != vendor_len:
        raise TagScanError("Vorbis comment vendor string runs past its block")
    (count,) = struct.unpack("<I", source.exact(4, "Vorbis comment count"))
    for index in range(count):
        (length,) = struct.unpack("<I", source.exact(4, "Vorbis comment length"))
        if length > source.remaining():
            raise TagScanError("a Vorbis comment runs past the end of its block")
        head = source.read(min(length, 64))
        key = head.partition(b"=")[0].lower()
        if key in (b"metadata_block_picture", b"coverart"):
            consumed = len(head)
            if key == b"metadata_block_picture" and result.picture is None:
                more = source.read(min(length, HEAD_BYTES * 4 // 3 + 64) - len(head))
                consumed += len(more)
                result.picture = vorbis_picture((head + more).partition(b"=")[2])
            source.skip(length - consumed)
            continue
        if not budget.take(min(length, VALUE_BYTES)):
            return
        data = head + source.read(min(length, VALUE_BYTES) - len(head))
        source.skip(length - len(data))
        text = data.decode("utf-8", errors="replace")
        if "=" in text:
            name, value = text.split("=", 1)
        else:
            name, value = f"unknown{index}", text
        name = name.encode("ascii", errors="replace").decode("ascii")
        if all(" " <= char <= "}" and char != "=" for char in name):
            result.comments.append((name, value))


def vorbis_picture(value: bytes) -> Picture | None:
    """Describe a base64 METADATA_BLOCK_PICTURE from the start of its value."""
    value = value[: len(value) // 4 * 4]
    try:
        return flac_picture(base64.b64decode(value))
    except (binascii.Error, ValueError):
        return None


def scan_flac(handle: BinaryIO, offset: int, size: int, budget: Budget) -> Scan:
    """Walk FLAC metadata blocks: PICTURE described from its header, VORBIS_COMMENT read."""
    result = Scan("vorbis")
    pos = offset + 4
    seen_comment = False
    block_picture = None  # a PICTURE block wins over a METADATA_BLOCK_PICTURE comment
    while True:
        handle.seek(pos)
        header = handle.read(4)
        if len(header) < 4:
            raise TagScanError("FLAC metadata block header truncated")
        last, kind = header[0] & 0x80, header[0] & 0x7F
        length = int.from_bytes(header[1:4], "big")
        if pos + 4 + length > size:
            raise TagScanError("FLAC metadata block runs past the end of the file")
        if kind == 6 and block_picture is None:
            handle.seek(pos + 4)
            block_picture = flac_picture(handle.read(min(length, HEAD_BYTES)))
        elif kind == 4:
            if seen_comment:
                raise TagScanError("more than one Vorbis comment block")
            seen_comment = True
            _vorbis_comments(Source(handle, pos + 4, pos + 4 + length), result, budget)
        elif kind == 127:
            raise TagScanError("invalid FLAC metadata block type")
        pos += 4 + length
        if last:
            result.picture = block_picture or result.picture
            return result


class _OggPacketSource(Source):
    """One packet of an Ogg stream, read page by page: only the segment tables are kept."""

    def __init__(self, handle: BinaryIO, size: int, spans: Iterator[tuple[int, int]]) -> None:
        super().__init__(handle, 0, size)
        self.spans = spans
        self.span = (0, 0)  # (file offset, bytes left) of the current run of the packet

    def remaining(self) -> int:
        return self.end  # an upper bound: the packet ends at a segment shorter than 255

    def _next(self) -> bool:
        while self.span[1] == 0:
            span = next(self.spans, None)
            if span is None:
                return False
            self.span = span
        return True

    def read(self, n: int) -> bytes:
        parts = []
        while n > 0 and self._next():
            offset, left = self.span
            self.handle.seek(offset)
            data = self.handle.read(min(n, left))
            if not data:
                raise TagScanError("Ogg page truncated")
            parts.append(data)
            self.span = (offset + len(data), left - len(data))
            n -= len(data)
        return b"".join(parts)

    def skip(self, n: int) -> int:
        done = 0
        while done < n and self._next():
            offset, left = self.span
            step = min(n - done, left)
            self.span = (offset + step, left - step)
            done += step
        return done


def _ogg_spans(handle: BinaryIO, size: int, index: int) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) runs of packet `index` of the first logical stream."""
    offset, packet, serial = 0, 0, None
    while True:
        handle.seek(offset)
        header = handle.read(27)
        if len(header) < 27 or header[:4] != b"OggS":
            raise TagScanError("Ogg page header truncated or out of sync")
        table = handle.read(header[26])
        if len(table) < header[26]:
            raise TagScanError("Ogg segment table truncated")
        body = offset + 27 + len(table)
        if body + sum(table) > size:
            raise TagScanError("Ogg page runs past the end of the file")
        page_serial = struct.unpack("<I", header[14:18])[0]
        serial = page_serial if serial is None else serial
        if page_serial == serial:
            pos = body
            run_start, run = pos, 0
            for lace in table:
                if packet == index:
                    run += lace
                pos += lace
                if lace < 255:
                    if packet == index:
                        if run:
                            yield run_start, run
                        return
                    packet += 1
                    run_start = pos
            if packet == index and run:
                yield run_start, run
        offset = body + sum(table)


def scan_ogg(handle: BinaryIO, size: int, budget: Budget) -> Scan | None:
    """Read the comment packet of Ogg Vorbis or Opus; other Ogg codecs are left to mutagen."""
    first = _OggPacketSource(handle, size, _ogg_spans(handle, size, 0)).read(8)
    if first.startswith(b"\x01vorbis"):
        magic = b"\x03vorbis"
    elif first == b"OpusHead":
        magic = b"OpusTags"
    else:
        return None
    source = _OggPacketSource(handle, size, _ogg_spans(handle, size, 1))
    if source.read(len(magic)) != magic:
        raise TagScanError("Ogg comment header missing")
    result = Scan("vorbis")
    _vorbis_comments(source, result, budget)
    return result
