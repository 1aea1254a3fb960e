"""The HTTP API: AudioMuse-AI's endpoints (`/api/similar_tracks`, `/api/find_path`,
`/api/similar_artists`) that the Navidrome, Jellyfin and LMS plugins call, the OpenSubsonic
`sonicSimilarity` extension (`/rest/getSonicSimilarTracks`, `/rest/findSonicPath`), `/api/status`
and Prometheus' `/metrics`, served by the daemon from threads of its own.

`WebApi` is what the wiring starts and stops: the listening server (server.py), the index kept
current from the database (index.py) and the metrics (metrics.py, with prometheus-client).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tunescout.config import Config
from tunescout.webapi.index import IndexKeeper
from tunescout.webapi.opensubsonic import SubsonicSide
from tunescout.webapi.server import ApiServer, bind

log = logging.getLogger(__name__)


class WebApi:
    """The HTTP API of one daemon: bound at construction (so a taken port fails the start), serving
    after `start`, closed by `stop`."""

    def __init__(self, config: Config, subsonic: SubsonicSide | None = None) -> None:
        self.keeper = IndexKeeper(config.store.path, subsonic.server_ids if subsonic else None)
        self.metrics = _metrics(config)
        try:
            self.server: ApiServer = bind(config, self.keeper, self.metrics)
        except BaseException:
            if self.metrics is not None:
                self.metrics.close()
            raise
        self.server.subsonic = subsonic
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.keeper.start()
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="webapi", daemon=True)
        self._thread.start()
        host, port = self.address
        log.info("http api listening on %s:%d%s%s", host, port,
                 " (the socket systemd passed)" if self.server.passed is not None else "",
                 "" if self.server.token else " (no token: loopback only)",
                 extra={"EVENT": "http_listening", "HTTP_ADDRESS": f"{host}:{port}"})

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=10)
        self.server.server_close()
        self.keeper.stop()
        if self.metrics is not None:
            self.metrics.close()


def _metrics(config: Config) -> Any:
    try:
        from tunescout.webapi.metrics import Metrics
    except ImportError:
        log.warning("http api: /metrics is off: prometheus-client is not installed "
                    "(pip install 'tunescout[http]')", extra={"EVENT": "http_no_metrics"})
        return None
    return Metrics(config.store.path, config)
