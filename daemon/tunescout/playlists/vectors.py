"""Turn stored feature groups into one standardised numeric vector per track, with a recorded layout.

Each stored value becomes one or more columns (tempo on a log scale, spectral frequencies in log Hz,
the key as a point on the Camelot wheel). Columns are standardised over the whole library with the
median and the interquartile range, so one badly analysed track cannot stretch the scale for the
others, and clipped to ±CLIP. A missing value (None, an absent group) becomes 0 after
standardisation: the library median, which neither attracts nor repels. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tunescout.models import FEATURE_GROUPS
from tunescout.playlists.camelot import camelot_index

FloatArray = npt.NDArray[np.float64]

CLIP = 4.0  # standardised values beyond ±4 IQR-sigmas are outliers, not "more different"
IQR_TO_SIGMA = 1.349  # the IQR of a normal distribution, in standard deviations
CAMELOT_SCALE = 0.7071  # cos/sin of uniformly spread keys have this standard deviation


def _log2(value: Any) -> float | None:
    number = _num(value)
    return math.log2(number) if number is not None and number > 0 else None


def _camelot_angle(value: Any) -> float | None:
    index = camelot_index(value)
    return None if index is None else 2.0 * math.pi * (index // 2) / 12.0


def _minor(value: Any) -> float | None:
    return 1.0 if value == "minor" else 0.0 if value == "major" else None


@dataclass(frozen=True)
class _Feature:
    """One stored value and how it becomes columns."""

    group: str
    key: str
    width: int = 1  # a list of this many numbers
    transform: Callable[[Any], float | None] | None = None
    circular: bool = False  # a Camelot position: (cos, sin), not standardised


_FEATURES: tuple[_Feature, ...] = (
    _Feature("timbre", "mfcc_mean", 13),
    _Feature("timbre", "mfcc_std", 13),
    _Feature("timbre", "spectral_centroid_hz", transform=_log2),
    _Feature("timbre", "spectral_bandwidth_hz", transform=_log2),
    _Feature("timbre", "spectral_rolloff_hz", transform=_log2),
    _Feature("timbre", "spectral_flatness"),
    _Feature("timbre", "zcr"),
    _Feature("rhythm", "tempo_bpm", transform=_log2),  # 100→110 BPM is as far as 150→165
    _Feature("rhythm", "beat_strength"),
    _Feature("rhythm", "onset_rate_hz"),
    _Feature("tonal", "camelot", 2, circular=True),
    _Feature("tonal", "mode", transform=_minor),
    _Feature("tonal", "key_strength"),
    _Feature("tonal", "chroma_mean", 12),
    _Feature("loudness", "integrated_lufs"),
    _Feature("loudness", "loudness_range_lu"),
    _Feature("loudness", "peak_dbfs"),
    _Feature("loudness", "crest_db"),
)


@dataclass(frozen=True)
class Layout:
    """Which columns hold what: `names[i]` is column i; `slices[group]` the group's columns."""

    names: tuple[str, ...]
    slices: Mapping[str, slice]
    share: FloatArray  # (D,) each column's part of its group: features count equally, whatever width

    @property
    def width(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class FeatureMatrix:
    """Standardised vectors (N, D) of a library, and the statistics that standardised them."""

    values: FloatArray
    layout: Layout
    center: FloatArray
    scale: FloatArray


def build_layout() -> Layout:
    """Return the column layout every FeatureMatrix uses."""
    names: list[str] = []
    shares: list[float] = []
    slices: dict[str, slice] = {}
    for group in FEATURE_GROUPS:
        features = [f for f in _FEATURES if f.group == group]
        start = len(names)
        for feature in features:
            if feature.circular:
                names.extend([f"{group}.{feature.key}.cos", f"{group}.{feature.key}.sin"])
            elif feature.width > 1:
                names.extend(f"{group}.{feature.key}[{i}]" for i in range(feature.width))
            else:
                names.append(f"{group}.{feature.key}")
            shares.extend([1.0 / (len(features) * feature.width)] * feature.width)
        slices[group] = slice(start, len(names))
    return Layout(tuple(names), slices, np.array(shares))


LAYOUT = build_layout()


def raw_matrix(features: Sequence[Mapping[str, Mapping[str, Any]]]) -> FloatArray:
    """Return the (N, D) raw column values of tracks' feature groups, NaN where missing."""
    out = np.full((len(features), LAYOUT.width), np.nan)
    for row, groups in enumerate(features):
        column = 0
        for feature in _FEATURES:
            values = groups.get(feature.group) or {}
            out[row, column : column + feature.width] = _columns(feature, values.get(feature.key))
            column += feature.width
    return out


def _columns(feature: _Feature, value: Any) -> list[float]:
    """Return one feature's columns, NaN for anything missing or not a finite number."""
    if feature.circular:
        angle = _camelot_angle(value)
        return [math.nan, math.nan] if angle is None else [math.cos(angle), math.sin(angle)]
    if feature.width > 1:
        items = value if isinstance(value, list) and len(value) == feature.width else []
        return [_nan(_num(v)) for v in items] or [math.nan] * feature.width
    converted = feature.transform(value) if feature.transform else _num(value)
    return [_nan(converted)]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def standardise(raw: FloatArray) -> FeatureMatrix:
    """Centre each column on its median and scale by its IQR; clip outliers; missing → 0."""
    center = np.zeros(raw.shape[1])
    scale = np.ones(raw.shape[1])
    circular = np.array([".camelot." in name for name in LAYOUT.names])
    scale[circular] = CAMELOT_SCALE
    present = ~np.all(np.isnan(raw), axis=0) & ~circular
    if raw.shape[0] and present.any():
        columns = raw[:, present]
        q25, q50, q75 = np.nanpercentile(columns, [25.0, 50.0, 75.0], axis=0)
        spread = (q75 - q25) / IQR_TO_SIGMA
        fallback = np.nanstd(columns, axis=0)  # a column most tracks share (mode): its std
        spread = np.where(spread > 1e-9, spread, np.where(fallback > 1e-9, fallback, 1.0))
        center[present] = q50
        scale[present] = spread
    values = np.clip((raw - center) / scale, -CLIP, CLIP)
    values[np.isnan(values)] = 0.0
    return FeatureMatrix(values, LAYOUT, center, scale)


def build_matrix(features: Sequence[Mapping[str, Mapping[str, Any]]]) -> FeatureMatrix:
    """Return the standardised vectors of a library's tracks (feature groups by name)."""
    return standardise(raw_matrix(features))


def column_weights(layout: Layout, weights: Mapping[str, float]) -> FloatArray:
    """Return per-column multipliers so that a squared distance is Σ weight × group mean square.

    Each group then counts by its weight alone, not by how many columns it happens to have.
    """
    factors = np.zeros(layout.width)
    for group, part in layout.slices.items():
        factors[part] = weights.get(group, 0.0) * layout.share[part]
    return np.sqrt(factors)


def group_distances(matrix: FeatureMatrix, rows: npt.NDArray[np.intp], ref: FloatArray) -> FloatArray:
    """Return (len(rows), G) root-mean-square distances per group to a reference vector (or one
    reference per row: `ref` of shape (len(rows), D)), in σ."""
    diff = matrix.values[rows] - ref
    out = np.empty((len(rows), len(FEATURE_GROUPS)))
    for g, group in enumerate(FEATURE_GROUPS):
        part = matrix.layout.slices[group]
        share = matrix.layout.share[part]
        out[:, g] = np.sqrt((diff[:, part] ** 2) @ share)
    return out
