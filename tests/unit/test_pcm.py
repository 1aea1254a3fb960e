"""Frames gathered raw and converted per block give what libswresample gives frame by frame."""

from __future__ import annotations

from pathlib import Path

import av
import librosa
import numpy as np
import pytest

from support.audio import write_track
from tunescout.analysis.decode import AudioReader
from tunescout.analysis.features import pitch_peaks
from tunescout.analysis.pcm import Resampler


def frame_by_frame(path: Path) -> np.ndarray:
    """Convert every frame through libswresample at the stream's rate (the path before issue 14)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        layout = stream.layout if stream.layout.nb_channels else None
        resampler = Resampler(stream.rate, layout)
        parts = [chunk for frame in container.decode(stream) for chunk in resampler.resample(frame)]
        parts += list(resampler.flush())
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize(
    ("name", "options"),
    [("t.flac", {}), ("t.mp3", {}), ("t.ogg", {}), ("t.opus", {"sample_rate": 48000}),
     ("t.m4a", {}), ("t.wv", {"channels": 6}),
     ("s16.wav", {"subtype": "PCM_16"}), ("s24.wav", {"subtype": "PCM_24"}),
     ("f32.wav", {"subtype": "FLOAT"}), ("f64.wav", {"subtype": "DOUBLE"}),
     ("u8.wav", {"subtype": "PCM_U8", "channels": 1})],
)
def test_native_blocks_equal_the_frame_by_frame_conversion(
    tmp_path: Path, name: str, options: dict[str, object]
) -> None:
    path = write_track(tmp_path / name, seconds=7.0, kind="chords",
                       **{"channels": 2, **options})  # type: ignore[arg-type]
    native: list[np.ndarray] = []
    with AudioReader(path, mono=True, on_native=native.append, block_samples=1 << 15) as reader:
        for _ in reader.blocks():
            pass
    gathered = np.concatenate(native, axis=1)
    expected = frame_by_frame(path)
    assert gathered.dtype == np.float32
    assert gathered.shape == expected.shape
    assert np.max(np.abs(gathered - expected)) <= 1e-7
    assert all(block.shape[1] >= 1 << 15 for block in native[:-1])


def test_pitch_peaks_are_librosa_piptrack_peaks() -> None:
    rng = np.random.default_rng(7)
    power = (rng.random((200, 1025)) ** 6).astype(np.float32)
    pitches, heights = librosa.piptrack(S=power.T, sr=22050, n_fft=2048)
    voiced = pitches.T > 0
    pitch, height = pitch_peaks(power, 22050)
    assert pitch.size > 1000
    np.testing.assert_array_equal(pitch, pitches.T[voiced])
    np.testing.assert_array_equal(height, heights.T[voiced])
