"""Find the tag block of an audio file with `struct` and seeks, leaving pictures and huge values behind.

mutagen reads a whole tag into memory, cover art included: an 8 MiB cover costs 25–45 MiB while
tags are read. `scan` walks the container's own structure instead (frame, block, atom, page and
object headers), seeks past picture payloads after reading only their first `HEAD_BYTES`, cuts
values longer than `VALUE_BYTES` and keeps at most `MAX_TAG_BYTES` in all. What is kept is either a
small rebuilt tag for mutagen to parse (ID3, MP4, ASF) or the Vorbis comments themselves (FLAC,
Ogg Vorbis, Opus). Formats not handled here return None: the caller uses mutagen on the file.

Malformed structure (a length past its parent or the end of the file) raises TagScanError.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

MAX_TAG_BYTES = 4 << 20  # kept for parsing per file; the rest is skipped and noted
VALUE_BYTES = 64 << 10  # one value (frame, comment, atom) is cut to this; ours are cut at 1000 chars
HEAD_BYTES = 96 << 10  # of a picture, for its header (a JPEG's EXIF can push SOF past 64 KiB)
MAX_ENTRIES = 1024  # frames/comments/attributes kept; tags.py reads only the first 100 anyway
APE_FALLBACK_BYTES = 1 << 20  # formats left to mutagen: an APEv2 tag larger than this is refused

_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_ASF_CONTENT = bytes.fromhex("3326b2758e66cf11a6d900aa0062ce6c")
_ASF_EXTENDED = bytes.fromhex("40a4d0d207e3d21197f000a0c95ea850")
_ASF_HEADER_EXT = bytes.fromhex("b503bf5f2ea9cf118ee300c00c205365")
_ASF_METADATA = bytes.fromhex("eacbf8c5af5b77488467aa8c44fa4cca")
_ASF_LIBRARY = bytes.fromhex("941c23449894d149a1411d134e457054")


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


class _Budget:
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


def scan(handle: BinaryIO) -> Scan | None:
    """Scan an open file's tags; None when the container is not one this module knows."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    head = handle.read(36)
    budget = _Budget()
    result: Scan | None
    if head[:3] == b"ID3":
        end = _id3_end(handle, 0, size)
        handle.seek(end)
        if handle.read(4) == b"fLaC":
            result = _scan_flac(handle, end, size, budget)
        else:
            result = _scan_id3(handle, 0, size, budget)
            result.id3v1 = _read_at(handle, max(end, size - 131), size)
    elif head[:4] == b"fLaC":
        result = _scan_flac(handle, 0, size, budget)
    elif head[:4] == b"OggS":
        result = _scan_ogg(handle, size, budget)
    elif head[4:8] == b"ftyp":
        result = _scan_mp4(handle, size, budget)
    elif head[:16] == _ASF_HEADER:
        result = _scan_asf(handle, size, budget)
    elif head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        result = _scan_iff(handle, size, "<I", budget)
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        result = _scan_iff(handle, size, ">I", budget)
    else:
        _check_apev2(handle, size)
        return None
    if result is not None and result.note is None:
        result.note = budget.note
    return result


# --- sources: read and skip within a region, plain or ID3-unsynchronised ----------------------


class _Source:
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


class _UnsyncSource(_Source):
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


# --- pictures -----------------------------------------------------------------------------------


def _flac_picture(head: bytes) -> Picture | None:
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


# --- value cutting ---------------------------------------------------------------------------------


def _cut_text(data: bytes, limit: int, utf16: bool, start: int = 0) -> bytes:
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


# --- ID3v2 --------------------------------------------------------------------------------------


def _syncsafe(data: bytes) -> int:
    return (data[0] & 0x7F) << 21 | (data[1] & 0x7F) << 14 | (data[2] & 0x7F) << 7 | (data[3] & 0x7F)


def _to_syncsafe(size: int) -> bytes:
    return bytes([(size >> 21) & 127, (size >> 14) & 127, (size >> 7) & 127, size & 127])


def _id3_end(handle: BinaryIO, offset: int, limit: int) -> int:
    handle.seek(offset)
    header = handle.read(10)
    if len(header) < 10:
        raise TagScanError("ID3 header truncated")
    end = offset + 10 + _syncsafe(header[6:10])
    if end > limit:
        raise TagScanError("ID3 tag size runs past the end of the file")
    return end


_ID3_TEXT_FRAMES = frozenset({"COMM", "USLT", "TXXX", "COM", "ULT", "TXX"})


def _scan_id3(handle: BinaryIO, offset: int, limit: int, budget: _Budget) -> Scan:
    """Rebuild the ID3v2 tag at `offset` without APIC/PIC payloads and with long texts cut."""
    end = _id3_end(handle, offset, limit)
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
    source = _UnsyncSource(handle, start, end) if unsync else _Source(handle, start, end)
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
    return _cut_text(data, limit, utf16, start)


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


def _scan_iff(handle: BinaryIO, size: int, fmt: str, budget: _Budget) -> Scan:
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
            return _scan_id3(handle, offset + 8, chunk_end, budget)
        offset += 8 + chunk_size + (chunk_size & 1)
    return Scan("none")


# --- Vorbis comments (FLAC, Ogg Vorbis, Opus) ----------------------------------------------------


def _vorbis_comments(source: _Source, result: Scan, budget: _Budget) -> None:
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
        return _flac_picture(base64.b64decode(value))
    except (binascii.Error, ValueError):
        return None


def _scan_flac(handle: BinaryIO, offset: int, size: int, budget: _Budget) -> Scan:
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
            block_picture = _flac_picture(handle.read(min(length, HEAD_BYTES)))
        elif kind == 4:
            if seen_comment:
                raise TagScanError("more than one Vorbis comment block")
            seen_comment = True
            _vorbis_comments(_Source(handle, pos + 4, pos + 4 + length), result, budget)
        elif kind == 127:
            raise TagScanError("invalid FLAC metadata block type")
        pos += 4 + length
        if last:
            result.picture = block_picture or result.picture
            return result


class _OggPacketSource(_Source):
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


def _scan_ogg(handle: BinaryIO, size: int, budget: _Budget) -> Scan | None:
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


# --- MP4 ---------------------------------------------------------------------------------------


def _atoms(handle: BinaryIO, start: int, end: int, lenient: bool = False
           ) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload offset, atom end) of the atoms in [start, end)."""
    pos = start
    while pos + 8 <= end:
        handle.seek(pos)
        header = handle.read(8)
        size, kind = struct.unpack(">I4s", header)
        body = pos + 8
        if size == 1:
            large = handle.read(8)
            if len(large) < 8:
                raise TagScanError("MP4 atom header truncated")
            size, body = struct.unpack(">Q", large)[0], pos + 16
        elif size == 0:
            size = end - pos
        if size < body - pos or pos + size > end:
            if lenient:
                return  # a cut-off mdat at the top level: the tags may be before it
            raise TagScanError(f"MP4 atom {kind.decode('latin-1')!r} runs past its parent")
        yield kind, body, pos + size
        pos += size


def _find_atom(handle: BinaryIO, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, body, atom_end in _atoms(handle, start, end):
        if found == kind:
            return body, atom_end
    return None


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _scan_mp4(handle: BinaryIO, size: int, budget: _Budget) -> Scan | None:
    """Rebuild moov/udta/meta/ilst without `covr` payloads and with long values cut."""
    moov = None
    for kind, body, atom_end in _atoms(handle, 0, size, lenient=True):
        if kind == b"moov":
            moov = (body, atom_end)
            break
    if moov is None:
        return None  # mutagen says what is wrong with it
    result = Scan("mp4")
    udta = _find_atom(handle, *moov, b"udta")
    meta = udta and _find_atom(handle, *udta, b"meta")
    ilst = meta and _find_atom(handle, meta[0] + 4, meta[1], b"ilst")
    if not ilst:
        return Scan("none")
    items = bytearray()
    for kind, body, item_end in _atoms(handle, *ilst):
        if kind == b"covr":
            data = _find_atom(handle, body, item_end, b"data")
            if data and result.picture is None and data[1] - data[0] >= 8:
                handle.seek(data[0])
                head = handle.read(min(data[1] - data[0], 8 + HEAD_BYTES))
                code = int.from_bytes(head[1:4], "big")
                mime = {13: "image/jpeg", 14: "image/png"}.get(code, "")
                result.picture = Picture(mime, data[1] - data[0] - 8, head[8:])
            continue
        if kind == b"free":
            continue
        item = _mp4_item(handle, kind, body, item_end)
        if item is not None and not budget.take(len(item)):
            break
        items += item or b""
    ilst_box = _box(b"ilst", bytes(items))
    result.data = _box(b"moov", _box(b"udta", _box(b"meta", b"\0\0\0\0" + ilst_box)))
    return result


def _mp4_item(handle: BinaryIO, kind: bytes, body: int, end: int) -> bytes | None:
    """Return an ilst item, its `data` payloads cut to VALUE_BYTES; None for a huge odd item."""
    if end - body <= VALUE_BYTES:
        return _box(kind, _read_at(handle, body, end))
    children = bytearray()
    for child, child_body, child_end in _atoms(handle, body, end):
        length = child_end - child_body
        if child == b"data" and length >= 8:
            head = _read_at(handle, child_body, child_body + 8 + VALUE_BYTES + 4)
            code = int.from_bytes(head[1:4], "big")
            value = _cut_text(head[8:], VALUE_BYTES, code == 2) if code in (1, 2) else head[8:]
            children += _box(b"data", head[:8] + value[:VALUE_BYTES])
        elif length <= VALUE_BYTES:
            children += _box(child, _read_at(handle, child_body, child_end))
        else:
            return None
    return _box(kind, bytes(children))


def _read_at(handle: BinaryIO, start: int, end: int) -> bytes:
    handle.seek(start)
    return handle.read(max(0, end - start))


# --- ASF (WMA) --------------------------------------------------------------------------------


def _scan_asf(handle: BinaryIO, size: int, budget: _Budget) -> Scan:
    """Rebuild the ASF header with only the tag objects, WM/Picture payloads left out."""
    handle.seek(0)
    header = handle.read(30)
    header_size, _count = struct.unpack("<QL", header[16:28])
    if header_size > size or header_size < 30:
        raise TagScanError("ASF header runs past the end of the file")
    result = Scan("asf")
    objects = []
    for guid, body, end in _asf_objects(handle, 30, header_size):
        if guid == _ASF_CONTENT and end - body <= 5 * 65536:
            objects.append(guid + struct.pack("<Q", end - body + 24) + _read_at(handle, body, end))
        elif guid == _ASF_EXTENDED:
            objects.append(_asf_attributes(handle, guid, body, end, 0, result, budget))
        elif guid == _ASF_HEADER_EXT:
            inner = []
            start = body + 22
            if start > end:
                raise TagScanError("ASF header extension truncated")
            for inner_guid, inner_body, inner_end in _asf_objects(handle, start, end):
                if inner_guid in (_ASF_METADATA, _ASF_LIBRARY):
                    inner.append(_asf_attributes(handle, inner_guid, inner_body, inner_end, 1,
                                                 result, budget))
            data = b"".join(inner)
            prefix = _read_at(handle, body, body + 18)
            payload = prefix + struct.pack("<I", len(data)) + data
            objects.append(guid + struct.pack("<Q", 24 + len(payload)) + payload)
    data = b"".join(objects)
    result.data = _ASF_HEADER + struct.pack("<QLH", 30 + len(data), len(objects), 0x0201) + data
    return result


def _asf_objects(handle: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (GUID, payload offset, object end) of the ASF objects in [start, end)."""
    pos = start
    while pos + 24 <= end:
        header = _read_at(handle, pos, pos + 24)
        guid, size = struct.unpack("<16sQ", header)
        if size < 24 or pos + size > end:
            raise TagScanError("ASF object runs past its parent")
        yield guid, pos + 24, pos + size
        pos += size


def _asf_attributes(handle: BinaryIO, guid: bytes, body: int, end: int, style: int,
                    result: Scan, budget: _Budget) -> bytes:
    """Filter an Extended Content Description (style 0) or Metadata (Library) object (style 1)."""
    source = _Source(handle, body, end)
    (count,) = struct.unpack("<H", source.exact(2, "ASF attribute count"))
    kept = []
    fixed = 2 if style == 0 else 12
    for _ in range(count):
        raw = source.exact(fixed, "ASF attribute header")
        if style == 0:
            (name_len,) = struct.unpack("<H", raw)
            name = source.exact(name_len, "ASF attribute name")
            kind, value_len = struct.unpack("<HH", source.exact(4, "ASF attribute header"))
        else:
            _lang, _stream, name_len, kind, value_len = struct.unpack("<HHHHI", raw)
            name = source.exact(name_len, "ASF attribute name")
        if value_len > source.remaining():
            raise TagScanError("ASF attribute runs past its object")
        decoded = name.decode("utf-16-le", errors="replace").strip("\0").lower()
        if decoded == "wm/picture":
            head = source.read(min(value_len, HEAD_BYTES))
            source.skip(value_len - len(head))
            if result.picture is None:
                result.picture = asf_picture(head)
            continue
        value = source.read(min(value_len, VALUE_BYTES + 2))
        source.skip(value_len - len(value))
        if kind == 0:
            value = _cut_text(value, VALUE_BYTES, True)
        elif value_len > VALUE_BYTES:
            continue  # a huge binary attribute: nothing we read
        if not budget.take(len(value) + len(name) + 16):
            break
        if style == 0:
            kept.append(raw + name + struct.pack("<HH", kind, len(value)) + value)
        else:
            kept.append(raw[:8] + struct.pack("<I", len(value)) + name + value)
    payload = struct.pack("<H", len(kept)) + b"".join(kept)
    return guid + struct.pack("<Q", 24 + len(payload)) + payload


def asf_picture(value: bytes) -> Picture | None:
    """Describe a WM/Picture: type, length, UTF-16 mime and description, then the image."""
    try:
        (nbytes,) = struct.unpack("<I", value[1:5])
        end = value.index(b"\0\0", 5)
        end += (end - 5) % 2  # the terminator is on a UTF-16 boundary
        mime = value[5:end].decode("utf-16-le", errors="replace")
        desc_end = value.index(b"\0\0", end + 2)
        desc_end += (desc_end - end - 2) % 2
    except (ValueError, struct.error):
        return None
    return Picture(mime, nbytes, value[desc_end + 2 :])


# --- formats left to mutagen -----------------------------------------------------------------------


def _check_apev2(handle: BinaryIO, size: int) -> None:
    """Refuse an APEv2 tag (WavPack, Musepack, Monkey's Audio…) too large to hand to mutagen."""
    for footer in (size - 32, size - 160):
        if footer < 0:
            continue
        data = _read_at(handle, footer, footer + 32)
        if data[:8] == b"APETAGEX":
            (tag_size,) = struct.unpack("<I", data[12:16])
            if tag_size > APE_FALLBACK_BYTES:
                raise TagScanError(f"tag block larger than {APE_FALLBACK_BYTES >> 20} MiB skipped")
            return

