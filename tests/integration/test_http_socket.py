"""Socket activation without systemd: the test listens, a wrapper execs the daemon with the socket
as fd 3 and LISTEN_FDS=1, LISTEN_PID=<its pid> (what systemd does for tunescout.socket), and a
real HTTP client gets its answers on that socket."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from support.daemon import Daemon, Library
from support.http import free_port, get
from support.playlists import fill_store, synthetic_tracks
from tunescout.store.reader import StoreReader

WRAPPER = Path(__file__).resolve().parents[1] / "support" / "listen_fds.py"
TOKEN = "a-test-token-of-some-length"


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A TCP socket listening on a free loopback port, as systemd makes one for ListenStream=."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


def library(root: Path, **http: Any) -> tuple[Library, dict[Path, str]]:
    lib = Library(root, http=http) if http else Library(root)
    tracks = fill_store(lib.db, lib.music, synthetic_tracks(per_cluster=12, artists=3))
    store = StoreReader.open(lib.db)
    try:
        ids = {row.path: str(row.id) for row in store.playlist_tracks()}
    finally:
        store.close()
    assert len(ids) == len(tracks)
    return lib, ids


def activated(start: Callable[..., Daemon], lib: Library, sock: socket.socket) -> Daemon:
    """Start the daemon through the wrapper, with `sock` passed as systemd passes it."""
    return start(lib, wrapper=[sys.executable, str(WRAPPER), str(sock.fileno())], pass_fds=[sock.fileno()])


def test_without_http_listen_the_daemon_serves_the_socket_it_is_passed(
        tmp_path: Path, start_daemon: Callable[..., Daemon], listening: socket.socket) -> None:
    lib, ids = library(tmp_path)  # no [http] at all: the passed socket turns the API on
    assert "http" not in lib.sections
    daemon = activated(start_daemon, lib, listening)
    daemon.wait_for_event("http_indexed")
    port = listening.getsockname()[1]
    listening.close()  # from here on only the daemon holds it
    base = f"http://127.0.0.1:{port}"
    seed = next(iter(ids.values()))
    answer = get(base, f"/api/similar_tracks?item_id={seed}&n=5")
    assert answer.status == 200, answer.body
    assert len(answer.json()) == 5 and seed not in {i["item_id"] for i in answer.json()}
    assert get(base, "/api/status").json()["analysed"] == len(ids)
    [listening_line] = daemon.events("http_listening")
    assert "the socket systemd passed" in listening_line.message
    # the daemon made no socket of its own, and its zygote does not hold the API's
    listeners = [c for c in psutil.Process(daemon.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN]
    assert [c.laddr.port for c in listeners] == [port]
    zygote = daemon.zygote()
    assert not [c for c in zygote.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    assert "LISTEN_PID" not in zygote.environ()

    # a reload that changes [http] restarts the API: on the same socket, which stayed open
    lib.sections["http"] = {"max_clients": 100}
    lib.write_config()
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_event("reloaded")
    daemon.wait_for_event("http_listening", count=2)
    daemon.wait_for_event("http_indexed", count=2)
    assert get(base, f"/api/similar_tracks?item_id={seed}&n=5").status == 200
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_a_matching_http_listen_serves_the_passed_socket(
        tmp_path: Path, start_daemon: Callable[..., Daemon], listening: socket.socket) -> None:
    port = listening.getsockname()[1]
    lib, ids = library(tmp_path, listen=f"localhost:{port}")
    daemon = activated(start_daemon, lib, listening)
    daemon.wait_for_event("http_indexed")
    assert get(f"http://127.0.0.1:{port}", "/api/status").json()["analysed"] == len(ids)
    assert not daemon.events("http_socket_ignored")
    assert "the socket systemd passed" in daemon.events("http_listening")[0].message


def test_another_http_listen_is_bound_and_the_mismatch_said(
        tmp_path: Path, start_daemon: Callable[..., Daemon], listening: socket.socket) -> None:
    other = free_port()
    lib, ids = library(tmp_path, listen=f"127.0.0.1:{other}")
    daemon = activated(start_daemon, lib, listening)
    daemon.wait_for_event("http_indexed")
    [ignored] = daemon.events("http_socket_ignored")
    assert f"127.0.0.1:{other}" in ignored.message and "ListenStream=" in ignored.message
    assert get(f"http://127.0.0.1:{other}", "/api/status").json()["analysed"] == len(ids)


def test_a_passed_socket_on_every_address_needs_a_token(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as everywhere:
        everywhere.bind(("0.0.0.0", 0))
        everywhere.listen(4)
        lib, _ = library(tmp_path)
        daemon = activated(start_daemon, lib, everywhere)
        assert daemon.proc.wait(timeout=60) == 2  # a configuration problem
    log = daemon.log()
    assert "http.token: required: the socket systemd passed listens on 0.0.0.0:" in log
    assert "Traceback" not in log


def test_a_passed_datagram_socket_is_refused_clearly(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        datagram.bind(("127.0.0.1", 0))
        lib, _ = library(tmp_path)
        daemon = activated(start_daemon, lib, datagram)
        assert daemon.proc.wait(timeout=60) == 2
    log = daemon.log()
    assert "the socket systemd passed is not TCP" in log and "ListenStream=" in log
    assert "Traceback" not in log


def test_with_a_token_a_passed_socket_on_every_address_serves(
        tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as everywhere:
        everywhere.bind(("0.0.0.0", 0))
        everywhere.listen(4)
        port = everywhere.getsockname()[1]
        lib, ids = library(tmp_path, token=TOKEN)
        daemon = activated(start_daemon, lib, everywhere)
        daemon.wait_for_event("http_indexed")
    base = f"http://127.0.0.1:{port}"
    assert get(base, "/api/status").status == 401
    assert get(base, "/api/status", token=TOKEN).json()["analysed"] == len(ids)
