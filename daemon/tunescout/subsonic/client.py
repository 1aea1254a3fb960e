"""A small client of the Subsonic API (Navidrome, gonic, Airsonic, LMS, supysonic): the standard
library's urllib, JSON answers (`f=json`), a timeout on every request, and one SubsonicError with
a reason word for everything that goes wrong.

Authentication as the API defines it: `t=md5(password + salt)&s=salt` from a password (a fresh
salt per request), or the token and salt of the config as they are. A server without token
authentication (supysonic, LDAP users: error 10, 41 or 42) gets the password hex-encoded
(`p=enc:…`) from then on.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from tunescout import __version__
from tunescout.config import SubsonicConfig
from tunescout.errors import SubsonicError

API_VERSION = "1.13.0"  # token authentication and search3 paging: every server speaks it
CLIENT = "tunescout"
TIMEOUT_S = 20.0
PAGE = 500  # songs per search3 request
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # one page of 500 songs is ~0.5 MB; a larger answer is wrong
NO_TOKEN_AUTH = (10, 41, 42)  # missing parameter (p), LDAP user, mechanism not supported
WRONG_LOGIN = (40, 44)
GET_SONGS_MAX = 100  # a longer playlist goes in a POST body (form posts), not the URL


class SubsonicClient:
    """Ask one server; thread-safe (nothing shared but the auth choice, which only ever flips once)."""

    def __init__(self, config: SubsonicConfig, timeout_s: float = TIMEOUT_S) -> None:
        assert config.url is not None
        self.url = config.url
        self.user = config.user
        self._password = config.password
        self._token = (config.token, config.salt) if config.token and config.salt else None
        self._plain = False  # the server does not take token authentication
        self.timeout_s = timeout_s
        self.server: dict[str, Any] = {}  # type, serverVersion, openSubsonic of the last answer

    # --- the calls tunescout makes ----------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """Check that the server answers and takes the login; return its envelope."""
        return self.call("ping")

    def songs(self, page: int = PAGE) -> Iterator[dict[str, Any]]:
        """Yield every song the server has: search3 with an empty query, paged."""
        offset = 0
        first: object = None
        while True:
            answer = self.call("search3", query="", songCount=page, songOffset=offset,
                               artistCount=0, albumCount=0)
            batch = (answer.get("searchResult3") or {}).get("song") or []
            if not isinstance(batch, list):
                raise SubsonicError("not_subsonic", f"{self.url}: search3 answered songs that "
                                    "are not a list")
            if batch and offset and batch[0] == first:  # a server that ignores songOffset
                raise SubsonicError("failed", f"{self.url}: search3 answers the same songs at "
                                    f"every songOffset; cannot list more than {page} songs")
            first = batch[0] if batch else None
            yield from (song for song in batch if isinstance(song, dict) and "id" in song)
            if len(batch) < page:
                return
            offset += len(batch)

    def playlists(self) -> list[dict[str, Any]]:
        answer = self.call("getPlaylists")
        found = (answer.get("playlists") or {}).get("playlist") or []
        return [p for p in found if isinstance(p, dict)]

    def playlist(self, playlist_id: str) -> dict[str, Any]:
        answer = self.call("getPlaylist", id=playlist_id)
        return dict(answer.get("playlist") or {})

    def create_playlist(self, name: str, song_ids: Sequence[str],
                        replace_id: str | None = None) -> None:
        """Create the playlist `name`, or replace the songs of `replace_id` (createPlaylist with
        playlistId: one request, the order as given)."""
        params: list[tuple[str, str]] = [("playlistId", replace_id)] if replace_id else [("name", name)]
        params += [("songId", ident) for ident in song_ids]
        self.call("createPlaylist", params=params, post=len(params) > GET_SONGS_MAX)

    def extensions(self) -> list[dict[str, Any]]:
        """Return the server's OpenSubsonic extensions ([] from a plain Subsonic server)."""
        try:
            answer = self.call("getOpenSubsonicExtensions")
        except SubsonicError as exc:
            if exc.reason == "failed":
                return []
            raise
        found = answer.get("openSubsonicExtensions") or []
        return [e for e in found if isinstance(e, dict) and "name" in e]

    # --- one request -----------------------------------------------------------------------

    def call(self, method: str, params: Sequence[tuple[str, str]] = (), post: bool = False,
             **query: Any) -> dict[str, Any]:
        """Ask `method`; return the `subsonic-response` object of a status "ok" answer."""
        pairs = [*params, *((k, str(v)) for k, v in query.items())]
        try:
            return self._ask(method, pairs, post)
        except SubsonicError as exc:
            if (exc.code in NO_TOKEN_AUTH and not self._plain and self._password is not None
                    and method == "ping"):
                self._plain = True  # the server wants the password itself
                return self._ask(method, pairs, post)
            raise

    def _ask(self, method: str, pairs: list[tuple[str, str]], post: bool) -> dict[str, Any]:
        fields = [*self._auth(), ("v", API_VERSION), ("c", CLIENT), ("f", "json"), *pairs]
        body = urllib.parse.urlencode(fields).encode()
        address = f"{self.url}/rest/{method}.view"
        request = (urllib.request.Request(address, data=body, method="POST", headers={
                       "Content-Type": "application/x-www-form-urlencoded"}) if post
                   else urllib.request.Request(f"{address}?{body.decode()}"))
        request.add_header("User-Agent", f"tunescout/{__version__}")
        raw = self._read(request, method)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise SubsonicError("not_subsonic", f"{self.url} does not answer as a Subsonic server "
                                f"(no JSON from {method}): is subsonic.url the server's address?") from exc
        envelope = data.get("subsonic-response") if isinstance(data, dict) else None
        if not isinstance(envelope, dict) or "status" not in envelope:
            raise SubsonicError("not_subsonic", f"{self.url} answered {method} without a "
                                "subsonic-response: is subsonic.url the server's address?")
        self.server = {k: envelope[k] for k in ("type", "serverVersion", "openSubsonic", "version")
                       if k in envelope}
        if envelope["status"] != "ok":
            raise _failure(self.url, self.user, method, envelope.get("error") or {})
        return envelope

    def _read(self, request: urllib.request.Request, method: str) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw: bytes = response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read(MAX_ANSWER_BYTES + 1)
            if exc.code in (401, 403) and b"subsonic-response" not in raw:
                raise SubsonicError("refused", f"{self.url} refused {method} with HTTP {exc.code}: "
                                    "check subsonic.user and subsonic.password", exc.code) from exc
            if b"subsonic-response" not in raw:
                raise SubsonicError("not_subsonic", f"{self.url}/rest/{method} answered HTTP "
                                    f"{exc.code}: is subsonic.url the server's address?") from exc
        except (urllib.error.URLError, OSError) as exc:
            why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(why, socket.timeout | TimeoutError):
                text = f"no answer within {self.timeout_s:.0f} s"
            elif isinstance(why, OSError) and why.strerror:
                text = why.strerror.lower()
            else:
                text = str(why)
            raise SubsonicError("unreachable", f"cannot reach {self.url}: {text}") from exc
        if len(raw) > MAX_ANSWER_BYTES:
            raise SubsonicError("not_subsonic", f"{self.url} answered {method} with more than "
                                f"{MAX_ANSWER_BYTES >> 20} MB")
        return raw

    def _auth(self) -> list[tuple[str, str]]:
        if self._token is not None:
            return [("u", self.user), ("t", self._token[0]), ("s", self._token[1])]
        assert self._password is not None
        if self._plain:
            return [("u", self.user), ("p", "enc:" + self._password.encode().hex())]
        salt = secrets.token_hex(8)
        token = hashlib.md5((self._password + salt).encode(), usedforsecurity=False).hexdigest()
        return [("u", self.user), ("t", token), ("s", salt)]


def _failure(url: str, user: str, method: str, error: dict[str, Any]) -> SubsonicError:
    """Word a status "failed" answer: a refused login apart from everything else."""
    code = error.get("code")
    message = str(error.get("message") or "no message")
    if code in WRONG_LOGIN:
        return SubsonicError("refused", f"{url} refused the login of {user!r} ({message}): check "
                             "subsonic.user and subsonic.password", code)
    if code == 50:
        return SubsonicError("refused", f"{url}: {user!r} may not {method} ({message})", code)
    return SubsonicError("failed", f"{url}: {method} failed: {message} (error {code})",
                         code if isinstance(code, int) else None)
