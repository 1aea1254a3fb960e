"""Wire everything together and own the main loop and the signals; only cli/ imports this (test_layers)."""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunescout import __version__, early
from tunescout.apis import ApiServer
from tunescout.config import Config, load_config
from tunescout.errors import ConfigError, DatabaseUnavailable, TunescoutError
from tunescout.health import Health
from tunescout.library.changes import Library
from tunescout.library.walk import Walk, walk_library
from tunescout.library.watcher import ChangeKind, Watcher, WatchMode
from tunescout.lock import DatabaseLock
from tunescout.logs import setup_logging
from tunescout.loop import MEMORY_EVERY_S, Loop
from tunescout.radio.thread import RadioThread
from tunescout.rebuilds import PlaylistRebuilds
from tunescout.units import format_duration
from tunescout.waiting import DatabaseWait
from tunescout.workers.memory import MemoryGate

log = logging.getLogger("tunescout.service")

STATUS_EVERY_S = 2.0  # while busy
HEARTBEAT_EVERY_S = 60.0  # daemon state written to the database while idle
STOP_GRACE_S = 10.0  # running children may finish their file before being stopped


class Service:
    """The daemon: watch, settle, queue, analyse, report."""

    def __init__(self, config: Config, config_path: Path | None, env: Mapping[str, str], *,
                 log_target: str | None = None) -> None:
        self.config = config
        self.log_target = log_target  # `run --log-target` outranks the config, also on reload
        self.config_path = config_path
        self.env = env
        self.loop = Loop(config, env)
        self.store = self.loop.store
        self.health = Health(env)
        self.library = Library(config, self.store)
        self.watcher = Watcher(config.library.paths, config.library.watch,
                               config.library.poll_interval_s, self.loop.wake)
        self._signals: list[int] = []
        self._stop_requested_at: float | None = None
        self._walk: Walk | None = None
        self._walking = False
        self._next_rescan = 0.0
        self._walk_started_at = self._rescan_asked_at = 0.0
        self._versions_checked = False
        self._skips_told: set[Path] = set()  # unreadable folders warned about once a run
        self._unanalysed: Counter[str] = Counter()  # files of other audio formats, last walk
        self._next_root_check = time.monotonic() + config.library.poll_interval_s
        self._last_status_at = 0.0
        self._published_shape: tuple[bool, bool] | None = None  # (busy, analysis ready)
        self._started_at = time.time()
        self.api = ApiServer(self.loop.wake)  # the HTTP API and the [subsonic] link
        self.playlists = PlaylistRebuilds(config, self.loop.wake, self.api.push)
        self.radio = RadioThread(config, self.loop.wake)  # its own thread and read-only connection
        self._radio_seen = (0, 0)  # the radio's and the Subsonic link's change counts
        self._errors = 0  # main-loop turns failed in a row
        self._db_wait = DatabaseWait()  # whether the database takes writes, and why not
        self._last_error, self._last_error_at = "", 0.0

    # --- signals ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)

    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(self.loop._wake_w, warn_on_full_buffer=False)
        # a reload or a nudge sent while the daemon started: acted on now, not lost
        self._signals.extend(s for s in early.take() if s != signal.SIGTERM)

    def _handle_signals(self, now: float) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT) and self._stop_requested_at is None:
                name = signal.Signals(sig).name
                log.info("stopping on %s: %d children running, %d files stay queued", name,
                         len(self.loop.supervisor.batches), self.store.queue_length(),
                         extra={"EVENT": "stopping"})
                self.health.stopping()
                self._stop_requested_at = now
                if self.loop.cluster is not None:  # its files in flight stay queued
                    self.loop.cluster.stop()
            elif sig == signal.SIGHUP:
                self._reload()
            # SIGUSR1 ("look at the queue now", from `tunescout retry`) only wakes the loop

    def _reload(self) -> None:
        self.health.reloading()
        try:
            new = load_config(self.config_path, self.env)
        except ConfigError as exc:
            log.error("keeping the old configuration: %s", exc, extra={"EVENT": "reload_failed"})
            self.health.ready(self._status_line())
            return
        old = self.config
        self.config = new
        self.loop.reconfigure(new)  # the supervisor's analyser, the cluster's scheduler
        self.loop.gate = MemoryGate(new.memory.min_available_bytes, new.memory.pause_above_percent,
                                    new.memory.resume_below_percent)
        self.library.reconfigure(new)
        self.loop.supervisor.clear_fatal()
        self.playlists.reconfigure(new)
        self.radio.reconfigure(new)
        self.api.reconfigure(new, old)
        setup_logging(new.log.level, self.log_target or new.log.target, env=self.env)
        if (new.library != old.library):
            self.watcher.stop()
            self.watcher = Watcher(new.library.paths, new.library.watch,
                                   new.library.poll_interval_s, self.loop.wake)
            self.watcher.start()
            self._next_rescan = 0.0
        log.info("configuration reloaded from %s", new.source, extra={"EVENT": "reloaded"})
        self.health.ready(self._status_line())

    # --- changes from the watcher -------------------------------------------------------------

    def _drain_changes(self, wall: float) -> None:
        while True:
            try:
                change = self.watcher.changes.get_nowait()
            except queue.Empty:
                return
            if change.kind == ChangeKind.LINKS:  # a symlinked folder came or went: walk again
                log.info("symlinked folder %s changed; rescanning", change.path,
                         extra={"EVENT": "link_changed", "TRACK_PATH": str(change.path)})
                self._next_rescan = 0.0
                self._rescan_asked_at = time.monotonic()
                continue
            root = self.library.apply(change, wall)
            if root is not None:
                self._root_missing(root)

    def _root_missing(self, root: Path) -> None:
        if self.watcher.mark_missing(root):
            log.warning("library folder %s went away; keeping its files in the database and "
                        "watching for its return", root,
                        extra={"EVENT": "root_missing", "TRACK_PATH": str(root)})

    def _check_roots(self, now: float) -> None:
        """Every poll interval: notice roots that vanished or came back (USB disks, automounts)."""
        if now < self._next_root_check:
            return
        self._next_root_check = now + self.config.library.poll_interval_s
        returned = False
        for root, mode in list(self.watcher.modes.items()):
            present = root.is_dir()
            if mode == WatchMode.MISSING and present:
                log.info("library folder %s is back", root,
                         extra={"EVENT": "root_returned", "TRACK_PATH": str(root)})
                returned = True
            elif mode != WatchMode.MISSING and not present:
                self._root_missing(root)
        if returned:
            self.watcher.stop()
            self.watcher = Watcher(self.config.library.paths, self.config.library.watch,
                                   self.config.library.poll_interval_s, self.loop.wake)
            self.watcher.start()
            self._start_reconcile()

    # --- reconcile ----------------------------------------------------------------------------

    def _start_reconcile(self) -> None:
        if self._walking:
            return
        known = self.store.folder_fingerprints()  # here: the connection is the main loop's
        self._walking = True
        self._walk_started_at = time.monotonic()
        roots = self.config.library.paths
        exts = self.config.library.extensions

        def walk() -> None:
            self._walk = walk_library(roots, exts, known, self._skips_told)
            self.loop.wake()

        threading.Thread(target=walk, name="reconcile", daemon=True).start()

    def _finish_reconcile(self, wall: float) -> None:
        walk, self._walk, self._walking = self._walk, None, False
        assert walk is not None
        added = self.watcher.follow(walk.links)
        inotify_roots = tuple(r for r, m in self.watcher.modes.items() if m.startswith("inotify"))
        if inotify_roots and set(inotify_roots) == set(walk.complete_roots):
            self.watcher.check_coverage(walk.dirs, wait_s=2.0 if added else 0.0)
        self.library.reconcile(walk, wall)
        if walk.unanalysed != self._unanalysed:
            self._unanalysed = walk.unanalysed
            if walk.unanalysed:
                log.info("left out %d files of formats not in library.extensions: %s",
                         walk.unanalysed.total(), _by_extension(walk.unanalysed),
                         extra={"EVENT": "unanalysed_formats"})
        if not self._versions_checked:  # versions change only with an upgrade, so once a run
            self._versions_checked = True
            self.library.queue_stale_features()
        self._next_rescan = time.monotonic() + self.config.intake.rescan_interval_s
        if self._rescan_asked_at >= self._walk_started_at:  # asked for while this walk ran
            self._next_rescan = 0.0

    # --- status -------------------------------------------------------------------------------

    def _state(self) -> str:
        if self._stop_requested_at is not None:
            return "stopping"
        if self.loop.gate.paused_reason or self._waiting_for_database():
            return "paused"
        return "running"

    def _waiting_for_database(self) -> str | None:
        problem = self._db_wait.problem or self.loop.supervisor.pending.problem
        return problem.status if problem is not None else None

    def _status_line(self) -> str:
        counts = self.store.counts()
        progress = self.loop.supervisor.progress
        parts = [f"{self._state()}"]
        if self.loop.supervisor.fatal:
            parts.append(f"analysis stopped: {self.loop.supervisor.fatal}")
        elif not self.loop.supervisor.ready:
            parts.append("starting the analysis stack")
        total = counts.analysed + counts.failed + counts.queued
        parts.append(f"analysed {counts.analysed:,}/{total:,}")
        parts.append(f"queue {counts.queued:,}")
        elapsed_min = max(1e-9, (time.monotonic() - progress.started_at) / 60)
        if progress.analysed:
            rate = progress.analysed / elapsed_min
            parts.append(f"{rate:.1f} tracks/min")
            if counts.queued:
                parts.append(f"ETA {format_duration(counts.queued / rate * 60)}")
        if self.loop.gate.paused_reason:
            parts.append(f"paused: {self.loop.gate.paused_reason}")
        if (waiting := self._waiting_for_database()) is not None:
            parts.append(waiting)
        if counts.failed:
            quarantined = f" ({counts.quarantined} quarantined)" if counts.quarantined else ""
            parts.append(f"{counts.failed} failed{quarantined}")
        if self.loop.cluster is not None:
            parts.append(self.loop.cluster.summary())
        if len(self.library.settler):
            parts.append(f"{len(self.library.settler)} settling")
        if self._walking:
            parts.append("scanning the library")
        parts.append(self.watcher.summary())
        return " · ".join(parts)

    def _publish(self, now: float, *, force: bool = False) -> None:
        busy = self.loop.busy() or self._walking or len(self.library.settler) > 0
        shape = (busy, self.loop.supervisor.ready)
        changed, self._published_shape = shape != self._published_shape, shape
        changed |= (self.radio.changes, self.api.changes) != self._radio_seen
        self._radio_seen = (self.radio.changes, self.api.changes)
        due = self._last_status_at + (STATUS_EVERY_S if busy else HEARTBEAT_EVERY_S)
        if not force and not changed and now < due:
            return
        self._last_status_at = now
        line = self._status_line()
        self.health.status(line)
        sup = self.loop.supervisor
        self.store.set_daemon_state({
            "state": self._state(), "pid": os.getpid(), "updated_at": time.time(),
            "started_at": self._started_at, "status": line,
            "paused_reason": self.loop.gate.paused_reason, "workers": self.loop.workers,
            "running_children": len(sup.batches),
            "in_flight": sorted(str(p) for p in self.loop.in_flight()),
            "cluster": self.loop.cluster.summary() if self.loop.cluster is not None else None,
            "watch": {str(k): v for k, v in self.watcher.modes.items()},
            "polled": [str(p) for p in self.watcher.polled()],
            "settling": len(self.library.settler), "analysis_error": sup.fatal,
            "memory_available_bytes": self.loop.memory.available_bytes if self.loop.memory else None,
            "unanalysed": dict(self._unanalysed.most_common()),
            "radio": self.radio.status.as_json() if self.radio.status is not None else None,
            "subsonic": self.api.status(),
        })
        self.loop.log_progress(now)

    # --- the main loop ------------------------------------------------------------------------

    def _timeout(self, now: float, wall: float) -> float:
        candidates = [self._next_rescan - now, self._last_status_at + HEARTBEAT_EVERY_S - now,
                      self._next_root_check - now]
        if self.loop.busy() or self._walking or not self.loop.supervisor.ready:
            candidates.append(STATUS_EVERY_S)
        if self.loop.workers == 0 and self.store.has_queued():
            candidates.append(MEMORY_EVERY_S)  # paused or no worker fits: look again soon
        deadline = self.loop.supervisor.next_deadline()
        if deadline is not None:
            candidates.append(deadline - now)
        removal = self.library.next_removal()
        if removal is not None:
            candidates.append(removal - now)
        due = self.library.settler.next_due()
        if due is not None:
            candidates.append(due - wall)
        rebuild = self.playlists.next_due()
        if rebuild is not None:
            candidates.append(rebuild - now)
        ping = self.health.watchdog_due(now)
        if ping is not None:
            candidates.append(ping - now)
        if self._stop_requested_at is not None:
            candidates.append(0.5)
        return max(0.0, min(candidates))

    def run(self) -> int:
        problems = [f"library.paths: {root} does not exist (and nothing in it was ever analysed): "
                    f"create it, or name your music folder in library.paths ({self.config.source})"
                    for root in self.library.unknown_roots()]
        if problems:
            raise ConfigError(self.config.source, problems)
        self.api.start(self.config)
        self._install_signals()
        self.loop.supervisor.start()
        self.watcher.start()
        self._start_reconcile()
        self.radio.start()
        self.loop.check_memory(time.monotonic(), force=True)
        self.health.ready(self._status_line())
        log.info("tunescout %s running: library %s, database %s", __version__,
                 ", ".join(str(p) for p in self.config.library.paths), self.store.path,
                 extra={"EVENT": "started"})
        try:
            return self._main_loop()
        finally:
            self.api.stop()
            self.playlists.join(timeout_s=10)
            self.radio.stop()
            self.watcher.stop()
            self.store.set_daemon_state({"state": "stopped", "pid": os.getpid(),
                                         "updated_at": time.time(), "status": "stopped"})
            self.loop.close()

    def _main_loop(self) -> int:
        while True:
            now, wall = time.monotonic(), time.time()
            try:
                readable = self.loop.wait(self._timeout(now, wall))
                now, wall = time.monotonic(), time.time()
                self._handle_signals(now)
                writable = self._db_wait.writable(now, self.store, self.loop.supervisor.pending)
                if writable is False:
                    if self._waiting_turn(readable, now):
                        return 0
                    continue
                if writable is None:
                    self._next_rescan = 0.0  # what arrived while writes were refused
                if self._turn(readable, now, wall):
                    return 0
            except DatabaseUnavailable as exc:  # a full disk, a lock held elsewhere: wait, alive
                self._db_wait.refused(exc, now)
                self._waiting_turn(set(), now)
                continue
            except Exception as exc:  # the main loop must survive anything
                if self._loop_failed(exc, now):
                    return 1
                continue
            self._errors = 0
            self.health.ping(now)

    def _turn(self, readable: set[int], now: float, wall: float) -> bool:
        """One turn of the loop; return True when the daemon has stopped."""
        self._drain_changes(wall)
        self.library.queue_settled(wall)
        if self._walk is not None:
            self._finish_reconcile(wall)
        if now >= self._next_rescan and not self._walking:
            self._start_reconcile()
        self._check_roots(now)
        self.library.forget_deleted(now)
        stopping = self._stop_requested_at is not None
        if self._stop_requested_at is not None and now - self._stop_requested_at >= STOP_GRACE_S:
            self.loop.supervisor.stop_all(now)
        self.loop.step(readable, now, dispatch=not stopping)
        if stopping and not self.loop.busy():
            log.info("stopped; %d files queued for next time", self.store.queue_length(),
                     extra={"EVENT": "stopped"})
            return True
        if not stopping:
            progress = self.loop.supervisor.progress
            self.playlists.tick(now, progress.analysed + progress.failed
                                + progress.quarantined + self.library.changes)
        self._publish(now)
        return False

    def _waiting_turn(self, readable: set[int], now: float) -> bool:
        """A turn while the database refuses writes: read the children (their results are kept),
        tell systemd why, keep pinging; return True when a stop has finished."""
        if self._stop_requested_at is not None:
            self.loop.supervisor.stop_all(now)
        self.loop.step(readable, now, dispatch=False)
        if self._stop_requested_at is not None and not self.loop.busy():
            log.info("stopped while the database refused writes; the files stay queued",
                     extra={"EVENT": "stopped"})
            return True
        self.health.status(self._status_line())
        self.health.ping(now)
        return False

    def _loop_failed(self, exc: Exception, now: float) -> bool:
        """Log a failed loop turn without flooding the journal, back off; True: give up (stopping).

        The watchdog is not pinged while turns fail, so systemd restarts a daemon whose failures
        last longer than WatchdogSec (a full disk, a database that went away).
        """
        self._errors += 1
        text = str(exc) if isinstance(exc, TunescoutError) else f"{type(exc).__name__}: {exc}"
        if text != self._last_error or now - self._last_error_at >= 60:
            self._last_error, self._last_error_at = text, now
            log.error("main loop: %s%s", text,
                      f" (failing for {self._errors} turns)" if self._errors > 1 else "",
                      exc_info=not isinstance(exc, TunescoutError), extra={"EVENT": "error"})
        if self._stop_requested_at is not None and not self.loop.busy():
            log.error("stopping after errors", extra={"EVENT": "stopped"})
            return True
        time.sleep(min(10.0, 0.5 * 2 ** min(self._errors, 5)))
        return False


def _by_extension(counts: Counter[str]) -> str:
    return ", ".join(f"{ext} {n}" for ext, n in counts.most_common())


def run_daemon(config: Config, config_path: Path | None, env: Mapping[str, str], *,
               log_target: str | None = None) -> int:
    """Run the daemon until SIGTERM; return the exit status.

    The database's writer lock is taken before the database is opened (or migrated) and held
    until the end: a second daemon on the same database stops at once, naming this one.
    """
    with DatabaseLock(config.store.path, "run"):
        return Service(config, config_path, env, log_target=log_target).run()
