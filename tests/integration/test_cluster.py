"""The backfill on a real Dask cluster: `dask scheduler` and `tunescout worker` processes here.

Every result is stored once, by the submitter; a poison file is retried alone and then
quarantined with the words a local child's death gets; a worker killed mid-file has its file
rescheduled; a scheduler that goes away leaves the rest to the local children; a path map is
followed, and a worker without the library gets no work and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from support.cluster import Cluster, events, scan
from support.daemon import Library
from support.processes import daemon_env, wait_for
from tunescout.store.reader import StoreReader

TIMEOUT_S = 120.0


def _fill(library: Library, healthy: int, *poison: str, prefix: str = "t") -> list[Path]:
    """Drop files an hour old: a daemon started now finds a backfill, not files still being
    written (those settle first and count as new arrivals, which it analyses at home)."""
    paths = [library.drop(f"{prefix}{i:02d}.mp3", f"track {i}\n".encode()) for i in range(healthy)]
    paths += [library.drop(name) for name in poison]
    an_hour_ago = time.time() - 3600
    for path in paths:
        os.utime(path, (an_hour_ago, an_hour_ago))
    return paths


def _analysed(log: Path) -> Counter[str]:
    return Counter(line.fields["TRACK_PATH"] for line in events(log, "analysed"))


def _finish(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = TIMEOUT_S) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"scan did not finish:\n{log.read_text(errors='replace')}") from None


def test_scan_on_the_cluster_stores_every_result_once_and_quarantines_a_poison_file(
        library: Library, cluster: Cluster, tmp_path: Path) -> None:
    cluster.add_worker(nworkers=2)
    files = _fill(library, 8, "segv-one.mp3", "fail-one.mp3")
    log = tmp_path / "scan.log"
    code = _finish(scan(library.config, "--scheduler", cluster.address, str(library.music), log=log), log)
    text = log.read_text(errors="replace")
    assert code == 0, text
    analysed = _analysed(log)
    assert analysed == Counter({str(p): 1 for p in files[:8]}), text
    remote = [line for line in events(log, "analysed") if line.logger == "tunescout.cluster.results"]
    assert len(remote) == 8, "every file went to the cluster"
    retried = events(log, "retry_alone")
    assert [r.fields["TRACK_PATH"] for r in retried] == [str(files[8])]
    quarantined = events(log, "quarantined")
    assert [q.fields["TRACK_PATH"] for q in quarantined] == [str(files[8])]
    store = StoreReader.open(library.db)
    failures = {str(f.path): f for f in store.failures()}
    assert failures[str(files[8])].quarantined
    assert failures[str(files[8])].reason.startswith("child killed by SIGSEGV"), failures
    assert failures[str(files[9])].kind == "decode" and not failures[str(files[9])].quarantined
    counts = store.counts()
    assert (counts.analysed, counts.failed, counts.quarantined, counts.queued) == (8, 2, 1, 0)
    assert not events(log, "zygote_starting"), "no local zygote when every file went to the cluster"
    # the workers' zygotes run as at home: not with the malloc setting Dask's nanny adds
    zygotes = [z for w in cluster.worker_processes() for z in w.children()
               if "tunescout.workers.zygote" in " ".join(z.cmdline())]
    assert len(zygotes) == 2
    for zygote in zygotes:
        env = zygote.environ()
        assert "MALLOC_TRIM_THRESHOLD_" not in env and env["OPENBLAS_NUM_THREADS"] == "1"


def test_a_worker_killed_mid_file_has_that_file_rescheduled(
        library: Library, cluster: Cluster, tmp_path: Path) -> None:
    cluster.add_worker(nworkers=2)
    files = _fill(library, 6, prefix="slow")  # two seconds each
    log = tmp_path / "scan.log"
    proc = scan(library.config, "--scheduler", cluster.address, str(library.music), log=log)
    victim = wait_for(cluster.busy_worker, TIMEOUT_S, interval_s=0.05, what="a worker mid-file")
    victim.kill()  # SIGKILL the Dask worker process: its zygote and child die with it
    assert _finish(proc, log) == 0, log.read_text(errors="replace")
    assert _analysed(log) == Counter({str(p): 1 for p in files}), log.read_text(errors="replace")
    counts = StoreReader.open(library.db).counts()
    assert (counts.analysed, counts.failed, counts.queued) == (6, 0, 0)


def test_a_scheduler_that_goes_away_leaves_the_rest_to_local_analysis(
        library: Library, cluster: Cluster, tmp_path: Path) -> None:
    cluster.add_worker(nworkers=1)
    files = _fill(library, 6, prefix="slow")
    log = tmp_path / "scan.log"
    proc = scan(library.config, "--scheduler", cluster.address, str(library.music), log=log)
    wait_for(lambda: events(log, "analysed") or proc.poll() is not None, TIMEOUT_S,
             what="a first result from the cluster")
    cluster.stop_scheduler()
    assert _finish(proc, log) == 0, log.read_text(errors="replace")
    lost = events(log, "cluster_lost")
    assert len(lost) == 1 and "analysing here instead" in lost[0].message
    analysed = events(log, "analysed")
    assert Counter(line.fields["TRACK_PATH"] for line in analysed) == Counter({str(p): 1 for p in files})
    assert any(line.logger == "tunescout.workers.supervisor" for line in analysed), "local took over"
    assert StoreReader.open(library.db).counts().analysed == 6


def test_the_submitter_killed_loses_nothing(library: Library, cluster: Cluster, start_daemon,
                                            tmp_path: Path) -> None:
    """`kill -9` of a scan mid-run: the durable queue still holds every file not yet stored, and
    the daemon (on the same cluster) analyses exactly those."""
    cluster.add_worker(nworkers=1)
    files = _fill(library, 5, prefix="slow")
    first = tmp_path / "first.log"
    proc = scan(library.config, "--scheduler", cluster.address, str(library.music), log=first)
    wait_for(lambda: events(first, "analysed") or proc.poll() is not None, TIMEOUT_S,
             what="a first result")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = set(_analysed(first))
    assert 1 <= len(stored) < 5
    assert StoreReader.open(library.db).counts().queued == 5 - len(stored)
    library.sections["workers"]["scheduler"] = cluster.address
    library.write_config()
    daemon = start_daemon(library)
    daemon.wait_analysed(5, timeout_s=TIMEOUT_S)
    assert daemon.stop() == 0
    rest = Counter(line.fields["TRACK_PATH"] for line in daemon.events("analysed"))
    assert rest == Counter({str(p): 1 for p in files if str(p) not in stored}), daemon.log()
    assert StoreReader.open(library.db).counts().analysed == 5


def test_a_path_map_is_followed_and_a_worker_without_the_library_gets_nothing(
        library: Library, cluster: Cluster, tmp_path: Path) -> None:
    files = _fill(library, 4)
    mirror = tmp_path / "mirror"
    shutil.copytree(library.music, mirror)
    for path in mirror.iterdir():  # other bytes: the stored digest tells which copy was read
        path.write_bytes(b"mirrored " + path.read_bytes())
    empty = tmp_path / "not-mounted"
    empty.mkdir()
    cluster.add_worker("--path-map", f"{library.music}={mirror}", "--name", "mapped")
    cluster.add_worker("--path-map", f"{library.music}={empty}", "--name", "unmounted")
    log = tmp_path / "scan.log"
    assert _finish(scan(library.config, "--scheduler", cluster.address, str(library.music),
                        log=log), log) == 0
    refused = events(log, "cluster_worker_refused")
    assert len(refused) == 1 and "empty here (not mounted?)" in refused[0].fields["REASON"], \
        log.read_text(errors="replace")
    assert _analysed(log) == Counter({str(p): 1 for p in files})
    store = StoreReader.open(library.db)
    from support.analysers import fake_analysis

    for path in files:
        detail = store.file_detail(path)
        assert detail is not None
        assert detail.digest == fake_analysis(mirror / path.name).digest


def test_a_bad_path_map_is_refused_with_one_line(library: Library, tmp_path: Path) -> None:
    proc = library.cli("worker", "tcp://127.0.0.1:1", "--path-map", "music", check=False)
    assert proc.returncode == 2
    assert b"expected SERVER_FOLDER=LOCAL_FOLDER" in proc.stderr


def test_the_daemon_sends_its_backfill_to_the_cluster(library: Library, cluster: Cluster,
                                                       start_daemon, tmp_path: Path) -> None:
    cluster.add_worker(nworkers=2)
    files = _fill(library, 6)
    library.sections["workers"]["scheduler"] = cluster.address
    library.write_config()
    daemon = start_daemon(library)
    daemon.wait_analysed(6, timeout_s=TIMEOUT_S)
    analysed = daemon.events("analysed")
    assert sorted(line.fields["TRACK_PATH"] for line in analysed) == sorted(map(str, files))
    assert any("WORKER" in line.fields for line in analysed), daemon.log()
    status = library.json("status")
    assert status["analysed"] == 6 and status["daemon"]["cluster"].startswith("cluster 2 workers")
    assert daemon.stop() == 0


def test_real_audio_on_the_cluster(library: Library, cluster: Cluster, tmp_path: Path) -> None:
    """The real analyser (librosa) in a worker's zygote, once, end to end."""
    from support.audio import write_track

    cluster.add_worker(nworkers=1)
    track = write_track(library.music / "tone.flac", seconds=6.0, kind="drums", bpm=120.0)
    library.sections["workers"]["analyser"] = "tunescout.analysis:analyse_file"
    library.write_config()
    log = tmp_path / "scan.log"
    assert _finish(scan(library.config, "--scheduler", cluster.address, str(track), log=log),
                   log, timeout_s=280) == 0, log.read_text(errors="replace")
    detail = StoreReader.open(library.db).file_detail(track)
    assert detail is not None and detail.state == "analysed"
    assert 100 <= detail.features["rhythm"]["tempo_bpm"] <= 140
    assert [line.logger for line in events(log, "analysed")] == ["tunescout.cluster.results"]


def test_without_a_scheduler_dask_is_never_imported(library: Library) -> None:
    code = (
        "import sys\n"
        "from tunescout.config import load_config\n"
        "from tunescout.loop import Loop\n"
        "import tunescout.service, tunescout.cli.main\n"
        "loop = Loop(load_config(__import__('pathlib').Path(sys.argv[1])), {})\n"
        "loop.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(library.config)], capture_output=True,
                         text=True, env=daemon_env(), check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_a_scheduler_nobody_answers_falls_back_to_local(library: Library, tmp_path: Path) -> None:
    from support.cluster import needs_dask

    needs_dask()
    files = _fill(library, 3)
    log = tmp_path / "scan.log"
    # a port nothing listens on: the connection is refused at once
    assert _finish(scan(library.config, "--scheduler", "tcp://127.0.0.1:9", str(library.music),
                        log=log), log) == 0
    assert len(events(log, "cluster_lost")) == 1
    assert len(events(log, "zygote_starting")) == 1  # started once files stayed home
    assert _analysed(log) == Counter({str(p): 1 for p in files})


def test_a_reload_adds_changes_and_removes_the_scheduler(library: Library, cluster: Cluster,
                                                          start_daemon) -> None:
    """SIGHUP with `[workers] scheduler` added, changed (to one nobody answers) and removed: one
    line each, the files in flight stay queued, every file is stored once."""
    cluster.add_worker(nworkers=1)
    files = _fill(library, 12, prefix="slow")  # two seconds each, there at start: the backfill
    library.sections["workers"]["max_workers"] = 1
    library.write_config()
    daemon = start_daemon(library)
    daemon.wait_analysed(1, timeout_s=TIMEOUT_S)
    assert not any("WORKER" in line.fields for line in daemon.events("analysed"))

    def reload(scheduler: str | None, count: int) -> None:
        if scheduler is None:
            library.sections["workers"].pop("scheduler", None)
        else:
            library.sections["workers"]["scheduler"] = scheduler
        library.write_config()
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_event("cluster_reconfigured", count, timeout_s=TIMEOUT_S)

    reload(cluster.address, 1)
    wait_for(lambda: any("WORKER" in line.fields for line in daemon.events("analysed")), TIMEOUT_S,
             what="a file analysed on the cluster")
    wait_for(lambda: library.json("status")["daemon"]["cluster"].endswith("1 in flight")
             or library.json("status")["daemon"]["cluster"].endswith("2 in flight"), TIMEOUT_S,
             what="files in flight on the cluster")
    reload("tcp://127.0.0.1:9", 2)  # nothing listens there: lost at once, analysed here
    daemon.wait_for_event("cluster_lost", timeout_s=TIMEOUT_S)
    reload(None, 3)
    daemon.wait_analysed(len(files), timeout_s=TIMEOUT_S)
    said = [line.message for line in daemon.events("cluster_reconfigured")]
    assert said[0].startswith(f"scheduler added: sending the backfill to {cluster.address}")
    assert said[1].startswith(f"scheduler changed from {cluster.address} to tcp://127.0.0.1:9 (")
    assert int(daemon.events("cluster_reconfigured")[1].fields["IN_FLIGHT"]) >= 1
    assert said[2].startswith("scheduler tcp://127.0.0.1:9 removed: analysing here")
    analysed = Counter(line.fields["TRACK_PATH"] for line in daemon.events("analysed"))
    assert analysed == Counter({str(p): 1 for p in files}), daemon.log()
    status = library.json("status")
    assert status["analysed"] == len(files) and status["queued"] == 0
    assert status["daemon"]["cluster"] is None
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()
