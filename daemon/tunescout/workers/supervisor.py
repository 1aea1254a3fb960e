"""Batches, children, deadlines, reaping and retries; the only writer of analysis results."""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tunescout import protocol
from tunescout.config import Config
from tunescout.errors import ProtocolError
from tunescout.models import FailureKind, FileIdentity, Job
from tunescout.store.writer import StoreWriter
from tunescout.units import format_size
from tunescout.workers.lines import LineReader
from tunescout.workers.pending import PendingWrites
from tunescout.workers.verdict import Action, BatchEnd, decode_returncode, judge_batch
from tunescout.workers.zygote_client import ZygoteHandle

log = logging.getLogger(__name__)

START_ALLOWANCE_S = 30.0  # from spawn to the first file's start message
GRACE_S = 5.0  # from SIGTERM to SIGKILL
EARLY_DEATHS_FATAL = 3  # children in a row dying before their first file stop the analysis


@dataclass
class Batch:
    """One child's work: the jobs, their identities at dispatch, and what came back so far."""

    id: str
    jobs: list[Job]
    identities: list[FileIdentity]
    reader: LineReader  # the child's result pipe
    spawned_at: float
    deadline: float
    pid: int | None = None
    current: int | None = None  # index of the file in progress
    current_since: float = 0.0
    reported: set[int] = field(default_factory=set)
    exit_status: int | None = None
    maxrss_kb: int = 0
    timed_out: bool = False
    term_sent_at: float | None = None
    kill_sent: bool = False  # SIGKILL asked for; only the zygote's exit report is awaited
    garbage: str | None = None  # what the child wrote that is not a result
    stopping: bool = False  # stopped by us at shutdown: not the files' fault
    started: bool = False  # the child reached its first file

    @property
    def read_fd(self) -> int:
        return self.reader.fd

    @property
    def eof(self) -> bool:
        return self.reader.eof


@dataclass
class Progress:
    """What the supervisor did since start, for the status line and the summary log."""

    analysed: int = 0
    failed: int = 0
    quarantined: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Supervisor:
    """Turn queued jobs into batches for children, and their results into database rows."""

    def __init__(self, config: Config, store: StoreWriter, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.store = store
        self.env = dict(os.environ if env is None else env)
        self.zygote: ZygoteHandle | None = None
        self.batches: dict[str, Batch] = {}
        self.progress = Progress()
        self.fatal: str | None = None  # the analysis stack cannot start: why
        self._batch_counter = 0
        self._zygote_failures = 0
        self._early_deaths = 0  # children in a row that died before their first file
        self._replace_zygote = False  # the analyser changed: a new zygote once batches finish
        self.pending = PendingWrites()  # results the database did not take yet
        # where jobs come from: the whole queue for the daemon, the named files for `scan`
        self.job_source: Callable[[int, set[Path]], list[Job]] = store.next_jobs
        self.lazy = False  # start the zygote only once `job_source` has a job for it

    # --- zygote lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.zygote = ZygoteHandle(self.config.workers.analyser, self.env)
        log.info("starting the analysis zygote (pid %d)", self.zygote.proc.pid,
                 extra={"EVENT": "zygote_starting", "CHILD_PID": self.zygote.proc.pid})

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded configuration; a new analyser gets a new zygote, once the batches
        of the old one have finished (nothing is killed)."""
        old, self.config = self.config, config
        if config.workers.analyser != old.workers.analyser and self.zygote is not None:
            self._replace_zygote = True
            log.info("analyser changed to %s: the analysis zygote restarts when its %d running "
                     "batches finish", config.workers.analyser, len(self.batches),
                     extra={"EVENT": "zygote_replacing"})
            self._replace_idle_zygote()

    def _replace_idle_zygote(self) -> None:
        if self._replace_zygote and self.zygote is not None and not self.batches:
            self.zygote.stop()
            self.zygote = None
            self._replace_zygote = False
            if self.fatal is None:
                self.start()

    def clear_fatal(self) -> None:
        """Try the analysis again (on reload): a stopped analysis restarts its zygote."""
        self.fatal = None
        self._early_deaths = self._zygote_failures = 0

    @property
    def ready(self) -> bool:
        return self.zygote is not None and self.zygote.ready

    def fds(self) -> list[int]:
        fds = [b.read_fd for b in self.batches.values() if not b.eof]
        if self.zygote is not None:
            fds.append(self.zygote.fileno())
        return fds

    def _on_zygote_message(self, message: protocol.Report) -> None:
        match message:
            case protocol.Ready(warmup_ms=warmup_ms):
                assert self.zygote is not None
                self.zygote.ready = True
                self._zygote_failures = 0
                log.info("analysis zygote ready after %d ms", warmup_ms,
                         extra={"EVENT": "zygote_ready", "DURATION_MS": warmup_ms})
            case protocol.StartFailed(message=why):
                self.fatal = f"the analysis stack cannot start: {why}"
                log.error("%s", self.fatal, extra={"EVENT": "zygote_failed"})
            case protocol.Spawned(batch=batch_id, pid=pid):
                if (batch := self.batches.get(batch_id)) is not None:
                    batch.pid = pid
            case protocol.Exited(batch=batch_id, status=status, maxrss_kb=maxrss_kb):
                if (batch := self.batches.get(batch_id)) is not None:
                    batch.exit_status = status
                    batch.maxrss_kb = maxrss_kb

    def _zygote_lost(self, now: float) -> None:
        assert self.zygote is not None
        code = self.zygote.proc.wait()
        self._zygote_failures += 1
        why = f"was {decode_returncode(code)}" if code < 0 else decode_returncode(code)
        log.error("the analysis zygote %s; its children stopped", why,
                  extra={"EVENT": "zygote_lost", "CHILD_PID": self.zygote.proc.pid})
        self.zygote.sock.close()
        self.zygote = None
        for batch in self.batches.values():
            if batch.exit_status is None:
                batch.exit_status = signal.SIGKILL  # the parent-death signal killed it
        if self._zygote_failures >= 5:
            self.fatal = f"the analysis zygote died {self._zygote_failures} times in a row ({why})"
            log.error("%s", self.fatal, extra={"EVENT": "zygote_failed"})

    # --- the loop body ------------------------------------------------------------------------

    def poll(self, readable: set[int], now: float) -> None:
        """Read what children and the zygote said, enforce deadlines, finish batches."""
        self.pending.flush(now)
        if self.zygote is not None and self.zygote.fileno() in readable:
            messages, gone = self.zygote.receive()
            for message in messages:
                self._on_zygote_message(message)
            if gone:
                self._zygote_lost(now)
        for batch in list(self.batches.values()):
            if batch.read_fd in readable and not batch.eof:
                self._read(batch)
            self._check_deadline(batch, now)
            if batch.eof and batch.exit_status is not None:
                self._finish(batch)
        self._replace_idle_zygote()
        if self.zygote is None and self.fatal is None and not self.batches and self._wanted():
            self.start()

    def _wanted(self) -> bool:
        return not self.lazy or bool(self.job_source(1, self.in_flight()))

    def next_deadline(self) -> float | None:
        times = [b.term_sent_at + GRACE_S if b.term_sent_at else b.deadline
                 for b in self.batches.values() if not b.kill_sent]
        return min(times) if times else None

    def dispatch(self, workers: int, now: float) -> int:
        """Start batches until `workers` children run or the queue is empty; return how many."""
        if not self.ready or self.zygote is None or self.fatal or self._replace_zygote:
            return 0
        if not self.pending.flush(now):
            return 0  # no new work while results wait for the database (so they stay few)
        started = 0
        while len(self.batches) < workers:
            jobs = self._next_batch_jobs(workers)
            if not jobs:
                break
            self._spawn(jobs, now)
            started += 1
        return started

    def busy(self) -> bool:
        return bool(self.batches) or bool(self.pending)

    def in_flight(self) -> set[Path]:
        return {j.path for b in self.batches.values() for j in b.jobs}

    # --- batches ------------------------------------------------------------------------------

    def _batch_size(self, workers: int) -> int:
        size = self.config.workers.batch_size
        if workers <= 2:
            size = min(size, 3)
        queued = self.store.queue_length()
        return max(1, min(size, math.ceil(queued / max(1, workers))))

    def _next_batch_jobs(self, workers: int) -> list[tuple[Job, FileIdentity]]:
        size = self._batch_size(workers)
        chosen: list[tuple[Job, FileIdentity]] = []
        busy = self.in_flight()
        for job in self.job_source(size * 4, busy):
            try:
                st = os.stat(job.path)
            except FileNotFoundError:
                self.pending.run(partial(self.store.remove_files, [job.path]))
                log.info("%s vanished before analysis", job.path,
                         extra={"EVENT": "removed", "TRACK_PATH": str(job.path)})
                continue
            except OSError as exc:
                self.pending.run(partial(self.store.record_failure, job.path, None, FailureKind.IO,
                                    f"cannot stat: {exc.strerror}", quarantine=False))
                continue
            identity = FileIdentity.from_stat(st)
            alone = job.solo or identity.size > self.config.workers.large_file_bytes
            if alone:
                if chosen:
                    continue  # it gets a batch of its own next time
                return [(job, identity)]
            chosen.append((job, identity))
            if len(chosen) >= size:
                break
        return chosen

    def _allowance_s(self, identity: FileIdentity) -> float:
        w = self.config.workers
        return w.timeout_s + identity.size / 1e6 * w.timeout_per_mb_s

    def _spawn(self, chosen: list[tuple[Job, FileIdentity]], now: float) -> None:
        assert self.zygote is not None
        self._batch_counter += 1
        batch_id = f"{os.getpid()}-{self._batch_counter}"
        jobs = [j for j, _ in chosen]
        identities = [i for _, i in chosen]
        cpu_s = int(sum(self._allowance_s(i) for i in identities) + START_ALLOWANCE_S)
        read_fd = self.zygote.spawn(batch_id, [j.path for j in jobs],
                                    self.config.workers.child_budget_bytes, cpu_s, self.store.path)
        self.batches[batch_id] = Batch(batch_id, jobs, identities, LineReader(read_fd), now,
                                       deadline=now + START_ALLOWANCE_S + self._allowance_s(identities[0]))
        log.debug("batch %s: %d files", batch_id, len(jobs), extra={"BATCH_ID": batch_id})

    def _read(self, batch: Batch) -> None:
        found = batch.reader.read()
        for line in found.lines:
            self._handle_line(batch, line)
        if found.too_long:
            self._protocol_error(batch, f"a result line longer than {format_size(protocol.MAX_LINE_BYTES)}")

    def _handle_line(self, batch: Batch, line: bytes) -> None:
        if batch.garbage:
            return  # after garbage nothing this child says can be trusted
        try:
            message = protocol.result_from_wire(line)
            if not 0 <= message.index < len(batch.jobs) or message.index in batch.reported:
                raise ProtocolError(f"unexpected file index {message.index}")
        except ProtocolError as exc:
            self._protocol_error(batch, str(exc))
            return
        index = message.index
        if isinstance(message, protocol.FileStarted):
            now = time.monotonic()
            batch.started = True
            self._early_deaths = 0
            batch.current, batch.current_since = index, now
            batch.deadline = now + self._allowance_s(batch.identities[index])
            return
        batch.reported.add(index)
        batch.current = None
        job, identity = batch.jobs[index], batch.identities[index]
        if isinstance(message, protocol.FileAnalysed):
            self._record_ok(batch, job, identity, message)
        else:
            self._record_failure(batch, job, identity, message.kind, message.reason, quarantine=False,
                                 extra={"DURATION_MS": message.duration_ms,
                                        "PEAK_RSS_KB": message.peak_rss_kb})

    def _protocol_error(self, batch: Batch, why: str) -> None:
        """A child that writes garbage is stopped; its current file is treated as the culprit."""
        log.warning("batch %s: child wrote garbage (%s); stopping it", batch.id, why,
                    extra={"EVENT": "protocol_error", "BATCH_ID": batch.id, "CHILD_PID": batch.pid})
        if batch.current is None:
            pending = [i for i in range(len(batch.jobs)) if i not in batch.reported]
            batch.current = pending[0] if pending else None
        batch.garbage = why
        self._terminate(batch, time.monotonic())

    def _record_ok(self, batch: Batch, job: Job, identity: FileIdentity,
                   message: protocol.FileAnalysed) -> None:
        if not self._unchanged(job.path, identity):
            log.info("%s changed during analysis; it will be analysed again", job.path,
                     extra={"EVENT": "changed", "TRACK_PATH": str(job.path)})
            return  # stays queued; the watcher or the next reconcile sees the new version
        self.pending.run(partial(self._stored_ok, batch.id, batch.pid, job, identity, message))

    def _stored_ok(self, batch_id: str, pid: int | None, job: Job, identity: FileIdentity,
                   message: protocol.FileAnalysed) -> None:
        result = message.analysis
        self.store.record_analysis(job.path, identity, result)
        self.progress.analysed += 1
        tempo = next((g.values.get("tempo_bpm") for g in result.features if g.name == "rhythm"), None)
        if result.features_reused:
            how = " (features reused: same audio as an analysed recording)"
        elif result.features_kept:
            how = f" (recomputed {', '.join(g.name for g in result.features)}; kept the rest)"
        else:
            how = ""
        log.info("analysed %s%s", job.path, how, extra={
            "EVENT": "analysed", "TRACK_PATH": str(job.path), "BATCH_ID": batch_id,
            "CHILD_PID": pid, "DURATION_MS": message.duration_ms,
            "PEAK_RSS_KB": message.peak_rss_kb, "TEMPO_BPM": tempo,
            "FEATURES_REUSED": int(result.features_reused),
        })

    @staticmethod
    def _unchanged(path: Path, identity: FileIdentity) -> bool:
        try:
            return FileIdentity.from_stat(os.stat(path)) == identity
        except OSError:
            return False

    def _record_failure(self, batch: Batch, job: Job, identity: FileIdentity, kind: FailureKind,
                        reason: str,
                        *, quarantine: bool, extra: dict[str, Any] | None = None) -> None:
        fields = {"EVENT": "quarantined" if quarantine else "failed", "TRACK_PATH": str(job.path),
                  "ERROR_KIND": kind, "BATCH_ID": batch.id, "CHILD_PID": batch.pid, **(extra or {})}
        self.pending.run(partial(self._stored_failure, job, identity, kind, reason, quarantine, fields))

    def _stored_failure(self, job: Job, identity: FileIdentity, kind: FailureKind, reason: str,
                        quarantine: bool, fields: dict[str, Any]) -> None:
        self.store.record_failure(job.path, identity, kind, reason, quarantine=quarantine)
        if quarantine:
            self.progress.quarantined += 1
            log.warning("quarantined %s: %s", job.path, reason, extra=fields)
        else:
            self.progress.failed += 1
            log.warning("failed %s: %s: %s", job.path, kind, reason, extra=fields)

    # --- deadlines and endings ----------------------------------------------------------------

    def _check_deadline(self, batch: Batch, now: float) -> None:
        if batch.exit_status is not None:
            return
        if batch.term_sent_at is None and now >= batch.deadline:
            batch.timed_out = True
            self._terminate(batch, now)
        elif (batch.term_sent_at is not None and not batch.kill_sent
              and now >= batch.term_sent_at + GRACE_S):
            if self.zygote is not None:
                self.zygote.kill(batch.id, signal.SIGKILL)
            batch.kill_sent = True

    def _terminate(self, batch: Batch, now: float) -> None:
        if batch.term_sent_at is None and self.zygote is not None:
            self.zygote.kill(batch.id, signal.SIGTERM)
            batch.term_sent_at = now

    def stop_all(self, now: float) -> None:
        """Stop every running child (SIGTERM, then SIGKILL after the grace); results the database
        still refuses are let go: their files stay queued and are analysed at the next start."""
        self.pending.drop()
        for batch in self.batches.values():
            batch.stopping = True
            self._terminate(batch, now)

    def _finish(self, batch: Batch) -> None:
        """The child is gone and its pipe drained: act on the verdict for what it did not report."""
        del self.batches[batch.id]
        verdict = judge_batch(self._ending(batch))
        if verdict.action is Action.EARLY_DEATH:
            self._died_before_any_file(batch, verdict.reason)
            return
        if verdict.action in (Action.NOTHING, Action.KEEP_QUEUED):
            return  # whatever is unreported stays queued for the next start
        assert verdict.culprit is not None and verdict.kind is not None
        job, identity = batch.jobs[verdict.culprit], batch.identities[verdict.culprit]
        if verdict.action is Action.RETRY_ALONE:
            self.pending.run(partial(self.store.mark_solo, job.path))
            log.info("batch %s: child %s on %s; retrying that file alone", batch.id, verdict.reason,
                     job.path, extra={"EVENT": "retry_alone", "TRACK_PATH": str(job.path),
                                      "BATCH_ID": batch.id, "ERROR_KIND": verdict.kind})
        else:
            self._record_failure(batch, job, identity, verdict.kind, verdict.reason, quarantine=True,
                                 extra={"PEAK_RSS_KB": batch.maxrss_kb})

    def _ending(self, batch: Batch) -> BatchEnd:
        """Return the facts a verdict is made of."""
        assert batch.exit_status is not None
        return BatchEnd(
            exit_status=batch.exit_status, files=len(batch.jobs),
            unreported=tuple(i for i in range(len(batch.jobs)) if i not in batch.reported),
            current=batch.current, started=batch.started, stopping=batch.stopping,
            timed_out=batch.timed_out, garbage=batch.garbage, maxrss_kb=batch.maxrss_kb,
            budget_bytes=self.config.workers.child_budget_bytes,
            solo=frozenset(i for i, job in enumerate(batch.jobs) if job.solo),
            on_current_s=time.monotonic() - batch.current_since,
        )

    def _died_before_any_file(self, batch: Batch, words: str) -> None:
        """A child that never reached a file is not the files' fault: they stay queued.

        A few in a row mean the analysis cannot run at all (a broken install, a budget too small
        to start): stop analysing and say why, rather than quarantine the library file by file.
        """
        self._early_deaths += 1
        log.warning("batch %s: the analysis child %s before its first file", batch.id, words,
                    extra={"EVENT": "child_failed", "BATCH_ID": batch.id, "CHILD_PID": batch.pid})
        if self._early_deaths >= EARLY_DEATHS_FATAL:
            self.fatal = (f"{self._early_deaths} analysis children in a row {words} before their "
                          "first file; see the journal, then reload or restart")
            log.error("%s", self.fatal, extra={"EVENT": "analysis_stopped"})
