"""Benchmark the analysis engine against bliss-audio, a plain librosa pipeline and PyAV's own decode.

    python bench/analysis.py [FILE ...] [--folder DIR] [--limit N] [--rounds N] [--long] [--tools A,B]

Each tool lives in its own worker process, which imports its stack (and warms it up) before any
timing, then forks one child per file, as the daemon's zygote does: the child's CPU time is that
file's cost, and "extra" is the child's peak RSS beyond what it had just after the fork
(the pages it shares with its zygote); "stack" is the worker's RSS with its imports and warm-up,
"total" their sum, an upper bound of one child's footprint. Tools take turns on each file, in
rotating order, so that noise from other processes hits them alike. Workers run with one
BLAS/OpenMP/numba/rayon thread.

The tools: "engine" is `analyse_file`; "before" the same at an earlier commit (`--before`, taken
from git: the engine before issue 14's speed-up by default); "rhythm" the engine recomputing
one group (after its version was raised) with the others stored; "path" the engine's decode
path alone (demux and digest, decode, native-rate blocks, mono mix and resampling to
22,050 Hz); "plain" PyAV's plain decode of the same file (no resampling, no conversion);
"librosa" a plain librosa pipeline; "bliss" bliss-audio, whichever version imports (0.1.x
gives `duration` as a timedelta, 0.2 as seconds; 0.2.0's wheel dies with SIGILL on CPUs
without AVX-512, which the table says).
"stages" prints where the engine's time goes, per stage, measured in one child per file.

Real files come from the arguments and from `--folder` (every audio file under it); without
either, synthetic 3-5 minute tracks (FLAC and MP3) are written to a temporary directory.
bliss-audio is a bench-only extra, never a dependency: `pip install --target DIR bliss-audio`
and put DIR on PYTHONPATH. `--long` adds a two-hour MP3: the engine and its decode path in fresh
processes (peak RSS, times realtime) against the ffmpeg command line decoding it to 22,050 Hz mono.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ONE_THREAD, RECIPES, audio_files, synthetic_tracks, write_long_mp3
from values import BEFORE, package_at

TOOLS = ("engine", "before", "rhythm", "path", "plain", "librosa", "bliss", "stages")


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


def _path() -> Any:
    from stages import decode_path_only

    from tunescout.analysis import warm_up

    warm_up()  # as the zygote does: the resampler's taps read and its numba loop loaded once
    return decode_path_only


def _plain() -> Any:
    from stages import plain_decode

    return plain_decode


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


def _bliss() -> Any:
    """bliss-audio's Song(path): 0.1.x gives `duration` as a timedelta, 0.2 as seconds."""
    import bliss_audio

    def run(path: str) -> float:
        duration = bliss_audio.Song(path).duration
        return float(duration.total_seconds() if hasattr(duration, "total_seconds") else duration)

    return run


def _stages() -> Any:
    from stages import measure

    from tunescout.analysis import warm_up

    warm_up()
    return measure


def bliss_version() -> str:
    """Return the installed bliss-audio's version, or why there is none."""
    from importlib import metadata

    try:
        return metadata.version("bliss-audio")
    except metadata.PackageNotFoundError:
        return "not installed"


def worker(tool: str) -> None:
    """Import the tool, then fork one child per path read from stdin; print one JSON line each."""
    try:
        tools = {"engine": _engine, "before": _engine, "rhythm": _rhythm, "path": _path, "plain": _plain,
                 "librosa": _librosa, "bliss": _bliss, "stages": _stages}
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
            out = run(path)
            end = resource.getrusage(resource.RUSAGE_SELF)
            cpu_s = (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime)
            report = {"cpu_s": cpu_s, "stack_kb": stack_kb, "extra_kb": end.ru_maxrss - base_kb,
                      "path": path}
            report.update({"stages": out} if isinstance(out, dict) else {"duration_s": out})
        except Exception as exc:  # a tool that cannot read a format is reported, not fatal
            report = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_fd, json.dumps(report).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"error": f"the child died ({_death(status)})"}
    result: dict[str, Any] = json.loads(data)
    return result


def _death(status: int) -> str:
    """Word a child's wait status: SIGILL is bliss-audio 0.2 on a CPU without AVX-512."""
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return f"killed by {name}" + (": built for AVX-512?" if name == "SIGILL" else "")
    return f"exit status {os.WEXITSTATUS(status)}"


def _rss_kb() -> int:
    """Return this process's current resident set size in KiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGESIZE") // 1024


# --- the driver -------------------------------------------------------------------------------


class Worker:
    """One tool's worker process, fed paths one at a time."""

    def __init__(self, tool: str, before: Path | None = None) -> None:
        self.tool = tool
        env = {**os.environ, **ONE_THREAD}
        if tool == "before" and before is not None:  # the engine at an earlier commit
            env["PYTHONPATH"] = os.pathsep.join([str(before), env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", tool],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        hello = self._read()
        self.available = "ready" in hello
        self.reason = hello.get("unavailable", "")

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line:
            result: dict[str, Any] = json.loads(line)
            return result
        code = self.process.wait()
        return {"unavailable": f"worker died ({_death(code << 8 if code >= 0 else -code)})"}

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


def run_interleaved(paths: list[Path], rounds: int, tools: tuple[str, ...] = TOOLS,
                    before: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Measure every tool on every file, rotating the order of tools from file to file."""
    workers = [Worker(tool, before) for tool in tools]
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


RATIOS = (
    ("engine", "bliss", "engine / bliss-audio (target <= 0.9)"),
    ("engine", "before", "engine / engine before (the --before commit)"),
    ("path", "plain", "decode path / PyAV plain decode (target <= 1.5)"),
    ("librosa", "engine", "librosa baseline / engine"),
    ("rhythm", "engine", "rhythm recomputed alone / engine"),
)


def print_table(results: dict[str, list[dict[str, Any]]]) -> None:
    """Print medians per tool and the ratios the issues set targets for."""
    print(f"{'tool':<9} {'tracks':>6} {'cpu s/track':>11} {'x realtime':>10} "
          f"{'stack MB':>8} {'extra MB':>8} {'total MB':>8}")
    medians: dict[str, float] = {}
    for tool, rows in results.items():
        if not rows or tool == "stages":
            continue
        cpu = statistics.median(r["cpu_s"] for r in rows)
        speed = statistics.median(r["duration_s"] / r["cpu_s"] for r in rows)
        stack = statistics.median(r["stack_kb"] for r in rows) / 1024
        extra = statistics.median(r["extra_kb"] for r in rows) / 1024
        medians[tool] = cpu
        print(f"{tool:<9} {len(rows):>6} {cpu:>11.3f} {speed:>10.0f} {stack:>8.0f} {extra:>8.0f} "
              f"{stack + extra:>8.0f}")
    for top, bottom, label in RATIOS:
        if top in results and bottom in results:
            ratio = statistics.median(_paired(results[top], results[bottom]))
            print(f"{label:<50} {ratio:6.2f}")


def _paired(tops: list[dict[str, Any]], bottoms: list[dict[str, Any]]) -> list[float]:
    """Return per-file ratios of two tools' CPU times (files both measured, every round)."""
    by_path: dict[str, list[float]] = {}
    for row in bottoms:
        by_path.setdefault(row["path"], []).append(row["cpu_s"])
    return [row["cpu_s"] / statistics.median(by_path[row["path"]]) for row in tops
            if row["path"] in by_path] or [float("nan")]


LONG_CHILD = """
import json, resource, sys, time
from pathlib import Path
tool = sys.argv[2]
if tool == "engine":
    from tunescout.analysis import analyse_file, warm_up
    warm_up()
else:
    sys.path.insert(0, sys.argv[3])
    from stages import decode_path_only
start = resource.getrusage(resource.RUSAGE_SELF)
wall = time.perf_counter()
out = {}
if tool == "engine":
    result = analyse_file(Path(sys.argv[1]))
    groups = {g.name: g.values for g in result.features}
    out = {"duration_s": result.duration_s, "tempo_bpm": groups["rhythm"]["tempo_bpm"],
           "key": f'{groups["tonal"]["key"]} {groups["tonal"]["mode"]}'}
else:
    out = {"duration_s": decode_path_only(sys.argv[1])}
end = resource.getrusage(resource.RUSAGE_SELF)
out.update(cpu_s=end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime,
           wall_s=time.perf_counter() - wall, peak_kb=end.ru_maxrss)
print(json.dumps(out))
"""


def _long(path: Path, tool: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", LONG_CHILD, str(path), tool,
                          str(Path(__file__).resolve().parent)],
                         check=True, capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def ffmpeg_decode_s(path: Path) -> float | None:
    """Return the CPU seconds of the ffmpeg command line decoding `path` to 22,050 Hz mono f32."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-threads", "1", "-i", str(path),
                        "-ac", "1", "-ar", "22050", "-f", "f32le", "-y", os.devnull], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"# ffmpeg: not measured ({exc})")
        return None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def run_long(directory: Path, seconds: float = 7200.0) -> None:
    """Analyse a two-hour MP3 in fresh processes; print peak RSS, speed and the ffmpeg ratio."""
    recipe = RECIPES[0]
    path = write_long_mp3(directory / "two-hours.mp3", recipe, seconds)
    ffmpeg = [ffmpeg_decode_s(path)]
    path_run = _long(path, "path")
    ffmpeg.append(ffmpeg_decode_s(path))
    engine = _long(path, "engine")
    ffmpeg_s = min((f for f in ffmpeg if f is not None), default=None)
    print(f"long file: {engine['duration_s'] / 3600:.2f} h MP3; engine {engine['cpu_s']:.1f} CPU s "
          f"({engine['duration_s'] / engine['cpu_s']:.0f}x realtime, wall {engine['wall_s']:.1f} s), "
          f"peak RSS {engine['peak_kb'] / 1024:.0f} MB (target <= 300); tempo "
          f"{engine['tempo_bpm']:.2f} (made at {recipe.bpm}), key {engine['key']} "
          f"(made in {recipe.key} {recipe.mode})")
    if ffmpeg_s:
        print(f"  decode path {path_run['cpu_s']:.1f} CPU s, ffmpeg command line to 22,050 Hz mono "
              f"{ffmpeg_s:.1f} s: decode path / ffmpeg {path_run['cpu_s'] / ffmpeg_s:.2f} "
              f"(target <= 1.6); engine / ffmpeg {engine['cpu_s'] / ffmpeg_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--folder", type=Path, help="measure the audio files under this folder")
    parser.add_argument("--limit", type=int, help="at most this many files")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the files")
    parser.add_argument("--long", action="store_true", help="add the two-hour file")
    parser.add_argument("--before", default=BEFORE,
                        help="the commit whose engine the 'before' tool runs (from git)")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated, of {','.join(TOOLS)} (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    from stages import print_stages

    with tempfile.TemporaryDirectory(prefix="tunescout-bench-") as tmp:
        started = time.perf_counter()
        paths = audio_files(args.files, args.folder, args.limit) or synthetic_tracks(Path(tmp))
        print(f"# bliss-audio {bliss_version()}; {_machine()}")
        tools = tuple(tool for tool in args.tools.split(",") if tool)
        if unknown := set(tools) - set(TOOLS):
            parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
        before = package_at(args.before, Path(tmp) / "before") if "before" in tools else None
        results = run_interleaved(paths, args.rounds, tools, before)
        print_table(results)
        print_stages([row["stages"] for row in results.get("stages", [])])
        if args.long:
            run_long(Path(tmp))
        print(f"# {len(paths)} file(s), {args.rounds} round(s), "
              f"{time.perf_counter() - started:.0f} s in all")


def _machine() -> str:
    """Name the CPU, its cores and whether it has AVX-512 (bliss-audio 0.2 needs it)."""
    model, flags = "unknown CPU", ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line
    except OSError:
        pass
    avx = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    return f"{model}, {os.cpu_count()} cores, {avx}"


if __name__ == "__main__":
    main()
