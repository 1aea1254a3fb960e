"""One recording, one entry: recognise copies of the same audio in other codecs or with other tags,
and choose the copy a playlist uses.

The audio digest hashes the compressed packets, so a transcode (FLAC → MP3) or a re-tagged copy
with another title has another digest. Such copies still measure alike: the same duration to
within the codecs' padding, and the same raw timbre and loudness to within what lossy coding
changes. `acoustic_pairs` compares a track only with the tracks of nearly the same duration
(sorted once, a window each), so a library of 100,000 tracks costs about N · window, never N².

The values compared are the mean chroma (12 pitch-class energies: what lossy coding, which cuts
highs and adds noise, hardly touches) and the integrated loudness, raw, not the
library-standardised vectors: standardisation moves with the library, and the copy used must not
change because unrelated tracks were added. Measured on the real-music set (bench/quality.py,
57 tracks, 10 of them in 8 more codecs: FLAC, MP3 CBR/VBR, Vorbis, Opus, AAC, WMA, WAV): copies
differ by at most 0.05 s in duration, 0.007 in chroma (RMS) and 0.27 LU; two different tracks
differ by at least 0.045 in chroma. The tempo (to the nearest octave) must agree within 1.5 %
(copies: 0.75 % at most) where both are known. MFCC means do not separate them (WMA moves them by up to 18,
two different tracks can lie 1.7 apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tunescout.playlists.catalogue import Track

LOSSLESS_SUFFIXES = frozenset({".flac", ".wav", ".wave", ".aif", ".aiff", ".aifc", ".ape", ".wv",
                               ".tta", ".dsf", ".dff"})
ALAC_MIN_KBPS = 500.0  # an .m4a above this is ALAC: AAC tops out at 320 kbps (stereo 48 kHz: 512)
DURATION_TOLERANCE_S = 0.2  # measured ≤ 0.05 s: MP3 padding, AAC priming, Opus pre-skip
DURATION_TOLERANCE_SHARE = 0.001  # plus 0.1 % (a resampled copy rounds its length)
CHROMA_TOLERANCE = 0.02  # RMS over the 12 mean chroma values; measured: copies ≤ 0.007, others ≥ 0.045
LOUDNESS_TOLERANCE_LU = 1.0  # measured: copies ≤ 0.27 LU apart
TEMPO_TOLERANCE_PCT = 1.5  # to the nearest octave; measured: copies ≤ 0.75 % (one drum loop at
# 98 and 100 BPM, cut to one length, has one chroma and loudness: the tempo tells them apart)


def signature(track: Track) -> np.ndarray | None:
    """Return what copies of one recording share (mean chroma, LUFS, log2 tempo), None when missing.

    An unknown tempo is NaN and does not decide: chroma and loudness do.
    """
    chroma = track.feature("tonal", "chroma_mean")
    lufs = track.feature("loudness", "integrated_lufs")
    if not isinstance(chroma, list) or len(chroma) != 12 or not isinstance(lufs, int | float):
        return None
    tempo = track.tempo_bpm
    values = np.array([*chroma, lufs, math.log2(tempo) if tempo and tempo > 0 else math.nan])
    return values if np.all(np.isfinite(values[:13])) else None


def acoustic_pairs(tracks: Sequence[Track]) -> list[tuple[int, int]]:
    """Return the index pairs of tracks that measure as one recording (near duration and sound).

    Sorted by duration, each track is compared, in one numpy step, with the block of tracks
    that follow it within its duration window: about N · window comparisons, never N².
    """
    known = [(t.duration_s, i, sig) for i, t in enumerate(tracks)
             if t.duration_s is not None and math.isfinite(t.duration_s) and t.duration_s > 0
             and (sig := signature(t)) is not None]
    if len(known) < 2:
        return []
    known.sort(key=lambda item: (item[0], item[1]))
    durations = np.array([k[0] for k in known])
    index = np.array([k[1] for k in known])
    sigs = np.stack([k[2] for k in known])
    ends = np.searchsorted(durations, durations + DURATION_TOLERANCE_S
                           + DURATION_TOLERANCE_SHARE * durations, side="right")
    pairs = []
    for position in np.flatnonzero(ends > np.arange(len(known)) + 1):
        block = sigs[position + 1:ends[position]]
        chroma = np.sqrt(np.mean((block[:, :12] - sigs[position, :12]) ** 2, axis=1))
        loudness = np.abs(block[:, 12] - sigs[position, 12])
        octaves = block[:, 13] - sigs[position, 13]
        with np.errstate(invalid="ignore"):
            tempo_ok = ~(np.abs(octaves - np.round(octaves)) > math.log2(1 + TEMPO_TOLERANCE_PCT / 100))
        same = (chroma <= CHROMA_TOLERANCE) & (loudness <= LOUDNESS_TOLERANCE_LU) & tempo_ok
        for other in index[position + 1 + np.flatnonzero(same)]:
            i, j = int(index[position]), int(other)
            pairs.append((min(i, j), max(i, j)))
    return pairs


def is_lossless(track: Track) -> bool:
    """Tell whether a file is lossless by its name (and, for .m4a, by its bitrate: ALAC)."""
    suffix = track.path.suffix.lower()
    if suffix in LOSSLESS_SUFFIXES:
        return True
    kbps = bitrate_kbps(track)
    return suffix in (".m4a", ".mp4", ".caf") and kbps is not None and kbps >= ALAC_MIN_KBPS


def bitrate_kbps(track: Track) -> float | None:
    """Return the file's average bitrate (its size over its duration; tags and cover included)."""
    if track.size_bytes is None or not track.duration_s or track.duration_s <= 0:
        return None
    return track.size_bytes * 8 / track.duration_s / 1000.0


def preference_key(track: Track, prefer: Sequence[str]) -> tuple[Any, ...]:
    """Return a sort key: the preferred copy sorts first."""
    key: list[Any] = []
    for criterion in prefer:
        if criterion == "lossless":
            key.append(not is_lossless(track))
        elif criterion == "bitrate":
            key.append(-(bitrate_kbps(track) or 0.0))
        elif criterion == "path":
            key.append(bytes(track.path))
    key.append(bytes(track.path))  # always a total order: the choice never depends on listing order
    return tuple(key)
