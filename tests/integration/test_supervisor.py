"""The supervisor with a real zygote and real children running the test analysers."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from support.config import cheap_sections
from support.processes import daemon_env
from tunescout.config import parse_config
from tunescout.loop import run_scan
from tunescout.store.reader import StoreReader
from tunescout.workers.verdict import decode_wait_status
from tunescout.workers.zygote_client import child_env


def _config(tmp_path: Path, **workers: Any) -> Any:
    return parse_config(cheap_sections(tmp_path / "music", tmp_path / "t.db", workers=workers),
                        env={})


def _files(tmp_path: Path, *names: str) -> list[Path]:
    folder = tmp_path / "music"
    folder.mkdir(exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        path.write_bytes(os.urandom(2000))
        paths.append(path)
    return paths


def _scan(tmp_path: Path, paths: list[Path], **workers: Any) -> tuple[int, int, list[Path], StoreReader]:
    config = _config(tmp_path, **workers)
    analysed, failed, missed = run_scan(config, paths, daemon_env(), lambda *a: None)
    return analysed, failed, missed, StoreReader.open(config.store.path)


def _failure(store: StoreReader, path: Path) -> dict[str, Any]:
    detail = store.file_detail(path)
    assert detail is not None and detail.failure is not None, detail
    return asdict(detail.failure)


def test_siblings_of_a_segfaulting_file_are_analysed(tmp_path: Path) -> None:
    paths = _files(tmp_path, "a.mp3", "b-segv.mp3", "c.mp3", "d.mp3")
    analysed, failed, missed, store = _scan(tmp_path, paths, batch_size=4, max_workers=1)
    assert (analysed, failed, missed) == (3, 1, [])
    failure = _failure(store, paths[1])
    assert failure["kind"] == "signal"
    assert "SIGSEGV" in failure["reason"]
    assert failure["quarantined"] is True
    for path in (paths[0], paths[2], paths[3]):
        assert store.file_detail(path).state == "analysed"  # type: ignore[union-attr]


def test_hanging_file_times_out_and_is_quarantined(tmp_path: Path) -> None:
    paths = _files(tmp_path, "a-hang.mp3", "b.mp3")
    analysed, failed, missed, store = _scan(tmp_path, paths, timeout="1 s", timeout_per_mb="0 s",
                                            max_workers=1)
    assert (analysed, failed, missed) == (1, 1, [])
    failure = _failure(store, paths[0])
    assert failure["kind"] == "timeout"
    assert failure["reason"].startswith("timed out after")


def test_a_child_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    paths = _files(tmp_path, "a-stubborn.mp3", "b.mp3")
    analysed, failed, missed, store = _scan(tmp_path, paths, timeout="1 s", timeout_per_mb="0 s",
                                            max_workers=2, batch_size=1)
    assert (analysed, failed, missed) == (1, 1, [])
    failure = _failure(store, paths[0])
    assert failure["kind"] == "timeout" and failure["quarantined"] is True


def test_memory_hog_is_stopped_by_its_budget(tmp_path: Path) -> None:
    paths = _files(tmp_path, "x-hog.mp3", "y.mp3")
    analysed, failed, missed, store = _scan(tmp_path, paths, child_budget="200 MiB")
    assert (analysed, failed, missed) == (1, 1, [])
    failure = _failure(store, paths[0])
    assert failure["kind"] == "memory"
    assert "MiB" in failure["reason"]


def test_garbage_on_the_pipe_costs_one_failure(tmp_path: Path) -> None:
    paths = _files(tmp_path, "a.mp3", "b-garbage.mp3", "c.mp3")
    analysed, failed, missed, store = _scan(tmp_path, paths, batch_size=3, max_workers=1)
    assert (analysed, failed, missed) == (2, 1, [])
    failure = _failure(store, paths[1])
    assert failure["kind"] == "protocol"
    assert "garbage" in failure["reason"]


def test_decode_failure_is_recorded_not_quarantined(tmp_path: Path) -> None:
    paths = _files(tmp_path, "a-fail.mp3", "b.mp3")
    analysed, failed, missed, store = _scan(tmp_path, paths)
    assert (analysed, failed, missed) == (1, 1, [])
    failure = _failure(store, paths[0])
    assert (failure["kind"], failure["quarantined"]) == ("decode", False)
    assert failure["reason"] == "invalid data found when processing input"


def test_broken_analyser_stops_with_a_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = _files(tmp_path, "a.mp3")
    config = _config(tmp_path, analyser="no_such_module:analyse")
    with caplog.at_level(logging.ERROR, logger="tunescout"):
        analysed, failed, missed = run_scan(config, paths, daemon_env(), lambda *a: None)
    assert (analysed, failed, missed) == (0, 0, paths)
    reasons = [r.getMessage() for r in caplog.records if getattr(r, "EVENT", None) == "zygote_failed"]
    assert reasons == ["the analysis stack cannot start: "
                       "ModuleNotFoundError: No module named 'no_such_module'"]


def test_children_dying_before_any_file_blame_no_file(tmp_path: Path) -> None:
    paths = _files(tmp_path, "a.mp3", "b.mp3", "c.mp3")
    config = _config(tmp_path, analyser="support.analysers:broken_setup")
    analysed, failed, missed = run_scan(config, paths, daemon_env(), lambda *a: None)
    assert (analysed, failed, missed) == (0, 0, paths)  # stopped, nothing quarantined
    store = StoreReader.open(config.store.path)
    assert store.failures() == [] and store.queue_length() == 3


def test_wait_status_words() -> None:
    assert decode_wait_status(9) == "killed by SIGKILL"
    assert decode_wait_status(11 | 0x80) == "killed by SIGSEGV (core dumped)"
    assert decode_wait_status(3 << 8) == "exited with status 3"


def test_children_get_single_threaded_maths_and_no_notify_socket() -> None:
    env = child_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1", "PATH": "/bin"})
    assert "NOTIFY_SOCKET" not in env and "WATCHDOG_USEC" not in env
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["MALLOC_ARENA_MAX"] == "2"
    assert env["PATH"] == "/bin"


@pytest.mark.parametrize("workers", [1, 2])
def test_many_files_each_recorded_once(tmp_path: Path, workers: int) -> None:
    paths = _files(tmp_path, *(f"t{i:02d}.flac" for i in range(23)))
    analysed, failed, missed, store = _scan(tmp_path, paths, max_workers=workers)
    assert (analysed, failed, missed) == (23, 0, [])
    assert asdict(store.counts()) == {"files": 23, "analysed": 23, "failed": 0, "quarantined": 0, "queued": 0,
                                     "suspect": {}}
