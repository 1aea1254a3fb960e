"""Benchmark the analysis engine against a plain librosa pipeline, a decode-only floor and bliss.

    .venv/bin/python bench/analysis.py [FILE ...] [--rounds N] [--long]

Each tool lives in its own worker process, which imports its stack (and warms it up) before any
timing, then forks one child per file, as the daemon's zygote does: the child's CPU time is that
file's cost, and "extra" is the child's peak RSS beyond what it had just after the fork
(the pages it shares with its zygote); "stack" is the worker's RSS with its imports and warm-up,
"total" their sum, an upper bound of one child's footprint. Tools take turns on each file, in
rotating order, so that noise from other processes hits them alike. Workers run with one
BLAS/OpenMP/numba thread.

Without files, synthetic 3-5 minute tracks (FLAC and MP3) are written to a temporary directory.
bliss is measured when `bliss_audio` is importable (it is a bench-only extra, never a dependency:
`pip install --target DIR bliss-audio` and put DIR on PYTHONPATH). `--long` adds a two-hour MP3
analysed by the engine in a fresh process: peak RSS and times realtime. "rhythm" is the engine
recomputing one group (after its version was raised) with the others stored.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RECIPES, write_long_mp3, write_synthetic

TOOLS = ("engine", "rhythm", "librosa", "decode", "bliss")
ONE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
}
SYNTHETIC = ((".flac", 180.0), (".mp3", 240.0), (".flac", 210.0), (".mp3", 300.0))


# --- the workers ------------------------------------------------------------------------------


def _engine() -> Any:
    from tunescout.analysis import analyse_file, warm_up

    warm_up()
    return lambda path: analyse_file(Path(path)).duration_s


def _rhythm() -> Any:
    """The engine after a raise of rhythm's version: the other groups are stored already."""
    from tunescout.analysis import analyse_file, warm_up
    from tunescout.models import FEATURE_VERSIONS

    warm_up()
    stored = frozenset(FEATURE_VERSIONS) - {"rhythm"}
    return lambda path: analyse_file(Path(path), stored_groups=lambda digest: stored).duration_s


def _librosa() -> Any:
    import librosa
    import numpy as np

    def run(path: str) -> float:
        y, sr = librosa.load(path, sr=22050, mono=True)
        librosa.beat.beat_track(y=y, sr=sr)
        librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
        librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13).mean(axis=1)
        librosa.feature.spectral_centroid(y=y, sr=sr).mean()
        librosa.feature.spectral_bandwidth(y=y, sr=sr).mean()
        librosa.feature.spectral_rolloff(y=y, sr=sr).mean()
        librosa.feature.spectral_flatness(y=y).mean()
        librosa.feature.zero_crossing_rate(y).mean()
        return len(y) / sr

    t = np.arange(5 * 22050) / 22050
    warm = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    warm[::11025] = 1.0
    librosa.beat.beat_track(y=warm, sr=22050)  # numba compiles here, not in the timing
    librosa.feature.chroma_cqt(y=warm, sr=22050)
    return run


def _decode() -> Any:
    import av

    def run(path: str) -> float:
        samples = 0
        with av.open(path) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=22050)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    samples += out.to_ndarray().shape[-1]
        return samples / 22050

    return run


def _bliss() -> Any:
    import bliss_audio

    return lambda path: float(bliss_audio.Song(path).duration)


def worker(tool: str) -> None:
    """Import the tool, then fork one child per path read from stdin; print one JSON line each."""
    try:
        tools = {"engine": _engine, "rhythm": _rhythm, "librosa": _librosa, "decode": _decode,
                 "bliss": _bliss}
        run = tools[tool]()
    except ImportError as exc:
        print(json.dumps({"unavailable": str(exc)}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(_measure_in_child(run, line.strip())), flush=True)


def _measure_in_child(run: Any, path: str) -> dict[str, Any]:
    """Fork, run the tool on one file in the child, and return its CPU time and memory."""
    stack_kb = _rss_kb()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            base_kb = _rss_kb()  # a child starts with fewer resident pages than its parent
            start = resource.getrusage(resource.RUSAGE_SELF)
            duration_s = run(path)
            end = resource.getrusage(resource.RUSAGE_SELF)
            cpu_s = (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime)
            report = {"cpu_s": cpu_s, "duration_s": duration_s, "stack_kb": stack_kb,
                      "extra_kb": end.ru_maxrss - base_kb}
        except Exception as exc:  # a tool that cannot read a format is reported, not fatal
            report = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_fd, json.dumps(report).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result: dict[str, Any] = json.loads(data)
    return result


def _rss_kb() -> int:
    """Return this process's current resident set size in KiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGESIZE") // 1024


# --- the driver -------------------------------------------------------------------------------


class Worker:
    """One tool's worker process, fed paths one at a time."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", tool],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, **ONE_THREAD},
        )
        hello = self._read()
        self.available = "ready" in hello
        self.reason = hello.get("unavailable", "")

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        return json.loads(line) if line else {"unavailable": "worker died"}

    def measure(self, path: Path) -> dict[str, Any]:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(f"{path}\n")
        stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


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


def run_interleaved(paths: list[Path], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Measure every tool on every file, rotating the order of tools from file to file."""
    workers = [Worker(tool) for tool in TOOLS]
    for worker_ in workers:
        if not worker_.available:
            print(f"# {worker_.tool}: not measured ({worker_.reason})")
    live = [w for w in workers if w.available]
    results: dict[str, list[dict[str, Any]]] = {w.tool: [] for w in live}
    turn = 0
    for _ in range(rounds):
        for path in paths:
            for offset in range(len(live)):
                worker_ = live[(turn + offset) % len(live)]
                result = worker_.measure(path)
                if "error" in result:
                    print(f"# {worker_.tool} failed on {path.name}: {result['error']}")
                else:
                    results[worker_.tool].append(result)
            turn += 1
    for worker_ in workers:
        worker_.close()
    return results


def print_table(results: dict[str, list[dict[str, Any]]]) -> None:
    """Print medians per tool and the ratios the issue sets targets for."""
    print(f"{'tool':<9} {'tracks':>6} {'cpu s/track':>11} {'x realtime':>10} "
          f"{'stack MB':>8} {'extra MB':>8} {'total MB':>8}")
    medians: dict[str, float] = {}
    for tool, rows in results.items():
        if not rows:
            continue
        cpu = statistics.median(r["cpu_s"] for r in rows)
        speed = statistics.median(r["duration_s"] / r["cpu_s"] for r in rows)
        stack = statistics.median(r["stack_kb"] for r in rows) / 1024
        extra = statistics.median(r["extra_kb"] for r in rows) / 1024
        medians[tool] = cpu
        print(f"{tool:<9} {len(rows):>6} {cpu:>11.3f} {speed:>10.0f} {stack:>8.0f} {extra:>8.0f} "
              f"{stack + extra:>8.0f}")
    engine = medians.get("engine")
    if engine:
        for other, label in (("librosa", "librosa baseline / engine (target >= 2)"),
                             ("bliss", "engine / bliss (target <= 1.5)"),
                             ("decode", "engine / decode floor"),
                             ("rhythm", "rhythm recomputed alone / engine")):
            if other in medians:
                ratio = (medians[other] / engine if other in ("librosa", "rhythm")
                         else engine / medians[other])
                print(f"{label:<42} {ratio:6.2f}")


LONG_CHILD = """
import json, resource, sys, time
from pathlib import Path
from tunescout.analysis import analyse_file, warm_up
warm_up()
start = resource.getrusage(resource.RUSAGE_SELF)
wall = time.perf_counter()
result = analyse_file(Path(sys.argv[1]))
end = resource.getrusage(resource.RUSAGE_SELF)
groups = {g.name: g.values for g in result.features}
print(json.dumps({
    "duration_s": result.duration_s,
    "cpu_s": end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime,
    "wall_s": time.perf_counter() - wall,
    "peak_kb": end.ru_maxrss,
    "tempo_bpm": groups["rhythm"]["tempo_bpm"],
    "key": f'{groups["tonal"]["key"]} {groups["tonal"]["mode"]}',
}))
"""


def run_long(directory: Path, seconds: float = 7200.0) -> None:
    """Analyse a two-hour MP3 in a fresh process; print its peak RSS and speed."""
    recipe = RECIPES[0]
    path = write_long_mp3(directory / "two-hours.mp3", recipe, seconds)
    out = subprocess.run([sys.executable, "-c", LONG_CHILD, str(path)], check=True,
                         capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    r = json.loads(out.stdout)
    print(f"long file: {r['duration_s'] / 3600:.2f} h MP3, peak RSS {r['peak_kb'] / 1024:.0f} MB "
          f"(target < 400), {r['duration_s'] / r['cpu_s']:.0f}x realtime by CPU "
          f"({r['cpu_s']:.1f} s; wall {r['wall_s']:.1f} s; target >= 250), "
          f"tempo {r['tempo_bpm']:.2f} (made at {recipe.bpm}), key {r['key']} "
          f"(made in {recipe.key} {recipe.mode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=1, help="passes over the files")
    parser.add_argument("--long", action="store_true", help="add the two-hour file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    with tempfile.TemporaryDirectory(prefix="tunescout-bench-") as tmp:
        started = time.perf_counter()
        paths = args.files or synthetic_tracks(Path(tmp))
        results = run_interleaved(paths, args.rounds)
        print_table(results)
        if args.long:
            run_long(Path(tmp))
        print(f"# {len(paths)} file(s), {args.rounds} round(s), "
              f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
