"""What travels through Dask: a request for one file, and what became of it on the worker.

Plain frozen dataclasses (pickled by Dask, no Dask import here): the outcome carries the
child's own result lines, exactly as a local child writes them on its pipe, and the facts a
verdict is made of (its wait status, peak RSS, whether it started, timed out, wrote garbage),
so the one writer at home judges a remote child with the same `judge_batch` as a local one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class RemoteRequest:
    """Analyse one file (the server's path) with the server's limits."""

    path: str
    roots: tuple[str, ...]  # the server's library folders, to check on this worker first
    budget_bytes: int
    cpu_s: int
    allowance_s: float  # wall clock for the file, from its start line
    start_allowance_s: float  # from spawn to the start line
    grace_s: float  # from SIGTERM to SIGKILL
    min_available_bytes: int  # the worker machine's memory gate


class Refusal(StrEnum):
    """Why a worker did not run the file: not the file's fault, so it stays queued."""

    NO_LIBRARY = "no_library"  # the library is not at its (mapped) path on this worker
    MEMORY = "memory"  # the worker machine stayed short of memory
    STACK = "stack"  # the analysis stack cannot start on this worker
    MISSING = "missing"  # this one file is not (yet) there: it is analysed at home


@dataclass(frozen=True)
class RemoteOutcome:
    """What the worker's child did with the file, or why no child ran."""

    worker: str  # host and pid of the Dask worker process, for the log
    address: str  # the Dask worker's address, for the submitter's choice of workers
    lines: tuple[bytes, ...] = ()  # the child's result lines, as on a local pipe
    exit_status: int | None = None  # its wait status (os.wait4); None: no child ran
    maxrss_kb: int = 0
    started: bool = False
    timed_out: bool = False
    garbage: str | None = None
    on_current_s: float = 0.0
    child_pid: int | None = None
    refused: Refusal | None = None
    why: str = ""  # the words of a refusal
