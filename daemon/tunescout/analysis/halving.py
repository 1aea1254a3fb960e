"""Halve the sample rate (44.1 kHz to 22.05 kHz, the commonest case) with libswresample's own filter.

For an exact 2:1 ratio libswresample uses one phase of its filter: each output sample is one
66-tap FIR over the input from 32 samples before twice its index to 33 after, the start and the
end of the stream mirrored. `HalvingResampler` reads those taps from libswresample itself (the response to
two impulses, once per process) and applies them in one numba loop per block, so the output is
libswresample's to float rounding (measured: within 1e-7) at a fraction of its cost (the
resampler call was the largest single cost of the decode path after decoding).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import numpy.typing as npt

from tunescout.analysis.pcm import Block, MonoResampler

__all__ = ["HalvingResampler", "mono_resampler"]

HALF_TAPS = 32
"""libswresample's default filter_size 32: output n weighs inputs 2n - 32 to 2n + 33."""
TAPS = 2 * HALF_TAPS + 2

SHORTEST = 4 * TAPS
"""Shorter streams go through libswresample as they are: it handles them its own way."""

Taps = npt.NDArray[np.float32]


def mono_resampler(source_hz: int, rate_hz: int) -> HalvingResampler | MonoResampler:
    """Return the cheapest resampler from `source_hz` to `rate_hz` that gives libswresample's values."""
    if source_hz == 2 * rate_hz and (taps := swr_taps(source_hz)) is not None:
        return HalvingResampler(source_hz, rate_hz, taps)
    return MonoResampler(source_hz, rate_hz)


@functools.cache
def swr_taps(source_hz: int) -> Taps | None:
    """Return libswresample's 2:1 filter at `source_hz`, or None if it is longer than TAPS here."""
    length = 8 * TAPS
    centre = length // 2  # even: an output sample sits on it
    taps = np.zeros(TAPS, dtype=np.float32)
    for offset in (0, 1):
        impulse = np.zeros(length, dtype=np.float32)
        impulse[centre + offset] = 1.0
        swr = MonoResampler(source_hz, source_hz // 2)
        response = np.concatenate([swr.resample(impulse), swr.flush()], axis=1)[0]
        # output n weighs input j by taps[j - 2n + HALF_TAPS]
        for n in range(len(response)):
            index = (centre + offset) - 2 * n + HALF_TAPS
            if 0 <= index < TAPS:
                taps[index] = response[n]
            elif abs(response[n]) > 0:
                return None  # a longer filter than this module assumes: keep libswresample
    if not taps[HALF_TAPS] > 0:
        return None
    return taps


class HalvingResampler:
    """Resample one channel to half its rate a block at a time; the interface of MonoResampler."""

    def __init__(self, source_hz: int, rate_hz: int, taps: Taps) -> None:
        assert source_hz == 2 * rate_hz
        self._source_hz = source_hz
        self._taps = taps
        self._pending = np.zeros(0, dtype=np.float32)  # input (after the mirrored head) not yet used
        self._started = False
        self._inputs = 0
        self._outputs = 0

    def resample(self, mono: Block) -> Block:
        """Return the (1, n) resampled samples of a 1-D block (n may be 0 while it fills)."""
        self._inputs += len(mono)
        self._pending = np.concatenate([self._pending, np.asarray(mono, dtype=np.float32)])
        if not self._started:
            if len(self._pending) < SHORTEST:
                return np.zeros((1, 0), dtype=np.float32)
            # the head mirrored about the first sample, as libswresample does
            self._pending = np.concatenate([self._pending[HALF_TAPS:0:-1], self._pending])
            self._started = True
        return self._run()

    def flush(self) -> Block:
        """Return the rest, the end mirrored about the last sample (libswresample's flush)."""
        if not self._started:  # too short to mirror: libswresample itself (it gives no output)
            swr = MonoResampler(self._source_hz, self._source_hz // 2)
            return np.concatenate([swr.resample(self._pending), swr.flush()], axis=1)
        self._pending = np.concatenate([self._pending, self._pending[: -HALF_TAPS - 3 : -1]])
        total = (self._inputs + 1) // 2
        return self._run(limit=total - self._outputs)

    def _run(self, limit: int | None = None) -> Block:
        """Filter every output the pending input covers; keep what the next ones need."""
        count = (len(self._pending) - TAPS) // 2 + 1 if len(self._pending) >= TAPS else 0
        if limit is not None:
            count = max(min(count, limit), 0)
        out = _halve(self._pending, self._taps, count)
        self._pending = self._pending[2 * count :]
        self._outputs += count
        return out[None, :]


@numba.njit(cache=True, nogil=True)
def _halve(signal: npt.NDArray[np.float32], taps: Taps,
           count: int) -> npt.NDArray[np.float32]:  # pragma: no cover
    """Return y[n] = Σ_k taps[k]·signal[2n + k] for n < count, summed in float32 as swr sums.

    The even and odd samples are split first, so that each tap is one contiguous multiply-add
    over the block, which the compiler vectorises (strided, it ran no faster than swr).
    """
    half = (signal.shape[0] + 1) // 2
    even = np.zeros(half + 1, dtype=np.float32)
    odd = np.zeros(half + 1, dtype=np.float32)
    for i in range(signal.shape[0]):
        if i % 2 == 0:
            even[i // 2] = signal[i]
        else:
            odd[i // 2] = signal[i]
    out = np.zeros(count, dtype=np.float32)
    for k in range(taps.shape[0] // 2):
        weight_even = taps[2 * k]
        weight_odd = taps[2 * k + 1]
        for n in range(count):
            out[n] += weight_even * even[n + k] + weight_odd * odd[n + k]
    return out
