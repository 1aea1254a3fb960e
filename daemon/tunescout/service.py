"""Wire everything together and own the main loop and the signals. Nothing imports this module."""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tunescout.config import Config, load_config
from tunescout.errors import ConfigError, TunescoutError
from tunescout.health import Health
from tunescout.intake import Settler, is_candidate
from tunescout.logs import setup_logging
from tunescout.memory import MemoryGate, MemoryReading, read_memory, worker_budget
from tunescout.models import FileIdentity
from tunescout.scan import Walk, plan_reconcile, walk_library
from tunescout.store import PRIORITY_BACKFILL, PRIORITY_NEW, Job, Store
from tunescout.supervisor import Supervisor
from tunescout.units import format_duration, format_size
from tunescout.watcher import Change, Watcher

log = logging.getLogger("tunescout.service")

STATUS_EVERY_S = 2.0  # while busy
HEARTBEAT_EVERY_S = 60.0  # daemon state written to the database while idle
MEMORY_EVERY_S = 2.0
STOP_GRACE_S = 10.0  # running children may finish their file before being stopped
SUMMARY_EVERY_S = 60.0


class Loop:
    """What `run` and `scan` share: the store, the supervisor, the memory gate, the wake pipe."""

    def __init__(self, config: Config, env: Mapping[str, str]) -> None:
        self.config = config
        self.env = env
        self.store = Store.open(config.store.path)
        self.supervisor = Supervisor(config, self.store, env)
        self.gate = MemoryGate(config.memory.min_available_bytes, config.memory.pause_above_percent,
                               config.memory.resume_below_percent)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.workers = 0
        self.memory: MemoryReading | None = None
        self._memory_at = 0.0

    def wake(self) -> None:
        """Wake the main loop from another thread or a signal handler."""
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # already awake

    def wait(self, timeout_s: float | None) -> set[int]:
        """Sleep until a descriptor is readable or the timeout passes; return the readable ones.

        A fresh poll set each time: result pipes are closed and their numbers reused, which a
        long-lived epoll registration would silently miss.
        """
        poller = select.poll()
        for fd in [self._wake_r, *self.supervisor.fds()]:
            poller.register(fd, select.POLLIN)
        timeout_ms = None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999))
        ready = {fd for fd, _ in poller.poll(timeout_ms)}
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        return ready

    def check_memory(self, now: float, *, force: bool = False) -> None:
        """Read memory, move the gate, and size the worker pool; log every change with figures."""
        if not force and now - self._memory_at < MEMORY_EVERY_S:
            return
        self._memory_at = now
        self.memory = reading = read_memory()
        if self.gate.update(reading):
            figures = {"MEM_AVAILABLE_BYTES": reading.available_bytes,
                       "MEM_USED_PERCENT": round(reading.used_percent, 1), "MEM_SOURCE": reading.source}
            if self.gate.paused_reason:
                log.warning("pausing analysis: %s", self.gate.paused_reason,
                            extra={"EVENT": "paused", **figures})
            else:
                log.info("resuming analysis: %s available (%.0f %% used)",
                         format_size(reading.available_bytes), reading.used_percent,
                         extra={"EVENT": "resumed", **figures})
        w = self.config.workers
        workers = 0 if self.gate.paused_reason else worker_budget(
            reading, max_workers=w.max_workers, child_budget_bytes=w.child_budget_bytes,
            reserve_bytes=self.config.memory.reserve_bytes)
        if workers != self.workers:
            log.info("workers: %d (%s available, %s per child)", workers,
                     format_size(reading.available_bytes), format_size(w.child_budget_bytes),
                     extra={"EVENT": "workers", "WORKERS": workers,
                            "MEM_AVAILABLE_BYTES": reading.available_bytes})
            self.workers = workers

    def step(self, readable: set[int], now: float, *, dispatch: bool) -> None:
        self.supervisor.poll(readable, now)
        if dispatch and self.supervisor.ready:
            self.check_memory(now)
            self.supervisor.dispatch(self.workers, now)

    def close(self) -> None:
        if self.supervisor.zygote is not None:
            self.supervisor.zygote.stop()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.store.close()


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
        self.settler = Settler(config.intake.settle_s)
        self.watcher = Watcher(config.library.paths, config.library.watch,
                               config.library.poll_interval_s, self.loop.wake)
        self._signals: list[int] = []
        self._stop_requested_at: float | None = None
        self._walk: Walk | None = None
        self._walking = False
        self._next_rescan = 0.0
        self._next_root_check = time.monotonic() + config.library.poll_interval_s
        self._last_status_at = 0.0
        self._published_shape: tuple[bool, bool] | None = None  # (busy, analysis ready)
        self._last_heartbeat = 0.0
        self._last_summary = time.monotonic()
        self._summary_base = (0, 0)
        self._started_at = time.time()
        self.keeper = self._playlist_keeper(config)
        self._changes_seen = 0
        self._doomed: dict[Path, float] = {}  # deleted paths -> when to forget them
        self._removed = 0  # files forgotten or moved, for the playlist keeper

    # --- playlists ----------------------------------------------------------------------------

    def _playlist_keeper(self, config: Config) -> Any:
        """Return a PlaylistKeeper for the configured playlists, or None when there are none."""
        if not config.playlists.specs:
            return None
        from tunescout.playlist_io import PlaylistKeeper  # numpy: only with playlists configured

        history = config.playlists.history or config.store.path.with_name("playlist-history.json")
        return PlaylistKeeper(config.playlists.specs, config.playlists.debounce_s, history,
                              time.monotonic())

    def _keep_playlists(self, now: float) -> None:
        """Rebuild the configured playlists once the library has been quiet for the debounce."""
        progress = self.loop.supervisor.progress
        done = progress.analysed + progress.failed + progress.quarantined
        if done != self._changes_seen:
            self._changes_seen = done
            self.keeper.note_change(now)
        if self.keeper.due(now):
            written = self.keeper.rebuild(self.store, time.time())
            for path in written:
                log.info("playlist written to %s", path,
                         extra={"EVENT": "playlist_written", "TRACK_PATH": str(path)})

    # --- signals ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)

    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(self.loop._wake_w, warn_on_full_buffer=False)

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
        self.loop.config = new
        self.loop.supervisor.config = new
        self.loop.gate = MemoryGate(new.memory.min_available_bytes, new.memory.pause_above_percent,
                                    new.memory.resume_below_percent)
        self.settler.settle_s = new.intake.settle_s
        self.keeper = self._playlist_keeper(new)
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
        exts = self.config.library.extensions
        while True:
            try:
                change = self.watcher.changes.get_nowait()
            except Exception:  # queue.Empty
                return
            self._apply_change(change, wall, exts)

    def _apply_change(self, change: Change, wall: float, exts: frozenset[str]) -> None:
        """Apply one watcher change; removals and moves count as library changes (playlists)."""
        before = self._removed
        self._apply(change, wall, exts)
        if self._removed != before and self.keeper is not None:
            self.keeper.note_change(time.monotonic())

    def _apply(self, change: Change, wall: float, exts: frozenset[str]) -> None:
        if change.kind == "written" and is_candidate(change.path, exts):
            self.settler.touch(change.path, wall)
        elif change.kind == "deleted":
            # not at once: a move into a folder inotify does not watch yet looks like a delete,
            # and the file turns up under its new name a moment later (see _changed_only)
            self.settler.forget(change.path)
            self._doomed[change.path] = time.monotonic() + self.config.intake.settle_s + 2
        elif change.kind == "moved" and change.dest is not None:
            self.settler.forget(change.path)
            if not is_candidate(change.dest, exts):
                self.store.remove_files([change.path])
            elif self.store.rename(change.path, change.dest, tree=False):
                self._removed += 1
                log.info("moved %s to %s", change.path, change.dest,
                         extra={"EVENT": "moved", "TRACK_PATH": str(change.dest)})
            else:
                self.settler.touch(change.dest, wall)
        elif change.kind == "dir_moved" and change.dest is not None:
            self.settler.forget_under(change.path)
            moved = self.store.rename(change.path, change.dest, tree=True)
            self._removed += moved
            if moved:
                log.info("moved folder %s to %s (%d files keep their analysis)", change.path,
                         change.dest, moved, extra={"EVENT": "moved", "TRACK_PATH": str(change.dest)})
            self._touch_tree(change.dest, wall)
        elif change.kind == "dir_added":
            self._touch_tree(change.path, wall)
        elif change.kind == "dir_deleted" and change.path in self.config.library.paths:
            # an unmounted disk or a vanished automount: keep every file, wait for its return
            self.settler.forget_under(change.path)
            self._root_missing(change.path)
        elif change.kind == "dir_deleted":
            self.settler.forget_under(change.path)
            gone = self.store.remove_tree(change.path)
            self._removed += gone
            if gone:
                log.info("removed folder %s", change.path, extra={"EVENT": "removed"})

    def _root_missing(self, root: Path) -> None:
        if self.watcher.modes.get(root) != "missing":
            self.watcher.modes[root] = "missing"
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
            if mode == "missing" and present:
                log.info("library folder %s is back", root,
                         extra={"EVENT": "root_returned", "TRACK_PATH": str(root)})
                returned = True
            elif mode != "missing" and not present:
                self._root_missing(root)
        if returned:
            self.watcher.stop()
            self.watcher = Watcher(self.config.library.paths, self.config.library.watch,
                                   self.config.library.poll_interval_s, self.loop.wake)
            self.watcher.start()
            self._start_reconcile()

    def _touch_tree(self, folder: Path, wall: float) -> None:
        """Settle the files of a folder that appeared; `_changed_only` drops the known ones.

        Costs one walk of that folder, not a load of the whole library's rows.
        """
        walk = walk_library((folder,), self.config.library.extensions)
        for raw in walk.files:
            self.settler.touch(Path(os.fsdecode(raw)), wall)

    def _changed_only(self, paths: list[Path]) -> list[Path]:
        """Drop files whose recorded identity still holds: an event is not a change.

        Editors and players open files for writing without changing them; a failed or
        quarantined file is retried only when it really changed. A new name for a known inode
        whose old name is gone is a move: the rows follow it.
        """
        changed = []
        for path in paths:
            known = self.store.file_identity(path)
            try:
                identity = FileIdentity.from_stat(os.stat(path))
            except OSError:
                continue
            if known is None and self._moved_here(path, identity):
                continue
            if known is None or known[1] == "pending" or known[0] != identity:
                changed.append(path)
        return changed

    def _moved_here(self, path: Path, identity: FileIdentity) -> bool:
        old = self.store.path_with_identity(identity)
        if old is None or old == path or old.exists():
            return False
        self._doomed.pop(old, None)
        self.store.rename(old, path, tree=False)
        self._removed += 1
        log.info("moved %s to %s", old, path, extra={"EVENT": "moved", "TRACK_PATH": str(path)})
        return True

    def _remove_doomed(self, now: float) -> None:
        """Forget files deleted a grace period ago that did not turn up elsewhere."""
        for path, due in list(self._doomed.items()):
            if now < due:
                continue
            del self._doomed[path]
            if not path.exists() and self.store.remove_files([path]):
                self._removed += 1
                if self.keeper is not None:
                    self.keeper.note_change(now)
                log.info("removed %s", path, extra={"EVENT": "removed", "TRACK_PATH": str(path)})

    # --- reconcile ----------------------------------------------------------------------------

    def _start_reconcile(self) -> None:
        if self._walking:
            return
        self._walking = True
        roots = self.config.library.paths
        exts = self.config.library.extensions

        def walk() -> None:
            self._walk = walk_library(roots, exts)
            self.loop.wake()

        threading.Thread(target=walk, name="reconcile", daemon=True).start()

    def _finish_reconcile(self, wall: float) -> None:
        walk, self._walk, self._walking = self._walk, None, False
        assert walk is not None
        plan = plan_reconcile(walk, self.store.identities(), self.store.queued_paths())
        inotify_roots = tuple(r for r, m in self.watcher.modes.items() if m.startswith("inotify"))
        if inotify_roots and set(inotify_roots) == set(walk.complete_roots):
            self.watcher.check_coverage(walk.dirs)
        ready, settling = [], 0
        for path in plan.new + plan.changed:
            identity = walk.files[os.fsencode(path)]
            if wall - identity.mtime_ns / 1e9 < self.config.intake.settle_s:
                self.settler.touch(path, wall)  # still being written, perhaps
                settling += 1
            else:
                ready.append(path)
        self.store.enqueue(ready, PRIORITY_BACKFILL)
        for old, new in plan.moved:
            self.store.rename(old, new, tree=False)
            log.info("moved %s to %s", old, new, extra={"EVENT": "moved", "TRACK_PATH": str(new)})
        removed = self.store.remove_files(plan.removed) if plan.removed else 0
        self._removed += removed + len(plan.moved)
        log.info("reconciled %d files: %d new, %d changed, %d moved, %d removed, %d unchanged",
                 len(walk.files), len(plan.new), len(plan.changed), len(plan.moved), removed,
                 plan.unchanged, extra={"EVENT": "reconciled", "FILES": len(walk.files),
                                        "NEW": len(plan.new), "CHANGED": len(plan.changed),
                                        "MOVED": len(plan.moved), "REMOVED": removed})
        self._next_rescan = time.monotonic() + self.config.intake.rescan_interval_s

    # --- status -------------------------------------------------------------------------------

    def _state(self) -> str:
        if self._stop_requested_at is not None:
            return "stopping"
        if self.loop.gate.paused_reason:
            return "paused"
        return "running"

    def _status_line(self) -> str:
        counts = self.store.counts()
        progress = self.loop.supervisor.progress
        parts = [f"{self._state()}"]
        if self.loop.supervisor.fatal:
            parts.append(f"analysis stopped: {self.loop.supervisor.fatal}")
        elif not self.loop.supervisor.ready:
            parts.append("starting the analysis stack")
        total = counts["analysed"] + counts["failed"] + counts["queued"]
        parts.append(f"analysed {counts['analysed']:,}/{total:,}")
        parts.append(f"queue {counts['queued']:,}")
        elapsed_min = max(1e-9, (time.monotonic() - progress.started_at) / 60)
        if progress.analysed:
            rate = progress.analysed / elapsed_min
            parts.append(f"{rate:.1f} tracks/min")
            if counts["queued"]:
                parts.append(f"ETA {format_duration(counts['queued'] / rate * 60)}")
        if self.loop.gate.paused_reason:
            parts.append(f"paused: {self.loop.gate.paused_reason}")
        if counts["failed"]:
            parts.append(f"{counts['failed']} failed")
        if len(self.settler):
            parts.append(f"{len(self.settler)} settling")
        if self._walking:
            parts.append("scanning the library")
        parts.append(self.watcher.summary())
        return " · ".join(parts)

    def _publish(self, now: float, *, force: bool = False) -> None:
        busy = self.loop.supervisor.busy() or self._walking or len(self.settler) > 0
        shape = (busy, self.loop.supervisor.ready)
        changed, self._published_shape = shape != self._published_shape, shape
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
            "in_flight": sorted(str(p) for p in sup.in_flight()),
            "watch": self.watcher.modes and {str(k): v for k, v in self.watcher.modes.items()},
            "settling": len(self.settler), "analysis_error": sup.fatal,
            "memory_available_bytes": self.loop.memory.available_bytes if self.loop.memory else None,
        })
        self._last_heartbeat = now
        self._summary(now)

    def _summary(self, now: float) -> None:
        """Log one line per minute while working, so a backfill does not flood the journal."""
        progress = self.loop.supervisor.progress
        done = (progress.analysed, progress.failed + progress.quarantined)
        if now - self._last_summary < SUMMARY_EVERY_S or done == self._summary_base:
            return
        analysed = done[0] - self._summary_base[0]
        failed = done[1] - self._summary_base[1]
        self._summary_base, self._last_summary = done, now
        log.info("progress: %d analysed, %d failed in the last minute; %d queued", analysed, failed,
                 self.store.queue_length(), extra={"EVENT": "progress", "ANALYSED": analysed,
                                                    "FAILED": failed})

    # --- the main loop ------------------------------------------------------------------------

    def _timeout(self, now: float, wall: float) -> float:
        candidates = [self._next_rescan - now, self._last_status_at + HEARTBEAT_EVERY_S - now,
                      self._next_root_check - now]
        if self.loop.supervisor.busy() or self._walking or not self.loop.supervisor.ready:
            candidates.append(STATUS_EVERY_S)
        if self.store.queue_length() and self.loop.workers == 0:
            candidates.append(MEMORY_EVERY_S)  # paused or no worker fits: look again soon
        deadline = self.loop.supervisor.next_deadline()
        if deadline is not None:
            candidates.append(deadline - now)
        if self._doomed:
            candidates.append(min(self._doomed.values()) - now)
        due = self.settler.next_due()
        if due is not None:
            candidates.append(due - wall)
        if self.keeper is not None and self.keeper.next_due() is not None:
            candidates.append(self.keeper.next_due() - now)
        ping = self.health.watchdog_due(now)
        if ping is not None:
            candidates.append(ping - now)
        if self._stop_requested_at is not None:
            candidates.append(0.5)
        return max(0.0, min(candidates))

    def run(self) -> int:
        self._install_signals()
        self.loop.supervisor.start()
        self.watcher.start()
        self._start_reconcile()
        self.loop.check_memory(time.monotonic(), force=True)
        self.health.ready(self._status_line())
        log.info("tunescout %s running: library %s, database %s", _version(),
                 ", ".join(str(p) for p in self.config.library.paths), self.store.path,
                 extra={"EVENT": "started"})
        try:
            return self._main_loop()
        finally:
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
                self._drain_changes(wall)
                ready = self._changed_only(self.settler.ready(wall))
                if ready:
                    self.store.enqueue(ready, PRIORITY_NEW)
                if self._walk is not None:
                    self._finish_reconcile(wall)
                if now >= self._next_rescan and not self._walking:
                    self._start_reconcile()
                self._check_roots(now)
                self._remove_doomed(now)
                stopping = self._stop_requested_at is not None
                if self._stop_requested_at is not None and now - self._stop_requested_at >= STOP_GRACE_S:
                    self.loop.supervisor.stop_all(now)
                self.loop.step(readable, now, dispatch=not stopping)
                if stopping and not self.loop.supervisor.busy():
                    log.info("stopped; %d files queued for next time", self.store.queue_length(),
                             extra={"EVENT": "stopped"})
                    return 0
                if self.keeper is not None and not stopping:
                    self._keep_playlists(now)
                self._publish(now)
            except TunescoutError as exc:  # the main loop must survive anything
                log.error("main loop: %s", exc, extra={"EVENT": "error"})
                time.sleep(1)
                continue
            except Exception:
                log.exception("main loop: unexpected error", extra={"EVENT": "error"})
                time.sleep(1)
                continue
            self.health.ping(now)


def _version() -> str:
    from tunescout import __version__

    return __version__


def run_daemon(config: Config, config_path: Path | None, env: Mapping[str, str], *,
               log_target: str | None = None) -> int:
    """Run the daemon until SIGTERM; return the exit status."""
    return Service(config, config_path, env, log_target=log_target).run()


def run_scan(config: Config, targets: list[Path], env: Mapping[str, str],
             on_progress: Callable[[int, int, int], None]) -> tuple[int, int, list[Path]]:
    """Analyse the given files once, without watching; return (analysed, failed, not recorded)."""
    loop = Loop(config, env)
    try:
        loop.store.enqueue(targets, PRIORITY_NEW)
        pending = {p: None for p in targets}  # ordered set of files not yet recorded
        interrupted: list[int] = []
        old = signal.signal(signal.SIGINT, lambda s, f: interrupted.append(s))
        old_term = signal.signal(signal.SIGTERM, lambda s, f: interrupted.append(s))
        signal.set_wakeup_fd(loop._wake_w, warn_on_full_buffer=False)

        def source(limit: int, exclude: set[Path]) -> list[Job]:
            queued = {j.path: j for j in loop.store.next_jobs(len(pending) + 1, exclude)}
            return [queued[p] for p in pending if p in queued][:limit]

        loop.supervisor.job_source = source
        loop.supervisor.start()
        total = len(targets)
        stop_at: float | None = None
        while pending:
            now = time.monotonic()
            readable = loop.wait(1.0)
            now = time.monotonic()
            if interrupted and stop_at is None:
                stop_at = now
                loop.supervisor.stop_all(now)
            loop.step(readable, now, dispatch=stop_at is None)
            queued = loop.store.queued_paths()
            in_flight = loop.supervisor.in_flight()
            for path in [p for p in pending if os.fsencode(p) not in queued and p not in in_flight]:
                del pending[path]
            progress = loop.supervisor.progress
            on_progress(total - len(pending), total, progress.failed + progress.quarantined)
            if loop.supervisor.fatal or (stop_at is not None and not loop.supervisor.busy()):
                break
        signal.signal(signal.SIGINT, old)
        signal.signal(signal.SIGTERM, old_term)
        progress = loop.supervisor.progress
        return progress.analysed, progress.failed + progress.quarantined, list(pending)
    finally:
        signal.set_wakeup_fd(-1)
        loop.close()
