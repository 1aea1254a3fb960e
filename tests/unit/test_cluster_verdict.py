"""The cluster's plain parts, without Dask: the path map, the scheduler address, the verdict on
a remote child (same facts, same words as at home; a first death retries, a second quarantines)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tunescout import protocol
from tunescout.cluster.outcome import RemoteOutcome
from tunescout.cluster.paths import PathMap
from tunescout.cluster.results import judge_remote, killed_workers_verdict
from tunescout.config import scheduler_address
from tunescout.models import FailureKind, Job
from tunescout.workers.verdict import Action

BUDGET = 768 * 2**20
PATH = Path("/srv/music/a.flac")


def test_a_path_map_maps_the_longest_prefix_and_leaves_other_paths() -> None:
    mapping = PathMap.parse(["/srv/music=/mnt/music", "/srv/music/classical=/mnt/classical/"])
    assert mapping.local(Path("/srv/music/pop/x.mp3")) == Path("/mnt/music/pop/x.mp3")
    assert mapping.local(Path("/srv/music/classical/y.flac")) == Path("/mnt/classical/y.flac")
    assert mapping.local(Path("/srv/musical/z.mp3")) == Path("/srv/musical/z.mp3")
    assert mapping.local(Path("/srv/music")) == Path("/mnt/music")
    assert PathMap.from_env({"TUNESCOUT_PATH_MAP": mapping.to_env()}) == mapping
    assert PathMap.from_env({}) == PathMap()


@pytest.mark.parametrize("spec", ["/srv/music", "music=/mnt", "/srv=mnt", "=/mnt"])
def test_a_path_map_that_is_not_one_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="SERVER_FOLDER=LOCAL_FOLDER"):
        PathMap.parse([spec])


@pytest.mark.parametrize(("value", "address"), [
    ("tcp://192.0.2.7:8786", "tcp://192.0.2.7:8786"), ("nas.local:8786", "tcp://nas.local:8786"),
    ("tls://[2001:db8::1]:8786", "tls://[2001:db8::1]:8786")])
def test_scheduler_addresses(value: str, address: str) -> None:
    assert scheduler_address(value) == address


@pytest.mark.parametrize("value", ["", "tcp://host", "udp://host:1", "host:99999", 8786])
def test_scheduler_addresses_refused(value: object) -> None:
    with pytest.raises(ValueError):
        scheduler_address(value)


def _job(solo: bool = False) -> Job:
    return Job(PATH, 0, solo, 1 if solo else 0)


def _started() -> bytes:
    return protocol.encode_message(protocol.FileStarted(0, PATH)).rstrip(b"\n")


def test_a_result_line_is_the_result() -> None:
    failed = protocol.encode_message(protocol.FileFailed(0, PATH, FailureKind.DECODE, "bad"))
    outcome = RemoteOutcome("w", "tcp://w", lines=(_started(), failed.rstrip(b"\n")), exit_status=0,
                            started=True)
    verdict, final = judge_remote(outcome, _job(), BUDGET)
    assert verdict.action is Action.NOTHING
    assert isinstance(final, protocol.FileFailed) and final.kind is FailureKind.DECODE


def test_a_first_death_retries_the_file_and_a_second_quarantines_it_in_the_words_of_home() -> None:
    outcome = RemoteOutcome("w", "tcp://w", lines=(_started(),), exit_status=signal.SIGSEGV,
                            maxrss_kb=15000, started=True)
    first, _ = judge_remote(outcome, _job(), BUDGET)
    second, _ = judge_remote(outcome, _job(solo=True), BUDGET)
    assert first.action is Action.RETRY_ALONE
    assert second.action is Action.QUARANTINE and second.kind is FailureKind.SIGNAL
    assert second.reason == "child killed by SIGSEGV (peak RSS 15 MiB)" == first.reason


def test_a_remote_memory_death_and_timeout_are_named_as_at_home() -> None:
    memory = RemoteOutcome("w", "tcp://w", lines=(_started(),), exit_status=signal.SIGKILL,
                           maxrss_kb=BUDGET // 1024, started=True)
    verdict, _ = judge_remote(memory, _job(solo=True), BUDGET)
    assert verdict.kind is FailureKind.MEMORY and "768 MiB memory budget" in verdict.reason
    late = RemoteOutcome("w", "tcp://w", lines=(_started(),), exit_status=signal.SIGTERM,
                         started=True, timed_out=True, on_current_s=121.4)
    verdict, _ = judge_remote(late, _job(solo=True), BUDGET)
    assert (verdict.kind, verdict.reason) == (FailureKind.TIMEOUT, "timed out after 121 s")


def test_a_child_dead_before_its_file_is_not_the_files_fault() -> None:
    outcome = RemoteOutcome("w", "tcp://w", exit_status=signal.SIGKILL << 0)
    verdict, final = judge_remote(outcome, _job(solo=True), BUDGET)
    assert verdict.action is Action.EARLY_DEATH and final is None


def test_garbage_is_a_protocol_failure() -> None:
    outcome = RemoteOutcome("w", "tcp://w", lines=(_started(),), exit_status=signal.SIGTERM,
                            started=True, garbage="not a message: 'x'")
    verdict, _ = judge_remote(outcome, _job(solo=True), BUDGET)
    assert verdict.kind is FailureKind.PROTOCOL and "garbage" in verdict.reason


def test_a_file_that_kills_dask_workers_is_retried_then_quarantined() -> None:
    exc = RuntimeError("Attempted to run task on 3 different workers")
    assert killed_workers_verdict(_job(), exc).action is Action.RETRY_ALONE
    assert killed_workers_verdict(_job(solo=True), exc).action is Action.QUARANTINE
