"""Find the tag block of an audio file with `struct` and seeks, leaving pictures and huge values behind.

mutagen reads a whole tag into memory, cover art included: an 8 MiB cover costs 25–45 MiB while
tags are read. `scan` walks the container's own structure instead (frame, block, atom, page and
object headers), seeks past picture payloads after reading only their first `HEAD_BYTES`, cuts
values longer than `VALUE_BYTES` and keeps at most `MAX_TAG_BYTES` in all. What is kept is either a
small rebuilt tag for mutagen to parse (ID3, MP4, ASF) or the Vorbis comments themselves (FLAC,
Ogg Vorbis, Opus), one module per container family. Formats not handled here return None: the
caller uses mutagen on the file.

Malformed structure (a length past its parent or the end of the file) raises TagScanError.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from tunescout.analysis.tagscan._common import (
    MAX_TAG_BYTES,
    Budget,
    Picture,
    Scan,
    TagScanError,
    read_at,
)
from tunescout.analysis.tagscan.asf import ASF_HEADER, asf_picture, scan_asf
from tunescout.analysis.tagscan.id3 import id3_end, scan_id3, scan_iff
from tunescout.analysis.tagscan.mp4 import scan_mp4
from tunescout.analysis.tagscan.vorbis import scan_flac, scan_ogg, vorbis_picture

__all__ = ["MAX_TAG_BYTES", "Picture", "Scan", "TagScanError", "asf_picture", "scan", "vorbis_picture"]

APE_FALLBACK_BYTES = 1 << 20  # formats left to mutagen: an APEv2 tag larger than this is refused


def scan(handle: BinaryIO) -> Scan | None:
    """Scan an open file's tags; None when the container is not one this module knows."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    head = handle.read(36)
    budget = Budget()
    result: Scan | None
    if head[:3] == b"ID3":
        end = id3_end(handle, 0, size)
        handle.seek(end)
        if handle.read(4) == b"fLaC":
            result = scan_flac(handle, end, size, budget)
        else:
            result = scan_id3(handle, 0, size, budget)
            result.id3v1 = read_at(handle, max(end, size - 131), size)
    elif head[:4] == b"fLaC":
        result = scan_flac(handle, 0, size, budget)
    elif head[:4] == b"OggS":
        result = scan_ogg(handle, size, budget)
    elif head[4:8] == b"ftyp":
        result = scan_mp4(handle, size, budget)
    elif head[:16] == ASF_HEADER:
        result = scan_asf(handle, size, budget)
    elif head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        result = scan_iff(handle, size, "<I", budget)
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        result = scan_iff(handle, size, ">I", budget)
    else:
        _check_apev2(handle, size)
        return None
    if result is not None and result.note is None:
        result.note = budget.note
    return result


def _check_apev2(handle: BinaryIO, size: int) -> None:
    """Refuse an APEv2 tag (WavPack, Musepack, Monkey's Audio…) too large to hand to mutagen."""
    for footer in (size - 32, size - 160):
        if footer < 0:
            continue
        data = read_at(handle, footer, footer + 32)
        if data[:8] == b"APETAGEX":
            (tag_size,) = struct.unpack("<I", data[12:16])
            if tag_size > APE_FALLBACK_BYTES:
                raise TagScanError(f"tag block larger than {APE_FALLBACK_BYTES >> 20} MiB skipped")
            return
