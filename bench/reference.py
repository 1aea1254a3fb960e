"""Essentia's tempo and key for every track of the evaluation set, cached beside its manifest.

    ESSENTIA_VENV/bin/python bench/reference.py MANIFEST [--jobs N]

Runs in a bench-only venv that has `essentia` (a wheel for CPython 3.11 x86_64 on PyPI; quality.py
makes the venv and calls this by subprocess), never in the project's: Essentia is the reference,
not a dependency. It reads the 44.1 kHz WAVs of evalset.py, since its wheel cannot decode Opus or
AAC. Per track:

- tempo: RhythmExtractor2013(method="multifeature"), its bpm and confidence (0-5.32);
- key: KeyExtractor with its defaults, which in Essentia 2.1b6 means profileType "bgate" (profiles
  learnt from the Beatport data set), 4096-sample frames, HPCP of 12 bins, 25-3500 Hz.

Results go to essentia.json beside the manifest, one entry per track id, and are kept while the
WAV's size and Essentia's version are the same: a run after the first computes nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import essentia
import essentia.standard as es

RATE_HZ = 44100
CACHE_NAME = "essentia.json"


def measure(wav: str) -> dict[str, Any]:
    """Return Essentia's bpm, its confidence, key, scale and key strength for one WAV."""
    audio = es.MonoLoader(filename=wav, sampleRate=RATE_HZ)()
    bpm, _beats, confidence, _estimates, _intervals = es.RhythmExtractor2013(method="multifeature")(audio)
    extractor = es.KeyExtractor()
    key, scale, strength = extractor(audio)
    return {"bpm": round(float(bpm), 3), "bpm_confidence": round(float(confidence), 3),
            "key": key, "scale": scale, "key_strength": round(float(strength), 3),
            "key_profile": extractor.paramValue("profileType")}


def _job(item: tuple[str, str]) -> tuple[str, dict[str, Any], float]:
    """Measure one (track id, wav path) in a pool worker; return the id, result and seconds taken."""
    tid, wav = item
    start = time.monotonic()
    return tid, measure(wav), time.monotonic() - start


def _stamp(wav: Path) -> dict[str, Any]:
    """Return what a cached result must agree with: the WAV's size and Essentia's version."""
    return {"wav_bytes": wav.stat().st_size, "essentia": essentia.__version__}


def update(manifest: Path, jobs: int) -> dict[str, Any]:
    """Measure every track whose cached result is missing or stale; write and return the cache."""
    root = manifest.parent
    cache_path = root / CACHE_NAME
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    tracks = json.loads(manifest.read_text())["tracks"]
    wavs = {track["id"]: root / track["wav"] for track in tracks}
    todo = []
    for tid, wav in wavs.items():
        entry = cache.get(tid)
        if entry is None or any(entry.get(k) != v for k, v in _stamp(wav).items()):
            todo.append((tid, str(wav)))
    print(f"essentia: {len(tracks) - len(todo)} tracks cached, {len(todo)} to measure", file=sys.stderr)
    with multiprocessing.get_context("fork").Pool(max(1, jobs)) as pool:
        for done, (tid, result, seconds) in enumerate(pool.imap_unordered(_job, todo), 1):
            cache[tid] = {**_stamp(wavs[tid]), **result}
            print(f"  [{done}/{len(todo)}] {tid}: {result['bpm']:.1f} bpm, {result['key']} "
                  f"{result['scale']} ({seconds:.0f} s)", file=sys.stderr)
            cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    essentia.log.infoActive = False
    update(args.manifest.resolve(), args.jobs)


if __name__ == "__main__":
    main()
