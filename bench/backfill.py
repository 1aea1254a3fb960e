"""Backfill throughput with 1 and with all workers, beside bliss-audio; child start; daemon RSS.

    python bench/backfill.py [--folder DIR] [--limit N] [--files 48] [--seconds 60] [--throughput-only]

Analyses a library with `tunescout scan` using one worker and then every core, and prints files
per hour and the speed-up; bliss-audio (when it imports: a bench-only extra, see
bench/analysis.py) analyses the same files in 1 and in as many processes, one rayon thread each.
The library is the audio files under `--folder` (linked or copied into a temporary library), or
N synthetic tracks (real FLAC files) without one. Then the cost of starting one child
through the warm zygote against a fresh interpreter importing librosa; then the RSS of a running
daemon (without its zygote and children) after it analysed the library. Everything is measured in
this run, so the ratios hold on a shared, noisy machine. Targets (issue 4): speed-up >= 1.8x on
2 cores, child start <= 50 ms, daemon RSS <= 60 MB.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

sys.path.insert(0, str(REPO / "bench"))

from _common import ONE_THREAD, audio_files  # noqa: E402

from support.audio import write_track  # noqa: E402
from tunescout import protocol  # noqa: E402
from tunescout.workers.zygote_client import ZygoteHandle  # noqa: E402


def write_config(path: Path, music: Path, db: Path, workers: int) -> Path:
    path.write_text(
        f'[library]\npaths = ["{music}"]\n[store]\npath = "{db}"\n[intake]\nsettle = "0.2 s"\n'
        f"[workers]\nmax_workers = {workers}\n"
        '[memory]\nmin_available = "300 MB"\npause_above_percent = 95\nresume_below_percent = 90\n'
    )
    return path


def scan(config: Path, music: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tunescout", "--config", str(config), "scan",
                           str(music)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or "0 failed" not in proc.stdout:
        raise SystemExit(f"scan failed: {proc.stdout}{proc.stderr}")
    return elapsed


def child_start_ms(samples: int) -> list[float]:
    """Spawn empty batches through a warm zygote; time spawn -> child exit (pipe EOF)."""
    zygote = ZygoteHandle("tunescout.analysis:analyse_file", dict(os.environ))
    try:
        while True:
            messages, gone = zygote.receive()
            if gone:
                raise SystemExit("the zygote died")
            if any(isinstance(m, protocol.Ready) for m in messages):
                break
            time.sleep(0.05)
        times = []
        for i in range(samples):
            start = time.perf_counter()
            fd = zygote.spawn(f"bench-{i}", [], 768 * 2**20, 60)
            os.set_blocking(fd, True)
            while os.read(fd, 4096):
                pass
            times.append((time.perf_counter() - start) * 1000)
            os.close(fd)
            time.sleep(0.02)
            zygote.receive()
        return times
    finally:
        zygote.stop()


def fresh_import_ms(samples: int) -> list[float]:
    code = "import librosa.beat, librosa.feature, librosa.onset, numba"
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def daemon_rss_mb(config: Path, total: int) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "tunescout", "--config", str(config), "run",
                             "--log-target", "stderr"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 600
        seen = 0
        for line in proc.stderr:
            if "reconciled" in line and f"{total} unchanged" in line:
                break
            seen += "analysed " in line
            if seen >= total or time.monotonic() > deadline:
                break
        time.sleep(3)
        return psutil.Process(proc.pid).memory_info().rss / 2**20
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def _bliss_one(path: str) -> float:
    import bliss_audio

    duration = bliss_audio.Song(path).duration
    return float(duration.total_seconds() if hasattr(duration, "total_seconds") else duration)


def bliss_wall_s(paths: list[Path], processes: int) -> float | None:
    """Return the wall time of bliss-audio analysing `paths` in `processes` processes, or None."""
    os.environ.update(ONE_THREAD)
    try:
        import bliss_audio  # noqa: F401
    except ImportError as exc:
        print(f"  bliss-audio:   not measured ({exc})")
        return None
    context = multiprocessing.get_context("fork")
    start = time.perf_counter()
    with context.Pool(processes) as pool:
        try:
            pool.map(_bliss_one, [str(p) for p in paths], chunksize=1)
        except Exception as exc:  # a file bliss cannot read: say so, measure nothing
            print(f"  bliss-audio:   failed ({type(exc).__name__}: {exc})")
            return None
    return time.perf_counter() - start


def library(root: Path, args: argparse.Namespace) -> list[Path]:
    """Fill root/music with the named folder's files (linked, else copied) or synthetic tracks."""
    music = root / "music"
    music.mkdir()
    if args.folder is None:
        for i in range(args.files):
            write_track(music / f"track{i:03d}.flac", seconds=args.seconds, kind="drums",
                        bpm=90 + 5 * (i % 12))
        return sorted(music.iterdir())
    paths = []
    for i, source in enumerate(audio_files([], args.folder, args.limit)):
        target = music / f"{i:04d}-{source.name}"
        try:
            os.link(source.resolve(), target)
        except OSError:
            shutil.copyfile(source, target)
        paths.append(target)
    return paths


def per_hour(files: int, seconds: float) -> str:
    return f"{files * 3600 / seconds:8.0f} files/h ({seconds:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="real files: the audio files under this folder")
    parser.add_argument("--limit", type=int, help="at most this many files of the folder")
    parser.add_argument("--files", type=int, default=48, help="synthetic tracks without --folder")
    parser.add_argument("--seconds", type=float, default=60.0, help="their length")
    parser.add_argument("--throughput-only", action="store_true",
                        help="skip the child start and daemon RSS measurements")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="tunescout-bench-") as tmp:
        root = Path(tmp)
        paths = library(root, args)
        music = root / "music"
        tiny = root / "tiny"
        tiny.mkdir()
        write_track(tiny / "one.flac", seconds=1)
        # the start-up (interpreter, zygote warm-up) is paid once per scan: measure and subtract it
        startup = min(scan(write_config(root / f"s{i}.toml", tiny, root / f"s{i}.db", 1), tiny)
                      for i in range(2))
        one = scan(write_config(root / "one.toml", music, root / "one.db", 1), music) - startup
        many = scan(write_config(root / "all.toml", music, root / "all.db", cores), music) - startup
        n = len(paths)
        print(f"backfill of {n} files ({'under ' + str(args.folder) if args.folder else 'synthetic'}; "
              f"scan start-up of {startup:.1f} s subtracted)")
        print(f"  tunescout, 1 worker:      {per_hour(n, one)}")
        print(f"  tunescout, {cores} workers:     {per_hour(n, many)}")
        print(f"  tunescout speed-up:       {one / many:8.2f}x   (target >= 1.8x on 2 cores)")
        bliss_one = bliss_wall_s(paths, 1)
        bliss_many = bliss_wall_s(paths, cores) if bliss_one else None
        if bliss_one and bliss_many:
            print(f"  bliss-audio, 1 process:   {per_hour(n, bliss_one)}")
            print(f"  bliss-audio, {cores} processes: {per_hour(n, bliss_many)}")
            print(f"  bliss-audio speed-up:     {bliss_one / bliss_many:8.2f}x")
            print(f"  tunescout / bliss-audio files per hour: {bliss_one / one:.2f} (1), "
                  f"{bliss_many / many:.2f} ({cores})")
        if args.throughput_only:
            return

        zygote = statistics.median(child_start_ms(20))
        fresh = statistics.median(fresh_import_ms(3))
        print("child start")
        print(f"  through the zygote:            {zygote:8.1f} ms  (target <= 50 ms)")
        print(f"  fresh interpreter + librosa:   {fresh:8.1f} ms")
        print(f"  ratio:                         {fresh / zygote:8.1f}x")

        rss = daemon_rss_mb(write_config(root / "daemon.toml", music, root / "d.db", cores), n)
        print(f"daemon RSS after a backfill: {rss:.1f} MiB  (target <= 60 MB; zygote and children excluded)")


if __name__ == "__main__":
    main()
