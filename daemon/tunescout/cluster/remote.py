"""The worker side: one zygote per Dask worker process, and the task that analyses one file.

A worker plugin (registered by the submitter, so every worker, also one that joins later, gets
the submitter's analyser) starts the zygote from the worker's event-loop thread: that thread
lives as long as the process, so the zygote's parent-death signal fires only when the worker
process itself dies, and takes the zygote's children with it. The task runs in a Dask thread
but only waits: the analysis runs in the zygote's forked, rlimited child, with the same budget,
CPU limit, deadline and thread settings as at home, and one task at a time uses the zygote.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from tunescout import protocol
from tunescout.cluster.outcome import Refusal, RemoteOutcome, RemoteRequest
from tunescout.cluster.paths import PathMap
from tunescout.errors import ProtocolError
from tunescout.workers.lines import LineReader
from tunescout.workers.memory import read_memory
from tunescout.workers.verdict import decode_returncode
from tunescout.workers.zygote_client import ZygoteHandle

PLUGIN_NAME = "tunescout-zygote"
READY_WAIT_S = 300.0  # librosa and numba with a cold cache: ~19 s here, minutes on a Pi
MEMORY_WAIT_S = 30.0  # then the file goes back to the submitter, not failed
# What Dask's nanny puts into its workers' environment (distributed.nanny.pre-spawn-environ)
# that a zygote at home does not have: MALLOC_TRIM_THRESHOLD_=65536 pins glibc's mmap threshold,
# so every large numpy temporary becomes an mmap and a munmap; analysis measured 20-60 % slower
# with it (bench/cluster.py). The thread variables are set by child_env either way.
NANNY_ENV = ("MALLOC_TRIM_THRESHOLD_",)


def library_problem(roots: tuple[str, ...], path_map: PathMap) -> str:
    """Return why this machine cannot analyse the library ("" when it can).

    An empty folder counts as missing: it is what an unmounted mount point looks like.
    """
    for root in roots:
        local = path_map.local(Path(root))
        where = f"{local} (the server's {root})" if str(local) != root else str(local)
        if not local.is_dir():
            return (f"library folder {where} is not on this worker; mount it, or start the worker "
                    f"with --path-map {root}=WHERE_IT_IS_HERE")
        if not os.access(local, os.R_OK | os.X_OK):
            return f"library folder {where} is not readable by uid {os.getuid()}"
        try:
            with os.scandir(local) as entries:
                if next(entries, None) is None:
                    return f"library folder {where} is empty here (not mounted?)"
        except OSError as exc:
            return f"library folder {where} cannot be listed: {exc.strerror}"
    return ""


def check_worker(roots: tuple[str, ...]) -> str:
    """Run on each worker (Client.run) before it is sent work."""
    return library_problem(roots, PathMap.from_env(os.environ))


@dataclass
class _Child:
    """What one task saw of its child, as the supervisor's Batch does for a local one."""

    batch: str
    reader: LineReader | None  # the result pipe, once spawned
    deadline: float
    lines: list[bytes] = field(default_factory=list)
    exit_status: int | None = None
    maxrss_kb: int = 0
    pid: int | None = None
    started: bool = False
    started_at: float = 0.0
    reported: bool = False
    timed_out: bool = False
    garbage: str | None = None
    term_at: float | None = None
    kill_sent: bool = False

    @property
    def eof(self) -> bool:
        return self.reader is None or self.reader.eof


class Host:
    """This worker process's zygote; one task at a time asks it for a child."""

    def __init__(self, analyser: str) -> None:
        self.analyser = analyser
        self.lock = threading.Lock()
        self.zygote: ZygoteHandle | None = None
        self.start_failed: str | None = None
        self._counter = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in NANNY_ENV}
        self.zygote = ZygoteHandle(self.analyser, env)

    def stop(self) -> None:
        if self.zygote is not None:
            self.zygote.stop()
            self.zygote = None

    def _ensure_ready(self) -> str:
        """Return why the zygote cannot serve ("" when it is ready)."""
        if self.start_failed:
            return self.start_failed
        if self.zygote is None:
            self.start()
        assert self.zygote is not None
        deadline = time.monotonic() + READY_WAIT_S
        while not self.zygote.ready:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.zygote.fileno()], [], [], left)[0]:
                return f"the analysis zygote was not ready after {READY_WAIT_S:.0f} s"
            messages, gone = self.zygote.receive()
            for message in messages:
                if isinstance(message, protocol.Ready):
                    self.zygote.ready = True
                elif isinstance(message, protocol.StartFailed):
                    self.start_failed = f"the analysis stack cannot start: {message.message}"
            if gone:
                code = self.zygote.proc.wait()
                self.zygote.sock.close()
                self.zygote = None
                return self.start_failed or f"the analysis zygote {decode_returncode(code)}"
        return ""

    def run(self, path: Path, request: RemoteRequest, worker: str, address: str) -> RemoteOutcome:
        """Analyse one file in a child of the zygote; return its lines and how it ended."""
        why = self._ensure_ready()
        if why:
            return RemoteOutcome(worker, address, refused=Refusal.STACK, why=why)
        assert self.zygote is not None
        self._counter += 1
        now = time.monotonic()
        child = _Child(f"{os.getpid()}-{self._counter}", None, now + request.start_allowance_s)
        child.reader = LineReader(self.zygote.spawn(child.batch, [path], request.budget_bytes,
                                                    request.cpu_s))
        while not (child.eof and child.exit_status is not None):
            self._wait(child, request)
        return RemoteOutcome(
            worker, address, lines=tuple(child.lines), exit_status=child.exit_status,
            maxrss_kb=child.maxrss_kb, started=child.started, timed_out=child.timed_out,
            garbage=child.garbage, child_pid=child.pid,
            on_current_s=time.monotonic() - child.started_at if child.started else 0.0)

    def _wait(self, child: _Child, request: RemoteRequest) -> None:
        fds = [] if child.reader is None or child.reader.eof else [child.reader.fd]
        if self.zygote is not None:
            fds.append(self.zygote.fileno())
        due = child.term_at + request.grace_s if child.term_at is not None else child.deadline
        readable = select.select(fds, [], [], max(0.0, min(1.0, due - time.monotonic())))[0]
        if child.reader is not None and child.reader.fd in readable and not child.reader.eof:
            self._read(child, child.reader, request)
        if self.zygote is not None and self.zygote.fileno() in readable:
            self._hear_zygote(child)
        now = time.monotonic()
        if child.exit_status is not None:
            return
        if child.term_at is None and now >= child.deadline and not child.reported:
            child.timed_out = True
            self._terminate(child, now)
        elif child.term_at is not None and not child.kill_sent and now >= child.term_at + request.grace_s:
            if self.zygote is not None:
                self.zygote.kill(child.batch, signal.SIGKILL)
            child.kill_sent = True

    def _read(self, child: _Child, reader: LineReader, request: RemoteRequest) -> None:
        found = reader.read()
        for line in found.lines:
            self._line(child, line, request)
        if found.too_long:
            self._garbage(child, "a result line longer than the protocol allows")

    def _line(self, child: _Child, line: bytes, request: RemoteRequest) -> None:
        if child.garbage:
            return  # after garbage nothing this child says can be trusted
        try:
            message = protocol.result_from_wire(line)
            if message.index != 0 or child.reported:
                raise ProtocolError(f"unexpected file index {message.index}")
        except ProtocolError as exc:
            self._garbage(child, str(exc))
            return
        child.lines.append(line)
        if isinstance(message, protocol.FileStarted):
            child.started, child.started_at = True, time.monotonic()
            child.deadline = child.started_at + request.allowance_s
        else:
            child.reported = True

    def _garbage(self, child: _Child, why: str) -> None:
        child.garbage = why
        self._terminate(child, time.monotonic())

    def _terminate(self, child: _Child, now: float) -> None:
        if child.term_at is None and self.zygote is not None:
            self.zygote.kill(child.batch, signal.SIGTERM)
            child.term_at = now

    def _hear_zygote(self, child: _Child) -> None:
        assert self.zygote is not None
        messages, gone = self.zygote.receive()
        for message in messages:
            if isinstance(message, protocol.Spawned) and message.batch == child.batch:
                child.pid = message.pid
            elif isinstance(message, protocol.Exited) and message.batch == child.batch:
                child.exit_status, child.maxrss_kb = message.status, message.maxrss_kb
        if gone:  # its children die with it (parent-death signal), as at home
            self.zygote.proc.wait()
            self.zygote.sock.close()
            self.zygote = None
            if child.exit_status is None:
                child.exit_status = signal.SIGKILL


_host: Host | None = None


class ZygotePlugin(WorkerPlugin):  # type: ignore[misc]  # Any where distributed is absent
    """Start this worker process's zygote with the submitter's analyser; stop it at teardown."""

    name = PLUGIN_NAME

    def __init__(self, analyser: str) -> None:
        self.analyser = analyser

    def setup(self, worker: Any) -> None:
        global _host
        if _host is not None:
            _host.stop()
        _host = Host(self.analyser)
        _host.start()

    def teardown(self, worker: Any) -> None:
        global _host
        if _host is not None:
            _host.stop()
            _host = None


def _memory_ok(request: RemoteRequest) -> bool:
    """Wait (bounded) until this machine has room for one more child and the gate's floor."""
    deadline = time.monotonic() + MEMORY_WAIT_S
    while read_memory().available_bytes < request.budget_bytes + request.min_available_bytes:
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)
    return True


def analyse_remote(request: RemoteRequest) -> RemoteOutcome:
    """The Dask task: check the library here, then analyse one file in a child of the zygote."""
    address = get_worker().address
    worker = f"{socket.gethostname()}:{os.getpid()}"
    host = _host
    if host is None:
        return RemoteOutcome(worker, address, refused=Refusal.STACK,
                             why="the tunescout worker plugin is not set up on this worker")
    path_map = PathMap.from_env(os.environ)
    why = library_problem(request.roots, path_map)
    if why:
        return RemoteOutcome(worker, address, refused=Refusal.NO_LIBRARY, why=why)
    local = path_map.local(Path(request.path))
    if not local.exists():
        return RemoteOutcome(worker, address, refused=Refusal.MISSING,
                             why=f"{local} is not on this worker (yet)")
    if not _memory_ok(request):
        return RemoteOutcome(worker, address, refused=Refusal.MEMORY,
                             why=f"less than {request.budget_bytes + request.min_available_bytes} "
                                 f"bytes available for {MEMORY_WAIT_S:.0f} s")
    with host.lock:
        return host.run(local, request, worker, address)
