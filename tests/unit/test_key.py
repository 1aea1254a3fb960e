"""The harmonic pitch-class profile behind the key, on spectra computed from real signals."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from tunescout.analysis.key import PITCH_CLASSES, PitchClassProfile, estimate_key

RATE, N_FFT = 22050, 2048


def spectra(freqs_hz: list[float], seconds: float = 2.0) -> np.ndarray:
    """Return the (frames, bins) magnitude spectra of a sum of tones, each with 6 harmonics."""
    t = np.arange(int(seconds * RATE)) / RATE
    signal = sum(0.7 ** (h - 1) * np.sin(2 * np.pi * f * h * t) for f in freqs_hz for h in range(1, 7))
    frames = np.lib.stride_tricks.sliding_window_view(signal, N_FFT)[::512]
    window = scipy.signal.get_window("hann", N_FFT)
    return np.abs(np.fft.rfft(frames * window, axis=1))


@pytest.mark.parametrize("detune", [0.0, 0.3, -0.3])
def test_a_harmonic_tone_counts_for_its_own_pitch_class(detune: float) -> None:
    """Its harmonics (E at the 3rd, C# at the 5th) are credited back to A; a tuning known only at
    the end moves every peak back onto the grid."""
    profile = PitchClassProfile(RATE, N_FFT)
    profile.add(spectra([220.0 * 2 ** (detune / 12)]))
    classes = profile.finish(tuning=detune)
    assert PITCH_CLASSES[int(np.argmax(classes))] == "A"
    assert classes[PITCH_CLASSES.index("A")] > 1.5 * classes[PITCH_CLASSES.index("E")]


def test_batches_add_up_to_the_whole() -> None:
    whole, parts = PitchClassProfile(RATE, N_FFT), PitchClassProfile(RATE, N_FFT)
    frames = spectra([261.6, 329.6, 392.0])
    whole.add(frames)
    for start in range(0, len(frames), 7):
        parts.add(frames[start : start + 7])
    np.testing.assert_allclose(parts.finish(), whole.finish())
    assert parts.frames == len(frames)


def test_a_triad_gives_its_key_and_silence_none() -> None:
    profile = PitchClassProfile(RATE, N_FFT)
    profile.add(spectra([261.6, 329.6, 392.0]))  # C E G
    key = estimate_key(profile.finish())
    assert key is not None and (key.tonic, key.mode) == ("C", "major")
    silent = PitchClassProfile(RATE, N_FFT)
    silent.add(np.zeros((10, N_FFT // 2 + 1)))
    assert estimate_key(silent.finish()) is None
