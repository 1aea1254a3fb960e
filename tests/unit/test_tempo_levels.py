"""Tempo on signals written to real files: always inside 60-200 BPM, a confidence that says how
clear the beat is, and the same tempo and key whatever the codec."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.audio import write_track
from tunescout.analysis import analyse_file
from tunescout.analysis.tempo import MAX_BPM, MIN_BPM


def rhythm_and_key(path: Path) -> tuple[dict[str, object], tuple[object, object]]:
    groups = {group.name: group.values for group in analyse_file(path).features}
    return groups["rhythm"], (groups["tonal"]["key"], groups["tonal"]["mode"])


@pytest.mark.parametrize(("played", "reported"), [
    (205.0, 102.5), (216.0, 108.0), (240.0, 120.0), (50.0, 100.0), (40.0, 80.0),
])
def test_tempo_outside_the_range_is_folded_in_by_octaves(tmp_path: Path, played: float,
                                                         reported: float) -> None:
    """A beat faster than 200 BPM is reported at half (its periodicity is there too), never at
    the 215 BPM of the shortest lag, nor moved past 200 by the refinement."""
    rhythm, _ = rhythm_and_key(write_track(tmp_path / "beat.flac", kind="clicks", bpm=played,
                                           seconds=12.0))
    tempo = rhythm["tempo_bpm"]
    assert isinstance(tempo, float) and MIN_BPM <= tempo <= MAX_BPM
    assert tempo == pytest.approx(reported, rel=0.01)


def test_confidence_is_high_for_a_steady_beat_and_low_for_noise(tmp_path: Path) -> None:
    steady, _ = rhythm_and_key(write_track(tmp_path / "beat.flac", kind="clicks", bpm=100.0,
                                           seconds=10.0))
    noise, _ = rhythm_and_key(write_track(tmp_path / "noise.flac", kind="noise", seconds=10.0))
    assert isinstance(steady["tempo_confidence"], float) and steady["tempo_confidence"] > 0.8
    confidence = noise["tempo_confidence"]
    assert confidence is None or (isinstance(confidence, float) and 0.0 <= confidence < 0.5)


@pytest.mark.parametrize(("bpm", "key", "mode"), [(96.0, "A", "minor"), (140.0, "E", "major")])
def test_the_same_signal_in_every_codec_has_one_tempo_and_key(tmp_path: Path, bpm: float,
                                                             key: str, mode: str) -> None:
    """Lossy codecs smear onsets and shift the spectrum a little: tempo stays within 1 %, key
    identical (the bench checks the same on ten real tracks in nine encodings)."""
    suffixes = (".flac", ".mp3", ".ogg", ".opus", ".m4a", ".wma", ".wav")
    results = [rhythm_and_key(write_track(tmp_path / f"song{suffix}", kind="song", bpm=bpm,
                                          key=key, mode=mode, seconds=12.0))
               for suffix in suffixes]
    tempi = [float(rhythm["tempo_bpm"]) for rhythm, _ in results]  # type: ignore[arg-type]
    assert max(tempi) <= min(tempi) * 1.01, dict(zip(suffixes, tempi, strict=True))
    assert tempi[0] == pytest.approx(bpm, rel=0.01)
    assert {k for _, k in results} == {(key, mode)}
