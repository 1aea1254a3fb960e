"""A real Dask cluster on this machine: `dask scheduler` and `tunescout worker` as processes.

The scheduler listens on 127.0.0.1 on a port the kernel picks (`--port 0`) and writes its
address to a scheduler file; each `tunescout worker` is Dask's own worker command, one
process per worker, with the test analysers on its PYTHONPATH. Output goes to files (no
reader threads); everything started is stopped by pid at the end, the workers first.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from support.daemon import LogLine, parse_line
from support.processes import daemon_env, wait_for

TIMEOUT_S = 60.0
STOP_WAIT_S = 20.0  # a nanny waits up to 8 s for its worker to close before killing it


def needs_dask() -> None:
    if importlib.util.find_spec("distributed") is None:
        pytest.skip("Dask is not installed (the test extra brings dask[distributed])")


class Cluster:
    """A scheduler and any number of `tunescout worker` processes under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []
        file = root / "scheduler.json"
        with (root / "scheduler.log").open("wb") as log:
            self.scheduler = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=daemon_env())
        self.procs.append(self.scheduler)
        wait_for(lambda: file.exists() and file.stat().st_size > 0, TIMEOUT_S, what="the scheduler")
        self.address: str = json.loads(file.read_text())["address"]

    def add_worker(self, *args: str, nworkers: int = 1) -> subprocess.Popen[bytes]:
        """Start `tunescout worker ADDRESS --nworkers N ARGS` and wait until its workers joined."""
        log_path = self.root / f"worker-{len(self.workers)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tunescout", "worker", self.address, "--nworkers",
                 str(nworkers), *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=daemon_env())
        self.procs.append(proc)
        self.workers.append((proc, log_path))
        wait_for(lambda: log_path.read_text(errors="replace").count("Registered to:") >= nworkers
                 or proc.poll() is not None, TIMEOUT_S, what="the workers to join")
        assert proc.poll() is None, log_path.read_text(errors="replace")
        return proc

    def worker_processes(self) -> list[psutil.Process]:
        """Return the Dask worker processes (the nannies' children that run tasks)."""
        found = []
        for proc, _ in self.workers:
            for child in psutil.Process(proc.pid).children():
                found.append(child)
        return found

    def busy_worker(self) -> psutil.Process | None:
        """Return a worker process whose zygote has a child analysing a file now."""
        for worker in self.worker_processes():
            try:
                for zygote in worker.children():
                    if "tunescout.workers.zygote" in " ".join(zygote.cmdline()) and zygote.children():
                        return worker
            except psutil.NoSuchProcess:
                continue
        return None

    def stop_scheduler(self) -> None:
        self.scheduler.terminate()
        self.scheduler.wait(timeout=STOP_WAIT_S)

    def stop(self) -> None:
        """Stop the workers, then the scheduler; kill whatever does not stop in time."""
        for proc in [*(p for p, _ in self.workers), self.scheduler]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and psutil.Process().children(recursive=True):
            time.sleep(0.1)


def scan(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start `tunescout scan -v ARGS` as a process, its stderr in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "tunescout", "--config", str(config), "scan",
                                 "-v", *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=daemon_env())


def lines(log: Path) -> list[LogLine]:
    return [parsed for line in log.read_text(errors="replace").splitlines()
            if (parsed := parse_line(line))]


def events(log: Path, event: str) -> list[LogLine]:
    return [line for line in lines(log) if line.fields.get("EVENT") == event]
