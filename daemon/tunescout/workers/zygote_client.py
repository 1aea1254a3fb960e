"""The daemon's end of the zygote: start it, ask it to spawn or kill, read what it reports.

Its own module so that the supervisor holds batches and verdicts, not sockets, and so that a
benchmark or a test can drive a real zygote without a supervisor.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from tunescout import protocol

CHILD_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}
# systemd hands these to the main process only: a child must never notify or ping for us
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def child_env(base: Mapping[str, str]) -> dict[str, str]:
    """Return the environment of the zygote and its children: single-threaded maths, no sd_notify."""
    env = {k: v for k, v in base.items() if k not in _PRIVATE_ENV}
    env.update(CHILD_ENV)
    return env


class ZygoteHandle:
    """The daemon's end of the zygote: start it, ask it to spawn or kill, read what it says.

    `stderr` is where the zygote and its children write (the daemon's own stderr by default,
    so their tracebacks reach the journal); a test passes a file to read it.
    """

    def __init__(self, analyser: str, env: Mapping[str, str],
                 stderr: int | IO[bytes] | None = None) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = parent
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tunescout.workers.zygote", "--control-fd", str(child.fileno()),
             "--analyser", analyser],
            pass_fds=[child.fileno()], env=child_env(env), stdin=subprocess.DEVNULL, stderr=stderr,
        )
        child.close()
        self.ready = False
        self.started = time.monotonic()

    def fileno(self) -> int:
        return self.sock.fileno()

    def spawn(self, batch_id: str, paths: list[Path], budget_bytes: int, cpu_s: int,
              store: Path | None = None) -> int:
        """Ask for a child; return the read end of its result pipe."""
        read_fd, write_fd = os.pipe()
        try:
            message = protocol.encode_message(
                protocol.Spawn(batch_id, tuple(paths), budget_bytes, cpu_s, store))
            socket.send_fds(self.sock, [message], [write_fd])
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        return read_fd

    def kill(self, batch_id: str, sig: int) -> None:
        try:
            self.sock.send(protocol.encode_message(protocol.Kill(batch_id, int(sig))))
        except OSError:
            pass  # the zygote is gone; its children die with it (parent-death signal)

    def receive(self) -> tuple[list[protocol.Report], bool]:
        """Return the messages waiting on the socket, and whether the zygote has gone away."""
        messages: list[protocol.Report] = []
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return messages, False
            except OSError:
                return messages, True
            if not data:
                return messages, True
            messages.append(protocol.report_from_wire(data))

    def stop(self, timeout_s: float = 10.0) -> None:
        try:
            self.sock.send(protocol.encode_message(protocol.Exit()))
        except OSError:
            pass
        self.sock.close()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
