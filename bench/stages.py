"""Where the engine's time goes on one file, stage by stage (imported by bench/analysis.py).

Each stage is run on its own and timed by CPU: demux (packets read and hashed), decode (PyAV's
plain decode, demux included, minus demux), mix and resample (the engine's decode path minus
the plain decode: gathering frames into blocks, the mono mix, libswresample), spectrogram (the
STFT every spectral group shares), then each group on its own (its cost beyond the
spectrogram; loudness on the native-rate blocks). The sum is close to, not exactly, the engine's
own figure: the stages are measured apart.
"""

from __future__ import annotations

import hashlib
import resource
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

STAGES = ("demux", "decode", "mix+resample", "spectrogram", "rhythm", "tonal", "timbre",
          "loudness")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(step: Callable[[], object]) -> float:
    start = _cpu()
    step()
    return _cpu() - start


def demux(path: str) -> None:
    """Read and hash the audio packets, as the engine does for its digest."""
    digest = hashlib.blake2b(digest_size=16)
    with av.open(path) as container:
        for packet in container.demux(container.streams.audio[0]):
            if packet.size:
                digest.update(packet)


def plain_decode(path: str) -> float:
    """Decode every frame with PyAV and touch nothing: the floor any decode path stands on."""
    samples = 0
    with av.open(path) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            samples += frame.samples
        rate = stream.rate or 1
    return samples / rate


def decode_path(path: str) -> tuple[list[np.ndarray], list[np.ndarray], int, tuple[str, ...]]:
    """Run the engine's decode path; return its mono blocks, native blocks, rate and channels."""
    from tunescout.analysis.decode import AudioReader

    native: list[np.ndarray] = []
    with AudioReader(Path(path), mono=True, on_native=native.append) as reader:
        blocks = [block[0] for block in reader.blocks()]
        return blocks, native, reader.info.sample_rate_hz, reader.info.channels


def decode_path_only(path: str) -> float:
    """Run the engine's decode path keeping nothing (bounded memory); return the duration."""
    from tunescout.analysis.decode import AudioReader

    with AudioReader(Path(path), mono=True, on_native=lambda block: None) as reader:
        for _ in reader.blocks():
            pass
        return reader.duration_s


def measure(path: str) -> dict[str, float]:
    """Return the CPU seconds of every stage on one file."""
    from tunescout.analysis import ANALYSIS_RATE_HZ
    from tunescout.analysis.features import FeatureAccumulator
    from tunescout.analysis.loudness import LoudnessMeter

    times = {"demux": _timed(lambda: demux(path))}
    times["decode"] = max(_timed(lambda: plain_decode(path)) - times["demux"], 0.0)
    start = _cpu()
    blocks, native, rate, channels = decode_path(path)
    times["mix+resample"] = max(_cpu() - start - times["decode"] - times["demux"], 0.0)

    def features(groups: frozenset[str]) -> None:
        accumulator = FeatureAccumulator(ANALYSIS_RATE_HZ, groups)
        for block in blocks:
            accumulator.add(block)
        accumulator.finish()

    times["spectrogram"] = _timed(lambda: features(frozenset()))
    for group in ("rhythm", "tonal", "timbre"):
        alone = _timed(lambda group=group: features(frozenset({group})))  # type: ignore[misc]
        times[group] = max(alone - times["spectrogram"], 0.0)

    def loudness() -> None:
        meter = LoudnessMeter(rate, channels)
        for block in native:
            meter.add(block)
        meter.integrated_lufs()
        meter.loudness_range_lu()

    times["loudness"] = _timed(loudness)
    return times


def print_stages(rows: list[dict[str, float]]) -> None:
    """Print the mean CPU seconds per track of each stage and its share of their sum."""
    if not rows:
        return
    means = {stage: sum(row[stage] for row in rows) / len(rows) for stage in STAGES}
    total = sum(means.values()) or 1.0
    print(f"where the engine's time goes ({len(rows)} tracks, CPU s per track, measured apart):")
    print("  " + "  ".join(f"{stage} {means[stage]:.3f} ({100 * means[stage] / total:.0f}%)"
                           for stage in STAGES))
