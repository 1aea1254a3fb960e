"""Measure loudness block by block: ITU-R BS.1770-4 integrated loudness, EBU loudness range, peak.

The meter is fed the decoded channels at the analysis rate, so it needs K-weighting filters for
that rate: they are derived from the analog prototype (as libebur128 does) rather than taken from
the 48 kHz coefficients printed in the standard. Only per-100 ms powers are kept, so memory grows
by 8 bytes per 100 ms of audio, whatever the file's length.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import signal

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0  # integrated loudness (BS.1770-4)
LRA_RELATIVE_GATE_LU = -20.0  # loudness range (EBU Tech 3342)
SUBBLOCK_S = 0.1
GATING_SUBBLOCKS = 4  # 400 ms blocks with 75 % overlap
SHORT_TERM_SUBBLOCKS = 30  # 3 s windows for the loudness range

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
    """Accumulate K-weighted power per 100 ms and the sample peak over (channels, n) blocks."""

    def __init__(self, rate_hz: int, channels: tuple[str, ...]) -> None:
        self.rate_hz = rate_hz
        self._sos = k_weighting_sos(rate_hz)
        self._weights = channel_weights(channels)[:, None]
        self._state = np.zeros((self._sos.shape[0], len(channels), 2))
        self._subblock = round(SUBBLOCK_S * rate_hz)
        self._carry = np.zeros(0)
        self._powers: list[float] = []
        self._peak = 0.0
        self._sum_squares = 0.0
        self._samples = 0

    def add(self, block: npt.NDArray[np.float32]) -> None:
        """Filter one block and bank its complete 100 ms sub-blocks; keep the rest for later."""
        if block.shape[1] == 0:
            return
        if block.shape[0] != self._weights.shape[0]:
            self._reshape(block.shape[0])
        self._peak = max(self._peak, float(np.max(np.abs(block))))
        samples = block.astype(np.float64)
        self._sum_squares += float(np.einsum("ij,ij->", samples, samples))
        self._samples += samples.size
        filtered, self._state = signal.sosfilt(self._sos, samples, axis=1, zi=self._state)
        weighted = np.sum(self._weights * filtered * filtered, axis=0)
        stream = np.concatenate([self._carry, weighted])
        whole = len(stream) // self._subblock * self._subblock
        means = stream[:whole].reshape(-1, self._subblock).mean(axis=1)
        self._powers.extend(means.tolist())
        self._carry = stream[whole:]

    def _reshape(self, channels: int) -> None:
        """Follow a stream whose frames have another channel count than its header said."""
        self._weights = np.ones((channels, 1))
        self._state = np.zeros((self._sos.shape[0], channels, 2))

    def integrated_lufs(self) -> float | None:
        """Return the gated integrated loudness; None for silence or less than 400 ms."""
        powers = _window_powers(self._powers, GATING_SUBBLOCKS)
        gated = powers[powers > _power(ABSOLUTE_GATE_LUFS)]
        if gated.size == 0:
            return None
        relative = _power(_lufs(float(gated.mean())) + RELATIVE_GATE_LU)
        return _lufs(float(gated[gated > relative].mean()))

    def loudness_range_lu(self) -> float | None:
        """Return EBU Tech 3342 loudness range; None when less than 3 s is above the gates."""
        powers = _window_powers(self._powers, SHORT_TERM_SUBBLOCKS)
        gated = powers[powers > _power(ABSOLUTE_GATE_LUFS)]
        if gated.size == 0:
            return None
        relative = _power(_lufs(float(gated.mean())) + LRA_RELATIVE_GATE_LU)
        loudness = -0.691 + 10.0 * np.log10(gated[gated > relative])
        low, high = np.percentile(loudness, [10.0, 95.0])
        return float(high - low)

    def peak_dbfs(self) -> float | None:
        """Return the sample peak at the analysis rate in dBFS; None for digital silence."""
        return 20.0 * math.log10(self._peak) if self._peak > 0 else None

    def crest_db(self) -> float | None:
        """Return peak over RMS in dB: how much headroom the dynamics use."""
        if self._peak <= 0 or self._sum_squares <= 0:
            return None
        rms = math.sqrt(self._sum_squares / self._samples)
        return 20.0 * math.log10(self._peak / rms)


def _window_powers(powers: list[float], width: int) -> npt.NDArray[np.float64]:
    """Return the mean power of every run of `width` sub-blocks, stepping one sub-block."""
    values = np.asarray(powers, dtype=np.float64)
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
