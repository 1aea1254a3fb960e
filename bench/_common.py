"""Synthetic music for benchmarks: drums, chords and noise, written block by block.

A track is a loop of four bars (kick and snare, one chord per bar, a hi-hat on the eighths)
plus seeded noise, generated and encoded a block at a time, so a two-hour file never exists in
memory. Long MP3 files are made by encoding one stretch of whole loops and repeating its frames:
encoding two hours with LAME would take minutes, repeating takes a second.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

RATE_HZ = 44100
BLOCK = 1 << 16
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Recipe:
    """What a synthetic track plays: its tempo, key and mode, and a seed for its noise."""

    bpm: float
    key: str
    mode: str
    seed: int


RECIPES = (
    Recipe(127.3, "A", "minor", 1),
    Recipe(96.0, "D", "major", 2),
    Recipe(140.0, "F#", "minor", 3),
    Recipe(119.9, "C", "major", 4),
    Recipe(174.0, "G", "minor", 5),
    Recipe(84.0, "E", "major", 6),
)


def _loop(recipe: Recipe) -> FloatArray:
    """Return four bars of the recipe as one channel at RATE_HZ."""
    beat = 60.0 * RATE_HZ / recipe.bpm
    length = round(16 * beat)
    loop = np.zeros(length)
    rng = np.random.default_rng(recipe.seed)
    t = np.arange(int(0.2 * RATE_HZ)) / RATE_HZ
    kick = np.sin(2 * np.pi * (50.0 * t + 3.0 * (1 - np.exp(-t / 0.03)))) * np.exp(-t / 0.06)
    snare = (0.5 * rng.standard_normal(len(t)) + 0.4 * np.sin(2 * np.pi * 190.0 * t))
    snare *= np.exp(-t / 0.03)
    hat = rng.standard_normal(len(t)) * np.exp(-t / 0.008) * 0.15
    for i in range(16):
        _add(loop, kick if i % 2 == 0 else snare, round(i * beat))
    for i in range(32):
        _add(loop, hat, round(i * beat / 2))
    tonic = PITCH_CLASSES.index(recipe.key)
    third = 3 if recipe.mode == "minor" else 4
    bar = round(4 * beat)
    tb = np.arange(bar) / RATE_HZ
    envelope = np.minimum(1.0, tb / 0.02) * np.exp(-tb / 2.0)
    for i, (degree, chord_third) in enumerate([(0, third), (5, third), (7, 4), (0, third)]):
        chord = np.zeros(bar)
        for note in (48, 60, 60 + chord_third, 67):
            f0 = 440.0 * 2.0 ** ((note + tonic + degree - 69) / 12.0)
            for harmonic in range(1, 6):
                chord += np.sin(2 * np.pi * f0 * harmonic * tb) / harmonic
        _add(loop, 0.15 * chord * envelope, i * bar)
    return loop


def _add(signal: FloatArray, sound: FloatArray, start: int) -> None:
    """Add `sound` into `signal` at `start`, cut at the end."""
    end = min(len(signal), start + len(sound))
    signal[start:end] += sound[: end - start]


def blocks(recipe: Recipe, seconds: float) -> Iterator[npt.NDArray[np.float32]]:
    """Yield (2, n) float32 blocks of the track, the channels slightly different."""
    loop = _loop(recipe)
    scale = 0.5 / float(np.max(np.abs(loop)))
    rng = np.random.default_rng(recipe.seed + 100)
    total = round(seconds * RATE_HZ)
    for start in range(0, total, BLOCK):
        index = np.arange(start, min(total, start + BLOCK)) % len(loop)
        mono = loop[index] * scale
        left = mono + 0.01 * rng.standard_normal(len(mono))
        right = mono + 0.01 * rng.standard_normal(len(mono))
        yield np.stack([left, right]).astype(np.float32)


def write_synthetic(path: Path, recipe: Recipe, seconds: float) -> Path:
    """Encode a synthetic track to FLAC, MP3 or AAC in M4A (by suffix) block by block."""
    codec = {".flac": "flac", ".mp3": "libmp3lame", ".m4a": "aac"}[path.suffix]
    with av.open(str(path), "w", format="ipod" if codec == "aac" else None) as out:
        _encode(out, codec, blocks(recipe, seconds))
    return path


def _encode(out: av.container.OutputContainer, codec: str,
            source: Iterator[npt.NDArray[np.float32]]) -> None:
    """Feed blocks to an encoder stream of `out`, muxing as it goes."""
    stream = out.add_stream(codec, rate=RATE_HZ, layout="stereo")  # type: ignore[call-overload]
    if codec in ("libmp3lame", "aac"):
        stream.bit_rate = 192_000
    fmt = "s16" if codec == "flac" else "fltp"
    pts = 0
    for block in source:
        if fmt == "s16":
            data = (np.clip(block, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
        else:
            data = np.ascontiguousarray(block)
        frame = av.AudioFrame.from_ndarray(data, fmt, "stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE_HZ, pts, Fraction(1, RATE_HZ)
        pts += block.shape[1]
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def write_long_mp3(path: Path, recipe: Recipe, seconds: float) -> Path:
    """Write a long MP3 by repeating the frames of one encoded stretch of whole loops."""
    loop_s = round(16 * 60.0 * RATE_HZ / recipe.bpm) / RATE_HZ
    stretch_s = loop_s * max(1, round(60.0 / loop_s))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3",
                 options={"write_xing": "0", "id3v2_version": "0"}) as out:
        _encode(out, "libmp3lame", blocks(recipe, stretch_s))
    chunk = buffer.getvalue()
    with open(path, "wb") as handle:
        for _ in range(max(1, round(seconds / stretch_s))):
            handle.write(chunk)
    return path


# --- what the analysis benches share ---------------------------------------------------------

ONE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
}
"""The children's environment (one BLAS/OpenMP/numba/rayon thread), for every tool measured."""

SYNTHETIC = ((".flac", 180.0), (".mp3", 240.0), (".flac", 210.0), (".mp3", 300.0))
AUDIO_SUFFIXES = frozenset({".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac",
                            ".wav", ".wma", ".aiff", ".aif", ".wv", ".ape"})


def synthetic_tracks(directory: Path) -> list[Path]:
    """Write the default 3-5 minute tracks (MP3s by repeating one encoded minute)."""
    paths = []
    for i, (suffix, seconds) in enumerate(SYNTHETIC):
        path = directory / f"synthetic-{i}{suffix}"
        recipe = RECIPES[i % len(RECIPES)]
        if suffix == ".mp3":
            write_long_mp3(path, recipe, seconds)
        else:
            write_synthetic(path, recipe, seconds)
        paths.append(path)
    return paths


def audio_files(files: list[Path], folder: Path | None, limit: int | None = None) -> list[Path]:
    """Return the files named plus the audio files under `folder` (sorted), at most `limit`."""
    found = list(files)
    if folder is not None:
        if not folder.is_dir():
            raise SystemExit(f"bench: {folder} is not a folder")
        found += sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                        and p.is_file())
        if not found:
            raise SystemExit(f"bench: no audio files under {folder}")
    return found[:limit] if limit else found
