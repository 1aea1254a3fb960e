"""A small MPD client: the line protocol over TCP or a Unix socket, written out by hand.

MPD's protocol is a greeting (`OK MPD 0.23.5`), then commands answered by `key: value` lines
and `OK`, or one `ACK [code@index] {command} message` line. A radio needs few commands, one
blocking `idle` on its own connection and command lists for batched adds, so a dependency
(python-mpd2) would buy little. Every socket operation has a timeout: a hung MPD must never hang
the radio's thread past its deadline.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tunescout.errors import TunescoutError

DEFAULT_PORT = 6600
TIMEOUT_S = 10.0  # a command MPD does not answer within this is a dead connection
_ACK = re.compile(r"^ACK \[(\d+)@(\d+)\] \{([^}]*)\} ?(.*)$")

# MPD's ACK codes (src/protocol/Ack.hxx) that the radio tells apart
ACK_PASSWORD = 3
ACK_PERMISSION = 4
ACK_NO_EXIST = 50


class MPDError(TunescoutError):
    """MPD cannot be reached, closed the connection, or broke the protocol."""


class MPDCommandError(MPDError):
    """MPD answered a command with ACK: `code` says why, `index` which command of a list."""

    def __init__(self, code: int, index: int, command: str, message: str) -> None:
        self.code, self.index, self.command, self.message = code, index, command, message
        super().__init__(f"{command}: {message}" if command else message)


Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class Address:
    """Where MPD listens: a TCP host and port, or a Unix socket path (`@name`: abstract)."""

    host: str
    port: int = DEFAULT_PORT

    @property
    def is_unix(self) -> bool:
        return self.host.startswith(("/", "@", "~"))

    def __str__(self) -> str:
        return self.host if self.is_unix else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Return the address of "host", "host:port", "[::1]:6600", a socket path or "@abstract"."""
    text = text.strip()
    if not text:
        raise ValueError("expected host:port or a socket path, such as 127.0.0.1:6600")
    if text.startswith(("/", "@", "~")):
        return Address(text)
    match = re.match(r"^\[([^\]]+)\](?::(\d+))?$", text) or re.match(r"^([^:]+)(?::(\d+))?$", text)
    if match is None:
        raise ValueError(f"cannot read {text!r}; write host:port or a socket path")
    port = int(match.group(2)) if match.group(2) else DEFAULT_PORT
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not from 1 to 65535")
    return Address(match.group(1), port)


def quote(arg: str) -> str:
    """Return one argument quoted for MPD: in double quotes, `"` and `\\` escaped."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_line(name: str, args: Iterable[str]) -> str:
    return " ".join([name, *(quote(a) for a in args)])


class MPDClient:
    """One connection to MPD. Not thread-safe: each thread (or role) opens its own."""

    def __init__(self, sock: socket.socket, version: str) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self.version = version
        self.idling = False

    @classmethod
    def connect(cls, address: Address, password: str | None = None,
                timeout_s: float = TIMEOUT_S) -> MPDClient:
        """Connect, read the greeting and send the password; raise MPDError saying what failed."""
        try:
            if address.is_unix:
                path = address.host
                target = "\0" + path[1:] if path.startswith("@") else os.path.expanduser(path)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout_s)
                sock.connect(target)
            else:
                sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
        except OSError as exc:
            raise MPDError(f"cannot connect to MPD at {address}: {exc.strerror or exc}") from exc
        client = cls(sock, "")
        try:
            greeting = client._readline()
            if not greeting.startswith("OK MPD "):
                raise MPDError(f"{address} is not MPD (it said {greeting[:60]!r})")
            client.version = greeting[7:]
            if password:
                client.command("password", password)
        except MPDCommandError as exc:
            client.close()
            if exc.code == ACK_PASSWORD:
                raise MPDError(f"MPD at {address} refused the password (MPD_PASSWORD or "
                               "[radio] password)") from exc
            raise
        except MPDError:
            client.close()
            raise
        return client

    def close(self) -> None:
        try:
            self._file.close()
            self._sock.close()
        except OSError:
            pass

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout_s: float | None) -> None:
        self._sock.settimeout(timeout_s)

    # --- the wire ---------------------------------------------------------------------------

    def _send(self, text: str) -> None:
        try:
            self._sock.sendall(text.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            raise MPDError(f"MPD connection lost: {exc.strerror or exc}") from exc

    def _readline(self) -> str:
        try:
            raw = self._file.readline()
        except (OSError, ValueError) as exc:
            raise MPDError(f"MPD connection lost: {exc}") from exc
        if not raw.endswith(b"\n"):
            raise MPDError("MPD closed the connection")
        return raw[:-1].decode("utf-8", "surrogateescape")

    def _read_pairs(self, end: str = "OK") -> Pairs:
        """Read `key: value` lines up to `end` ("OK" or "list_OK"); raise on ACK."""
        pairs: Pairs = []
        while True:
            line = self._readline()
            if line == end or (end == "list_OK" and line == "OK"):
                return pairs
            if line.startswith("ACK "):
                match = _ACK.match(line)
                if match is None:
                    raise MPDCommandError(0, 0, "", line[4:])
                code, index, command, message = match.groups()
                raise MPDCommandError(int(code), int(index), command, message)
            key, sep, value = line.partition(": ")
            if not sep:
                raise MPDError(f"MPD sent a line the protocol does not have: {line[:80]!r}")
            pairs.append((key, value))

    # --- commands ---------------------------------------------------------------------------

    def command(self, name: str, *args: str) -> Pairs:
        """Send one command and return its `key: value` pairs."""
        self._send(command_line(name, args) + "\n")
        return self._read_pairs()

    def command_list(self, commands: Sequence[tuple[str, Sequence[str]]]) -> list[Pairs]:
        """Send commands in one list (one round trip); return each one's pairs.

        On an ACK the commands before the failing one have been executed; MPDCommandError's
        `index` says which failed.
        """
        if not commands:
            return []
        lines = ["command_list_ok_begin", *(command_line(n, a) for n, a in commands), "command_list_end"]
        self._send("\n".join(lines) + "\n")
        results = [self._read_pairs("list_OK") for _ in commands]
        if self._readline() != "OK":
            raise MPDError("MPD did not end the command list with OK")
        return results

    def send_idle(self, subsystems: Sequence[str]) -> None:
        """Start `idle`: MPD answers when one of the subsystems changes (read with read_idle)."""
        self._send(command_line("idle", subsystems) + "\n")
        self.idling = True

    def read_idle(self) -> set[str]:
        """Return the subsystems that changed (after send_idle, once the socket is readable)."""
        self.idling = False
        return {value for key, value in self._read_pairs() if key == "changed"}

    def noidle(self) -> set[str]:
        """Leave idle without waiting for a change."""
        self._send("noidle\n")
        return self.read_idle()


def records(pairs: Pairs, first_key: str) -> list[dict[str, str]]:
    """Split a flat answer into records, each starting at `first_key` (e.g. "file")."""
    out: list[dict[str, str]] = []
    for key, value in pairs:
        if key == first_key:
            out.append({})
        if out:
            out[-1].setdefault(key, value)
    return out


def as_dict(pairs: Pairs) -> dict[str, str]:
    return {key: value for key, value in pairs}
