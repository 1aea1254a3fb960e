"""The loop body that `run` and `scan` share, and the one-shot scan."""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tunescout.config import Config
from tunescout.lock import DatabaseLock
from tunescout.models import Job
from tunescout.store.writer import PRIORITY_NEW, StoreWriter
from tunescout.units import format_size
from tunescout.workers.memory import MemoryGate, MemoryReading, read_memory, worker_budget
from tunescout.workers.supervisor import Supervisor

if TYPE_CHECKING:
    from tunescout.cluster.submitter import ClusterDispatcher

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 60.0  # one progress line a minute while working
MEMORY_EVERY_S = 2.0


class Loop:
    """What `run` and `scan` share: the store, the supervisor, the memory gate, the wake pipe,
    and with `[workers] scheduler` the cluster that takes part of the queue.

    `scan` sends every file to the cluster and analyses here only what the cluster cannot take
    (or everything, once the scheduler is gone); the daemon analyses here as always, new
    arrivals first, while the cluster takes the backfill.
    """

    def __init__(self, config: Config, env: Mapping[str, str], *, scan: bool = False) -> None:
        self.config = config
        self.env = env
        self.scan = scan
        self.store = StoreWriter.open(config.store.path)
        self.supervisor = Supervisor(config, self.store, env)
        # where jobs come from: the whole queue for the daemon, the named files for `scan`
        self.job_source: Callable[[int, set[Path]], list[Job]] = self.store.next_jobs
        self.supervisor.job_source = self._local_jobs
        self.gate = MemoryGate(config.memory.min_available_bytes, config.memory.pause_above_percent,
                               config.memory.resume_below_percent)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.workers = 0
        self.memory: MemoryReading | None = None
        self._memory_at = 0.0
        self._progress_at, self._progress_base = time.monotonic(), (0, 0)
        self.cluster: ClusterDispatcher | None = None
        if config.workers.scheduler:
            self.cluster = self._join_cluster(config, config.workers.scheduler)
        # `scan --scheduler`: the local zygote (librosa, ~150 MB) only once a file stays home
        self.supervisor.lazy = scan and self.cluster is not None

    def _join_cluster(self, config: Config, scheduler: str) -> ClusterDispatcher:
        from tunescout.cluster.submitter import ClusterDispatcher  # only then is Dask imported

        cluster = ClusterDispatcher(config, self.store, self.supervisor.progress, scheduler, self.wake,
                                    backfill_only=not self.scan, reconnect=not self.scan)
        cluster.job_source = lambda limit, exclude: self.job_source(limit, exclude)
        return cluster

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded configuration; a `[workers] scheduler` added, removed or changed (or a
        new analyser for its workers) leaves the old cluster and joins the new one. The files in
        flight there stay queued: the local children or the new cluster take them."""
        old, self.config = self.config, config
        self.supervisor.reconfigure(config)
        before, after = old.workers.scheduler, config.workers.scheduler
        if (before, old.workers.analyser) == (after, config.workers.analyser):
            if self.cluster is not None:
                self.cluster.config = config
            return
        in_flight = 0
        if self.cluster is not None:
            in_flight = len(self.cluster.in_flight())
            self.cluster.stop(wait=False)  # a dead scheduler must not hold the main loop
            self.cluster = None
        if after:
            self.cluster = self._join_cluster(config, after)
        if before == after:
            what = f"analyser changed: joining the scheduler at {after} again"
        elif not before:
            what = f"scheduler added: sending the backfill to {after}"
        elif not after:
            what = f"scheduler {before} removed: analysing here"
        else:
            what = f"scheduler changed from {before} to {after}"
        log.info("%s (%d files in flight stay queued)", what, in_flight,
                 extra={"EVENT": "cluster_reconfigured", "SCHEDULER": after or "", "IN_FLIGHT": in_flight})

    def _local_jobs(self, limit: int, exclude: set[Path]) -> list[Job]:
        """Jobs for the local children: not those on the cluster; in a scan only those the
        cluster cannot take, while it is there."""
        cluster = self.cluster
        if cluster is None or not cluster.active:
            return self.job_source(limit, exclude)
        exclude = exclude | cluster.in_flight()
        if not self.scan:
            jobs = self.job_source(limit, exclude)
            if cluster.settling(time.monotonic()):  # new arrivals only, until the cluster is there
                jobs = [j for j in jobs if j.priority >= PRIORITY_NEW]
            return jobs
        if not cluster.home_only:
            return []
        jobs = self.job_source(limit + len(cluster.home_only) + 1000, exclude)
        return [j for j in jobs if j.path in cluster.home_only][:limit]

    def in_flight(self) -> set[Path]:
        """Files being analysed, here or on the cluster."""
        cluster = self.cluster.in_flight() if self.cluster is not None else set()
        return self.supervisor.in_flight() | cluster

    def busy(self) -> bool:
        return self.supervisor.busy() or (self.cluster is not None and self.cluster.busy())

    def stop_analysis(self, now: float) -> None:
        """Stop the local children (SIGTERM, then SIGKILL) and leave the cluster: what was in
        flight stays queued."""
        self.supervisor.stop_all(now)
        if self.cluster is not None:
            self.cluster.stop()

    def wake(self) -> None:
        """Wake the main loop from another thread or a signal handler."""
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # already awake

    def wait(self, timeout_s: float | None) -> set[int]:
        """Sleep until a descriptor is readable or the timeout passes; return the readable ones.

        A fresh poll set each time: result pipes are closed and their numbers reused, which a
        long-lived epoll registration would silently miss.
        """
        poller = select.poll()
        for fd in [self._wake_r, *self.supervisor.fds()]:
            poller.register(fd, select.POLLIN)
        timeout_ms = None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999))
        ready = {fd for fd, _ in poller.poll(timeout_ms)}
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        return ready

    def check_memory(self, now: float, *, force: bool = False) -> None:
        """Read memory, move the gate, and size the worker pool; log every change with figures."""
        if not force and now - self._memory_at < MEMORY_EVERY_S:
            return
        self._memory_at = now
        self.memory = reading = read_memory()
        if self.gate.update(reading):
            figures = {"MEM_AVAILABLE_BYTES": reading.available_bytes,
                       "MEM_USED_PERCENT": round(reading.used_percent, 1), "MEM_SOURCE": reading.source}
            if self.gate.paused_reason:
                log.warning("pausing analysis: %s", self.gate.paused_reason,
                            extra={"EVENT": "paused", **figures})
            else:
                log.info("resuming analysis: %s available (%.0f %% used)",
                         format_size(reading.available_bytes), reading.used_percent,
                         extra={"EVENT": "resumed", **figures})
        w = self.config.workers
        workers = 0 if self.gate.paused_reason else worker_budget(
            reading, max_workers=w.max_workers, child_budget_bytes=w.child_budget_bytes,
            reserve_bytes=self.config.memory.reserve_bytes)
        if workers != self.workers:
            log.info("workers: %d (%s available, %s per child)", workers,
                     format_size(reading.available_bytes), format_size(w.child_budget_bytes),
                     extra={"EVENT": "workers", "WORKERS": workers,
                            "MEM_AVAILABLE_BYTES": reading.available_bytes})
            self.workers = workers

    def step(self, readable: set[int], now: float, *, dispatch: bool) -> None:
        self.supervisor.poll(readable, now)
        if self.cluster is not None:
            self.cluster.poll(now)
            if dispatch:
                self.cluster.dispatch(now, self.supervisor.in_flight())
        if dispatch and self.supervisor.ready:
            self.check_memory(now)
            self.supervisor.dispatch(self.workers, now)

    def log_progress(self, now: float) -> None:
        """Log one line per minute while working, so a backfill does not flood the journal."""
        progress = self.supervisor.progress
        done = (progress.analysed, progress.failed + progress.quarantined)
        if now - self._progress_at < PROGRESS_EVERY_S or done == self._progress_base:
            return
        analysed, failed = done[0] - self._progress_base[0], done[1] - self._progress_base[1]
        self._progress_base, self._progress_at = done, now
        logging.getLogger("tunescout.service").info(
            "progress: %d analysed, %d failed in the last minute; %d queued", analysed, failed,
            self.store.queue_length(), extra={"EVENT": "progress", "ANALYSED": analysed, "FAILED": failed})

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        if self.supervisor.zygote is not None:
            self.supervisor.zygote.stop()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.store.close()


def run_scan(config: Config, targets: list[Path], env: Mapping[str, str],
             on_progress: Callable[[int, int, int], None]) -> tuple[int, int, list[Path]]:
    """Analyse the given files once, without watching; return (analysed, failed, not recorded).

    Raises DatabaseBusy when a daemon (or another scan) writes to the database: it analyses
    the library itself, and two writers would analyse the same files twice.
    """
    with DatabaseLock(config.store.path, "scan"):
        return _scan(config, targets, env, on_progress)


def _scan(config: Config, targets: list[Path], env: Mapping[str, str],
          on_progress: Callable[[int, int, int], None]) -> tuple[int, int, list[Path]]:
    loop = Loop(config, env, scan=True)
    try:
        loop.store.enqueue(targets, PRIORITY_NEW)
        pending = {p: None for p in targets}  # ordered set of files not yet recorded
        interrupted: list[int] = []
        old = signal.signal(signal.SIGINT, lambda s, f: interrupted.append(s))
        old_term = signal.signal(signal.SIGTERM, lambda s, f: interrupted.append(s))
        signal.set_wakeup_fd(loop._wake_w, warn_on_full_buffer=False)

        def source(limit: int, exclude: set[Path]) -> list[Job]:
            queued = {j.path: j for j in loop.store.next_jobs(len(pending) + 1, exclude)}
            return [queued[p] for p in pending if p in queued][:limit]

        loop.job_source = source
        if not loop.supervisor.lazy:  # else its first poll that finds a job for it starts it
            loop.supervisor.start()
        total = len(targets)
        stop_at: float | None = None
        while pending:
            now = time.monotonic()
            readable = loop.wait(1.0)
            now = time.monotonic()
            if interrupted and stop_at is None:
                stop_at = now
                loop.stop_analysis(now)
            loop.step(readable, now, dispatch=stop_at is None)
            queued = loop.store.queued_paths()
            in_flight = loop.in_flight()
            for path in [p for p in pending if os.fsencode(p) not in queued and p not in in_flight]:
                del pending[path]
            progress = loop.supervisor.progress
            on_progress(total - len(pending), total, progress.failed + progress.quarantined)
            cluster_on = loop.cluster is not None and loop.cluster.active
            if (loop.supervisor.fatal and not cluster_on) or (stop_at is not None and not loop.busy()):
                break
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
        progress = loop.supervisor.progress
        return progress.analysed, progress.failed + progress.quarantined, list(pending)
    finally:
        signal.set_wakeup_fd(-1)
        loop.close()
