"""Tempo steps as a listener hears them: half and double tempo are neighbours, not ±100 %.

A track at 70 BPM and one at 140 BPM share their beat (every other beat of the faster one), and
tempo estimators disagree by exactly that factor on the same music; so every tempo rule and
every `--explain` step compares a tempo with the other's nearest octave: 70 → 140 is 0 %,
70 → 150 is +7.1 % (of 140), 100 → 150 is ±25 % either way. Ranges (`--bpm 110-130`) and ramps
stay absolute: they ask for a tempo, not a step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tunescout.playlists.vectors import FloatArray


def octave_steps(before: float | FloatArray, after: FloatArray) -> FloatArray:
    """Return log2(after / before) folded to the nearest octave (-0.5..0.5); NaN when unknown."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.log2(np.asarray(after, dtype=np.float64) / before)
        return np.asarray(ratio - np.round(ratio), dtype=np.float64)


def within_tolerance(before: float | FloatArray, after: FloatArray, tolerance_pct: float) -> np.ndarray:
    """Return which steps stay within `tolerance_pct` % once folded to the nearest octave."""
    limit = math.log2(1.0 + tolerance_pct / 100.0)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(octave_steps(before, after)) <= limit + 1e-12, dtype=bool)


def step_pct(before: float, after: float) -> tuple[float, int]:
    """Return (the folded step in %, the octave between them: 1 = double time, -1 = half time)."""
    ratio = math.log2(after / before)
    octave = round(ratio)
    return 100.0 * (2.0 ** (ratio - octave) - 1.0), octave


def squared_distances(weighted: FloatArray, ref: FloatArray) -> FloatArray:
    """Return each row's squared distance to `ref` (one pass, no (N, D) temporary kept)."""
    diff = weighted - ref
    return np.asarray(np.einsum("ij,ij->i", diff, diff), dtype=np.float64)


def near_tempo(tempo: FloatArray, refs: Sequence[float], tolerance_pct: float) -> npt.NDArray[np.bool_]:
    """Return which tempi lie within the tolerance of a reference, half and double tempo included."""
    ok = np.zeros(len(tempo), dtype=bool)
    for ref in refs:
        if math.isfinite(ref) and ref > 0:
            ok |= within_tolerance(ref, tempo, tolerance_pct)
    return ok
