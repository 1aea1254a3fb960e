"""The daemon's HTTP API, started, restarted on a reload that changes `[http]`, and stopped.

The wiring's part of webapi/: the API itself (and numpy with it) is imported only when `[http]`
asks for it.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from tunescout.config import Config
from tunescout.errors import ConfigError

if TYPE_CHECKING:
    from tunescout.webapi import WebApi

log = logging.getLogger("tunescout.service")


class ApiServer:
    """The HTTP API when configured; nothing at all otherwise."""

    def __init__(self) -> None:
        self.webapi: WebApi | None = None
        # systemd passed a socket (tunescout.socket): read before the API takes it and clears the
        # variables, so that a reload restarting the API knows it is there
        self.socket_passed = os.environ.get("LISTEN_PID") == str(os.getpid())

    def start(self, config: Config) -> None:
        """Bind and serve the HTTP API when `[http]` asks for it or systemd passed a socket for it
        (tunescout.socket); a taken port is a ConfigError."""
        if config.http.listen is None and not self.socket_passed:
            return
        from tunescout.webapi import WebApi  # numpy: only with the API configured

        if config.subsonic.url is not None:
            log.warning("[subsonic] is read but not used yet: the API answers with tunescout's own "
                        "track ids", extra={"EVENT": "subsonic_unused"})
        self.webapi = WebApi(config)
        self.webapi.start()

    def reconfigure(self, new: Config, old: Config) -> None:
        """Restart the API on a reload that changes `[http]` (or the database); a failure to bind
        leaves it off, said in the journal, and the daemon running."""
        if new.http == old.http and new.store == old.store:
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

