"""ID3v2 (2.2, 2.3, 2.4) in MP3 files and in the `id3 ` chunk of WAV and AIFF files."""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

from tunescout.analysis.tagscan._common import (
    HEAD_BYTES,
    MAX_ENTRIES,
    VALUE_BYTES,
    Budget,
    Picture,
    Scan,
    Source,
    TagScanError,
    UnsyncSource,
    cut_text,
)


def _syncsafe(data: bytes) -> int:
    return (data[0] & 0x7F) << 21 | (data[1] & 0x7F) << 14 | (data[2] & 0x7F) << 7 | (data[3] & 0x7F)


def _to_syncsafe(size: int) -> bytes:
    return bytes([(size >> 21) & 127, (size >> 14) & 127, (size >> 7) & 127, size & 127])


def id3_end(handle: BinaryIO, offset: int, limit: int) -> int:
    handle.seek(offset)
    header = handle.read(10)
    if len(header) < 10:
        raise TagScanError("ID3 header truncated")
    end = offset + 10 + _syncsafe(header[6:10])
    if end > limit:
        raise TagScanError("ID3 tag size runs past the end of the file")
    return end


_ID3_TEXT_FRAMES = frozenset({"COMM", "USLT", "TXXX", "COM", "ULT", "TXX"})


def scan_id3(handle: BinaryIO, offset: int, limit: int, budget: Budget) -> Scan:
    """Rebuild the ID3v2 tag at `offset` without APIC/PIC payloads and with long texts cut."""
    end = id3_end(handle, offset, limit)
    handle.seek(offset)
    header = handle.read(10)
    major, flags = header[3], header[5]
    if major not in (2, 3, 4):
        return Scan("none")  # mutagen refuses other versions: no tags, as before
    start = offset + 10
    if flags & 0x40 and major >= 3:  # extended header, dropped from the rebuilt tag
        handle.seek(start)
        raw = handle.read(4)
        if len(raw) == 4 and not raw.isalnum():  # some taggers set the flag without a header
            size = _syncsafe(raw) if major == 4 else 4 + struct.unpack(">I", raw)[0]
            start += size
    unsync = flags & 0x80 and major < 4  # whole-tag unsynchronisation, undone as we read
    source = UnsyncSource(handle, start, end) if unsync else Source(handle, start, end)
    syncsafe = major == 4 and _v24_sizes_syncsafe(handle, start, end)
    result = Scan("id3")
    body = bytearray()
    header_len = 6 if major == 2 else 10
    while source.remaining() >= header_len:
        frame_header = source.read(header_len)
        if len(frame_header) < header_len or frame_header[0] == 0:
            break  # padding
        if major == 2:
            frame_id, size, frame_flags = frame_header[:3], int.from_bytes(frame_header[3:6], "big"), 0
        else:
            frame_id = frame_header[:4]
            raw_size = frame_header[4:8]
            size = _syncsafe(raw_size) if syncsafe else struct.unpack(">I", raw_size)[0]
            frame_flags = struct.unpack(">H", frame_header[8:10])[0]
        if size > source.remaining():
            break  # mutagen stops at a frame running past the tag, and so do we
        name = frame_id.decode("latin-1")
        if name in ("APIC", "PIC"):
            if result.picture is None:
                result.picture = _id3_picture(source.read(min(size, HEAD_BYTES)), size, major,
                                              frame_flags)
                source.skip(size - min(size, HEAD_BYTES))
            else:
                source.skip(size)
            continue
        plain = frame_flags & (0x00E0 if major == 3 else 0x000F) == 0  # no compression/encryption…
        if size > VALUE_BYTES and plain and (name[0] == "T" or name in _ID3_TEXT_FRAMES):
            data = source.read(VALUE_BYTES + 4)
            source.skip(size - len(data))
            data = _cut_id3_text(name, data, VALUE_BYTES)
        elif size > VALUE_BYTES:
            source.skip(size)  # a large binary frame (GEOB, PRIV…): nothing we read
            continue
        else:
            data = source.read(size)
        if not budget.take(len(data) + header_len):
            break
        if major == 2:
            body += frame_id + len(data).to_bytes(3, "big") + data
        else:
            packed = _to_syncsafe(len(data)) if major == 4 else struct.pack(">I", len(data))
            body += frame_id + packed + frame_header[8:10] + data
    keep_flags = flags & (0xA0 if major == 4 else 0x20)  # v2.4 per-frame unsync stays flagged
    result.data = b"ID3" + bytes([major, header[4], keep_flags]) + _to_syncsafe(len(body)) + body
    return result


def _v24_sizes_syncsafe(handle: BinaryIO, start: int, end: int) -> bool:
    """Like mutagen's determine_bpi: iTunes wrote plain sizes in v2.4; walk headers both ways."""

    def clean_walk(syncsafe: bool) -> bool:
        pos = start
        for _ in range(MAX_ENTRIES * 4):
            if pos + 10 > end:
                return True
            handle.seek(pos)
            frame_header = handle.read(10)
            if frame_header[:1] == b"\0":
                return True
            if not frame_header[:4].isalnum():
                return False
            raw = frame_header[4:8]
            size = _syncsafe(raw) if syncsafe else struct.unpack(">I", raw)[0]
            if syncsafe and any(byte & 0x80 for byte in raw):
                return False
            pos += 10 + size
            if pos > end:
                return False
        return True

    return clean_walk(True) or not clean_walk(False)


def _cut_id3_text(name: str, data: bytes, limit: int) -> bytes:
    """Cut a text frame's payload, keeping its encoding byte, language and description intact."""
    encoding = data[0] if data else 0
    utf16 = encoding in (1, 2)
    start = 1
    if name in ("COMM", "USLT", "COM", "ULT", "TXXX", "TXX"):
        start = 4 if name not in ("TXXX", "TXX") else 1
        terminator = b"\0\0" if utf16 else b"\0"
        pos = start
        while True:
            pos = data.find(terminator, pos)
            if pos < 0 or not utf16 or (pos - start) % 2 == 0:
                break
            pos += 1
        start = pos + len(terminator) if pos >= 0 else start
    return cut_text(data, limit, utf16, start)


def _id3_picture(head: bytes, size: int, major: int, flags: int) -> Picture | None:
    """Describe an APIC whose frame data starts with `head`; undo frame compression on the head."""
    nbytes = size
    if major == 4 and flags & 0x0001 and len(head) >= 4:  # data length indicator
        nbytes = _syncsafe(head[:4])
        head = head[4:]
        if flags & 0x0002:
            head = head.replace(b"\xff\x00", b"\xff")
    elif major == 3 and flags & 0x0080 and len(head) >= 4:
        nbytes = struct.unpack(">I", head[:4])[0]
        head = head[4:]
    compressed = flags & (0x0008 if major == 4 else 0x0080)
    if flags & (0x0004 if major == 4 else 0x0040):
        return Picture("", nbytes, b"")  # encrypted: we know only that a picture exists
    if compressed:
        try:
            head = zlib.decompressobj().decompress(head, HEAD_BYTES)
        except zlib.error:
            return Picture("", nbytes, b"")
    return _apic_picture(head, nbytes, major == 2)


def _apic_picture(head: bytes, nbytes: int, v22: bool) -> Picture | None:
    """Describe an APIC (or v2.2 PIC) frame from its first bytes; `nbytes` is the frame's size."""
    if len(head) < 4:
        return None
    encoding = head[0]
    if v22:
        mime = {b"PNG": "image/png", b"JPG": "image/jpeg"}.get(head[1:4].upper(), "")
        pos = 4
    else:
        end = head.find(b"\0", 1)
        if end < 0:
            return None
        mime = head[1:end].decode("latin-1")
        pos = end + 1
    pos += 1  # picture type
    if encoding in (1, 2):
        end = pos
        while True:
            end = head.find(b"\0\0", end)
            if end < 0:
                return None
            if (end - pos) % 2 == 0:
                break
            end += 1
        pos = end + 2
    else:
        end = head.find(b"\0", pos)
        if end < 0:
            return None
        pos = end + 1
    return Picture(mime, max(0, nbytes - pos), head[pos:])


def scan_iff(handle: BinaryIO, size: int, fmt: str, budget: Budget) -> Scan:
    """Find the `id3 `/`ID3 ` chunk of a WAV (little-endian sizes) or AIFF (big-endian) file."""
    offset = 12
    while offset + 8 <= size:
        handle.seek(offset)
        header = handle.read(8)
        chunk_size = struct.unpack(fmt, header[4:])[0]
        if header[:4] in (b"id3 ", b"ID3 "):
            chunk_end = min(offset + 8 + chunk_size, size)
            handle.seek(offset + 8)
            if handle.read(3) != b"ID3":
                return Scan("none")
            return scan_id3(handle, offset + 8, chunk_end, budget)
        offset += 8 + chunk_size + (chunk_size & 1)
    return Scan("none")
