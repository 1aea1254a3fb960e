"""The daemon's radio: a `Radio` in its own thread with its own read-only connection.

The main loop only starts it, stops it, and reads its latest `RadioStatus` for the state row;
nothing the radio does (MPD round trips, building the index at 100k tracks) can block the
main loop or its watchdog pings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from tunescout.config import Config
from tunescout.errors import StoreError
from tunescout.radio.history import PlayHistory, history_path
from tunescout.radio.radio import Radio
from tunescout.radio.status import RadioStatus
from tunescout.store.reader import StoreReader

log = logging.getLogger(__name__)

RESTART_AFTER_S = 30.0  # after a radio bug, before trying again


class RadioThread:
    """Run the configured radio in a thread; `status` is its latest snapshot (None: no radio)."""

    def __init__(self, config: Config, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._config = config
        self._stop = threading.Event()
        self._radio: Radio | None = None
        self._lock = threading.Lock()
        self.status: RadioStatus | None = None
        self.changes = 0  # bumped at every new status: the main loop publishes then
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._config.radio is None:
            return
        self._stop.clear()
        self.status = RadioStatus(mpd=self._config.radio.mpd, wanted=self._config.radio.ahead)
        self._thread = threading.Thread(target=self._run, name="radio", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            if self._radio is not None:
                self._radio.stop()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def reconfigure(self, config: Config) -> None:
        """Restart the radio when its configuration (or the library it maps) changed."""
        old = self._config
        self._config = config
        if (old.radio, old.library.paths, old.store.path) != (config.radio, config.library.paths,
                                                                config.store.path):
            self.stop()
            self.status = None
            self.start()

    def _publish(self, status: RadioStatus) -> None:
        self.status = status
        self.changes += 1
        self._wake()

    def _run(self) -> None:
        config = self._config
        assert config.radio is not None
        while not self._stop.is_set():
            store: StoreReader | None = None
            try:
                store = StoreReader.open(config.store.path)
                path = history_path(config)
                history = PlayHistory.load(path, path, window_tracks=config.radio.no_repeat_tracks,
                                           window_s=config.radio.no_repeat_for_s)
                with self._lock:
                    self._radio = Radio(config.radio, store, config.library.paths, history=history,
                                        on_status=self._publish)
                    if self._stop.is_set():
                        return
                self._radio.run()
                return
            except StoreError as exc:
                log.error("radio: %s", exc, extra={"EVENT": "radio_error", "REASON": str(exc)})
            except Exception:  # the radio thread must not die silently
                log.exception("the radio failed; restarting it in %d s", RESTART_AFTER_S,
                              extra={"EVENT": "radio_error"})
            finally:
                with self._lock:
                    if self._radio is not None:
                        self._radio.close()
                        self._radio = None
                if store is not None:
                    store.close()
            if self.status is not None:
                self._publish(replace_state(self.status, "error"))
            self._stop.wait(RESTART_AFTER_S)


def replace_state(status: RadioStatus, state: str) -> RadioStatus:
    return replace(status, state=state, connected=False, reason="see the journal (EVENT=radio_error)",
                   updated_at=time.time())
