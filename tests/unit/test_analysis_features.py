"""analyse_file on real files: tempo, key and loudness accuracy, JSON-safe values, failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile

from support.audio import PITCH_CLASSES, write_track
from tunescout.analysis import ANALYSIS_RATE_HZ, analyse_file, warm_up
from tunescout.errors import AnalysisError
from tunescout.models import FEATURE_VERSIONS, TrackAnalysis

GROUP_KEYS = {
    "rhythm": {"tempo_bpm", "tempo_confidence", "beat_strength", "onset_rate_hz"},
    "tonal": {"key", "mode", "key_strength", "camelot", "chroma_mean"},
    "loudness": {"integrated_lufs", "loudness_range_lu", "peak_dbfs", "crest_db"},
    "timbre": {
        "mfcc_mean", "mfcc_std", "spectral_centroid_hz", "spectral_bandwidth_hz",
        "spectral_rolloff_hz", "spectral_flatness", "zcr",
    },
}


def features(result: TrackAnalysis) -> dict[str, dict[str, object]]:
    return {group.name: group.values for group in result.features}


@pytest.mark.parametrize("kind", ["clicks", "drums"])
@pytest.mark.parametrize("bpm", [70.0, 100.0, 119.9, 127.3, 150.0, 180.0])
def test_tempo_within_one_percent(tmp_path: Path, kind: str, bpm: float) -> None:
    path = write_track(tmp_path / "beat.flac", kind=kind, bpm=bpm, seconds=10.0)
    rhythm = features(analyse_file(path))["rhythm"]
    tempo = rhythm["tempo_bpm"]
    assert isinstance(tempo, float)
    assert tempo == pytest.approx(bpm, rel=0.01)
    assert isinstance(rhythm["beat_strength"], float) and 0.3 < rhythm["beat_strength"] <= 1.0
    assert rhythm["onset_rate_hz"] == pytest.approx(bpm / 60.0, rel=0.1)


@pytest.mark.parametrize("mode", ["major", "minor"])
@pytest.mark.parametrize("key", PITCH_CLASSES)
def test_key_of_chord_progressions(tmp_path: Path, key: str, mode: str) -> None:
    path = write_track(
        tmp_path / "chords.wav", kind="chords", key=key, mode=mode, seconds=8.0,
        sample_rate=ANALYSIS_RATE_HZ, channels=1,
    )
    tonal = features(analyse_file(path))["tonal"]
    assert (tonal["key"], tonal["mode"]) == (key, mode)
    assert isinstance(tonal["key_strength"], float) and tonal["key_strength"] > 0.5


@pytest.mark.parametrize(
    ("key", "mode", "camelot"),
    [("C", "major", "8B"), ("A", "minor", "8A"), ("G", "major", "9B"), ("F#", "minor", "11A"),
     ("B", "major", "1B"), ("D#", "minor", "2A")],
)
def test_camelot_codes(tmp_path: Path, key: str, mode: str, camelot: str) -> None:
    path = write_track(
        tmp_path / "c.wav", kind="chords", key=key, mode=mode, seconds=4.0,
        sample_rate=ANALYSIS_RATE_HZ, channels=1,
    )
    assert features(analyse_file(path))["tonal"]["camelot"] == camelot


@pytest.mark.parametrize(
    ("kind", "level_dbfs", "channels"),
    [("tone", -6.0, 2), ("tone", -30.0, 1), ("noise", -3.0, 2), ("noise", -24.0, 2)],
)
def test_loudness_matches_pyloudnorm(
    tmp_path: Path, kind: str, level_dbfs: float, channels: int
) -> None:
    path = write_track(
        tmp_path / "l.flac", kind=kind, level_dbfs=level_dbfs, channels=channels, seconds=8.0
    )
    data, rate = soundfile.read(path)
    expected = pyloudnorm.Meter(rate).integrated_loudness(data)
    loudness = features(analyse_file(path))["loudness"]
    assert loudness["integrated_lufs"] == pytest.approx(expected, abs=0.5)
    assert loudness["peak_dbfs"] == pytest.approx(level_dbfs, abs=0.1)
    assert isinstance(loudness["loudness_range_lu"], float) and loudness["loudness_range_lu"] < 1.0


def test_loudness_of_a_quiet_passage_is_gated(tmp_path: Path) -> None:
    """BS.1770's relative gate (-10 LU) ignores the half 14 dB quieter; LRA's (-20 LU) does not."""
    loud = write_track(tmp_path / "loud.wav", kind="noise", level_dbfs=-6.0, seconds=6.0)
    quiet = write_track(tmp_path / "quiet.wav", kind="noise", level_dbfs=-20.0, seconds=6.0)
    both = tmp_path / "both.wav"
    a, rate = soundfile.read(loud)
    b, _ = soundfile.read(quiet)
    soundfile.write(both, np.concatenate([a, b]), rate)
    alone = features(analyse_file(loud))["loudness"]["integrated_lufs"]
    gated = features(analyse_file(both))["loudness"]
    assert gated["integrated_lufs"] == pytest.approx(alone, abs=0.3)
    assert isinstance(gated["loudness_range_lu"], float)
    assert 10.0 < gated["loudness_range_lu"] < 15.0


def test_result_shape_and_json(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", kind="drums", seconds=6.0, tags={"title": "x"})
    result = analyse_file(path)
    assert result.duration_s == pytest.approx(6.0, rel=0.02)
    assert len(result.digest) == 32
    assert result.tags == {"title": "x"} and result.tags_error is None and result.cover is None
    assert [(g.name, g.version) for g in result.features] == [
        (name, FEATURE_VERSIONS[name]) for name in ("rhythm", "tonal", "timbre", "loudness")
    ]
    for group in result.features:
        assert set(group.values) == GROUP_KEYS[group.name]
    values = features(result)
    assert len(values["timbre"]["mfcc_mean"]) == len(values["timbre"]["mfcc_std"]) == 13  # type: ignore[arg-type]
    assert len(values["tonal"]["chroma_mean"]) == 12  # type: ignore[arg-type]
    text = json.dumps([g.values for g in result.features], allow_nan=False)
    assert json.loads(text) == [g.values for g in result.features]
    assert all(type(v) in (float, int, str, list) for g in result.features for v in g.values.values())


def test_silence_gives_none_not_nan(tmp_path: Path) -> None:
    path = write_track(tmp_path / "s.flac", kind="silence", seconds=4.0)
    result = analyse_file(path)
    values = features(result)
    assert values["loudness"] == dict.fromkeys(GROUP_KEYS["loudness"])
    assert values["rhythm"]["tempo_bpm"] is None
    assert values["tonal"]["key"] is None and values["tonal"]["camelot"] is None
    json.dumps([g.values for g in result.features], allow_nan=False)
    assert result.duration_s == pytest.approx(4.0, rel=0.01)


def test_very_short_file(tmp_path: Path) -> None:
    path = write_track(tmp_path / "blip.wav", seconds=0.05)
    result = analyse_file(path)
    assert result.duration_s == pytest.approx(0.05, rel=0.05)
    assert features(result)["loudness"]["integrated_lufs"] is None  # under one 400 ms block
    json.dumps([g.values for g in result.features], allow_nan=False)


def test_multichannel_lfe_does_not_count(tmp_path: Path) -> None:
    """A 5.1 AAC file: BS.1770 weighs surrounds 1.41 and leaves the LFE out."""
    path = write_track(tmp_path / "surround.m4a", channels=6, seconds=4.0)
    result = analyse_file(path)
    lufs = features(result)["loudness"]["integrated_lufs"]
    # Same -12 dBFS sine in FL FR FC (1.0) and BL BR (1.41), not LFE: 3 + 2.82 channel powers.
    single = -0.691 + 10 * math.log10(10 ** (-12 / 10) / 2)  # one channel of a sine
    assert isinstance(lufs, float)
    assert lufs == pytest.approx(single + 10 * math.log10(3 + 2 * 1.41), abs=0.3)


def test_failures_name_their_kind(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError) as info:
        analyse_file(tmp_path / "missing.flac")
    assert info.value.kind == "io"
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio\n" * 100)
    with pytest.raises(AnalysisError) as info:
        analyse_file(notes)
    assert (info.value.kind, info.value.reason) == ("decode", "invalid data found when processing input")


def test_warm_up_leaves_nothing_for_the_children_to_compile(tmp_path: Path) -> None:
    """The zygote warms up before it forks so that no child spends its first file in numba's JIT
    (without a warm-up, this analysis compiles over a hundred functions)."""
    from numba.core import event

    warm_up()
    tracks = [write_track(tmp_path / "drums.flac", kind="drums", bpm=120, seconds=6.0),
              write_track(tmp_path / "tone.mp3", seconds=4.0),
              write_track(tmp_path / "silence.wav", kind="silence", seconds=2.0)]
    with event.install_recorder("numba:compile") as compiled:
        for path in tracks:
            analyse_file(path)
    assert [str(e.data.get("dispatcher")) for _, e in compiled.buffer] == []


@pytest.mark.parametrize("stale", [{"rhythm"}, {"tonal", "loudness"}, {"timbre"}, set()])
def test_only_the_groups_not_stored_are_computed(tmp_path: Path, stale: set[str]) -> None:
    """After a group's version is raised, a re-analysis computes that group alone, identically."""
    path = write_track(tmp_path / "song.flac", kind="drums", bpm=110, seconds=8.0)
    full = analyse_file(path)
    asked: list[str] = []

    def stored_groups(digest: str) -> frozenset[str]:
        asked.append(digest)
        return frozenset(FEATURE_VERSIONS) - stale

    partial = analyse_file(path, stored_groups=stored_groups)
    assert asked == [full.digest]
    assert partial.digest == full.digest and partial.duration_s == full.duration_s
    assert features(partial) == {name: features(full)[name] for name in stale}
    assert set(partial.features_kept) == set(FEATURE_VERSIONS) - stale
    assert partial.features_reused is (not stale)
    assert partial.tags == full.tags
