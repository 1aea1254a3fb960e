"""Block-wise features: the same answers whatever the block size, librosa's definitions, and a
two-hour file analysed in bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import librosa
import numpy as np
import pytest

from support.audio import make_signal
from tunescout.analysis.features import (
    HOP,
    MEL_FLOOR_DB,
    N_FFT,
    FeatureAccumulator,
    compute_features,
)
from tunescout.analysis.loudness import LoudnessMeter
from tunescout.analysis.tempo import autocorrelation
from tunescout.workers.zygote_client import child_env

RATE = 22050
BENCH = Path(__file__).resolve().parents[2] / "bench"


def values(groups: tuple[object, ...]) -> dict[str, dict[str, object]]:
    return {group.name: group.values for group in groups}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """Twelve seconds of chords over a drum beat: every feature has something to measure."""
    chords = make_signal("chords", seconds=12.0, sample_rate=RATE, key="E", mode="minor")
    drums = make_signal("drums", seconds=12.0, sample_rate=RATE, bpm=127.3)
    return (0.5 * chords + 0.5 * drums).astype(np.float32)


def assert_close(a: dict[str, dict[str, object]], b: dict[str, dict[str, object]]) -> None:
    for group, entries in a.items():
        for name, value in entries.items():
            other = b[group][name]
            if isinstance(value, float):
                assert other == pytest.approx(value, rel=1e-4, abs=1e-6), (group, name)
            elif isinstance(value, list):
                assert other == pytest.approx(value, rel=1e-4, abs=1e-5), (group, name)
            else:
                assert other == value, (group, name)


@pytest.mark.parametrize("block_samples", [1000, 4096, 12345, 1 << 18])
def test_block_size_does_not_change_the_answer(music: np.ndarray, block_samples: int) -> None:
    reference = values(compute_features(music, RATE, block_samples=1 << 16))
    assert_close(reference, values(compute_features(music, RATE, block_samples=block_samples)))


def test_frame_features_follow_librosa(music: np.ndarray) -> None:
    """Means of librosa's own whole-signal features, computed from the whole spectrogram."""
    timbre = values(compute_features(music, RATE))["timbre"]
    magnitude = np.abs(librosa.stft(music, n_fft=N_FFT, hop_length=HOP))
    shape = {"S": magnitude, "sr": RATE, "n_fft": N_FFT, "hop_length": HOP}
    assert timbre["spectral_centroid_hz"] == pytest.approx(
        librosa.feature.spectral_centroid(**shape).mean(), rel=1e-4)
    assert timbre["spectral_bandwidth_hz"] == pytest.approx(
        librosa.feature.spectral_bandwidth(**shape).mean(), rel=1e-4)
    assert timbre["spectral_rolloff_hz"] == pytest.approx(
        librosa.feature.spectral_rolloff(**shape).mean(), rel=1e-4)
    assert timbre["spectral_flatness"] == pytest.approx(
        librosa.feature.spectral_flatness(S=magnitude).mean(), rel=1e-3)
    assert timbre["zcr"] == pytest.approx(
        librosa.feature.zero_crossing_rate(music, frame_length=N_FFT, hop_length=HOP).mean(),
        rel=1e-3)
    mel = librosa.feature.melspectrogram(S=magnitude**2, sr=RATE, n_fft=N_FFT)
    mel_db = np.maximum(librosa.power_to_db(mel, top_db=None), MEL_FLOOR_DB)  # a fixed floor
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=13)
    assert timbre["mfcc_mean"] == pytest.approx(list(mfcc.mean(axis=1)), rel=1e-3, abs=1e-3)
    assert timbre["mfcc_std"] == pytest.approx(list(mfcc.std(axis=1)), rel=1e-3, abs=1e-3)


def test_chroma_follows_librosa(music: np.ndarray) -> None:
    tonal = values(compute_features(music, RATE))["tonal"]
    power = np.abs(librosa.stft(music, n_fft=N_FFT, hop_length=HOP)) ** 2
    chroma = librosa.feature.chroma_stft(S=power, sr=RATE, n_fft=N_FFT, tuning=0.0)
    assert tonal["chroma_mean"] == pytest.approx(list(chroma.mean(axis=1)), abs=0.01)
    assert (tonal["key"], tonal["mode"]) == ("E", "minor")


def test_chunked_autocorrelation_is_exact() -> None:
    x = np.random.default_rng(3).standard_normal(5000)
    full = np.correlate(x, x, mode="full")[len(x) - 1 :]
    for chunk in (64, 700, 8192):
        assert autocorrelation(x, 300, chunk=chunk) == pytest.approx(full[:300], abs=1e-8)
    short = x[:100]  # fewer samples than lags: every lag the signal has
    expected = np.correlate(short, short, mode="full")[len(short) - 1 :]
    assert autocorrelation(short, 300) == pytest.approx(expected, abs=1e-9)


def test_loudness_meter_ignores_block_boundaries() -> None:
    noise = (np.random.default_rng(5).standard_normal((2, 44100 * 20)) * 0.1).astype(np.float32)
    noise[:, 44100 * 10 :] *= 0.2  # a quieter half gives the range something to measure
    readings = []
    for size in (1000, 44100, 1 << 20):
        meter = LoudnessMeter(44100, ("FL", "FR"))
        for start in range(0, noise.shape[1], size):
            meter.add(noise[:, start : start + size])
        readings.append((meter.integrated_lufs(), meter.loudness_range_lu(), meter.peak_dbfs()))
    assert readings[1] == pytest.approx(readings[0], abs=1e-3)
    assert readings[2] == pytest.approx(readings[0], abs=1e-3)


def test_state_does_not_grow_but_the_envelope() -> None:
    """After a minute of frames, the accumulator holds the onset envelope and fixed arrays only."""
    accumulator = FeatureAccumulator(RATE)
    block = (np.random.default_rng(1).standard_normal(1 << 16) * 0.1).astype(np.float32)
    for _ in range(20):
        accumulator.add(block)
    fixed = {name: value.nbytes for name, value in vars(accumulator).items()
             if isinstance(value, np.ndarray)}
    assert sum(fixed.values()) < 2_000_000
    envelope = sum(part.nbytes for part in accumulator._envelope)
    assert envelope == pytest.approx(4 * 20 * (1 << 16) / HOP, rel=0.01)


LONG_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from tunescout.analysis import analyse_file, warm_up
    def memory():
        with open("/proc/self/status") as fh:
            return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh)
                    if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile")}
    warm_up()
    warm = memory()
    with open("/proc/self/clear_refs", "w") as fh:  # "5": VmHWM starts again from VmRSS
        fh.write("5")
    result = analyse_file(Path(sys.argv[1]))
    groups = {group.name: group.values for group in result.features}
    print(json.dumps({
        "duration_s": result.duration_s,
        "tempo_bpm": groups["rhythm"]["tempo_bpm"],
        "key": [groups["tonal"]["key"], groups["tonal"]["mode"]],
        "lufs": groups["loudness"]["integrated_lufs"],
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "after_warm_up": warm, "at_end": memory(), "analysis_peak_kb": memory()["VmHWM"],
    }))
    """
)


@pytest.mark.slow
def test_two_hour_file_in_bounded_memory(tmp_path: Path) -> None:
    """A two-hour MP3 analysed in a warmed process (as a child is, forked from the warm zygote):
    the peak RSS while it analyses stays under 400 MB.

    Measured as a child runs: the children's environment (one maths thread, MALLOC_ARENA_MAX=2),
    a numba cache filled first by another process that analysed a short file of the same format
    (warm_up alone leaves the decode paths out), and the peak counted from the end of warm_up
    (/proc/self/clear_refs), the moment a child starts from. The warm-up's own peak belongs to
    the zygote: with a cold cache the JIT compiler adds ~110–150 MB to it, which is what moved
    this test's figure by up to 200 MB on fresh machines (480 MB once in a fresh clone's suite;
    310–340 MB with a warm cache). The report carries RssAnon/RssFile at both ends for the next
    reader of a failure.
    """
    sys.path.insert(0, str(BENCH))
    try:
        from _common import RECIPES, write_long_mp3
    finally:
        sys.path.remove(str(BENCH))
    recipe = RECIPES[0]
    path = write_long_mp3(tmp_path / "mix.mp3", recipe, 7200.0)
    env = child_env({**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")})
    short = write_long_mp3(tmp_path / "short.mp3", recipe, 30.0)
    subprocess.run([sys.executable, "-c", LONG_CHILD, str(short)], env=env, timeout=600, check=True,
                   capture_output=True)
    run = subprocess.run(
        [sys.executable, "-c", LONG_CHILD, str(path)],
        capture_output=True, text=True, env=env, timeout=900, check=True,
    )
    report = json.loads(run.stdout)
    assert report["duration_s"] == pytest.approx(7200.0, rel=0.01)
    assert report["analysis_peak_kb"] < 400 * 1024, report
    assert report["tempo_bpm"] == pytest.approx(recipe.bpm, rel=0.01)
    assert report["key"] == [recipe.key, recipe.mode]
