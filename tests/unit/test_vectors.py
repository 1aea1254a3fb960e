"""Feature groups → standardised vectors: layout, robust scaling, missing values, group balance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tunescout.models import FEATURE_GROUPS
from tunescout.playlists.camelot import camelot_index
from tunescout.playlists.vectors import (
    CLIP,
    LAYOUT,
    build_matrix,
    column_weights,
    group_distances,
    raw_matrix,
)


def groups(tempo: float | None = 120.0, camelot: str | None = "8A", lufs: float | None = -10.0,
           mfcc0: float = 0.0) -> dict[str, dict[str, Any]]:
    return {
        "rhythm": {"tempo_bpm": tempo, "beat_strength": 0.5, "onset_rate_hz": 2.0},
        "tonal": {"key": "A", "mode": "minor", "key_strength": 0.8, "camelot": camelot,
                  "chroma_mean": [0.5] * 12},
        "timbre": {"mfcc_mean": [mfcc0] + [0.0] * 12, "mfcc_std": [1.0] * 13,
                   "spectral_centroid_hz": 2000.0, "spectral_bandwidth_hz": 1500.0,
                   "spectral_rolloff_hz": 4000.0, "spectral_flatness": 0.1, "zcr": 0.05},
        "loudness": {"integrated_lufs": lufs, "loudness_range_lu": 5.0, "peak_dbfs": -1.0, "crest_db": 10.0},
    }


def column(name: str) -> int:
    return LAYOUT.names.index(name)


def test_layout_covers_every_column_once() -> None:
    covered = sorted(i for g in FEATURE_GROUPS for i in range(*LAYOUT.slices[g].indices(LAYOUT.width)))
    assert covered == list(range(LAYOUT.width)) == list(range(len(set(LAYOUT.names))))
    for group in FEATURE_GROUPS:
        assert LAYOUT.share[LAYOUT.slices[group]].sum() == pytest.approx(1.0)
        assert all(LAYOUT.names[i].startswith(group + ".")
                   for i in range(*LAYOUT.slices[group].indices(LAYOUT.width)))
    assert LAYOUT.width == 31 + 3 + 16 + 4
    assert "rhythm.tempo_bpm" in LAYOUT.names and "tonal.chroma_mean[11]" in LAYOUT.names


def test_median_and_iqr_standardise_and_an_outlier_changes_nothing() -> None:
    tempi = [100.0, 105.0, 110.0, 115.0, 120.0, 125.0, 130.0, 135.0, 140.0]
    plain = build_matrix([groups(tempo=t) for t in tempi])
    wild = build_matrix([groups(tempo=t) for t in [*tempi, 10_000.0]])
    col = column("rhythm.tempo_bpm")
    assert plain.center[col] == pytest.approx(math.log2(120.0))
    assert plain.values[4, col] == pytest.approx(0.0)
    # the outlier moves the median by half a rank and the quartiles a little, not the scale tenfold
    assert wild.scale[col] == pytest.approx(plain.scale[col], rel=0.25)
    assert wild.values[-1, col] == CLIP
    assert np.abs(wild.values).max() <= CLIP


def test_missing_values_sit_at_the_median() -> None:
    rows = [groups(tempo=t, lufs=float(-t / 10)) for t in (100.0, 120.0, 140.0)]
    rows.append(groups(tempo=None, camelot=None, lufs=None))
    rows.append({})  # a track with no feature groups at all
    rows.append({"timbre": {"mfcc_mean": [1.0, None, 2.0]}})  # wrong width: ignored
    matrix = build_matrix(rows)
    assert np.isfinite(matrix.values).all()
    assert matrix.values[3, column("rhythm.tempo_bpm")] == 0.0
    assert matrix.values[3, column("loudness.integrated_lufs")] == 0.0
    assert (matrix.values[4] == 0.0).all()
    assert np.isnan(raw_matrix(rows)[5, column("timbre.mfcc_mean[0]")])


def test_tempo_is_compared_by_ratio() -> None:
    matrix = build_matrix([groups(tempo=t) for t in (100.0, 110.0, 150.0, 165.0)])
    col = column("rhythm.tempo_bpm")
    v = matrix.values[:, col]
    assert v[1] - v[0] == pytest.approx(v[3] - v[2])


def test_camelot_wheel_is_a_circle() -> None:
    assert camelot_index("1A") == 0 and camelot_index("12B") == 23 and camelot_index("13A") is None
    assert camelot_index("8") is None and camelot_index(None) is None
    matrix = build_matrix([groups(camelot=c) for c in ("12A", "1A", "2A", "7A")])
    part = LAYOUT.slices["tonal"]
    vec = matrix.values[:, part]
    d = lambda a, b: float(np.linalg.norm(vec[a] - vec[b]))  # noqa: E731
    assert d(0, 1) == pytest.approx(d(1, 2))
    assert d(1, 3) > 3 * d(0, 1)


def test_group_distance_does_not_depend_on_how_many_columns_a_group_has() -> None:
    base = build_matrix([groups(tempo=t, mfcc0=m) for t, m in
                         [(100.0, 0.0), (110.0, 1.0), (120.0, 2.0), (130.0, 3.0), (140.0, 4.0)]])
    ref = base.values[0]
    shifted = base.values[0].copy()
    for group in ("rhythm", "timbre"):
        shifted[base.layout.slices[group]] += 1.0  # one σ in every column of the group
    from tunescout.playlists.vectors import FeatureMatrix

    probe = FeatureMatrix(np.stack([shifted]), base.layout, base.center, base.scale)
    distances = group_distances(probe, np.array([0]), ref)[0]
    by_name = dict(zip(FEATURE_GROUPS, distances, strict=True))
    assert by_name["rhythm"] == pytest.approx(1.0) and by_name["timbre"] == pytest.approx(1.0)
    assert by_name["tonal"] == 0.0 and by_name["loudness"] == 0.0


def test_column_weights_scale_each_group_by_its_weight() -> None:
    factors = column_weights(LAYOUT, {"timbre": 4.0, "rhythm": 1.0, "tonal": 0.0})
    assert (factors[LAYOUT.slices["tonal"]] == 0).all() and (factors[LAYOUT.slices["loudness"]] == 0).all()
    ones = np.ones(LAYOUT.width)
    squared = lambda g: float(((ones * factors)[LAYOUT.slices[g]] ** 2).sum())  # noqa: E731
    assert squared("timbre") == pytest.approx(4.0) and squared("rhythm") == pytest.approx(1.0)
