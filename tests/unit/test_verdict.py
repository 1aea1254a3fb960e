"""The verdict on a finished batch, every branch, without processes: wait statuses are built
the way the kernel packs them (a signal in the low 7 bits, an exit code in the next byte)."""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

import pytest

from tunescout.models import FailureKind
from tunescout.workers.verdict import (
    Action,
    BatchEnd,
    Verdict,
    decode_returncode,
    decode_wait_status,
    judge_batch,
)

MiB = 2**20
CLEAN = 0
SEGV = int(signal.SIGSEGV)
KILL = int(signal.SIGKILL)


def exited(code: int) -> int:
    return code << 8


# a three-file batch whose child died on its second file, with a 200 MiB budget
DIED_ON_B = BatchEnd(exit_status=SEGV, files=3, unreported=(1, 2), current=1, started=True,
                     stopping=False, timed_out=False, garbage=None, maxrss_kb=10 * 1024,
                     budget_bytes=200 * MiB, on_current_s=3.4)


def end(**changes: Any) -> BatchEnd:
    return dataclasses.replace(DIED_ON_B, **changes)


def test_a_batch_reported_in_full_needs_nothing() -> None:
    assert judge_batch(end(exit_status=CLEAN, unreported=(), current=None)) == Verdict(Action.NOTHING)


def test_a_child_we_stopped_leaves_its_files_queued() -> None:
    assert judge_batch(end(stopping=True)).action is Action.KEEP_QUEUED
    assert judge_batch(end(stopping=True, started=False)).action is Action.KEEP_QUEUED


@pytest.mark.parametrize(("changes", "words"), [
    ({"exit_status": exited(70)}, "exited with status 70"),
    ({"exit_status": KILL}, "killed by SIGKILL"),
    ({"timed_out": True}, "timed out"),
])
def test_a_child_dying_before_its_first_file_blames_no_file(changes: dict[str, object],
                                                            words: str) -> None:
    verdict = judge_batch(end(started=False, current=None, unreported=(0, 1, 2), **changes))
    assert verdict == Verdict(Action.EARLY_DEATH, reason=words)


def test_garbage_before_the_first_file_blames_the_first_file() -> None:
    verdict = judge_batch(end(started=False, current=None, unreported=(0, 1, 2), exit_status=KILL,
                              garbage="not a message: 'x'"))
    assert verdict == Verdict(Action.RETRY_ALONE, FailureKind.PROTOCOL,
                              "child wrote garbage on its result pipe: not a message: 'x'", 0)


def test_a_failed_exit_after_every_file_reported_blames_no_file() -> None:
    assert judge_batch(end(exit_status=exited(1), unreported=(), current=None)) == Verdict(Action.NOTHING)


def test_a_clean_exit_with_files_unreported_blames_the_first_of_them() -> None:
    verdict = judge_batch(end(exit_status=CLEAN, current=None, unreported=(2,)))
    assert verdict == Verdict(Action.RETRY_ALONE, FailureKind.SIGNAL,
                              "child exited with status 0 (peak RSS 10 MiB)", 2)


def test_a_signal_on_a_shared_file_retries_it_alone() -> None:
    verdict = judge_batch(DIED_ON_B)
    assert verdict == Verdict(Action.RETRY_ALONE, FailureKind.SIGNAL,
                              "child killed by SIGSEGV (peak RSS 10 MiB)", 1)


@pytest.mark.parametrize("changes", [{"files": 1, "unreported": (0,), "current": 0},
                                     {"solo": frozenset({1})}])
def test_a_file_that_kills_a_child_on_its_own_is_quarantined(changes: dict[str, object]) -> None:
    verdict = judge_batch(end(**changes))
    assert (verdict.action, verdict.kind) == (Action.QUARANTINE, FailureKind.SIGNAL)
    assert verdict.culprit == changes.get("current", 1)


def test_another_file_marked_solo_does_not_spare_the_culprit_a_retry() -> None:
    assert judge_batch(end(solo=frozenset({0, 2}))).action is Action.RETRY_ALONE


def test_a_deadline_is_a_timeout_with_the_time_on_the_file() -> None:
    verdict = judge_batch(end(timed_out=True, exit_status=int(signal.SIGTERM), on_current_s=121.6))
    assert (verdict.kind, verdict.reason) == (FailureKind.TIMEOUT, "timed out after 122 s")


def test_garbage_is_a_protocol_failure_unless_the_deadline_came_first() -> None:
    verdict = judge_batch(end(garbage="a result line longer than 4 MiB", exit_status=int(signal.SIGTERM)))
    assert verdict.kind is FailureKind.PROTOCOL
    assert verdict.reason == "child wrote garbage on its result pipe: a result line longer than 4 MiB"
    late = judge_batch(end(garbage="x", timed_out=True))
    assert (late.kind, late.reason) == (FailureKind.TIMEOUT, "child wrote garbage on its result pipe: x")


def test_a_signal_near_the_budget_is_memory() -> None:
    verdict = judge_batch(end(exit_status=KILL, maxrss_kb=190 * 1024))
    assert verdict.kind is FailureKind.MEMORY
    assert verdict.reason == "killed by SIGKILL after exceeding its 200 MiB memory budget"


@pytest.mark.parametrize(("changes", "reason"), [
    ({"exit_status": KILL, "maxrss_kb": 150 * 1024}, "child killed by SIGKILL (peak RSS 150 MiB)"),
    ({"exit_status": exited(70), "maxrss_kb": 190 * 1024}, "child exited with status 70 (peak RSS 190 MiB)"),
])
def test_memory_needs_both_a_signal_and_a_peak_near_the_budget(changes: dict[str, object],
                                                                reason: str) -> None:
    verdict = judge_batch(end(**changes))
    assert (verdict.kind, verdict.reason) == (FailureKind.SIGNAL, reason)


def test_the_kind_comes_from_the_facts_not_the_words() -> None:
    """Garbage that talks of memory is still garbage."""
    verdict = judge_batch(end(garbage="out of memory", maxrss_kb=1))
    assert verdict.kind is FailureKind.PROTOCOL


def test_wait_status_and_returncode_words() -> None:
    assert decode_wait_status(KILL) == "killed by SIGKILL"
    assert decode_wait_status(SEGV | 0x80) == "killed by SIGSEGV (core dumped)"
    assert decode_wait_status(exited(3)) == "exited with status 3"
    assert decode_wait_status(100) == "killed by signal 100"
    assert decode_wait_status(0x137f) == "stopped with wait status 4991"  # stopped by SIGSTOP
    assert decode_returncode(-9) == "killed by SIGKILL"
    assert decode_returncode(2) == "exited with status 2"
