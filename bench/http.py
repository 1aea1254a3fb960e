"""The HTTP API under load: 200 concurrent clients asking `similar_tracks` of a running daemon.

    python bench/http.py [--sizes 10000,100000] [--clients 200] [--seconds 15]

For each size a synthetic library (bench/playlist.py's clusters) is written as real (tiny) files
with their analyses recorded in a real database, `tunescout run` is started on it with `[http]`
on a free loopback port, and once it answers, CLIENT_PROCESSES processes of client threads (one
keep-alive connection each) ask `similar_tracks` of random tracks (n=20) for `--seconds`. Prints
requests per second, p50 and p99 latency, errors, and the daemon's RSS before and after (the
index itself is in "before": it is built at start). The client count and the run time bound it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this file is named http.py: its folder must not shadow the standard library's http package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import http.client  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import psutil  # noqa: E402

REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

_spec = importlib.util.spec_from_file_location("bench_playlist", HERE / "playlist.py")
assert _spec is not None and _spec.loader is not None
_playlist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_playlist)
synthetic_library = _playlist.synthetic_library

from support.config import cheap_sections, toml_text  # noqa: E402
from support.http import free_port  # noqa: E402
from tunescout.models import FEATURE_VERSIONS  # noqa: E402
from tunescout.store.writer import StoreWriter  # noqa: E402

CLIENT_PROCESSES = 4  # Python clients in one process would measure the client's GIL, not the server


def write_library(root: Path, n: int) -> tuple[Path, Path]:
    """Write n tiny files and their analyses (one transaction); return (music, db)."""
    music, db = root / "music", root / "state" / "tunescout.db"
    StoreWriter.open(db).close()  # the schema, by the daemon's own code
    conn = sqlite3.connect(db)
    now = time.time()
    with conn:
        for track in synthetic_library(n):
            path = music / track.path.relative_to("/music")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(track.digest.encode())
            st = path.stat()
            conn.execute("INSERT INTO files (path, dev, ino, size, mtime_ns, state, digest, duration_s, "
                         "tags, first_seen, analysed_at) VALUES (?, ?, ?, ?, ?, 'analysed', ?, ?, ?, ?, ?)",
                         (os.fsencode(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                          track.digest, track.duration_s, json.dumps(dict(track.tags)), now, now))
            conn.executemany("INSERT INTO features (digest, grp, version, vals, computed_at) "
                             "VALUES (?, ?, ?, ?, ?)",  # the current versions: nothing to re-analyse
                             [(track.digest, g, FEATURE_VERSIONS[g], json.dumps(v), now)
                              for g, v in track.features.items()])
    ids = [row[0] for row in conn.execute("SELECT id FROM files")]
    conn.close()
    (root / "ids.json").write_text(json.dumps(ids))
    return music, db


def _client(port: int, ids: list[int], until: float, out: list[float], errors: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    rng = random.Random()
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            conn.request("GET", f"/api/similar_tracks?item_id={rng.choice(ids)}&n=20")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                out.append(time.perf_counter() - started)
            else:
                errors.append(response.status)
        except (OSError, http.client.HTTPException):
            errors.append(0)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.close()


def _client_process(port: int, ids: list[int], threads: int, seconds: float) -> tuple[list[float], list[int]]:
    until = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list[int] = []
    workers = [threading.Thread(target=_client, args=(port, ids, until, latencies, errors))
               for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, errors


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1024**2


def run_size(n: int, clients: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tunescout-http-bench-") as tmp:
        root = Path(tmp)
        music, db = write_library(root, n)
        ids = json.loads((root / "ids.json").read_text())
        port = free_port()
        sections = cheap_sections(music, db, workers={"analyser": "support.analysers:by_name"})
        sections["http"] = {"listen": f"127.0.0.1:{port}", "max_clients": clients + 56}
        sections["intake"] = {"settle": "0.5 s", "rescan_interval": "6 h"}
        config = root / "tunescout.toml"
        config.write_text(toml_text(sections))
        paths = [str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        with (root / "daemon.log").open("wb") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "tunescout", "--config", str(config), "run",
                                       "--log-target", "stderr"], stdout=log, stderr=log, env=env)
        try:
            _wait_answering(port, ids[0], daemon, root / "daemon.log")
            before = _rss_mib(daemon.pid)
            per = [clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES)
                   for i in range(CLIENT_PROCESSES)]
            started = time.monotonic()
            with multiprocessing.Pool(CLIENT_PROCESSES) as pool:
                results = pool.starmap(_client_process, [(port, ids, k, seconds) for k in per])
            elapsed = time.monotonic() - started
            after = _rss_mib(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
    latencies = sorted(x for got, _ in results for x in got)
    errors = sum(len(e) for _, e in results)
    pick = (lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]) if latencies else (
        lambda q: float("nan"))
    return {"tracks": n, "rps": len(latencies) / elapsed, "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "errors": errors, "rss_before_mib": before, "rss_after_mib": after}


def _wait_answering(port: int, ident: int, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited:\n{log.read_text(errors='replace')}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/api/similar_tracks?item_id={ident}&n=1")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the daemon did not answer within 600 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    rows = [run_size(int(n), args.clients, args.seconds) for n in args.sizes.split(",")]
    print(f"{args.clients} concurrent clients, similar_tracks n=20, {args.seconds:g} s per size")
    print(f"{'tracks':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'RSS before':>11} "
          f"{'RSS after':>10}")
    for r in rows:
        print(f"{r['tracks']:>8,} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>7} "
              f"{r['rss_before_mib']:>9.0f} MiB {r['rss_after_mib']:>7.0f} MiB")


if __name__ == "__main__":
    main()
