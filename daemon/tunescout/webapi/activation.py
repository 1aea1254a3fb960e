"""The listening socket systemd passes in (socket activation: `systemd/tunescout.socket`).

With `tunescout.socket` enabled, systemd listens on the API's address itself, in the host's
network, and hands the socket to the daemon as file descriptor 3 with `LISTEN_FDS=1` and
`LISTEN_PID=<the daemon's pid>` (sd_listen_fds(3)). The service then keeps `PrivateNetwork=yes`
and `RestrictAddressFamilies=AF_UNIX`: it accepts connections on a socket it could not have made.

The socket is taken once per process, at the first call, and the variables are removed so that
nothing started later takes them for its own; a reload that restarts the API serves it again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3  # the first passed descriptor (sd-daemon.h)
_ENVIRONMENT = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

_lock = threading.Lock()
_taken = False
_passed: socket.socket | None = None
_refused: str | None = None


class PassedSocketError(Exception):
    """The descriptor systemd passed is not a listening TCP socket (the socket unit says otherwise)."""


def passed_socket() -> socket.socket | None:
    """Return the listening TCP socket systemd passed to this process, or None when there is none.

    Raise PassedSocketError when one was passed that cannot serve HTTP (a datagram or AF_UNIX
    socket, a socket that does not listen): the socket unit needs `ListenStream=HOST:PORT`.
    """
    global _taken, _passed, _refused
    with _lock:
        if not _taken:
            _taken = True
            try:
                _passed = _take()
            except PassedSocketError as exc:
                _refused = str(exc)
        if _refused is not None:
            raise PassedSocketError(_refused)
        return _passed


def _take() -> socket.socket | None:
    pid, count = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    for name in _ENVIRONMENT:
        os.environ.pop(name, None)
    if pid != str(os.getpid()) or not count.isdigit() or int(count) < 1:
        return None  # nothing passed, or passed to another process (our parent's variables)
    if int(count) > 1:
        log.warning("systemd passed %s sockets; the HTTP API serves the first (one ListenStream= "
                    "in tunescout.socket)", count, extra={"EVENT": "http_socket_extra"})
    for extra in range(SD_LISTEN_FDS_START + 1, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(extra, False)
    fd = SD_LISTEN_FDS_START
    os.set_inheritable(fd, False)  # the zygote and its children never hold the API's socket
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise PassedSocketError(f"descriptor {fd} from systemd is not a socket ({exc.strerror})") from exc
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise PassedSocketError(f"the socket systemd passed is not TCP ({sock.family.name}, "
                                f"{sock.type.name}): tunescout.socket needs ListenStream=HOST:PORT")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise PassedSocketError("the socket systemd passed does not listen (Accept=no, ListenStream=)")
    return sock


def shown(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """Return HOST:PORT, with brackets around an IPv6 host."""
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
