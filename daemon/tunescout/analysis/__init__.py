"""Analyse one audio file: tags, audio digest and feature groups. Runs in forked children only.

The daemon never imports this package (it pulls in librosa and numba); the zygote imports it once,
calls `warm_up()` so numba compiles before it forks, and each child calls `analyse_file()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tunescout.analysis.decode import ANALYSIS_RATE_HZ, AudioReader, packet_digest
from tunescout.analysis.features import FeatureAccumulator, compute_features
from tunescout.analysis.halving import mono_resampler
from tunescout.analysis.loudness import LoudnessMeter
from tunescout.analysis.pcm import to_mono
from tunescout.analysis.tags import TagReport, read_tags
from tunescout.errors import AnalysisError
from tunescout.models import (
    FEATURE_VERSIONS,
    DecodeWarning,
    FailureKind,
    FeatureGroup,
    TrackAnalysis,
)

__all__ = ["ANALYSIS_RATE_HZ", "analyse_file", "warm_up"]

log = logging.getLogger(__name__)


def analyse_file(path: Path, *,
                 stored_groups: Callable[[str], frozenset[str]] | None = None) -> TrackAnalysis:
    """Return the tags, digest, duration and features of one file.

    With `stored_groups` (digest -> the feature groups stored for it at their current versions),
    a recording analysed before (a tag edit, a copy, a delete and re-add) costs a demux and a tag
    read: its packets are hashed first and, when every group is stored, nothing is decoded and
    `features` comes back empty (`features_reused`). When only some are (a group's version was
    raised), only the others are computed; `features_kept` names the ones left as they were.

    Raises AnalysisError with kind "io" (cannot open or read), "decode" (no decodable audio; the
    reason is FFmpeg's) or "memory" (MemoryError, naming the stage). Unreadable tags are not
    fatal: they are reported in `tags_error` and the audio is still analysed.
    """
    stage = "reading tags"
    try:
        report, tags_error = _tags_or_error(path)
        stage = "hashing the audio"
        known = _known_recording(path, stored_groups) if stored_groups else None
        kept = known[2] if known else frozenset()
        if known is not None and kept >= ALL_GROUPS:
            return TrackAnalysis(digest=known[0], duration_s=known[1], tags=report.tags,
                                 cover=report.cover, tags_error=tags_error, features_reused=True,
                                 features_kept=tuple(sorted(kept)))
        stage = "decoding and computing features"
        digest, duration_s, groups, problems, kind = _decode_and_measure(path, ALL_GROUPS - kept)
        if known is not None and digest != known[0] and kept:  # not the audio hashed first
            kept = frozenset()
            digest, duration_s, groups, problems, kind = _decode_and_measure(path, ALL_GROUPS)
    except MemoryError as exc:
        raise AnalysisError(FailureKind.MEMORY, f"out of memory while {stage}") from exc
    return TrackAnalysis(
        digest=digest,
        duration_s=duration_s,
        tags=report.tags,
        cover=report.cover,
        tags_error=tags_error,
        decode_warning="; ".join(problems) or None,
        warning_kind=kind,
        features=groups,
        features_kept=tuple(sorted(kept)),
    )


ALL_GROUPS = frozenset(FEATURE_VERSIONS)


def _known_recording(
    path: Path, stored_groups: Callable[[str], frozenset[str]],
) -> tuple[str, float, frozenset[str]] | None:
    """Return (digest, duration, groups stored at current versions) for audio analysed before."""
    try:
        digest, duration_s = packet_digest(path)
    except AnalysisError:
        return None  # the full decode says what is wrong, or copes with a broken tail
    if duration_s is None:
        return None
    return digest, duration_s, stored_groups(digest) & ALL_GROUPS


def _tags_or_error(path: Path) -> tuple[TagReport, str | None]:
    """Read tags; a tag failure becomes a message, any other failure propagates.

    A tag block cut at the size cap keeps what was read, and says so in `tags_error`.
    """
    try:
        report = read_tags(path)
        return report, (f"tags: {report.note}" if report.note else None)
    except AnalysisError as exc:
        if exc.kind is not FailureKind.TAGS:
            raise
        return TagReport(), str(exc)


def _decode_and_measure(
    path: Path, groups: frozenset[str],
) -> tuple[str, float, tuple[FeatureGroup, ...], list[str], DecodeWarning | None]:
    """Decode the file once, block by block, feeding loudness and the features as it goes.

    Nothing here grows with the file but the onset envelope (see `features`): a three-minute
    track and a three-hour mix take the same path and about the same memory. Only `groups`
    are computed; the digest and duration always are.
    """
    with AudioReader(path, mono=True) as reader:
        native = reader.info.sample_rate_hz > 0
        loudness = "loudness" in groups
        meter = LoudnessMeter(
            reader.info.sample_rate_hz if native else reader.rate_hz, reader.info.channels
        )
        if native and loudness:
            reader.on_native = meter.add
        accumulator = FeatureAccumulator(reader.rate_hz, groups)
        spectral = bool(accumulator.groups)
        for block in reader.blocks():
            if loudness and not native:
                meter.add(block)
            if spectral:
                accumulator.add(to_mono(block))
        for problem in reader.problems:
            log.warning(
                "%s: %s", path, problem,
                extra={"TRACK_PATH": str(path), "EVENT": "decode_problem",
                       "WARNING_KIND": str(reader.warning_kind)},
            )
        computed = (*accumulator.finish(), *([_loudness_group(meter)] if loudness else []))
        return reader.digest, reader.duration_s, computed, reader.problems, reader.warning_kind


def _loudness_group(meter: LoudnessMeter) -> FeatureGroup:
    """Wrap the meter's readings; None where undefined (silence, under 400 ms or 3 s)."""
    values = {
        "integrated_lufs": meter.integrated_lufs(),
        "loudness_range_lu": meter.loudness_range_lu(),
        "peak_dbfs": meter.peak_dbfs(),
        "crest_db": meter.crest_db(),
    }
    return FeatureGroup("loudness", FEATURE_VERSIONS["loudness"], values)


def warm_up() -> None:
    """Run every librosa path once on a synthetic signal so numba compiles before the fork.

    Compiled code in the zygote is shared by every child; without this each child would spend
    seconds compiling (or loading the cache) on its first file.
    """
    rate = ANALYSIS_RATE_HZ
    t = np.arange(3 * rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.2 * np.sin(2 * np.pi * 330.0 * t)
    clicks = np.zeros_like(t)
    clicks[:: rate // 2] = 0.8
    signal = (tone + clicks).astype(np.float32)
    compute_features(signal, rate)
    compute_features(np.zeros(rate, dtype=np.float32), rate)  # the silent paths too
    meter = LoudnessMeter(rate, ("FL", "FR"))
    meter.add(np.stack([signal, signal]))
    LoudnessMeter(rate, ("FC",)).add(signal[None, :])  # the one-channel filter loop too
    halving = mono_resampler(2 * rate, rate)  # libswresample's taps read once, the loop compiled
    halving.resample(signal)
    halving.flush()
    _loudness_group(meter)
