"""Tell a file that decoded, but not whole: cut short (truncated) or with frames lost (corrupt).

decode.py calls these at the end of a decode with what it saw: the container's duration, the
duration decoded, and the position and first bytes of the last packet demuxed. Byte-level
checks only, no decoding: a few dozen bytes read per file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from tunescout.models import DecodeWarning

SHORT_DECODE_SHARE = 0.9
"""A decode under this share of the container's duration is truncated (or its header lies)."""
MISSING_AUDIO_S = 0.2
"""Audio missing from a codec whose header counts every sample: damaged frames were dropped.

FFmpeg's FLAC parser resyncs past a frame that fails its CRC without a word, so a FLAC with
damaged frames decodes a little short of its STREAMINFO and is otherwise silent about it.
"""
EXACT_LENGTH_CODECS = ("flac", "alac", "wavpack", "tta", "ape", "pcm_")
"""Codecs (name prefixes) whose container gives the length to the sample, not an estimate."""


class LastPacket(NamedTuple):
    """Where the last demuxed packet starts in the file, its size and its first four bytes."""

    position: int | None
    size: int
    head: bytes


def incomplete_end(path: Path, container: str, codec: str, expected_s: float | None,
                   decoded_s: float, last: LastPacket | None) -> tuple[DecodeWarning, str] | None:
    """Return what a finished decode amounts to, and why; None for a file that decoded whole."""
    if expected_s and decoded_s < SHORT_DECODE_SHARE * expected_s:
        return DecodeWarning.TRUNCATED, f"partial decode: {decoded_s:.1f} s of {expected_s:.1f} s expected"
    if (missing := missing_audio(codec, expected_s, decoded_s)) is not None:
        return DecodeWarning.CORRUPT, missing
    if last is not None and (cut := cut_short(path, container, codec, last)) is not None:
        return DecodeWarning.TRUNCATED, cut
    return None


def missing_audio(codec: str, expected_s: float | None, decoded_s: float) -> str | None:
    """Say how much audio a codec with an exact length lost; None when none (or not such a codec)."""
    if (expected_s and decoded_s < expected_s - MISSING_AUDIO_S
            and codec.startswith(EXACT_LENGTH_CODECS)):
        return f"{expected_s - decoded_s:.1f} s of audio missing: damaged frames dropped"
    return None


def cut_short(path: Path, container: str, codec: str, last: LastPacket) -> str | None:
    """Say how the file ends inside its last MP3 frame or Ogg page; None when it ends whole.

    A file cut by a failed download or copy often has no header that gives its length (an MP3
    without a Xing frame, an Ogg stream, whose length is its last page's granule position), so
    its duration shrinks with it and only the torn last frame or page tells.
    """
    position, size, head = last
    if codec.startswith("mp3"):
        length = _mp3_frame_bytes(head)
        if length is not None and size < length:
            return f"ends inside its last MP3 frame ({size} of {length} bytes): truncated"
    elif container == "ogg" and position is not None and position >= 0:
        end = _ogg_page_end(path, position)
        total = path.stat().st_size
        if end is not None and end < total:
            return f"ends inside an Ogg page ({total - end} bytes after the last whole page): truncated"
    return None


_MP3_KBPS = {  # (MPEG-1?) -> Layer III bitrate table, index 1..14
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_bytes(header: bytes) -> int | None:
    """Return the length of the MPEG Layer III frame this 4-byte header starts; None if not one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 3
    if layer != 1 or version == 1 or not 0 < bitrate_index < 15 or rate_index == 3:
        return None
    mpeg1 = version == 3
    kbps, rate = _MP3_KBPS[mpeg1][bitrate_index], _MP3_RATES[version][rate_index]
    return (144 if mpeg1 else 72) * kbps * 1000 // rate + ((header[2] >> 1) & 1)


def _ogg_page_end(path: Path, position: int) -> int | None:
    """Return the offset just past the Ogg page at `position`; None if no page starts there."""
    try:
        with path.open("rb") as handle:
            handle.seek(position)
            header = handle.read(27)
            if len(header) < 27 or header[:4] != b"OggS":
                return None
            lacing = handle.read(header[26])
    except OSError:
        return None
    return position + 27 + len(lacing) + sum(lacing)
