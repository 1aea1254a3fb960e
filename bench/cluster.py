"""Files per hour at home and on a Dask cluster of 1 and 2 workers, and the cluster's overhead.

    python bench/cluster.py [--files 5] [--repeats 5] [--evalset DIR | --synthetic] [--seconds 180]

The files: real music of 3 to 5 minutes from the evaluation set of bench/evalset.py (its cache,
~/.cache/tunescout-bench/evalset, copied into a temporary library), or, without it (or with
`--synthetic`), synthetic 3-minute FLAC tracks; the output says which.

The overhead per file is the cluster path (a `dask scheduler` and one `tunescout worker` on
this machine, one file per forked child of the worker's zygote) against one local child (the
same analysis, batches of the local supervisor): `--repeats` pairs of scans, the two kinds
interleaved and their order swapped every pair, so that load from elsewhere on a shared machine
falls on both alike. In each scan every file's cost is the time from the result before it to its
own (the first result, which carries the zygote's warm-up, is left out); a pair compares the sum
over the files timed in both. Reported: the median of the pairs and their spread (min to max),
and the part of it that is dead time between files (a file's interval less its child's own
analysis time: Dask's round trips, a fork per file, the writes), which load from elsewhere on a
shared machine hardly moves. Target: <= 5 % at 3-minute tracks. Then one scan each with two
local children and two workers. Everything is measured in this run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.audio import write_track  # noqa: E402
from support.daemon import parse_line  # noqa: E402

TARGET_OVERHEAD = 0.05
EVALSET = Path.home() / ".cache" / "tunescout-bench" / "evalset"
MIN_S, MAX_S = 180.0, 300.0  # "3-minute tracks": real ones of 3 to 5 minutes


def write_config(path: Path, music: Path, workers: int) -> Path:
    """Write a config whose database lives in the folder PATH.db (a new one for every scan)."""
    db = path.with_suffix(".db") / "tunescout.db"
    path.write_text(
        f'[library]\npaths = ["{music}"]\n[store]\npath = "{db}"\n'
        f"[workers]\nmax_workers = {workers}\n"
        '[memory]\nmin_available = "300 MB"\npause_above_percent = 95\nresume_below_percent = 90\n')
    return path


def real_files(evalset: Path, music: Path, count: int) -> list[str] | None:
    """Copy `count` evaluation-set tracks of 3 to 5 minutes into `music`; None without the set."""
    manifest = evalset / "manifest.json"
    if not manifest.exists():
        return None
    tracks = [t for t in json.loads(manifest.read_text())["tracks"]
              if MIN_S <= float(t["duration_s"]) <= MAX_S and (evalset / t["file"]).exists()]
    if len(tracks) < count:
        return None
    step = len(tracks) / count  # spread over the styles (the manifest is grouped by package)
    chosen = [tracks[int(i * step)] for i in range(count)]
    for track in chosen:
        source = evalset / track["file"]
        shutil.copyfile(source, music / f"{track['id']}{source.suffix}")
    return [f"{t['id']} ({float(t['duration_s']):.0f} s)" for t in chosen]


def synthetic_files(music: Path, count: int, seconds: float) -> list[str]:
    for i in range(count):
        write_track(music / f"t{i:03d}.flac", seconds=seconds, kind="drums", bpm=90 + 5 * i,
                    subtype="PCM_16")
    return [f"t{i:03d}.flac ({seconds:.0f} s)" for i in range(count)]


@dataclass(frozen=True)
class Cost:
    """One file in one scan: seconds from the result before it to its own, and of those the
    seconds its child spent analysing it (DURATION_MS): the rest is dead time between files."""

    interval_s: float
    analysis_s: float


def scan(config: Path, music: Path, *args: str) -> dict[str, Cost]:
    """Run a scan on a new database; return each file's cost (the first result left out)."""
    shutil.rmtree(config.with_suffix(".db"), ignore_errors=True)  # every file analysed anew
    proc = subprocess.run([sys.executable, "-m", "tunescout", "--config", str(config), "scan", "-v",
                           *args, str(music)], capture_output=True, text=True)
    if proc.returncode != 0 or "0 failed" not in proc.stdout:
        raise SystemExit(f"scan failed: {proc.stdout}{proc.stderr[-3000:]}")
    results = sorted((datetime.fromisoformat(line.at).timestamp(), line.fields["TRACK_PATH"],
                      int(line.fields["DURATION_MS"]) / 1000)
                     for raw in proc.stderr.splitlines()
                     if (line := parse_line(raw)) and line.fields.get("EVENT") == "analysed")
    if len(results) < 3:
        raise SystemExit("too few results to time")
    return {path: Cost(at - before, analysis_s)
            for (before, _, _), (at, path, analysis_s) in itertools.pairwise(results)}


def per_file(costs: dict[str, Cost]) -> float:
    return sum(c.interval_s for c in costs.values()) / len(costs)


def dead_ms(costs: dict[str, Cost]) -> float:
    """The median time per file in which no child analysed (fork, pipes, Dask, the writes)."""
    return 1000 * statistics.median(c.interval_s - c.analysis_s for c in costs.values())


class Cluster:
    """`dask scheduler` and one `tunescout worker --nworkers N` on 127.0.0.1, free ports."""

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


@dataclass
class Pairs:
    """What the interleaved scans measured, one entry per pair."""

    overheads: list[float] = field(default_factory=list)  # cluster / local - 1, same files
    local_s: list[float] = field(default_factory=list)  # seconds per file
    cluster_s: list[float] = field(default_factory=list)
    dead: list[float] = field(default_factory=list)  # (cluster - local) dead time / analysis time


def overhead_pairs(root: Path, music: Path, repeats: int) -> Pairs:
    """Interleaved scans, one local child against a cluster of one worker."""
    local_cfg = write_config(root / "local-1.toml", music, 1)
    cluster_cfg = write_config(root / "cluster-1.toml", music, 1)
    cluster = Cluster(root, 1)
    pairs = Pairs()
    try:
        for rep in range(repeats):
            runs = {}
            for kind in (("local", "cluster") if rep % 2 == 0 else ("cluster", "local")):
                runs[kind] = (scan(local_cfg, music) if kind == "local"
                              else scan(cluster_cfg, music, "--scheduler", cluster.address))
            local, remote = runs["local"], runs["cluster"]
            common = local.keys() & remote.keys()
            pairs.overheads.append(sum(remote[p].interval_s for p in common)
                                   / sum(local[p].interval_s for p in common) - 1)
            pairs.local_s.append(per_file(local))
            pairs.cluster_s.append(per_file(remote))
            analysis_s = statistics.median(c.analysis_s for c in local.values())
            pairs.dead.append((dead_ms(remote) - dead_ms(local)) / 1000 / analysis_s)
            print(f"  pair {rep + 1}: local {pairs.local_s[-1]:.2f} s/file (dead {dead_ms(local):.0f} ms), "
                  f"cluster {pairs.cluster_s[-1]:.2f} s/file (dead {dead_ms(remote):.0f} ms): "
                  f"{pairs.overheads[-1]:+.1%} over {len(common)} files", flush=True)
    finally:
        cluster.stop()
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved pairs for the overhead")
    parser.add_argument("--evalset", type=Path, default=EVALSET, help=f"default {EVALSET}")
    parser.add_argument("--synthetic", action="store_true", help="synthetic tracks even with the set")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of synthetic tracks")
    args = parser.parse_args()
    if args.files < 3:
        parser.error("--files: at least 3 (the first result of a scan is not timed)")
    with tempfile.TemporaryDirectory(prefix="tunescout-bench-cluster-") as tmp:
        root = Path(tmp)
        music = root / "music"
        music.mkdir()
        names = None if args.synthetic else real_files(args.evalset.expanduser(), music, args.files)
        source = f"real music from the evaluation set ({args.evalset})"
        if names is None:
            names = synthetic_files(music, args.files, args.seconds)
            source = f"synthetic FLAC tracks of {args.seconds:.0f} s"
        print(f"{args.files} files, {source}: {', '.join(names)}", flush=True)
        pairs = overhead_pairs(root, music, args.repeats)
        rows = [("local, 1 child", statistics.median(pairs.local_s)),
                ("cluster, 1 worker", statistics.median(pairs.cluster_s))]
        config = write_config(root / "local-2.toml", music, 2)
        rows.append(("local, 2 children", per_file(scan(config, music))))
        cluster = Cluster(root, 2)
        try:
            config = write_config(root / "cluster-2.toml", music, 1)
            rows.append(("cluster, 2 workers", per_file(scan(config, music, "--scheduler",
                                                              cluster.address))))
        finally:
            cluster.stop()
    print(f"\nsteady state (each file from the result before it; the first result of a scan "
          f"left out); 1-child and 1-worker rows: median of {args.repeats} interleaved scans")
    print(f"{'run':<22} {'s/file':>8} {'files/hour':>11}")
    for name, seconds in rows:
        print(f"{name:<22} {seconds:>8.2f} {3600 / seconds:>11.0f}")
    median = statistics.median(pairs.overheads)
    verdict = "ok" if median <= TARGET_OVERHEAD else "over target"
    print(f"cluster overhead per file (1 worker against 1 local child, {len(pairs.overheads)} "
          f"interleaved pairs): median {median:+.1%}, spread {min(pairs.overheads):+.1%} to "
          f"{max(pairs.overheads):+.1%} (target <= {TARGET_OVERHEAD:.0%}: {verdict})")
    print(f"  of which dead time between files (Dask, a fork per file; the load on this machine "
          f"cancels out): median {statistics.median(pairs.dead):+.1%}, spread "
          f"{min(pairs.dead):+.1%} to {max(pairs.dead):+.1%} of a file's analysis")
    print(f"speed-up of 2 workers over 1: {rows[1][1] / rows[3][1]:.2f}x; "
          f"of 2 local children over 1: {rows[0][1] / rows[2][1]:.2f}x")


if __name__ == "__main__":
    main()
