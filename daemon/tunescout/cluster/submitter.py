"""The submitting end (the daemon or `scan`): a bounded window of one-file futures on a Dask cluster.

Only the main loop's thread touches the store: Dask's done-callbacks (in the client's thread)
only queue the future's key and wake the loop. A background thread connects, registers the
zygote plugin and checks each worker's view of the library, so a slow or absent scheduler never
blocks the loop. Nothing is taken off the durable queue until its result is written, so a
scheduler that goes away, or this process killed with `kill -9`, loses nothing: the files in
flight are simply still queued, and the local supervisor analyses them (`fallback`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Client, Future
from distributed.scheduler import KilledWorker

from tunescout.cluster.outcome import Refusal, RemoteOutcome, RemoteRequest
from tunescout.cluster.remote import PLUGIN_NAME, ZygotePlugin, analyse_remote, check_worker
from tunescout.cluster.results import Recorder, Sent, judge_remote, killed_workers_verdict
from tunescout.config import Config
from tunescout.models import FileIdentity, Job
from tunescout.store.writer import PRIORITY_NEW, StoreWriter
from tunescout.workers.supervisor import GRACE_S, START_ALLOWANCE_S, Progress
from tunescout.workers.verdict import Action

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
CHECK_EVERY_S = 3.0  # how often the worker list is compared with the checked one
RECONNECT_EVERY_S = 60.0  # the daemon tries a lost scheduler again
MAX_WINDOW = 512  # files in flight at most, whatever the cluster's size
TASK_ERRORS_FATAL = 3  # tasks in a row failing in Dask itself (not in a child): stop using it
SETTLE_S = CONNECT_TIMEOUT_S + 10.0  # the longest the backfill waits for the first worker check
EARLY_DEATHS_BAD = 3  # children in a row dying before their file on one worker: skip that worker


@dataclass
class _Flight:
    sent: Sent
    future: Future  # type: ignore[type-arg]  # generic only in recent distributed


class ClusterDispatcher:
    """Send queued files to a Dask cluster, a window at a time; write what comes back."""

    def __init__(self, config: Config, store: StoreWriter, progress: Progress, scheduler: str,
                 wake: Callable[[], None], *, backfill_only: bool, reconnect: bool) -> None:
        self.config = config
        self.store = store
        self.scheduler = scheduler
        self.wake = wake
        self.backfill_only = backfill_only  # the daemon: new arrivals are analysed at home first
        self.reconnect = reconnect
        self.recorder = Recorder(store, progress)
        self.job_source: Callable[[int, set[Path]], list[Job]] = store.next_jobs
        self.state = "connecting"  # connecting, running, lost
        self.why = ""
        self.client: Client | None = None
        self.good: dict[str, int] = {}  # checked worker address -> threads
        self.bad: dict[str, str] = {}  # worker address -> why it gets no work
        self.home_only: set[Path] = set()  # files the cluster cannot take: analysed locally
        self.analysed_here = 0  # results of the cluster written by this process
        self._flights: dict[str, _Flight] = {}
        self._done: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._task_errors = 0
        self._early: dict[str, int] = {}
        self._next_connect = 0.0
        self._settle_by = 0.0
        self._checked_once = False
        self._connect()

    # --- connection (a background thread) -----------------------------------------------------

    def _connect(self) -> None:
        self.state = "connecting"
        self._checked_once = False
        self._settle_by = time.monotonic() + SETTLE_S
        self._stop = threading.Event()
        threading.Thread(target=self._background, args=(self._stop,), name="cluster",
                         daemon=True).start()

    def _background(self, stop: threading.Event) -> None:
        try:
            client = Client(self.scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False,
                            name="tunescout")
        except (OSError, TimeoutError, ValueError) as exc:
            self._events.put(("failed", f"cannot reach the scheduler at {self.scheduler}: {exc}"))
            self.wake()
            return
        if stop.is_set():  # left (a reload) while connecting: nobody listens any more
            client.close()
            return
        try:
            client.register_plugin(ZygotePlugin(self.config.workers.analyser), name=PLUGIN_NAME)
        except (OSError, TimeoutError) as exc:
            self._events.put(("failed", f"cannot set up the workers: {exc}"))
            client.close()
            self.wake()
            return
        self._events.put(("connected", client))
        self.wake()
        checked: set[str] = set()
        checked_once = False
        roots = tuple(str(p) for p in self.config.library.paths)
        while not stop.is_set() and client.status == "running":
            try:
                workers = client.scheduler_info(n_workers=-1).get("workers", {})
                new = [a for a in workers if a not in checked]
                found = client.run(check_worker, roots, workers=new, on_error="return") if new else {}
            except (OSError, TimeoutError) as exc:
                self._events.put(("lost", f"the scheduler at {self.scheduler} went away ({exc})"))
                self.wake()
                return
            for address, why in found.items():
                checked.add(address)
                text = why if isinstance(why, str) else f"{type(why).__name__}: {why}"
                self._events.put(("worker", (address, int(workers[address].get("nthreads", 1)), text)))
            gone = checked - set(workers)
            if gone:
                checked -= gone
                self._events.put(("gone", gone))
            if found or gone or not checked_once:
                checked_once = True
                self._events.put(("checked", None))
                self.wake()
            stop.wait(CHECK_EVERY_S)

    def _hear(self) -> None:
        while True:
            try:
                what, value = self._events.get_nowait()
            except queue.Empty:
                return
            if what == "connected":
                self.client, self.state = value, "running"
                log.info("sending the backfill to the Dask scheduler at %s", self.scheduler,
                         extra={"EVENT": "cluster_connected", "SCHEDULER": self.scheduler})
            elif what in ("failed", "lost"):
                self._lose(value)
            elif what == "worker":
                self._worker_checked(*value)
            elif what == "checked":
                self._checked_once = True
            elif what == "gone":
                for address in value:
                    self.good.pop(address, None)
                    self.bad.pop(address, None)

    def _worker_checked(self, address: str, threads: int, why: str) -> None:
        if why:
            self._refuse(address, why)
            return
        self.good[address] = threads
        log.info("cluster worker %s takes work (%d threads)", address, threads,
                 extra={"EVENT": "cluster_worker", "WORKER": address, "WORKERS": len(self.good)})

    def _refuse(self, address: str, why: str) -> None:
        self.good.pop(address, None)
        if self.bad.get(address) != why:
            log.warning("cluster worker %s gets no work: %s", address, why,
                        extra={"EVENT": "cluster_worker_refused", "WORKER": address, "REASON": why})
        self.bad[address] = why

    def _lose(self, why: str) -> None:
        """Stop using the cluster: its files in flight stay queued, the local children take over."""
        if self.state == "lost":
            return
        self.state, self.why = "lost", why
        log.warning("%s; analysing here instead (%d files in flight go back to the local queue)",
                    why, len(self._flights), extra={"EVENT": "cluster_lost", "SCHEDULER": self.scheduler})
        self._flights.clear()
        self.good.clear()
        self._stop.set()
        client, self.client = self.client, None
        if client is not None:  # closing may wait on a dead connection: not in the main loop
            threading.Thread(target=client.close, name="cluster-close", daemon=True).start()
        self._next_connect = time.monotonic() + RECONNECT_EVERY_S

    # --- the main loop's side ------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.state != "lost"

    def settling(self, now: float) -> bool:
        """True while the scheduler is being reached and its first workers checked (at most
        SETTLE_S): the daemon's own children then leave the backfill to the cluster, so that
        a start-up does not analyse at home what the cluster was configured to take."""
        if self.state == "lost" or self._checked_once:
            return False
        return now < self._settle_by

    def in_flight(self) -> set[Path]:
        return {f.sent.job.path for f in self._flights.values()}

    def busy(self) -> bool:
        return bool(self._flights)

    def summary(self) -> str:
        if self.state == "running":
            return f"cluster {len(self.good)} workers, {len(self._flights)} in flight"
        if self.state == "connecting":
            return f"cluster connecting to {self.scheduler}"
        return "cluster lost: analysing here"

    def poll(self, now: float) -> None:
        """Take connection news and finished futures; write their results."""
        self._hear()
        if self.state == "lost" and self.reconnect and now >= self._next_connect:
            self._connect()
        if self.client is not None and self.client.status not in ("running", "connecting"):
            self._lose(f"the connection to the scheduler at {self.scheduler} closed")
        while True:
            try:
                key = self._done.get_nowait()
            except queue.Empty:
                return
            flight = self._flights.pop(key, None)
            if flight is not None:
                self._finished(flight)

    def dispatch(self, now: float, exclude: set[Path]) -> int:
        """Fill the window with queued files; return how many were sent."""
        if self.state != "running" or not self.good or self.client is None:
            return 0
        room = min(MAX_WINDOW, max(2, 2 * sum(self.good.values()))) - len(self._flights)
        if room <= 0:
            return 0
        busy = exclude | self.in_flight() | self.home_only
        jobs = [j for j in self.job_source(room * 2, busy)
                if not (self.backfill_only and j.priority >= PRIORITY_NEW)][:room]
        for job in jobs:
            try:
                identity = FileIdentity.from_stat(os.stat(job.path))
            except OSError:
                self.home_only.add(job.path)  # the supervisor's own checks word it
                continue
            self._submit(job, identity)
        return len(jobs)

    def _submit(self, job: Job, identity: FileIdentity) -> None:
        assert self.client is not None
        w = self.config.workers
        allowance = w.timeout_s + identity.size / 1e6 * w.timeout_per_mb_s
        request = RemoteRequest(
            path=str(job.path), roots=tuple(str(p) for p in self.config.library.paths),
            budget_bytes=w.child_budget_bytes, cpu_s=int(allowance + START_ALLOWANCE_S),
            allowance_s=allowance, start_allowance_s=START_ALLOWANCE_S, grace_s=GRACE_S,
            min_available_bytes=self.config.memory.min_available_bytes)
        key = f"tunescout-analyse-{uuid.uuid4().hex}"
        future = self.client.submit(analyse_remote, request, key=key, pure=False,
                                    workers=list(self.good), allow_other_workers=True)
        self._flights[key] = _Flight(Sent(key, job, identity), future)
        future.add_done_callback(self._on_done(key))

    def _on_done(self, key: str) -> Callable[[object], None]:
        """Return the callback Dask runs in its own thread: it only queues the key and wakes us."""
        def done(_future: object) -> None:
            self._done.put(key)
            self.wake()
        return done

    def _finished(self, flight: _Flight) -> None:
        future, sent = flight.future, flight.sent
        status = future.status
        if status == "finished":
            self._task_errors = 0
            self._settle(sent, future.result())
        elif status == "cancelled":
            self._lose(f"the scheduler at {self.scheduler} went away")
        else:
            exc = future.exception()
            if isinstance(exc, KilledWorker):
                self.recorder.verdict(sent, killed_workers_verdict(sent.job, exc), None)
            else:
                self._task_errors += 1
                log.error("cluster task for %s failed in Dask: %s: %s", sent.job.path,
                          type(exc).__name__, exc, extra={"EVENT": "cluster_error",
                                                          "TRACK_PATH": str(sent.job.path)})
                if self._task_errors >= TASK_ERRORS_FATAL:
                    self._lose(f"{self._task_errors} cluster tasks in a row failed in Dask "
                               f"(last: {type(exc).__name__}: {exc})")
        future.release()

    def _settle(self, sent: Sent, outcome: RemoteOutcome) -> None:
        if outcome.refused is not None:
            if outcome.refused in (Refusal.NO_LIBRARY, Refusal.STACK):
                self._refuse(outcome.address, outcome.why)
            elif outcome.refused is Refusal.MISSING:
                self.home_only.add(sent.job.path)
            log.debug("%s refused %s: %s", outcome.worker, sent.job.path, outcome.why,
                      extra={"EVENT": "cluster_refused", "TRACK_PATH": str(sent.job.path)})
            return  # the file stays queued
        verdict, final = judge_remote(outcome, sent.job, self.config.workers.child_budget_bytes)
        if final is not None:
            self._early.pop(outcome.address, None)
            self.analysed_here += 1
            self.recorder.result(sent, final, outcome)
        elif verdict.action is Action.EARLY_DEATH:
            deaths = self._early[outcome.address] = self._early.get(outcome.address, 0) + 1
            if deaths >= EARLY_DEATHS_BAD:
                self._refuse(outcome.address, f"{deaths} analysis children in a row "
                             f"{verdict.reason} before their file")
        else:
            self.recorder.verdict(sent, verdict, outcome)

    def stop(self, *, wait: bool = True) -> None:
        """Forget the files in flight (they stay queued) and leave the cluster; `wait` False
        (a reload) leaves it from a thread of its own, so the main loop goes on at once."""
        self._stop.set()
        if self.client is not None:
            futures = [f.future for f in self._flights.values()]
            self._flights.clear()
            client, self.client = self.client, None

            def leave() -> None:
                try:
                    client.cancel(futures)
                    client.close(timeout=5)
                except (OSError, TimeoutError):
                    pass

            if wait:
                leave()
            else:
                threading.Thread(target=leave, name="cluster-close", daemon=True).start()
