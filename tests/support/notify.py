"""The systemd side of sd_notify: a real AF_UNIX datagram socket reading what the daemon says,
with the sender's credentials (SO_PASSCRED), the way systemd does."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

START_TIMEOUT_S = 60.0  # a shared, noisy 2-core machine


@dataclass(frozen=True)
class Notification:
    fields: dict[str, str]
    pid: int | None  # the sender, from SCM_CREDENTIALS
    at: float  # time.monotonic() when received


class NotifySocket:
    """An AF_UNIX datagram socket as systemd's notify socket: `@name` binds an abstract address."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.received: list[Notification] = []

    def close(self) -> None:
        self.sock.close()

    def _receive(self, timeout_s: float) -> Notification | None:
        self.sock.settimeout(max(0.001, timeout_s))
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except TimeoutError:
            return None
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[:struct.calcsize("3i")])
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        note = Notification(fields, pid, time.monotonic())
        self.received.append(note)
        return note

    def expect(self, what: Callable[[Notification], bool], timeout_s: float = START_TIMEOUT_S,
               why: str = "") -> Notification:
        """Return the next notification that satisfies `what`; fail after the deadline."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            note = self._receive(left)
            if note is not None and what(note):
                return note
        recent = [n.fields for n in self.received[-8:]]
        raise AssertionError(f"no notification {why} within {timeout_s:g} s; last ones: {recent}")

    def collect(self, window_s: float) -> list[Notification]:
        """Return everything that arrives during the next `window_s` seconds."""
        deadline = time.monotonic() + window_s
        notes = []
        while (left := deadline - time.monotonic()) > 0:
            note = self._receive(left)
            if note is not None:
                notes.append(note)
        return notes


def has(key: str, value: str | None = "1") -> Callable[[Notification], bool]:
    return lambda n: key in n.fields and (value is None or n.fields[key] == value)


def pings(notes: list[Notification]) -> list[Notification]:
    return [n for n in notes if n.fields.get("WATCHDOG") == "1"]
