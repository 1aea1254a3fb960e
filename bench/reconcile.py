"""A no-change reconcile of a 100,000-file library against `find`, and the idle daemon's wake-ups.

    python bench/reconcile.py [--files 100000] [--idle 60]

Builds a tree of small files (not real audio) with their database rows already present, runs one
reconcile (which compares every file with its row and stores the folder fingerprints, as the
daemon's first reconcile does), then times, interleaved and repeated, what the daemon does at every
`rescan_interval`: load the fingerprints, walk, compare, against
`find ROOT -type f -printf '%s %T@ %i\\n'` on the same tree (target: <= 1.5x), and the peak of
Python allocations of a no-change and of a file-by-file reconcile. Then runs the
daemon on that library and counts its context switches over --idle seconds (target: no periodic
wake-ups more often than once a second).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import psutil

from tunescout.config import parse_config
from tunescout.library.changes import Library
from tunescout.library.walk import walk_library
from tunescout.models import FEATURE_VERSIONS
from tunescout.store.writer import StoreWriter


def build(root: Path, files: int, db: Path) -> None:
    music = root / "music"
    rows = []
    per_album = 12
    for i in range(files):
        folder = music / f"artist{i // 1200:03d}" / f"album{(i // per_album) % 100:03d}"
        if i % per_album == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i % per_album:02d} track {i}.flac"
        path.write_bytes(b"x" * (100 + i % 50))
        st = path.stat()
        rows.append((os.fsencode(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                     f"{i:032x}"))
    StoreWriter.open(db).close()  # the real schema
    # bench set-up only: rows as the daemon would have left them after analysing everything,
    # with every recording's four feature groups (the orphan pruning reads them)
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany("INSERT INTO files (path, dev, ino, size, mtime_ns, digest, state, "
                         "first_seen) VALUES (?, ?, ?, ?, ?, ?, 'analysed', 0)", rows)
        values = '{"tempo_bpm": 120.0, "mfcc_mean": [1.0, 2.0, 3.0]}'
        conn.executemany("INSERT INTO features (digest, grp, version, vals, computed_at) "
                         "VALUES (?, ?, ?, ?, 0)",
                         ((row[5], group, version, values) for row in rows
                          for group, version in FEATURE_VERSIONS.items()))
    conn.close()


class _Outcome(logging.Handler):
    """Keep the figures of the last `reconciled` line."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "EVENT", None) == "reconciled":
            self.figures = {k: getattr(record, k) for k in ("FILES", "NEW", "CHANGED", "REMOVED")}


def time_reconcile(music: Path, db: Path, outcome: _Outcome) -> float:
    """What the daemon does: load the folder fingerprints, walk, compare, store what agreed."""
    config = parse_config({"library": {"paths": [str(music)]}, "store": {"path": str(db)}},
                          env={}, source="bench")
    store = StoreWriter.open(db)  # the daemon keeps it open
    library = Library(config, store)
    start = time.perf_counter()
    known = store.folder_fingerprints()
    walk = walk_library(config.library.paths, config.library.extensions, known)
    library.reconcile(walk, time.time())
    elapsed = time.perf_counter() - start
    store.close()
    figures = outcome.figures
    assert figures["NEW"] == figures["CHANGED"] == figures["REMOVED"] == 0, figures
    return elapsed


def traced_peak(music: Path, db: Path, outcome: _Outcome) -> int:
    """Return the peak of Python allocations during one reconcile (slower while traced)."""
    tracemalloc.start()
    try:
        time_reconcile(music, db, outcome)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def time_find(music: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["find", str(music), "-type", "f", "-printf", "%s %T@ %i\n"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _voluntary_switches(pid: int) -> int:
    """Sum the voluntary context switches (wake-ups after sleeping) of every thread."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def idle_wakeups(root: Path, db: Path, seconds: float) -> tuple[float, float]:
    config = root / "c.toml"
    config.write_text(f'[library]\npaths = ["{root / "music"}"]\n[store]\npath = "{db}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "tunescout", "--config", str(config), "run",
                             "--log-target", "stderr"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "reconciled" in line:
                break
        time.sleep(5)  # let the start-up settle
        daemon = psutil.Process(proc.pid)
        ctx0, cpu0 = _voluntary_switches(proc.pid), daemon.cpu_times()
        time.sleep(seconds)
        ctx1, cpu1 = _voluntary_switches(proc.pid), daemon.cpu_times()
        wakeups = (ctx1 - ctx0) / seconds
        cpu = max(0.0, (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / seconds * 100)
        return wakeups, cpu
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tunescout-reconcile-") as tmp:
        root = Path(tmp)
        db = root / "t.db"
        start = time.perf_counter()
        build(root, args.files, db)
        print(f"built {args.files:,} files in {time.perf_counter() - start:.0f} s")
        music = root / "music"
        outcome = _Outcome()
        logging.getLogger("tunescout").addHandler(outcome)
        logging.getLogger("tunescout").setLevel(logging.INFO)
        f = time_find(music)  # also warms the dentry and inode caches for both
        first = time_reconcile(music, db, outcome)  # no folder fingerprints stored yet
        print(f"first reconcile (every file compared with its row, fingerprints stored): "
              f"{first:.3f} s = {first / f:.2f}x find")
        ours, finds = [], []
        for _ in range(args.rounds):
            finds.append(time_find(music))
            ours.append(time_reconcile(music, db, outcome))
        assert outcome.figures["FILES"] == args.files, outcome.figures
        f, o = statistics.median(finds), statistics.median(ours)
        print(f"no-change reconcile of {args.files:,} files (median of {args.rounds}, warm cache)")
        print(f"  find -printf:        {f:7.3f} s")
        print(f"  tunescout reconcile: {o:7.3f} s")
        print(f"  ratio:               {o / f:7.2f}x  (target <= 1.5x)")
        quiet = traced_peak(music, db, outcome)
        store = StoreWriter.open(db)
        store.unsettle_all()  # as after an upgrade: every folder compared file by file
        store.close()
        full = traced_peak(music, db, outcome)
        print(f"memory (tracemalloc peak): no-change reconcile {quiet / 2**20:.1f} MiB, "
              f"file-by-file reconcile {full / 2**20:.1f} MiB ({quiet / full:.2f}x)")
        if args.idle > 0:
            wakeups, cpu = idle_wakeups(root, db, args.idle)
            print(f"idle daemon over {args.idle:.0f} s: {wakeups:.2f} wake-ups/s (all threads), "
                  f"{cpu:.3f} % CPU  (target: < 1 wake-up/s)")


if __name__ == "__main__":
    main()
