"""Tempo from the onset envelope: its autocorrelation, the beat period, a refined BPM.

The envelope (one value per hop, see features.py) is the only array that grows with the file; its
autocorrelation is accumulated over fixed chunks for lags up to MAX_LAG_FRAMES, so a three-hour mix
costs the same memory per chunk as a song.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.fft

FloatArray = npt.NDArray[np.floating]
Float64Array = npt.NDArray[np.float64]

MIN_BPM = 60.0
MAX_BPM = 200.0
MAX_LAG_FRAMES = 8192
"""Autocorrelation lags computed for tempo (190 s); refining the beat period uses its multiples."""
ACF_CHUNK_FRAMES = 8192
"""Envelope frames per autocorrelation chunk: FFTs of 16384 points, whatever the file's length."""
PRIOR_BPM = 128.0
"""Centre of the log-normal tempo prior: where listeners tap most often (librosa and Ellis use 120).

Between a tempo and its double that the onsets support equally, the one nearer this wins: 128 is
the geometric mean of 90 and 182, so a rock beat at 180 stays at 180 and a ballad at 85 is not
doubled. bench/quality.py measured 88-91 % agreement with Essentia for centres of 126-134.
"""
PRIOR_OCTAVES = 0.8
"""Width (standard deviation, in octaves) of the prior: a weak preference, not a fence."""
HARMONICS = 8
"""Multiples of a candidate period whose autocorrelation counts as evidence for it.

A metrical level is the beat when the onsets repeat at 1, 2, ... 8 of its periods: the half
tempo of a track whose accents alternate (kick, snare) has support at every multiple, its double
only at the even ones; on a short excerpt the decaying autocorrelation favours the faster one.
"""
PEAK_WINDOW = 0.04
"""Relative half-width of the window searched for a peak near a multiple of a period."""
NEIGHBOURS = (2.0, 0.5, 1.5, 2.0 / 3.0)
"""Tempo ratios of the metrical levels a confidence compares the chosen one with."""


class Tempo(NamedTuple):
    """A tempo estimate: BPM, beat strength and confidence, or None and zeros without any beat."""

    bpm: float | None
    strength: float  # normalised autocorrelation at the beat period, 0..1
    confidence: float  # 0..1: how clearly the chosen level beats its ×2, ×½, ×3/2, ×2/3 neighbours


NO_TEMPO = Tempo(None, 0.0, 0.0)


def autocorrelation(signal: FloatArray, max_lag: int, chunk: int = ACF_CHUNK_FRAMES) -> Float64Array:
    """Return Σ x[t]·x[t+lag] for lags below `max_lag`, summed chunk by chunk.

    Each chunk is correlated with itself and the `max_lag` values after it, by FFTs whose size
    depends on `chunk` and `max_lag` only; the sum is the exact (linear) autocorrelation.
    """
    x = np.asarray(signal, dtype=np.float64)
    lags = min(max_lag, len(x))
    size = scipy.fft.next_fast_len(chunk + lags, real=True)
    acf = np.zeros(lags)
    for start in range(0, len(x), chunk):
        head = scipy.fft.rfft(x[start : start + chunk], size)
        span = scipy.fft.rfft(x[start : start + chunk + lags - 1], size)
        acf += scipy.fft.irfft(np.conj(head) * span, size)[:lags]
    return acf


def estimate_tempo(envelope: FloatArray, frame_rate_hz: float) -> Tempo:
    """Return the tempo (MIN_BPM..MAX_BPM), beat strength and confidence of an onset envelope.

    Every autocorrelation peak between the periods of MAX_BPM and MIN_BPM / 2 is a candidate
    metrical level, scored by the mean autocorrelation near its first HARMONICS multiples times a
    log-normal prior (`_level_score`); the best one's period is refined by a weighted fit
    through the peaks at its multiples, which brings the error well under 1 % (librosa's grid of
    whole lags is ±2 % at 120 BPM).
    """
    # A light smoothing keeps a beat whose period falls between two frames from splitting its
    # autocorrelation peak in two (which made it look weaker than the two-beat peak).
    smoothed = np.convolve(np.asarray(envelope, dtype=np.float64), [0.25, 0.5, 0.25], "same")
    centred = smoothed - float(np.mean(smoothed)) if smoothed.size else smoothed
    n = len(centred)
    if n < 4:
        return NO_TEMPO
    acf = autocorrelation(centred, MAX_LAG_FRAMES)
    del smoothed, centred
    if acf[0] <= 1e-12:
        return NO_TEMPO
    acf /= acf[0]
    unbiased = acf * n / (n - np.arange(len(acf)))
    min_lag = max(math.ceil(frame_rate_hz * 60.0 / MAX_BPM), 1)
    # Down to half of MIN_BPM: a 50 BPM pulse has no peak in range and is reported at 100.
    max_lag = min(math.floor(frame_rate_hz * 120.0 / MIN_BPM), n // 2, len(acf) - 2)
    peaks = _peaks(acf, min_lag, max_lag)
    if not peaks:
        return NO_TEMPO
    rate = 60.0 * frame_rate_hz
    scores = {lag: _level_score(acf, _interpolate(acf, lag), rate) for lag in peaks}
    lag = max(peaks, key=lambda candidate: scores[candidate])
    bpm = rate / _refine_period(unbiased, _interpolate(unbiased, lag), n)
    while bpm > MAX_BPM:  # a period refined past the edge, or one under MIN_BPM: fold it in
        bpm /= 2.0
    while bpm < MIN_BPM:
        bpm *= 2.0
    rival = max((_level_score(acf, _interpolate(acf, near), rate)
                 for ratio in NEIGHBOURS
                 if (near := _peak_near(acf, peaks, _interpolate(acf, lag) / ratio)) is not None),
                default=0.0)
    best = scores[lag]
    confidence = 1.0 - rival / best if best > 0 else 0.0
    return Tempo(bpm, float(min(max(acf[lag], 0.0), 1.0)), float(min(max(confidence, 0.0), 1.0)))


def _peaks(acf: FloatArray, low: int, high: int) -> list[int]:
    """Return the lags in low..high where the autocorrelation has a positive local maximum."""
    return [lag for lag in range(max(low, 1), high + 1)
            if acf[lag] > 0 and acf[lag] >= acf[lag - 1] and acf[lag] > acf[lag + 1]]


def _level_score(acf: FloatArray, period: float, rate: float) -> float:
    """Score a period as the beat: the mean autocorrelation near its multiples, times the prior."""
    evidence = sum(_max_near(acf, k * period) for k in range(1, HARMONICS + 1)) / HARMONICS
    octaves = math.log2(rate / period / PRIOR_BPM) / PRIOR_OCTAVES
    return max(evidence, 0.0) * math.exp(-0.5 * octaves * octaves)


def _max_near(acf: FloatArray, lag: float) -> float:
    """Return the largest autocorrelation within PEAK_WINDOW of `lag` (0 past the end)."""
    low = int(lag * (1.0 - PEAK_WINDOW))
    high = min(math.ceil(lag * (1.0 + PEAK_WINDOW)) + 1, len(acf))
    return float(np.max(acf[low:high])) if low < high else 0.0


def _peak_near(acf: FloatArray, peaks: list[int], period: float) -> int | None:
    """Return the candidate peak within PEAK_WINDOW of `period`, if the onsets have one there."""
    near = [lag for lag in peaks if abs(lag - period) <= PEAK_WINDOW * period + 1.0]
    return max(near, key=lambda lag: acf[lag]) if near else None


def _refine_period(acf: FloatArray, period: float, n: int) -> float:
    """Fit the period through the autocorrelation peaks at its multiples (errors shrink as 1/k).

    Each multiple weighs as its peak's height squared, so that a weak peak that one encoding
    of a track has and another lacks moves the fit by little (a threshold made it jump 1 %).
    """
    multiples, lags, weights = [1.0], [period], [0.0]
    limit = min(n * 0.6, len(acf) - 0.3 * period - 2)
    k = 2
    while (k + 0.5) * period < limit:
        guess = k * period
        low, high = int(guess - 0.3 * period), int(guess + 0.3 * period) + 1
        window = acf[low:high]
        if window.size < 3:
            break
        lag = low + int(np.argmax(window))
        if low < lag < high - 1 and acf[lag] > 0:
            multiples.append(float(k))
            lags.append(_interpolate(acf, lag))
            weights.append(float(acf[lag]) ** 2)
        k += 1
    ks, w = np.array(multiples), np.array(weights)
    w[0] = w[1:].max() if len(w) > 1 else 1.0  # the period itself counts as its best multiple
    return float(np.dot(w * ks, np.array(lags)) / np.dot(w * ks, ks))


def _peak_height(curve: FloatArray, index: int) -> float:
    """Return the height of the parabola through a peak and its neighbours."""
    left, centre, right = curve[index - 1], curve[index], curve[index + 1]
    denominator = left - 2.0 * centre + right
    if denominator >= 0:
        return float(centre)
    return float(centre - 0.125 * (left - right) ** 2 / denominator)


def _interpolate(curve: FloatArray, index: int) -> float:
    """Return the vertex of the parabola through a peak and its neighbours."""
    if index <= 0 or index >= len(curve) - 1:
        return float(index)
    left, centre, right = curve[index - 1], curve[index], curve[index + 1]
    denominator = left - 2.0 * centre + right
    if denominator >= 0:
        return float(index)
    return float(index + 0.5 * (left - right) / denominator)
