"""Frozen values that cross module and process boundaries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

# Version of each feature group. Raising one makes the daemon re-queue, at start, one file of
# every recording stored at an older version, and recompute only that group for it.
FEATURE_VERSIONS: dict[str, int] = {
    "timbre": 1,
    "rhythm": 2,
    "tonal": 2,
    "loudness": 1,
}
# The feature groups, the one list of their names: playlists lay out their vector columns, weigh
# and explain distances in this order.
FEATURE_GROUPS: tuple[str, ...] = tuple(FEATURE_VERSIONS)

UNANALYSED_AUDIO = frozenset(
    {
        ".xm", ".it", ".s3m", ".mod", ".mptm", ".ac3", ".eac3", ".dts", ".caf", ".mp2", ".mp1",
        ".mpga", ".amr", ".au", ".snd", ".ra", ".rm", ".mid", ".midi", ".shn", ".ofr", ".dff",
        ".w64", ".voc", ".gsm", ".tak", ".mlp", ".thd",
    }
)
"""Audio formats the walk sees but does not analyse by default: counted per extension, so that
`status` can say what was left out (a user may add them to `library.extensions`)."""

AUDIO_EXTENSIONS = frozenset(
    {
        ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".m4b", ".mp4", ".aac", ".alac",
        ".wav", ".wave", ".aif", ".aiff", ".aifc", ".wma", ".asf", ".wv", ".ape", ".mpc",
        ".dsf", ".tta", ".spx", ".mka", ".webm",
    }
)


class FailureKind(StrEnum):
    """Why a file failed, as a user sees it in `tunescout failures` and journald's ERROR_KIND.

    A StrEnum: the database, the pipe and the journal carry the plain value ("memory").
    """

    DECODE = "decode"  # the audio cannot be decoded (corrupt, truncated, not audio)
    TAGS = "tags"  # the tags cannot be read (the audio may still be analysed)
    IO = "io"  # the file cannot be opened or read (permissions, vanished)
    MEMORY = "memory"  # MemoryError or the child's memory budget was exceeded
    SIGNAL = "signal"  # the child was killed by a signal while on this file
    TIMEOUT = "timeout"  # the child overran its wall-clock deadline on this file
    PROTOCOL = "protocol"  # the child wrote something that is not a result
    INTERNAL = "internal"  # a bug in tunescout: the reason carries the exception


class DecodeWarning(StrEnum):
    """Why a file that decoded is still suspect: `status` counts them, playlists leave them out.

    A StrEnum stored as its plain value in files.warning_kind; the details stay in decode_warning.
    """

    TRUNCATED = "truncated"  # ends mid-frame or mid-page, or decodes well short of its header
    CORRUPT = "corrupt"  # packets the decoder rejected were skipped


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
    warning_kind: DecodeWarning | None = None  # what decode_warning amounts to; None when clean
    features: tuple[FeatureGroup, ...] = field(default_factory=tuple)
    features_reused: bool = False  # same digest as a recording analysed before: features kept
    features_kept: tuple[str, ...] = ()  # groups stored at current versions, not recomputed


@dataclass(frozen=True)
class Job:
    """One queued file, as the store's queue hands it to the supervisor."""

    path: Path
    priority: int
    solo: bool
    attempts: int
