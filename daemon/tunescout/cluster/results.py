"""A remote child's outcome at home: its result lines recorded, its death judged as a local one's.

No Dask here. The lines are parsed by the same protocol functions as a local child's pipe, and a
child that died is judged by the same `judge_batch` from the same facts, with one difference
that the issue asks for: a remote child runs one file, and its first death on a machine at home
cannot tell the file from that machine, so the file is first retried alone (as a file that
killed a shared batch is at home) and quarantined only when it kills a child a second time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunescout import protocol
from tunescout.cluster.outcome import RemoteOutcome
from tunescout.errors import ProtocolError
from tunescout.models import FailureKind, FileIdentity, Job
from tunescout.store.writer import StoreWriter
from tunescout.workers.supervisor import Progress
from tunescout.workers.verdict import Action, BatchEnd, Verdict, judge_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sent:
    """A file in flight on the cluster: the job and its identity when it was sent."""

    key: str
    job: Job
    identity: FileIdentity


def judge_remote(outcome: RemoteOutcome, job: Job, budget_bytes: int) -> tuple[Verdict,
                                                                             protocol.Result | None]:
    """Return the verdict on a remote child, and its final line (a result or failure) if any."""
    final: protocol.Result | None = None
    garbage = outcome.garbage
    for line in outcome.lines:
        try:
            message = protocol.result_from_wire(line)
        except ProtocolError as exc:  # the worker checked them; a mangled one is garbage here too
            garbage = garbage or str(exc)
            break
        if not isinstance(message, protocol.FileStarted):
            final = message
    status = outcome.exit_status if outcome.exit_status is not None else 0
    end = BatchEnd(exit_status=status, files=1, unreported=() if final else (0,),
                   current=0 if outcome.started and final is None else None, started=outcome.started,
                   stopping=False, timed_out=outcome.timed_out, garbage=garbage,
                   maxrss_kb=outcome.maxrss_kb, budget_bytes=budget_bytes,
                   solo=frozenset({0}) if job.solo else frozenset(), on_current_s=outcome.on_current_s)
    verdict = judge_batch(end)
    if verdict.action is Action.QUARANTINE and not job.solo:
        verdict = Verdict(Action.RETRY_ALONE, verdict.kind, verdict.reason, verdict.culprit)
    return verdict, final


def killed_workers_verdict(job: Job, exc: BaseException) -> Verdict:
    """A file whose task took Dask worker processes down with it (Dask's KilledWorker)."""
    reason = f"killed the Dask worker processes that analysed it ({exc})"
    action = Action.QUARANTINE if job.solo else Action.RETRY_ALONE
    return Verdict(action, FailureKind.SIGNAL, reason, 0)


class Recorder:
    """Write what the cluster did through the one StoreWriter, with the lines a local child gets."""

    def __init__(self, store: StoreWriter, progress: Progress) -> None:
        self.store = store
        self.progress = progress

    def result(self, sent: Sent, message: protocol.Result, outcome: RemoteOutcome) -> None:
        job, where = sent.job, self._where(sent, outcome)
        if isinstance(message, protocol.FileAnalysed):
            if not _unchanged(job.path, sent.identity):
                log.info("%s changed during analysis; it will be analysed again", job.path,
                         extra={"EVENT": "changed", "TRACK_PATH": str(job.path)})
                return
            self.store.record_analysis(job.path, sent.identity, message.analysis)
            self.progress.analysed += 1
            tempo = next((g.values.get("tempo_bpm") for g in message.analysis.features
                          if g.name == "rhythm"), None)
            log.info("analysed %s on %s", job.path, outcome.worker, extra={
                "EVENT": "analysed", "TRACK_PATH": str(job.path), **where,
                "DURATION_MS": message.duration_ms, "PEAK_RSS_KB": message.peak_rss_kb,
                "TEMPO_BPM": tempo, "FEATURES_REUSED": 0})
        elif isinstance(message, protocol.FileFailed):
            self.failure(sent, message.kind, message.reason, quarantine=False, where=where,
                         extra={"DURATION_MS": message.duration_ms, "PEAK_RSS_KB": message.peak_rss_kb})

    def verdict(self, sent: Sent, verdict: Verdict, outcome: RemoteOutcome | None) -> None:
        """Act on a child's death (or a task's): retry the file alone, or quarantine it."""
        job = sent.job
        where = self._where(sent, outcome)
        if verdict.action is Action.RETRY_ALONE:
            self.store.mark_solo(job.path)
            log.info("%s: %s on %s; retrying that file alone", where["WORKER"], verdict.reason,
                     job.path, extra={"EVENT": "retry_alone", "TRACK_PATH": str(job.path),
                                      "ERROR_KIND": verdict.kind, **where})
        elif verdict.action is Action.QUARANTINE:
            assert verdict.kind is not None
            self.failure(sent, verdict.kind, verdict.reason, quarantine=True, where=where,
                         extra={"PEAK_RSS_KB": outcome.maxrss_kb if outcome else None})

    def failure(self, sent: Sent, kind: FailureKind, reason: str, *, quarantine: bool,
                where: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.store.record_failure(sent.job.path, sent.identity, kind, reason, quarantine=quarantine)
        if quarantine:
            self.progress.quarantined += 1
        else:
            self.progress.failed += 1
        fields = {"EVENT": "quarantined" if quarantine else "failed", "TRACK_PATH": str(sent.job.path),
                  "ERROR_KIND": kind, **where, **(extra or {})}
        if quarantine:
            log.warning("quarantined %s: %s", sent.job.path, reason, extra=fields)
        else:
            log.warning("failed %s: %s: %s", sent.job.path, kind, reason, extra=fields)

    @staticmethod
    def _where(sent: Sent, outcome: RemoteOutcome | None) -> dict[str, Any]:
        return {"BATCH_ID": sent.key, "WORKER": outcome.worker if outcome else "cluster",
                "CHILD_PID": outcome.child_pid if outcome else None}


def _unchanged(path: Path, identity: FileIdentity) -> bool:
    try:
        return FileIdentity.from_stat(os.stat(path)) == identity
    except OSError:
        return False
