"""Playlist and radio-refill time against a brute-force nearest-neighbour baseline, at 10k-100k tracks.

    python bench/playlist.py [--sizes 10000,30000,100000] [--length 50] [--repeats 5]

Builds a synthetic feature table (clusters of tempo, key, timbre and loudness; artists with
albums; 2 % duplicate recordings), indexes it once (`Catalogue.build`, done by the daemon once per
library change), then times a 50-track playlist (similar/flow, similar/similarity, a path) and
the radio's refill after a track change (3 seeds, 10 queued, 200 played excluded; the issue asks
≤ 300 ms at 100k), and the baseline in the same run: the weighted distance from one seed to every
track plus an argpartition of the nearest 50, which is the least any similarity search must do. Prints each
time, its ratio to the baseline, and the growth from the smallest to the largest library, which
for a linear search is about the ratio of the sizes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tunescout.playlists.catalogue import Catalogue, Track
from tunescout.playlists.engine import path_playlist, similar_playlist
from tunescout.playlists.request import Rules
from tunescout.playlists.vectors import column_weights
from tunescout.radio.picker import choose_next

CLUSTERS = 60


def synthetic_library(n: int, seed: int = 0) -> list[Track]:
    """Return n tracks in CLUSTERS clusters, with every feature group the analysis stores."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, CLUSTERS, n)
    centres = rng.normal(0.0, 3.0, (CLUSTERS, 31))
    timbre = centres[cluster] + rng.normal(0.0, 0.5, (n, 31))
    tempo = rng.uniform(70, 180, CLUSTERS)[cluster] * (1 + rng.uniform(-0.04, 0.04, n))
    key_number = (rng.integers(1, 13, CLUSTERS)[cluster] + rng.integers(-1, 2, n) - 1) % 12 + 1
    letter = np.where(rng.random(n) < 0.5, "A", "B")
    lufs = rng.uniform(-20, -6, CLUSTERS)[cluster] + rng.normal(0, 1, n)
    chroma = np.abs(rng.normal(0.3, 0.1, (n, 12)))
    duration = rng.uniform(90, 600, n)
    tracks = []
    for i in range(n):
        artist = f"artist {cluster[i]}-{i % 97}"
        title = f"song {i - i % 50 if i % 50 == 0 and i else i}"  # every 50th repeats a recording
        features: dict[str, dict[str, Any]] = {
            "rhythm": {"tempo_bpm": float(tempo[i]), "beat_strength": 0.5, "onset_rate_hz": 2.0},
            "tonal": {"key": None, "mode": "minor" if letter[i] == "A" else "major", "key_strength": 0.7,
                      "camelot": f"{key_number[i]}{letter[i]}", "chroma_mean": chroma[i].tolist()},
            "timbre": {"mfcc_mean": timbre[i, :13].tolist(), "mfcc_std": np.abs(timbre[i, 13:26]).tolist(),
                       "spectral_centroid_hz": 2000.0 * 2 ** (timbre[i, 26] / 8),
                       "spectral_bandwidth_hz": 1500.0, "spectral_rolloff_hz": 4000.0,
                       "spectral_flatness": 0.1, "zcr": 0.05 + abs(timbre[i, 30]) / 100},
            "loudness": {"integrated_lufs": float(lufs[i]), "loudness_range_lu": 6.0, "peak_dbfs": -1.0,
                         "crest_db": 12.0},
        }
        tags = {"artist": artist, "title": title, "album": f"{artist} album {i % 3}", "genre": "x"}
        tracks.append(Track(Path(f"/music/{cluster[i]}/{i}.flac"), f"{i:016x}", float(duration[i]),
                            tags, features))
    return tracks


def timed(function: Callable[[], object], repeats: int) -> float:
    """Return the median wall time of `function` in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def baseline(cat: Catalogue, seed: int, length: int) -> np.ndarray:
    """Brute-force nearest neighbours: weighted distances to every track, argpartition, sort."""
    weighted = cat.matrix.values * column_weights(cat.matrix.layout, Rules().weights)
    distances = np.einsum("ij,ij->i", weighted - weighted[seed], weighted - weighted[seed])
    nearest = np.argpartition(distances, length + 1)[: length + 1]
    return nearest[np.argsort(distances[nearest])]


def radio_refill(cat: Catalogue, rng: np.random.Generator, count: int) -> object:
    """What the radio does per refill (bar the MPD round trips): `choose_next` (radio/picker.py)."""
    rows = [int(i) for i in rng.choice(len(cat), 213, replace=False)]
    return choose_next(cat, Rules(), rows[:3], rows[3:13], rows[13:], count)


def measure(n: int, length: int, repeats: int) -> dict[str, float]:
    tracks = synthetic_library(n)
    start = time.perf_counter()
    cat = Catalogue.build(tracks)
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(1)
    seeds = rng.integers(0, n, repeats)
    ends = rng.integers(0, n, repeats)
    rules = Rules(length=length)
    similarity = Rules(length=length, order="similarity")
    it = iter(range(10**9))

    def pick() -> int:
        return int(seeds[next(it) % repeats])

    results = {
        "build": build_s,
        "baseline": timed(lambda: baseline(cat, pick(), length), repeats),
        "similar/flow": timed(lambda: similar_playlist(cat, [pick()], rules), repeats),
        "similar/similarity": timed(lambda: similar_playlist(cat, [pick()], similarity), repeats),
        "similar/3 seeds": timed(lambda: similar_playlist(cat, [pick(), pick(), pick()], rules), repeats),
        "path": timed(lambda: path_playlist(cat, pick(), int(ends[0]), rules), repeats),
        # the radio after a track change: 3 seeds, 10 queued, 200 played excluded; add 1 (or 10)
        "radio refill 1": timed(lambda: radio_refill(cat, rng, 1), repeats),
        "radio refill 10": timed(lambda: radio_refill(cat, rng, 10), repeats),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {n: measure(n, args.length, args.repeats) for n in sizes}
    names = [k for k in rows[sizes[0]] if k != "build"]
    print(f"{args.length}-track playlists, median of {args.repeats} (ms; ×baseline)")
    print(f"{'tracks':>8} {'index build':>12} " + " ".join(f"{name:>20}" for name in names))
    for n, row in rows.items():
        cells = [f"{1000 * row[name]:8.1f} ×{row[name] / row['baseline']:5.1f}" for name in names]
        print(f"{n:>8} {1000 * row['build']:10.0f}ms " + " ".join(f"{c:>20}" for c in cells))
    small, large = sizes[0], sizes[-1]
    print(f"growth {small}→{large} tracks (linear would be ×{large / small:.0f}):")
    for name in ["build", *names]:
        print(f"  {name:<20} ×{rows[large][name] / rows[small][name]:.1f}")


if __name__ == "__main__":
    main()
