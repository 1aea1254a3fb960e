"""Frozen values that cross module and process boundaries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Version of each feature group. Raising one makes the daemon re-queue, at start, one file of
# every recording stored at an older version, and recompute only that group for it.
FEATURE_VERSIONS: dict[str, int] = {
    "timbre": 1,
    "rhythm": 1,
    "tonal": 1,
    "loudness": 1,
}
# The feature groups, the one list of their names: playlists lay out their vector columns, weigh
# and explain distances in this order.
FEATURE_GROUPS: tuple[str, ...] = tuple(FEATURE_VERSIONS)

AUDIO_EXTENSIONS = frozenset(
    {
        ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".m4b", ".mp4", ".aac", ".alac",
        ".wav", ".wave", ".aif", ".aiff", ".aifc", ".wma", ".asf", ".wv", ".ape", ".mpc",
        ".dsf", ".tta", ".spx", ".mka", ".webm",
    }
)


class FileIdentity(NamedTuple):
    """What a stat says about a file; unchanged identity means nothing to do.

    A NamedTuple rather than a dataclass: a reconcile builds one per file, 100,000 at a time.
    """

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class FeatureGroup:
    """One versioned group of features; `values` is JSON-serialisable, units in the key names."""

    name: str
    version: int
    values: dict[str, Any]


@dataclass(frozen=True)
class TrackAnalysis:
    """Everything the analysis of one file produced."""

    digest: str  # hex hash of the compressed audio packets, independent of tags
    duration_s: float
    tags: dict[str, Any]  # normalised names -> str | list[str] | int
    cover: dict[str, Any] | None = None  # {"mime", "width", "height", "bytes"}; never the data
    tags_error: str | None = None  # tags unreadable; the audio was still analysed
    decode_warning: str | None = None  # decoded only in part (truncated, corrupt packets skipped)
    features: tuple[FeatureGroup, ...] = field(default_factory=tuple)
    features_reused: bool = False  # same digest as a recording analysed before: features kept
    features_kept: tuple[str, ...] = ()  # groups stored at current versions, not recomputed
