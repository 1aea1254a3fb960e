"""MP4/M4A: moov/udta/meta/ilst, rebuilt without cover payloads."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from tunescout.analysis.tagscan._common import (
    HEAD_BYTES,
    VALUE_BYTES,
    Budget,
    Picture,
    Scan,
    TagScanError,
    cut_text,
    read_at,
)


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


def scan_mp4(handle: BinaryIO, size: int, budget: Budget) -> Scan | None:
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
        return _box(kind, read_at(handle, body, end))
    children = bytearray()
    for child, child_body, child_end in _atoms(handle, body, end):
        length = child_end - child_body
        if child == b"data" and length >= 8:
            head = read_at(handle, child_body, child_body + 8 + VALUE_BYTES + 4)
            code = int.from_bytes(head[1:4], "big")
            value = cut_text(head[8:], VALUE_BYTES, code == 2) if code in (1, 2) else head[8:]
            children += _box(b"data", head[:8] + value[:VALUE_BYTES])
        elif length <= VALUE_BYTES:
            children += _box(child, read_at(handle, child_body, child_end))
        else:
            return None
    return _box(kind, bytes(children))
