"""The 2:1 resampler gives libswresample's samples, block by block, at any block size."""

from __future__ import annotations

import numpy as np
import pytest

from tunescout.analysis.halving import HalvingResampler, mono_resampler, swr_taps
from tunescout.analysis.pcm import MonoResampler


def resampled(resampler: HalvingResampler | MonoResampler, signal: np.ndarray,
              block: int) -> np.ndarray:
    """Feed `signal` in blocks of `block` samples, then flush; return every output sample."""
    parts = [resampler.resample(signal[i : i + block]) for i in range(0, len(signal), block)]
    parts.append(resampler.flush())
    return np.concatenate(parts, axis=1)[0]


def music_like(samples: int, seed: int) -> np.ndarray:
    """Return tones up to the top octave (what the filter cuts) plus noise, at 44.1 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 44100
    tones = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 3_000.0, 10_900.0, 15_000.0))
    return (tones + 0.05 * rng.standard_normal(samples)).astype(np.float32)


def test_44100_to_22050_uses_the_halving_resampler_and_others_keep_libswresample() -> None:
    assert isinstance(mono_resampler(44100, 22050), HalvingResampler)
    assert isinstance(mono_resampler(48000, 22050), MonoResampler)
    taps = swr_taps(44100)
    assert taps is not None
    assert abs(float(taps.sum()) - 1.0) < 1e-3  # a low-pass with unit gain at DC


@pytest.mark.parametrize(("samples", "block"), [
    (300_000, 65_536), (300_001, 65_536), (44_100, 1_000), (5_000, 7), (265, 100), (264, 264),
])
def test_halving_gives_libswresample_samples(samples: int, block: int) -> None:
    signal = music_like(samples, seed=samples)
    expected = resampled(MonoResampler(44100, 22050), signal, block)
    got = resampled(mono_resampler(44100, 22050), signal, block)
    assert got.shape == expected.shape == ((samples + 1) // 2,)
    assert np.abs(got - expected).max() < 1e-6


@pytest.mark.parametrize("samples", [1, 40, 263])
def test_streams_too_short_to_mirror_go_through_libswresample(samples: int) -> None:
    signal = music_like(samples, seed=1)
    expected = resampled(MonoResampler(44100, 22050), signal, 13)
    got = resampled(mono_resampler(44100, 22050), signal, 13)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
