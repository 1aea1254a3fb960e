"""Files per hour at home and on a Dask cluster of 1 and 2 workers, and the cluster's overhead.

    python bench/cluster.py [--files 12] [--seconds 180]

Writes N synthetic tracks (real FLAC files, 3 minutes by default), then analyses them with
`tunescout scan`: locally with one and two children, and through a `dask scheduler` with one
and with two `tunescout worker` processes on this machine (127.0.0.1, free ports). Rates are
taken between the first and the last result of each run (the zygotes' warm-up is not the
steady state a backfill of 100,000 files lives in). The overhead per file is the cluster of 1
against one local child, the same work unit through Dask: target <= 5 % at 3-minute tracks.
Everything is measured in this run, so the ratios hold on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.audio import write_track  # noqa: E402
from support.daemon import parse_line  # noqa: E402

TARGET_OVERHEAD = 0.05


def write_config(path: Path, music: Path, db: Path, workers: int) -> Path:
    path.write_text(
        f'[library]\npaths = ["{music}"]\n[store]\npath = "{db}"\n'
        f"[workers]\nmax_workers = {workers}\n"
        '[memory]\nmin_available = "300 MB"\npause_above_percent = 95\nresume_below_percent = 90\n')
    return path


def scan(config: Path, music: Path, *args: str) -> float:
    """Run a scan; return its seconds per file between the first and the last result."""
    proc = subprocess.run([sys.executable, "-m", "tunescout", "--config", str(config), "scan", "-v",
                           *args, str(music)], capture_output=True, text=True)
    if proc.returncode != 0 or "0 failed" not in proc.stdout:
        raise SystemExit(f"scan failed: {proc.stdout}{proc.stderr[-3000:]}")
    times = [datetime.fromisoformat(line.at).timestamp()
             for raw in proc.stderr.splitlines()
             if (line := parse_line(raw)) and line.fields.get("EVENT") == "analysed"]
    if len(times) < 2:
        raise SystemExit("too few results to time")
    return (max(times) - min(times)) / (len(times) - 1)


class Cluster:
    def __init__(self, root: Path, workers: int) -> None:
        file = root / f"scheduler-{workers}.json"
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
             "0", "--no-dashboard", "--scheduler-file", str(file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        deadline = time.monotonic() + 60
        while not (file.exists() and file.stat().st_size):
            if time.monotonic() > deadline:
                raise SystemExit("the scheduler did not start")
            time.sleep(0.1)
        self.address = json.loads(file.read_text())["address"]
        log = root / f"worker-{workers}.log"
        with log.open("wb") as out:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "tunescout", "worker", self.address, "--nworkers",
                 str(workers)], stdout=out, stderr=out))
        while log.read_text(errors="replace").count("Registered to:") < workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"the workers did not join: {log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in reversed(self.procs[1:] + self.procs[:1]):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=180.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tunescout-bench-cluster-") as tmp:
        root = Path(tmp)
        music = root / "music"
        music.mkdir()
        for i in range(args.files):
            write_track(music / f"t{i:03d}.flac", seconds=args.seconds, kind="drums",
                        bpm=90 + 5 * i, subtype="PCM_16")
        rows: list[tuple[str, float]] = []
        for workers in (1, 2):
            config = write_config(root / f"local-{workers}.toml", music, root / f"local-{workers}.db",
                                  workers)
            rows.append((f"local, {workers} child{'ren' if workers > 1 else ''}", scan(config, music)))
        for workers in (1, 2):
            cluster = Cluster(root, workers)
            try:
                config = write_config(root / f"cluster-{workers}.toml", music,
                                      root / f"cluster-{workers}.db", 1)
                rows.append((f"cluster, {workers} worker{'s' if workers > 1 else ''}",
                             scan(config, music, "--scheduler", cluster.address)))
            finally:
                cluster.stop()
    print(f"{args.files} files of {args.seconds:.0f} s (FLAC), steady state between first and last result")
    print(f"{'run':<22} {'s/file':>8} {'files/hour':>11}")
    for name, per_file in rows:
        print(f"{name:<22} {per_file:>8.2f} {3600 / per_file:>11.0f}")
    overhead = rows[2][1] / rows[0][1] - 1
    verdict = "ok" if overhead <= TARGET_OVERHEAD else "over target"
    print(f"cluster overhead per file (1 worker against 1 local child): {overhead:+.1%} "
          f"(target <= {TARGET_OVERHEAD:.0%}: {verdict})")
    print(f"speed-up of 2 workers over 1: {rows[2][1] / rows[3][1]:.2f}x")


if __name__ == "__main__":
    main()
