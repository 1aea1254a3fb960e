"""The HTTP server: the standard library's ThreadingHTTPServer, made safe to leave running.

A thread per request, at most `max_clients` at once (more get 503 at once instead of a queue
that grows); a socket timeout for slow clients; GET only and no request body; a bounded request
line and header block; every answer JSON (an error too: status and message, never a traceback),
except /metrics. Nothing on disk is ever served. With a token every request must carry it as
`Authorization: Bearer TOKEN` (what the AudioMuse-AI plugins send), compared in constant time.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tunescout.config import Config
from tunescout.config.integrations import is_loopback
from tunescout.errors import ApiError, ConfigError, StoreError
from tunescout.store.reader import StoreReader
from tunescout.webapi import activation, answers, opensubsonic
from tunescout.webapi.index import IndexKeeper, TrackIndex
from tunescout.webapi.opensubsonic import SubsonicFailure, SubsonicSide

log = logging.getLogger(__name__)

CLIENT_TIMEOUT_S = 10.0  # a client that sends nothing for this long is dropped
MAX_REQUEST_LINE = 8192
FIRST_INDEX_WAIT_S = 2.0  # a request right after start waits this long for the first index
ANSWERING_AT_ONCE = 2  # answers computed at once (one per core of a small server); the rest queue
# in order: 200 threads taking turns at the GIL answered some requests in ms and others in 10 s
Route = Callable[[TrackIndex, Mapping[str, str]], Any]
ROUTES: dict[str, Route] = {
    "/api/similar_tracks": answers.similar_tracks,
    "/api/find_path": answers.find_path,
    "/api/similar_artists": answers.similar_artists,
}


class ApiServer(ThreadingHTTPServer):
    """The listening socket and what every request thread shares."""

    daemon_threads = True  # a request in flight never holds the daemon's exit
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], config: Config, keeper: IndexKeeper,
                 metrics: Any | None, passed: socket.socket | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.config = config
        self.keeper = keeper
        self.metrics = metrics  # webapi.metrics.Metrics, None without prometheus-client
        self.token = config.http.token.encode() if config.http.token else None
        self.slots = threading.BoundedSemaphore(config.http.max_clients)
        self.subsonic: SubsonicSide | None = None  # the link to the [subsonic] server, if any
        self.answering = threading.BoundedSemaphore(ANSWERING_AT_ONCE)  # waiters wake first come first
        self.passed = passed  # systemd's socket: served, never closed (a reload serves it again)
        if passed is None:
            super().__init__(address, ApiHandler)
            return
        # systemd's socket, already bound and listening: no socket of our own (the unit may
        # allow no IP sockets at all), so TCPServer's constructor, which makes one, is skipped
        socketserver.BaseServer.__init__(self, address, ApiHandler)
        self.socket = passed
        self.server_address = passed.getsockname()
        self.server_name, self.server_port = str(address[0]), int(address[1])

    def server_close(self) -> None:
        if self.passed is None:
            super().server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Refuse at once, with 503, a request beyond `max_clients`: no unbounded threads."""
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                body = b'{"error": "busy: too many requests at once; try again"}'
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class ApiHandler(BaseHTTPRequestHandler):
    """One request: check it, route it, answer JSON."""

    server: ApiServer
    timeout = CLIENT_TIMEOUT_S
    # TCP_NODELAY: the headers and the body go out in two writes; with Nagle the body waited for
    # the client's delayed ACK of the headers, 40 ms on every keep-alive request
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive: a plugin asking often reuses its connection
    server_version = "tunescout"
    sys_version = ""

    def do_GET(self) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        if parts.path.startswith("/rest/"):
            self._opensubsonic(parts.path, parts.query, started)
            return
        endpoint = (parts.path if parts.path in (*ROUTES, "/api/status", "/api/health", "/metrics", "/")
                    else "other")
        status = HTTPStatus.OK
        try:
            if self.headers.get("Content-Length", "0") not in ("", "0"):
                raise ApiError(413, "requests carry no body")
            self._authorise()
            query = dict(parse_qsl(parts.query, keep_blank_values=True, max_num_fields=32))
            if parts.path == "/metrics":
                self._metrics()
                return
            self._json(HTTPStatus.OK, self._answer(parts.path, query))
        except ApiError as exc:
            status = HTTPStatus(exc.status)
            self._json(status, {"error": str(exc)})
        except Exception:  # an answer must never be a traceback: log it, say 500
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            log.exception("http api: %s failed", parts.path, extra={"EVENT": "http_error"})
            self._json(status, {"error": "internal error; the daemon's log has the details"})
        finally:
            if self.server.metrics is not None:
                self.server.metrics.requests.labels(endpoint, str(int(status))).inc()
                self.server.metrics.latency.labels(endpoint).observe(time.monotonic() - started)

    def _answer(self, path: str, query: Mapping[str, str]) -> Any:
        if path == "/api/status":
            return _status(self.server.config.store.path)
        if path == "/api/health":  # the liveness probe of the Lyrion AudioMuse-AI plugin
            return {"status": "ok"}
        if path == "/":
            return {"service": "tunescout", "endpoints": [
                *ROUTES, "/api/status", "/api/health", "/metrics", "/rest/getSonicSimilarTracks",
                "/rest/findSonicPath", "/rest/getOpenSubsonicExtensions"]}
        route = ROUTES.get(path)
        if route is None:
            raise ApiError(404, f"no endpoint {path}; see /")
        index = self.server.keeper.wait_ready(FIRST_INDEX_WAIT_S)
        if index is None:
            why = self.server.keeper.error or "the library is being indexed"
            raise ApiError(503, f"not ready: {why}; try again shortly")
        with self.server.answering:
            return route(index, query)

    def _opensubsonic(self, path: str, raw_query: str, started: float) -> None:
        """An OpenSubsonic request: its envelope, status "failed" with a Subsonic code on errors."""
        method = opensubsonic.method_of(path)
        query: dict[str, str] = {}
        try:
            query = dict(parse_qsl(raw_query, keep_blank_values=True, max_num_fields=32))
            if method is None:
                raise SubsonicFailure(opensubsonic.GENERIC, f"tunescout answers only "
                                      f"{', '.join(opensubsonic.METHODS)}", 404)
            if method not in opensubsonic.PUBLIC:
                try:
                    self._authorise()
                except ApiError as exc:
                    raise SubsonicFailure(opensubsonic.WRONG_LOGIN, str(exc), 401) from exc
            index = (self.server.keeper.wait_ready(FIRST_INDEX_WAIT_S)
                     if method in ("getSonicSimilarTracks", "findSonicPath") else None)
            with self.server.answering:
                answer = opensubsonic.answer(method, query, index, self.server.subsonic)
            response = opensubsonic.envelope(answer)
            status = HTTPStatus.OK
        except SubsonicFailure as exc:
            response, status = opensubsonic.envelope(None, exc), HTTPStatus(exc.http_status)
        except Exception:  # an answer must never be a traceback: log it, say so
            log.exception("http api: %s failed", path, extra={"EVENT": "http_error"})
            failure = SubsonicFailure(opensubsonic.GENERIC,
                                      "internal error; the daemon's log has the details")
            response, status = opensubsonic.envelope(None, failure), HTTPStatus.INTERNAL_SERVER_ERROR
        body, content_type = opensubsonic.render(response, query.get("f", "xml"))
        self._send(status, body, content_type)
        if self.server.metrics is not None:
            endpoint = f"/rest/{method}" if method else "other"
            self.server.metrics.requests.labels(endpoint, str(int(status))).inc()
            self.server.metrics.latency.labels(endpoint).observe(time.monotonic() - started)

    def _authorise(self) -> None:
        token = self.server.token
        if token is None:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token):
            raise ApiError(401, "missing or wrong token: send Authorization: Bearer <http.token>")

    def _metrics(self) -> None:
        metrics = self.server.metrics
        if metrics is None:
            raise ApiError(501, "metrics need prometheus-client: pip install 'tunescout[http]'")
        from tunescout.webapi.metrics import CONTENT_TYPE

        self._send(HTTPStatus.OK, metrics.render(), CONTENT_TYPE)

    def _json(self, status: HTTPStatus, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str).encode()
        self._send(status, body, "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="tunescout"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals (bad request line, 501 method) in JSON too."""
        self.close_connection = True
        self._json(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})

    def parse_request(self) -> bool:
        if len(getattr(self, "raw_requestline", b"")) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", "GET"
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s " + format, self.client_address[0], *args, extra={"EVENT": "http_request"})


def _status(db: Path) -> dict[str, Any]:
    """What `tunescout status --json` says: the counts and the daemon's state."""
    try:
        store = StoreReader.open(db)
    except StoreError as exc:
        raise ApiError(503, str(exc)) from exc
    try:
        return {**asdict(store.counts()), "daemon": store.daemon_state() or {}, "database": str(db)}
    finally:
        store.close()


def bind(config: Config, keeper: IndexKeeper, metrics: Any | None) -> ApiServer:
    """Serve the socket systemd passed (when `http.listen` is absent or names its address), else
    open the listening socket; raise ConfigError, clearly, when that cannot be done."""
    try:
        passed = activation.passed_socket()
    except activation.PassedSocketError as exc:
        raise ConfigError(config.source, [f"http: {exc}"]) from exc
    if passed is not None:
        address = passed.getsockname()
        host, port = str(address[0]), int(address[1])
        if config.http.listen is None or _same_address(config.http.listen, (host, port)):
            if not is_loopback(host) and not config.http.token:
                raise ConfigError(config.source, [
                    f"http.token: required: the socket systemd passed listens on "
                    f"{activation.shown((host, port))}, not a loopback address (openssl rand -hex 24)"])
            return ApiServer((host, port), config, keeper, metrics, passed)
        log.warning("http.listen %s is not the address of the socket systemd passed (%s): binding it "
                    "myself; make tunescout.socket's ListenStream= and http.listen agree, or remove "
                    "http.listen", activation.shown(config.http.listen), activation.shown((host, port)),
                    extra={"EVENT": "http_socket_ignored", "HTTP_ADDRESS": activation.shown((host, port))})
    if config.http.listen is None:
        raise ConfigError(config.source, ["http.listen: required (no socket passed by systemd)"])
    host, port = config.http.listen
    try:
        return ApiServer((host, port), config, keeper, metrics)
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            why = f"{shown} is already in use (another tunescout, or another service): choose another port"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = f"{shown} is not an address of this machine"
        elif exc.errno == errno.EACCES:
            why = f"{shown}: permission denied (ports below 1024 need privileges)"
        elif exc.errno in (errno.EAFNOSUPPORT, errno.EPERM):
            why = (f"{shown}: this process may not open IP sockets (the unit's RestrictAddressFamilies="
                   "AF_UNIX): enable tunescout.socket (systemctl enable --now tunescout.socket), "
                   "which listens for it")
        else:
            why = f"{shown}: {exc.strerror}"
        raise ConfigError(config.source, [f"http.listen: {why}"]) from exc


def _same_address(wanted: tuple[str, int], actual: tuple[str, int]) -> bool:
    """Tell whether `http.listen` names the address a socket listens on (localhost = 127.0.0.1)."""
    if wanted[1] != actual[1]:
        return False
    host, other = wanted[0], actual[0]
    if host == other or (host == "localhost" and is_loopback(other)):
        return True
    if host == "" and other in ("0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(other)
    except ValueError:
        return False
