"""The zygote: imports the analysis stack once, then forks one rlimited child per batch.

Started by the supervisor with fork+exec (`python -m tunescout.workers.zygote`), so the threaded daemon is
never forked. It is single-threaded: one select loop over its control socket and SIGCHLD.
Control messages (protocol.Control) arrive on a SOCK_SEQPACKET socket; a `Spawn` carries the
write end of the batch's result pipe as an SCM_RIGHTS descriptor. When the daemon's end of the
socket is gone (it stopped, even during our warm-up), the zygote kills its children and exits
quietly: there is nobody left to report to, and a traceback would only alarm the journal.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import inspect
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tunescout import protocol
from tunescout.errors import AnalysisError, ProtocolError, StoreError
from tunescout.models import FailureKind, TrackAnalysis
from tunescout.store.reader import StoreReader

_PR_SET_PDEATHSIG = 1
_result_fd: int | None = None

Analyser = Callable[..., TrackAnalysis]  # (path[, stored_groups=...]) -> TrackAnalysis


def result_fd() -> int | None:
    """Return the result pipe of this child (a documented seam for test analysers)."""
    return _result_fd


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def vm_size_bytes() -> int:
    """Return this process's virtual size (VmSize), the base of its RLIMIT_AS."""
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def load_analyser(spec: str) -> tuple[Analyser, Callable[[], None] | None]:
    """Import "module:function" and the module's optional `warm_up`."""
    module_name, _, func_name = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name), getattr(module, "warm_up", None)


# --- the child ---------------------------------------------------------------------------------


def _write(fd: int, message: protocol.Result) -> None:
    data = protocol.encode_message(message)
    while data:
        data = data[os.write(fd, data):]


def _peak_rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _feature_lookup(analyse: Analyser,
                    store_path: Path | None) -> Callable[[str], frozenset[str]] | None:
    """Return "which of this recording's groups are stored at current versions?" when both
    sides can."""
    if store_path is None or "stored_groups" not in inspect.signature(analyse).parameters:
        return None
    try:
        store = StoreReader.open(store_path)
    except StoreError:
        return None  # no database yet: nothing to reuse
    return store.current_groups


def _analyse_one(analyse: Analyser, index: int, path: Path, limit_bytes: int,
                 stored_groups: Callable[[str], frozenset[str]] | None) -> protocol.Result:
    started = time.monotonic()
    try:
        result = analyse(path, stored_groups=stored_groups) if stored_groups else analyse(path)
    except AnalysisError as exc:
        kind, reason = exc.kind, exc.reason
    except MemoryError as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1].name if exc.__traceback__ else "?"
        kind = FailureKind.MEMORY
        reason = (f"MemoryError in {where} (memory budget: address space limited to "
                  f"{limit_bytes // 2**20} MiB, peak RSS {_peak_rss_kb() // 1024} MiB)")
    except Exception as exc:  # a per-file loop must survive anything: one failure row per file
        kind, reason = FailureKind.INTERNAL, f"{type(exc).__name__}: {exc}"
    else:
        return protocol.FileAnalysed(index, path, result, _elapsed_ms(started), _peak_rss_kb())
    return protocol.FileFailed(index, path, kind, reason, _elapsed_ms(started), _peak_rss_kb())


def _elapsed_ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


def run_child(fd: int, paths: list[Path], budget_bytes: int, cpu_s: int, analyse: Analyser,
              store_path: Path | None = None) -> None:
    """Analyse a batch inside the forked child, one result line per file, then exit.

    With `store_path`, an analyser that takes `stored_groups` may skip computing the features
    of a recording already analysed (a tag edit, a copy, a delete and re-add: same digest), or
    compute only the groups whose version was raised since.
    """
    global _result_fd
    _result_fd = fd
    os.setpgid(0, 0)
    set_parent_death_signal(signal.SIGKILL)
    limit = vm_size_bytes() + budget_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    stored_groups = _feature_lookup(analyse, store_path)
    for index, path in enumerate(paths):
        _write(fd, protocol.FileStarted(index, path))
        message = _analyse_one(analyse, index, path, limit, stored_groups)
        try:
            _write(fd, message)
        except ValueError as exc:  # NaN or an unserialisable value from the analyser
            _write(fd, protocol.FileFailed(index, path, FailureKind.INTERNAL,
                                           f"result not serialisable: {exc}"))


# --- the zygote loop ---------------------------------------------------------------------------


class Zygote:
    def __init__(self, sock: socket.socket, analyse: Analyser) -> None:
        self.sock = sock
        self.analyse = analyse
        self.children: dict[int, str] = {}  # pid -> batch id

    def send(self, message: protocol.Report) -> None:
        """Report to the daemon; raise ConnectionError (BrokenPipeError) when it is gone."""
        self.sock.send(protocol.encode_message(message))

    def spawn(self, message: protocol.Spawn, fds: list[int]) -> None:
        if len(fds) != 1:
            raise ProtocolError("spawn needs exactly one result pipe")
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                self.sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                run_child(fds[0], list(message.paths), message.budget_bytes, message.cpu_s,
                          self.analyse, message.store)
            except BaseException:  # report anything, then leave without running atexit hooks
                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)
        os.close(fds[0])
        try:
            os.setpgid(pid, pid)  # as the child does: its group exists before any killpg of ours
        except OSError:
            pass  # the child got there first, or is already gone
        self.children[pid] = message.batch
        self.send(protocol.Spawned(message.batch, pid))

    def reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            batch = self.children.pop(pid, None)
            if batch is not None:
                self.send(protocol.Exited(batch, pid, status, usage.ru_maxrss))

    def kill(self, message: protocol.Kill) -> None:
        for pid, batch in self.children.items():
            if batch == message.batch:
                try:
                    os.killpg(pid, message.signal)
                except ProcessLookupError:
                    pass

    def kill_all(self) -> None:
        for pid in self.children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while self.children:
            pid, _ = os.wait()
            self.children.pop(pid, None)

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while True:
            readable, _, _ = select.select([self.sock.fileno(), wake_r], [], [])
            if wake_r in readable:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
                self.reap()
            if self.sock.fileno() in readable:
                data, fds, _, _ = socket.recv_fds(self.sock, 65536, 4)
                if not data:
                    self.kill_all()
                    return
                match protocol.control_from_wire(data):
                    case protocol.Spawn() as spawn:
                        self.spawn(spawn, fds)
                    case protocol.Kill() as kill:
                        self.kill(kill)
                    case protocol.Exit():
                        self.kill_all()
                        return
            self.reap()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunescout-zygote")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--analyser", required=True)
    args = parser.parse_args(argv)
    set_parent_death_signal(signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the daemon, which stops us
    sock = socket.socket(fileno=args.control_fd)
    started = time.monotonic()
    try:
        analyse, warm_up = load_analyser(args.analyser)
        if warm_up is not None:
            warm_up()
    except Exception as exc:  # tell the supervisor why the analysis stack cannot start
        try:
            sock.send(protocol.encode_message(protocol.StartFailed(f"{type(exc).__name__}: {exc}")))
        except ConnectionError:
            pass  # the daemon is gone too: nobody to tell
        return 1
    gc.collect()
    gc.freeze()  # keep the warm heap out of the collector so children share its pages
    zygote = Zygote(sock, analyse)
    try:
        zygote.send(protocol.Ready(os.getpid(), _elapsed_ms(started)))
        zygote.serve()
    except ConnectionError:  # the daemon stopped (during our warm-up, or it was killed)
        zygote.kill_all()
    return 0


if __name__ == "__main__":
    # run the imported module, not this __main__ copy, so that analysers see one `result_fd`
    from tunescout.workers import zygote as _zygote

    sys.exit(_zygote.main())
