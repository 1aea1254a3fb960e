"""The daemon's HTTP API and its link to the Subsonic server: started, restarted on a reload that
changes `[http]` or `[subsonic]`, and stopped.

The wiring's part of webapi/ and subsonic/: the API itself (and numpy with it) is imported only
when `[http]` asks for it. With `[subsonic]` the API names tracks by the server's song ids (the
link's `server_ids` is the index's hook) and playlists with `subsonic = true` are pushed there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tunescout.config import Config
from tunescout.errors import ConfigError
from tunescout.subsonic.link import PlaylistPush, SubsonicLink

if TYPE_CHECKING:
    from tunescout.webapi import WebApi

log = logging.getLogger("tunescout.service")


class ApiServer:
    """The HTTP API and the Subsonic link when configured; nothing at all otherwise."""

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self._wake = wake
        self.webapi: WebApi | None = None
        self.subsonic: SubsonicLink | None = None
        # systemd passed a socket (tunescout.socket): read before the API takes it and clears the
        # variables, so that a reload restarting the API knows it is there
        self.socket_passed = os.environ.get("LISTEN_PID") == str(os.getpid())

    @property
    def changes(self) -> int:
        """A count that moves whenever what `status` shows of the link changed."""
        return self.subsonic.changes if self.subsonic is not None else 0

    def status(self) -> dict[str, Any] | None:
        return self.subsonic.status() if self.subsonic is not None else None

    def push(self, playlists: Sequence[PlaylistPush]) -> None:
        """Hand rebuilt playlists to the Subsonic link (from the rebuild thread)."""
        if self.subsonic is not None:
            self.subsonic.push(playlists)

    def start(self, config: Config) -> None:
        """Start the link, then bind and serve the HTTP API; a taken port is a ConfigError."""
        if config.subsonic.url is not None:
            self.subsonic = SubsonicLink(config.subsonic, config.library.paths, self._wake)
            self.subsonic.start()
        if config.http.listen is None and not self.socket_passed:
            return
        from tunescout.webapi import WebApi  # numpy: only with the API configured

        try:
            self.webapi = WebApi(config, self.subsonic)
        except BaseException:
            self.stop()
            raise
        if self.subsonic is not None:
            self.subsonic.refresh_index = self.webapi.keeper.refresh
        self.webapi.start()

    def reconfigure(self, new: Config, old: Config) -> None:
        """Restart on a reload that changes `[http]`, `[subsonic]`, the library or the database;
        a failure to bind leaves the API off, said in the journal, and the daemon running."""
        if (new.http, new.subsonic, new.store, new.library.paths) == (
                old.http, old.subsonic, old.store, old.library.paths):
            return
        self.stop()
        try:
            self.start(new)
        except ConfigError as exc:
            log.error("http api stays off: %s", exc, extra={"EVENT": "http_failed"})

    def stop(self) -> None:
        if self.webapi is not None:
            self.webapi.stop()
            self.webapi = None
        if self.subsonic is not None:
            self.subsonic.stop()
            self.subsonic = None
