"""What the end of a batch means: the words for an exit, and the verdict on a child that died.

Pure functions of what the supervisor knows when a batch's child is gone and its pipe drained,
so that every branch is tested without processes (tests/test_verdict.py), and the kind of a
failure is decided from the facts (a signal with the peak RSS near the budget), not read back
from the words of its reason.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from enum import Enum

from tunescout.models import FailureKind
from tunescout.units import format_size

# a child killed by a signal with its peak RSS above this share of its budget ran out of memory:
# RLIMIT_AS counts address space, so the RSS of a child stopped by it stays somewhat below
MEMORY_NEAR_BUDGET = 0.8


def decode_wait_status(status: int) -> str:
    """Return what a wait status means in words: "killed by SIGSEGV", "exited with status 3"."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}" + (" (core dumped)" if os.WCOREDUMP(status) else "")
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"stopped with wait status {status}"


def decode_returncode(code: int) -> str:
    """Return what a `Popen.returncode` means in the same words (-9: "killed by SIGKILL")."""
    return decode_wait_status(-code if code < 0 else code << 8)


class Action(Enum):
    """What the supervisor does about a finished batch."""

    NOTHING = "nothing"  # every file was reported, or no file is to blame
    KEEP_QUEUED = "keep_queued"  # we stopped it (shutdown): its files wait for the next start
    EARLY_DEATH = "early_death"  # died before its first file: not the files' fault
    RETRY_ALONE = "retry_alone"  # the culprit shared its batch: it is tried again on its own
    QUARANTINE = "quarantine"  # the culprit killed a child on its own: recorded, not retried


@dataclass(frozen=True)
class BatchEnd:
    """What is known about a batch once its child is gone (indices are positions in the batch)."""

    exit_status: int  # as wait4 gave it
    files: int
    unreported: tuple[int, ...]  # files with neither a result nor a failure line, in batch order
    current: int | None  # the file the child had started and not finished
    started: bool  # the child reached its first file
    stopping: bool  # stopped by us at shutdown
    timed_out: bool  # stopped by us at its deadline
    garbage: str | None  # what it wrote that is not a result (then we stopped it)
    maxrss_kb: int
    budget_bytes: int
    solo: frozenset[int] = frozenset()  # files already marked to run alone
    on_current_s: float = 0.0  # how long it had been on the current file


@dataclass(frozen=True)
class Verdict:
    """The supervisor's decision: what to do, and for RETRY_ALONE and QUARANTINE which file is
    to blame, with the kind and reason recorded for it (EARLY_DEATH's reason words the death)."""

    action: Action
    kind: FailureKind | None = None
    reason: str = ""
    culprit: int | None = None


def judge_batch(end: BatchEnd) -> Verdict:
    """Return what a finished batch means for its files.

    A child that catches its own MemoryError reports it on that file's result line (kind
    memory) and carries on; a verdict is about the children that did not report everything.
    """
    clean = os.WIFEXITED(end.exit_status) and os.WEXITSTATUS(end.exit_status) == 0
    if clean and not end.unreported:
        return Verdict(Action.NOTHING)
    if end.stopping:
        return Verdict(Action.KEEP_QUEUED)
    if not end.started and not end.garbage:
        words = "timed out" if end.timed_out else decode_wait_status(end.exit_status)
        return Verdict(Action.EARLY_DEATH, reason=words)
    culprit = end.current if end.current is not None else (end.unreported[0] if end.unreported else None)
    if culprit is None:
        return Verdict(Action.NOTHING)
    kind, reason = _blame(end)
    alone = end.files == 1 or culprit in end.solo
    return Verdict(Action.QUARANTINE if alone else Action.RETRY_ALONE, kind, reason, culprit)


def _blame(end: BatchEnd) -> tuple[FailureKind, str]:
    """Return the kind and the reason of a child's death on a file."""
    if end.garbage:  # a child past its deadline may still write garbage while it is stopped
        kind = FailureKind.TIMEOUT if end.timed_out else FailureKind.PROTOCOL
        return kind, f"child wrote garbage on its result pipe: {end.garbage}"
    if end.timed_out:
        return FailureKind.TIMEOUT, f"timed out after {end.on_current_s:.0f} s"
    words = decode_wait_status(end.exit_status)
    near_budget = end.maxrss_kb * 1024 > MEMORY_NEAR_BUDGET * end.budget_bytes
    if near_budget and os.WIFSIGNALED(end.exit_status):
        budget = format_size(end.budget_bytes)
        return FailureKind.MEMORY, f"{words} after exceeding its {budget} memory budget"
    return FailureKind.SIGNAL, f"child {words} (peak RSS {format_size(end.maxrss_kb * 1024)})"
