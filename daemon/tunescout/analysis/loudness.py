"""Measure loudness block by block: ITU-R BS.1770-4 integrated loudness, EBU loudness range, peak.

The meter is fed the decoded channels at the stream's own rate (any rate), so it needs K-weighting
filters for that rate: they are derived from the analog prototype (as libebur128 does) rather than taken from
the 48 kHz coefficients printed in the standard. Window powers go into fixed-size histograms
(0.01 LU bins), so memory does not grow with the file's length.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0  # integrated loudness (BS.1770-4)
LRA_RELATIVE_GATE_LU = -20.0  # loudness range (EBU Tech 3342)
SUBBLOCK_S = 0.1
GATING_SUBBLOCKS = 4  # 400 ms blocks with 75 % overlap
SHORT_TERM_SUBBLOCKS = 30  # 3 s windows for the loudness range
HISTOGRAM_STEP_LU = 0.01
HISTOGRAM_TOP_LUFS = 10.0  # louder windows (impossible without clipping) go in the top bin

# BS.1770 channel weights by FFmpeg channel name; LFE is left out, surrounds count 1.41.
_SURROUND = {"SL", "SR", "BL", "BR", "SW", "TBL", "TBR"}


def k_weighting_sos(rate_hz: int) -> npt.NDArray[np.float64]:
    """Return the K-weighting filter (shelf, then high-pass) as second-order sections."""
    # Pre-filter: a high shelf of about +4 dB above 1.7 kHz (the head's acoustic effect).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate_hz)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
        1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0,
    ]
    # RLB weighting: a second-order high-pass at 38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate_hz)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass], dtype=np.float64)


def channel_weights(channels: tuple[str, ...]) -> npt.NDArray[np.float64]:
    """Return the BS.1770 weight of each channel (unknown names count as front channels)."""
    return np.array(
        [0.0 if name == "LFE" else 1.41 if name in _SURROUND else 1.0 for name in channels]
    )


class LoudnessMeter:
    """Accumulate K-weighted power per 100 ms and the sample peak over (channels, n) blocks.

    Memory is fixed: the 400 ms (gating) and 3 s (range) window powers go into loudness
    histograms of HISTOGRAM_STEP_LU bins, as libebur128's histogram mode does, instead of lists
    that grow with the file; integrated loudness and range are read from them at the end.
    """

    def __init__(self, rate_hz: int, channels: tuple[str, ...]) -> None:
        self.rate_hz = rate_hz
        self._sos = k_weighting_sos(rate_hz)
        self._weights = channel_weights(channels)
        self._state = np.zeros((len(channels), self._sos.shape[0], 2))
        self._subblock = round(SUBBLOCK_S * rate_hz)
        self._carry = np.zeros(0, dtype=np.float32)
        self._recent = np.zeros(0)  # the last SHORT_TERM_SUBBLOCKS - 1 sub-block powers
        self._gating = _PowerHistogram()
        self._short_term = _PowerHistogram()
        self._peak = 0.0
        self._sum_squares = 0.0
        self._samples = 0

    def add(self, block: npt.NDArray[np.float32]) -> None:
        """Filter one block and bank its complete 100 ms sub-blocks; keep the rest for later."""
        if block.shape[1] == 0:
            return
        if block.shape[0] != self._weights.shape[0]:
            self._reshape(block.shape[0])
        samples = np.ascontiguousarray(block, dtype=np.float32)
        weighted, peak, sum_squares = _k_weighted_power(samples, self._sos, self._state,
                                                        self._weights)
        self._peak = max(self._peak, peak)
        self._sum_squares += sum_squares
        self._samples += samples.size
        stream = np.concatenate([self._carry, weighted])
        whole = len(stream) // self._subblock * self._subblock
        self._carry = stream[whole:]
        if whole:
            self._bank(stream[:whole].reshape(-1, self._subblock).mean(axis=1, dtype=np.float64))

    def _bank(self, powers: npt.NDArray[np.float64]) -> None:
        """Add the 400 ms and 3 s windows that end in these new sub-blocks to the histograms."""
        recent = np.concatenate([self._recent, powers])
        for histogram, width in ((self._gating, GATING_SUBBLOCKS),
                                 (self._short_term, SHORT_TERM_SUBBLOCKS)):
            tail = recent[max(0, len(recent) - len(powers) - width + 1) :]
            histogram.add(_window_powers(tail, width))
        self._recent = recent[-(SHORT_TERM_SUBBLOCKS - 1) :]

    def _reshape(self, channels: int) -> None:
        """Follow a stream whose frames have another channel count than its header said."""
        self._weights = np.ones(channels)
        self._state = np.zeros((channels, self._sos.shape[0], 2))

    def integrated_lufs(self) -> float | None:
        """Return the gated integrated loudness; None for silence or less than 400 ms."""
        mean = self._gating.mean_power_above(_power(ABSOLUTE_GATE_LUFS))
        if mean is None:
            return None
        relative = _power(_lufs(mean) + RELATIVE_GATE_LU)
        gated = self._gating.mean_power_above(relative)
        return None if gated is None else _lufs(gated)

    def loudness_range_lu(self) -> float | None:
        """Return EBU Tech 3342 loudness range; None when less than 3 s is above the gates."""
        mean = self._short_term.mean_power_above(_power(ABSOLUTE_GATE_LUFS))
        if mean is None:
            return None
        relative = _lufs(mean) + LRA_RELATIVE_GATE_LU
        low, high = self._short_term.percentiles_above(relative, (10.0, 95.0))
        return high - low

    def peak_dbfs(self) -> float | None:
        """Return the sample peak in dBFS; None for digital silence."""
        return 20.0 * math.log10(self._peak) if self._peak > 0 else None

    def crest_db(self) -> float | None:
        """Return peak over RMS in dB: how much headroom the dynamics use."""
        if self._peak <= 0 or self._sum_squares <= 0:
            return None
        rms = math.sqrt(self._sum_squares / self._samples)
        return 20.0 * math.log10(self._peak / rms)


class _PowerHistogram:
    """Count window powers (and sum them) in bins of HISTOGRAM_STEP_LU loudness."""

    def __init__(self) -> None:
        size = round((HISTOGRAM_TOP_LUFS - ABSOLUTE_GATE_LUFS) / HISTOGRAM_STEP_LU) + 1
        self._counts = np.zeros(size, dtype=np.int64)
        self._sums = np.zeros(size)

    def add(self, powers: npt.NDArray[np.float64]) -> None:
        """Bin powers by loudness; those at or under the absolute gate are dropped at once."""
        powers = powers[powers > _power(ABSOLUTE_GATE_LUFS)]
        if powers.size:
            index = self._bin(-0.691 + 10.0 * np.log10(powers))
            self._counts += np.bincount(index, minlength=len(self._counts))
            self._sums += np.bincount(index, weights=powers, minlength=len(self._sums))

    def _bin(self, lufs: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        """Return the bin of each loudness, clamped to the histogram."""
        index = np.floor((lufs - ABSOLUTE_GATE_LUFS) / HISTOGRAM_STEP_LU).astype(np.intp)
        return np.clip(index, 0, len(self._counts) - 1)

    def mean_power_above(self, power: float) -> float | None:
        """Return the mean of the powers in bins from the one holding `power` up; None if none."""
        start = int(self._bin(np.array([_lufs(power)]))[0])
        count = int(self._counts[start:].sum())
        return float(self._sums[start:].sum()) / count if count else None

    def percentiles_above(
        self, lufs: float, percents: tuple[float, float]
    ) -> tuple[float, float]:
        """Return loudness percentiles (bin centres) of the windows at or above `lufs`."""
        start = int(self._bin(np.array([lufs]))[0])
        cumulative = np.cumsum(self._counts[start:])
        results = []
        for percent in percents:
            rank = percent / 100.0 * (cumulative[-1] - 1)
            index = start + int(np.searchsorted(cumulative, rank, side="right"))
            results.append(ABSOLUTE_GATE_LUFS + (index + 0.5) * HISTOGRAM_STEP_LU)
        return results[0], results[1]


@numba.njit(cache=True, nogil=True)
def _k_weighted_power(samples: npt.NDArray[np.float32], sos: npt.NDArray[np.float64],
                      state: npt.NDArray[np.float64], weights: npt.NDArray[np.float64],
                      ) -> tuple[npt.NDArray[np.float64], float, float]:  # pragma: no cover
    """Return the channel-weighted K-filtered power of each sample, the peak and the sum of squares.

    One pass over each channel, the filter state in registers, in float64 (scipy's sosfilt in
    float32 took a pass per step and was the costliest part of the analysis after decoding).
    `state` (channels, sections, 2) is updated in place, transposed direct form II as sosfilt's.
    """
    channels, n = samples.shape
    if channels == 2:
        return _k_weighted_power_stereo(samples, sos, state, weights)
    power = np.zeros(n)
    peak = 0.0
    sum_squares = 0.0
    for c in range(channels):
        b0, b1, b2, a1, a2 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
        d0, d1, d2, e1, e2 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
        z1, z2, w1, w2 = state[c, 0, 0], state[c, 0, 1], state[c, 1, 0], state[c, 1, 1]
        weight = weights[c]
        for t in range(n):
            x = np.float64(samples[c, t])
            peak = max(peak, abs(x))
            sum_squares += x * x
            y = b0 * x + z1
            z1 = b1 * x - a1 * y + z2
            z2 = b2 * x - a2 * y
            v = d0 * y + w1
            w1 = d1 * y - e1 * v + w2
            w2 = d2 * y - e2 * v
            power[t] += weight * v * v
        state[c, 0, 0], state[c, 0, 1], state[c, 1, 0], state[c, 1, 1] = z1, z2, w1, w2
    return power, peak, sum_squares


@numba.njit(cache=True, nogil=True)
def _k_weighted_power_stereo(samples: npt.NDArray[np.float32], sos: npt.NDArray[np.float64],
                             state: npt.NDArray[np.float64], weights: npt.NDArray[np.float64],
                             ) -> tuple[npt.NDArray[np.float64], float, float]:  # pragma: no cover
    """`_k_weighted_power` for two channels, both filters in one loop.

    A biquad is one long chain of dependent multiply-adds; two independent chains side by side
    keep the CPU busy while each waits on its own (the same operations on each channel as
    one channel at a time, so the same values; only the sum of squares adds in another order).
    """
    n = samples.shape[1]
    power = np.empty(n)
    peak = 0.0
    sum_squares = 0.0
    b0, b1, b2, a1, a2 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    d0, d1, d2, e1, e2 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    z1, z2, w1, w2 = state[0, 0, 0], state[0, 0, 1], state[0, 1, 0], state[0, 1, 1]
    r1, r2, u1, u2 = state[1, 0, 0], state[1, 0, 1], state[1, 1, 0], state[1, 1, 1]
    left_weight, right_weight = weights[0], weights[1]
    for t in range(n):
        x = np.float64(samples[0, t])
        q = np.float64(samples[1, t])
        peak = max(peak, abs(x), abs(q))
        sum_squares += x * x + q * q
        y = b0 * x + z1
        z1 = b1 * x - a1 * y + z2
        z2 = b2 * x - a2 * y
        v = d0 * y + w1
        w1 = d1 * y - e1 * v + w2
        w2 = d2 * y - e2 * v
        g = b0 * q + r1
        r1 = b1 * q - a1 * g + r2
        r2 = b2 * q - a2 * g
        h = d0 * g + u1
        u1 = d1 * g - e1 * h + u2
        u2 = d2 * g - e2 * h
        power[t] = (0.0 + left_weight * v * v) + right_weight * h * h
    state[0, 0, 0], state[0, 0, 1], state[0, 1, 0], state[0, 1, 1] = z1, z2, w1, w2
    state[1, 0, 0], state[1, 0, 1], state[1, 1, 0], state[1, 1, 1] = r1, r2, u1, u2
    return power, peak, sum_squares


def _window_powers(values: npt.NDArray[np.float64], width: int) -> npt.NDArray[np.float64]:
    """Return the mean power of every run of `width` sub-blocks, stepping one sub-block."""
    if len(values) < width:
        return np.zeros(0)
    sums = np.convolve(values, np.ones(width), mode="valid")
    return np.asarray(sums / width, dtype=np.float64)


def _power(lufs: float) -> float:
    """Return the mean-square power that has loudness `lufs`."""
    return float(10.0 ** ((lufs + 0.691) / 10.0))


def _lufs(power: float) -> float:
    """Return the loudness of a mean-square power."""
    return -0.691 + 10.0 * math.log10(power)
