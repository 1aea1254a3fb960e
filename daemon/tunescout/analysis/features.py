"""Compute the rhythm, tonal and timbre feature groups block by block, in bounded memory.

Decoded mono blocks are cut into STFT frames (n_fft 2048, hop 512 at the analysis rate, a Hann
window, centred as librosa centres them: the tail of one block is carried into the next). Each
block's frames feed one shared spectrogram; from it come the mel spectrogram (onsets, MFCC),
the spectral shape and the chroma, and each is folded at once into running statistics, so a
three-minute track and a three-hour mix run the same code and hold the same few megabytes.

The only state that grows with the file is the onset envelope: one float32 per hop (43 per
second; 620 KB per hour of audio), kept whole because tempo and onset counting need it. Tempo
comes from its autocorrelation, accumulated over fixed chunks of the envelope for lags up to
MAX_LAG_FRAMES, never from a whole-file tempogram (tempo.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import librosa
import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.signal

from tunescout.analysis.key import PitchClassProfile, estimate_key
from tunescout.analysis.spectra import magnitude_power_shape
from tunescout.analysis.tempo import estimate_tempo
from tunescout.models import FEATURE_VERSIONS, FeatureGroup

N_FFT = 2048
HOP = 512
N_BINS = 1 + N_FFT // 2
N_MELS = 128
N_MFCC = 13
N_CHROMA = 12
MEL_FLOOR_DB = -70.0
"""Mel power below this is clipped: 80 dB under a full-scale sine (which peaks at +40 dB here).

librosa's `power_to_db` clips 80 dB under the loudest value of the whole array it is given; a
fixed floor gives the same result on ordinary music and does not need the whole file first.
"""
AMIN = 1e-10
TUNING_FRAME_STEP = 8
KEY_FRAME_STEP = 4
"""Every 4th frame (hop 93 ms) feeds the key's pitch-class profile: every one costs 4×, for no gain."""
TUNING_BINS = 101  # librosa's pitch_tuning histogram: resolution 0.01 of a semitone
ROLL_PERCENT = 0.85
ZCR_THRESHOLD = 1e-10

Signal = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.floating]
Float64Array = npt.NDArray[np.float64]


class Moments:
    """Running count, mean and sum of squared deviations of vectors (Chan et al.'s merge)."""

    def __init__(self, size: int) -> None:
        self.count = 0
        self.mean = np.zeros(size)
        self._m2 = np.zeros(size)

    def add(self, rows: FloatArray) -> None:
        """Fold a (frames, size) batch into the statistics."""
        n = rows.shape[0]
        if n == 0:
            return
        batch = np.asarray(rows, dtype=np.float64)
        mean = batch.mean(axis=0)
        m2 = ((batch - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self._m2 += m2 + delta**2 * (self.count * n / total)
        self.mean += delta * (n / total)
        self.count = total

    def std(self) -> Float64Array:
        """Return the population standard deviation (numpy's default, as librosa's callers use)."""
        if self.count == 0:
            return np.full_like(self._m2, np.nan)
        return np.asarray(np.sqrt(self._m2 / self.count), dtype=np.float64)


SPECTRAL_GROUPS = frozenset({"rhythm", "tonal", "timbre"})  # what the accumulator computes


class FeatureAccumulator:
    """Take mono blocks at the analysis rate; give the rhythm, tonal and timbre groups at the end.

    Memory is fixed by N_FFT and the block size, except for the onset envelope (see the module
    docstring). Feed blocks of any size with `add`, then call `finish` once. `groups` limits
    the work to some of them (after a version bump of one group, only that one is recomputed).
    """

    def __init__(self, rate_hz: int, groups: frozenset[str] = SPECTRAL_GROUPS) -> None:
        self.rate_hz = rate_hz
        self.groups = groups & SPECTRAL_GROUPS
        self.samples = 0
        self._carry: Signal = np.zeros(N_FFT // 2, dtype=np.float32)  # librosa's centre padding
        self._frames = 0
        self._window = scipy.signal.get_window("hann", N_FFT, fftbins=True).astype(np.float32)
        self._mel_basis = np.ascontiguousarray(
            librosa.filters.mel(sr=rate_hz, n_fft=N_FFT, n_mels=N_MELS).T, dtype=np.float32
        )
        self._dct = np.ascontiguousarray(
            scipy.fft.dct(np.eye(N_MELS), type=2, norm="ortho", axis=0)[:N_MFCC].T,
            dtype=np.float32,
        )
        self._chroma_plain = np.ascontiguousarray(
            librosa.filters.chroma(sr=rate_hz, n_fft=N_FFT, tuning=0.0).T, dtype=np.float32)
        self._freqs = librosa.fft_frequencies(sr=rate_hz, n_fft=N_FFT)
        # in kHz: float32 sums of f²·S keep seven digits (in Hz they would span 10^8 and lose them)
        self._shape_basis = np.stack([np.ones(N_BINS), self._freqs / 1e3, (self._freqs / 1e3) ** 2],
                                     axis=1).astype(np.float32)
        self._previous_mel: Signal | None = None
        self._envelope: list[Signal] = []
        self._mfcc = Moments(N_MFCC)
        self._shape_sums = np.zeros(5)  # centroid, bandwidth, rolloff, flatness, zcr
        self._chroma_spectrum = np.zeros(N_BINS)
        self._tuning_counts = np.zeros(TUNING_BINS - 1)
        self._pitch_classes = PitchClassProfile(rate_hz, N_FFT)
        self._last_sign = False

    def add(self, block: Signal) -> None:
        """Frame one mono block (joined to the carried tail) and fold its frames in."""
        if block.size == 0:
            return
        self.samples += len(block)
        buffer = np.concatenate([self._carry, block.astype(np.float32, copy=False)])
        self._consume(buffer)

    def finish(self) -> tuple[FeatureGroup, ...]:
        """Pad the end as librosa centres it and return the rhythm, tonal and timbre groups."""
        self._consume(np.concatenate([self._carry, np.zeros(N_FFT // 2, dtype=np.float32)]))
        envelope = (
            np.concatenate(self._envelope) if self._envelope else np.zeros(0, dtype=np.float32)
        )
        duration_s = self.samples / self.rate_hz
        values = {
            "rhythm": lambda: rhythm_values(envelope, self.rate_hz, duration_s),
            "tonal": self._tonal_values,
            "timbre": self._timbre_values,
        }
        return tuple(_group(name, compute()) for name, compute in values.items()
                     if name in self.groups)

    def _consume(self, buffer: Signal) -> None:
        """Process every whole frame in `buffer`; keep what the next frame still needs."""
        if len(buffer) < N_FFT:
            self._carry = buffer
            return
        count = 1 + (len(buffer) - N_FFT) // HOP
        used = buffer[: (count - 1) * HOP + N_FFT]
        frames = np.lib.stride_tricks.sliding_window_view(used, N_FFT)[::HOP]
        self._fold(frames)
        if "timbre" in self.groups:
            self._shape_sums[4] += _zcr_sum(used, count)
        self._carry = buffer[count * HOP :]

    def _fold(self, frames: Signal) -> None:
        """Fold a (count, N_FFT) batch of frames into every running statistic."""
        spectrum = scipy.fft.rfft(frames * self._window, axis=1)
        magnitude, power, rolloff, flatness = magnitude_power_shape(
            spectrum, self._freqs, ROLL_PERCENT, AMIN)
        if "rhythm" in self.groups or "timbre" in self.groups:
            mel = np.maximum(power @ self._mel_basis, AMIN)
            mel_db = np.maximum(10.0 * np.log10(mel), MEL_FLOOR_DB)
            if "rhythm" in self.groups:
                self._fold_onsets(mel_db)
            if "timbre" in self.groups:
                self._mfcc.add(mel_db @ self._dct)
                self._fold_shape(magnitude, rolloff, flatness)
        if "tonal" in self.groups:
            self._fold_chroma(power)
            self._pitch_classes.add(magnitude[(-self._frames) % KEY_FRAME_STEP :: KEY_FRAME_STEP])
        self._frames += len(frames)

    def _fold_onsets(self, mel_db: Signal) -> None:
        """Append the mean rise of each mel band from the frame before (librosa's onset_strength)."""
        previous = mel_db[:1] if self._previous_mel is None else self._previous_mel[None, :]
        rise = np.diff(mel_db, axis=0, prepend=previous)
        self._envelope.append(np.maximum(rise, 0.0).mean(axis=1, dtype=np.float32))
        self._previous_mel = mel_db[-1].copy()

    def _fold_shape(self, magnitude: Signal, rolloff: float, flatness: float) -> None:
        """Add the per-frame spectral centroid and bandwidth, and the batch's rolloff and flatness
        sums (spectra.magnitude_power_shape), to their sums."""
        moments = (magnitude @ self._shape_basis).astype(np.float64)  # Σ S, Σ f·S, Σ f²·S (kHz)
        total = moments[:, 0]
        safe = np.where(total > 0, total, 1.0)
        centroid = moments[:, 1] / safe
        bandwidth = 1e3 * np.sqrt(np.maximum(moments[:, 2] / safe - centroid**2, 0.0))
        centroid *= 1e3
        self._shape_sums[:4] += [centroid.sum(), bandwidth.sum(), rolloff, flatness]

    def _fold_chroma(self, power: Signal) -> None:
        """Bank the frame-normalised power spectrum for chroma and every 8th frame's tuning.

        Chroma is a linear map of the power spectrum, normalised per frame; the tuning that picks
        the map is known only at the end, so the spectrum is summed now (normalised by its
        untuned chroma peak) and mapped once in `_tonal_values`.
        """
        peaks = (power @ self._chroma_plain).max(axis=1)
        scale = np.where(peaks > np.finfo(np.float32).tiny, 1.0 / np.maximum(peaks, 1e-30), 1.0)
        self._chroma_spectrum += (scale.astype(np.float32) @ power).astype(np.float64)
        first = (-self._frames) % TUNING_FRAME_STEP
        sampled = power[first::TUNING_FRAME_STEP]
        if len(sampled):
            self._tuning_counts += _tuning_histogram(sampled, self.rate_hz)

    def _tonal_values(self) -> dict[str, object]:
        """Return key, mode, key strength, Camelot code and mean chroma.

        The key comes from the harmonic pitch-class profile (key.py); `chroma_mean` stays
        librosa's STFT chroma, which the playlists' similarity columns are made of.
        """
        tuning = 0.0
        if self._tuning_counts.any():
            edges = np.linspace(-0.5, 0.5, TUNING_BINS)
            tuning = float(edges[int(np.argmax(self._tuning_counts))])
        chroma_map = librosa.filters.chroma(sr=self.rate_hz, n_fft=N_FFT, tuning=tuning)
        chroma_mean = chroma_map @ self._chroma_spectrum / max(self._frames, 1)
        key = estimate_key(self._pitch_classes.finish(tuning))
        return {
            "key": key.tonic if key else None,
            "mode": key.mode if key else None,
            "key_strength": _number(key.strength) if key else None,
            "camelot": key.camelot if key else None,
            "chroma_mean": _numbers(chroma_mean),
        }

    def _timbre_values(self) -> dict[str, object]:
        """Return MFCC statistics and the mean spectral shape descriptors."""
        means = self._shape_sums / max(self._frames, 1)
        return {
            "mfcc_mean": _numbers(self._mfcc.mean),
            "mfcc_std": _numbers(self._mfcc.std()),
            "spectral_centroid_hz": _number(means[0]),
            "spectral_bandwidth_hz": _number(means[1]),
            "spectral_rolloff_hz": _number(means[2]),
            "spectral_flatness": _number(means[3]),
            "zcr": _number(means[4]),
        }


def _zcr_sum(samples: Signal, count: int) -> float:
    """Return the sum of librosa's zero-crossing rate over the `count` frames of `samples`.

    A frame's rate is its crossings between neighbouring samples over N_FFT; counting them once
    per sample and differencing a running count costs O(samples), not O(samples × 4).
    """
    signs = np.signbit(samples) & (np.abs(samples) > ZCR_THRESHOLD)
    running = np.concatenate([[0], np.cumsum(signs[1:] != signs[:-1])])
    starts = np.arange(count) * HOP
    return float(np.sum(running[starts + N_FFT - 1] - running[starts])) / N_FFT


def _tuning_histogram(power: FloatArray, rate_hz: int) -> Float64Array:
    """Return librosa's tuning-deviation histogram of one batch of (frames, bins) power frames."""
    pitch, magnitude = pitch_peaks(power, rate_hz)
    if pitch.size == 0:
        return np.zeros(TUNING_BINS - 1)
    threshold = np.median(magnitude)
    frequencies = pitch[magnitude >= threshold]
    residual = np.mod(N_CHROMA * librosa.hz_to_octs(frequencies), 1.0)
    residual[residual >= 0.5] -= 1.0
    counts, _ = np.histogram(residual, np.linspace(-0.5, 0.5, TUNING_BINS))
    return counts.astype(np.float64)


def pitch_peaks(power: FloatArray, rate_hz: int, fmin_hz: float = 150.0,
                fmax_hz: float = 4000.0) -> tuple[FloatArray, FloatArray]:
    """Return the frequency and height of librosa.piptrack's voiced peaks of (frames, bins) spectra.

    The same arithmetic as `piptrack(S=power.T)` (threshold 0.1 of each frame's maximum, local
    maxima between fmin and fmax, parabolic interpolation), in the same precision, but only on
    the bins between fmin and fmax and their neighbours, and without its two full-size outputs:
    a third of the work. Peaks come in frame order, then bin order, as `pitch[pitch > 0]` would.
    """
    bins = power.shape[1]
    freqs = np.linspace(0, rate_hz / 2, bins)  # librosa.fft_frequencies
    inside = np.flatnonzero((fmin_hz <= freqs) & (freqs < min(fmax_hz, rate_hz / 2)))
    if inside.size == 0 or power.shape[0] == 0 or fmin_hz <= 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    low, high = int(inside[0]), int(inside[-1]) + 1  # fmin > 0: low >= 1, so no edge padding
    spectrum = np.abs(power)
    ref = 0.1 * spectrum.max(axis=1, keepdims=True)
    band = spectrum[:, low - 1 : high + 1]
    gated = band * (band > ref)
    centre = gated[:, 1:-1]
    frame, index = np.nonzero((centre > gated[:, :-2]) & (centre >= gated[:, 2:]))
    left, middle, right = (band[frame, index + i] for i in range(3))
    # librosa's numba stencil: float32 sums, the rest in float64, the shift stored as float32
    curve = (right + left).astype(np.float64) - 2 * middle.astype(np.float64)
    slope = (right - left).astype(np.float64) / 2
    shift = np.where(np.abs(slope) >= np.abs(curve), 0.0,
                     -slope / np.where(curve == 0, 1.0, curve)).astype(spectrum.dtype)
    gradient = (right - left) / 2.0  # np.gradient, central differences
    pitch = ((index + low + shift) * float(rate_hz) / ((bins - 1) * 2)).astype(spectrum.dtype)
    height = middle + 0.5 * gradient * shift
    voiced = pitch > 0
    return pitch[voiced], height[voiced]


def compute_features(signal: Signal, rate_hz: int, *, block_samples: int = 1 << 16) -> tuple[
    FeatureGroup, ...
]:
    """Return the rhythm, tonal and timbre groups of a whole mono signal, fed in blocks."""
    accumulator = FeatureAccumulator(rate_hz)
    for start in range(0, len(signal), block_samples):
        accumulator.add(signal[start : start + block_samples])
    return accumulator.finish()


def rhythm_values(envelope: FloatArray, rate_hz: int, duration_s: float) -> dict[str, object]:
    """Return tempo, its confidence, beat strength and onset rate from the mel onset envelope."""
    onsets = (
        librosa.onset.onset_detect(onset_envelope=envelope, sr=rate_hz, hop_length=HOP)
        if envelope.size and np.ptp(envelope) > 0
        else np.zeros(0)
    )
    tempo = estimate_tempo(envelope, rate_hz / HOP)
    return {
        "tempo_bpm": _number(tempo.bpm),
        "tempo_confidence": _number(tempo.confidence if tempo.bpm is not None else None),
        "beat_strength": _number(tempo.strength),
        "onset_rate_hz": _number(len(onsets) / duration_s if duration_s > 0 else None),
    }


def _group(name: str, values: dict[str, object]) -> FeatureGroup:
    """Wrap values in a FeatureGroup at the group's current version."""
    return FeatureGroup(name, FEATURE_VERSIONS[name], values)


def _number(value: float | np.floating | None) -> float | None:
    """Return a plain float, or None for NaN/inf/None: JSON has no NaN."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _numbers(values: Iterable[float | np.floating]) -> list[float | None]:
    """Return a list of plain floats (None where undefined)."""
    return [_number(value) for value in values]

