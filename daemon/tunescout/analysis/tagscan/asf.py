"""ASF (WMA): the header's content, extended content and metadata objects, pictures left out."""

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
    Source,
    TagScanError,
    cut_text,
    read_at,
)

ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")

_ASF_CONTENT = bytes.fromhex("3326b2758e66cf11a6d900aa0062ce6c")

_ASF_EXTENDED = bytes.fromhex("40a4d0d207e3d21197f000a0c95ea850")

_ASF_HEADER_EXT = bytes.fromhex("b503bf5f2ea9cf118ee300c00c205365")

_ASF_METADATA = bytes.fromhex("eacbf8c5af5b77488467aa8c44fa4cca")

_ASF_LIBRARY = bytes.fromhex("941c23449894d149a1411d134e457054")


def scan_asf(handle: BinaryIO, size: int, budget: Budget) -> Scan:
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
            objects.append(guid + struct.pack("<Q", end - body + 24) + read_at(handle, body, end))
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
            prefix = read_at(handle, body, body + 18)
            payload = prefix + struct.pack("<I", len(data)) + data
            objects.append(guid + struct.pack("<Q", 24 + len(payload)) + payload)
    data = b"".join(objects)
    result.data = ASF_HEADER + struct.pack("<QLH", 30 + len(data), len(objects), 0x0201) + data
    return result


def _asf_objects(handle: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (GUID, payload offset, object end) of the ASF objects in [start, end)."""
    pos = start
    while pos + 24 <= end:
        header = read_at(handle, pos, pos + 24)
        guid, size = struct.unpack("<16sQ", header)
        if size < 24 or pos + size > end:
            raise TagScanError("ASF object runs past its parent")
        yield guid, pos + 24, pos + size
        pos += size


def _asf_attributes(handle: BinaryIO, guid: bytes, body: int, end: int, style: int,
                    result: Scan, budget: Budget) -> bytes:
    """Filter an Extended Content Description (style 0) or Metadata (Library) object (style 1)."""
    source = Source(handle, body, end)
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
            value = cut_text(value, VALUE_BYTES, True)
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
