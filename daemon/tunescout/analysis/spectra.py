"""One pass over a batch of STFT frames: magnitude, power, and the per-frame rolloff and flatness.

In numpy these took eight full-size passes over every (frames, 1,025) batch (`abs`, a square,
a cumulative sum, a comparison, an argmax, a floor, a log, two means), each writing a new array:
a third of the timbre group's cost. This kernel reads each complex bin once and keeps the sums in
registers. It keeps numpy's arithmetic where a value depends on it: the rolloff's running sum is
float32 and sequential, as `np.cumsum` is, and its threshold float32, so the bin that crosses 85 %
is the same one; the flatness sums (float32 in numpy, pairwise) are float64 here, closer to exact.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["magnitude_power_shape"]

PRODUCT_TERMS = 8
"""Powers multiplied before one log: floored at 1e-10 and below 1e8 (a full-scale sine peaks
near 3e5), eight of them stay far inside float64's range, and the logs cost an eighth."""


@numba.njit(cache=True, nogil=True)
def magnitude_power_shape(
    spectrum: npt.NDArray[np.complex64], freqs: npt.NDArray[np.float64], roll_percent: float,
    amin: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float, float]:  # pragma: no cover
    """Return |X|, |X|², and the sums over frames of the spectral rolloff (Hz) and flatness.

    Rolloff is librosa's: the lowest bin whose cumulative magnitude reaches `roll_percent` of
    the frame's total (bin 0 for a silent frame). Flatness is librosa's on the power spectrum:
    the geometric over the arithmetic mean of max(|X|², amin).
    """
    frames, bins = spectrum.shape
    magnitude = np.empty((frames, bins), dtype=np.float32)
    power = np.empty((frames, bins), dtype=np.float32)
    roll = np.float32(roll_percent)
    floor = np.float32(amin)
    rolloff_sum = 0.0
    flatness_sum = 0.0
    for f in range(frames):
        total = np.float32(0.0)
        log_sum = 0.0
        power_sum = 0.0
        product = 1.0
        for b in range(bins):
            value = spectrum[f, b]
            p = value.real * value.real + value.imag * value.imag
            m = np.sqrt(p)
            magnitude[f, b] = m
            power[f, b] = p
            total += m
            q = np.float64(max(p, floor))
            power_sum += q
            product *= q
            if b % PRODUCT_TERMS == PRODUCT_TERMS - 1:
                log_sum += np.log(product)
                product = 1.0
        log_sum += np.log(product)
        threshold = roll * total
        running = np.float32(0.0)
        index = 0
        for b in range(bins):
            running += magnitude[f, b]
            if running >= threshold:
                index = b
                break
        rolloff_sum += freqs[index]
        flatness_sum += np.exp(log_sum / bins) / (power_sum / bins)
    return magnitude, power, rolloff_sum, flatness_sum
