"""Watch the library roots: inotify on local filesystems, polling where inotify is blind."""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)

# Filesystems on which inotify sees only changes made by this machine (or none at all).
NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "sshfs", "davfs",
     "virtiofs", "lustre", "gpfs", "beegfs"}
)


OBSERVER_TIMEOUT_S = 5.0


class ChangeKind(StrEnum):
    """What happened below a root, in the watcher's words."""

    WRITTEN = "written"
    DELETED = "deleted"
    MOVED = "moved"
    DIR_ADDED = "dir_added"
    DIR_DELETED = "dir_deleted"
    DIR_MOVED = "dir_moved"
    LINKS = "links"  # a symlinked folder appeared, went or moved (watchdog does not follow them)


class WatchMode(StrEnum):
    """How one root is watched (shown by `status`, the STATUS line and the journal)."""

    INOTIFY = "inotify"
    INOTIFY_PARTIAL = "inotify-partial"  # past the watch limit: the rest by the periodic rescan
    POLL = "poll"
    MISSING = "missing"


@dataclass(frozen=True)
class Change:
    """Something happened below a root: a file was written, moved or deleted, or a folder."""

    kind: ChangeKind
    path: Path
    dest: Path | None = None


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


MOUNTINFO = Path("/proc/self/mountinfo")


def _mounts(mountinfo: Path) -> list[tuple[str, str]]:
    """Return (mount point, filesystem type) for every line of a mountinfo file."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) >= 5 and right:
            mounts.append((_unescape_mountinfo(fields[4]), right.split()[0]))
    return mounts


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def filesystem_type(path: Path, mountinfo: Path = MOUNTINFO) -> str:
    """Return the type of the filesystem that holds `path` (longest mount-point prefix)."""
    target = os.path.realpath(path)
    best, best_type = "", "unknown"
    for mount_point, fs_type in _mounts(mountinfo):
        if (target == mount_point or _inside(target, mount_point)) and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def blind_submounts(path: Path, mountinfo: Path = MOUNTINFO) -> list[tuple[Path, str]]:
    """Return the mount points inside `path` (as paths under it) on filesystems inotify is
    blind to, with their types; one inside another such mount is covered by it."""
    real = os.path.realpath(path)
    blind = sorted((mount_point, fs_type) for mount_point, fs_type in _mounts(mountinfo)
                   if _inside(mount_point, real) and needs_polling(fs_type))
    kept: list[tuple[str, str]] = []
    for mount_point, fs_type in blind:
        if not any(_inside(mount_point, outer) for outer, _ in kept):
            kept.append((mount_point, fs_type))
    return [(path / os.path.relpath(mount_point, real), fs_type) for mount_point, fs_type in kept]


def needs_polling(fs_type: str) -> bool:
    """Return True where inotify cannot be trusted: network and FUSE filesystems."""
    return fs_type in NETWORK_FS_TYPES or fs_type.startswith("fuse")


def uses_polling(mode: str, fs_type: str) -> bool:
    """Return True when `[library] watch = mode` watches a folder on `fs_type` by polling."""
    return mode == "poll" or (mode == "auto" and needs_polling(fs_type))


def count_inotify_watches(pid: str = "self") -> int:
    """Count the inotify watches this process holds (the "inotify wd:" lines of its fdinfo)."""
    total = 0
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    try:
        entries = list(fdinfo.iterdir())
    except OSError:
        return 0
    for entry in entries:
        try:
            total += entry.read_text().count("inotify wd:")
        except OSError:
            continue  # closed meanwhile
    return total


def watch_limit() -> int | None:
    """Return fs.inotify.max_user_watches, or None when it cannot be read."""
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        return None


class _Handler(FileSystemEventHandler):
    """Turn watchdog events into Changes on a queue; runs on the observer's thread."""

    def __init__(self, changes: queue.SimpleQueue[Change], wake: Callable[[], None]) -> None:
        self._changes = changes
        self._wake = wake
        self.links: frozenset[Path] = frozenset()  # the symlinked folders followed
        self.aliases: dict[str, str] = {}  # a followed folder's real path -> its link's path

    def _put(self, change: Change) -> None:
        self._changes.put(change)
        self._wake()

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = self._path(event.src_path)
        if self._is_link_change(event, src):
            self._put(Change(ChangeKind.LINKS, src))
        elif isinstance(event, (FileCreatedEvent, FileModifiedEvent, FileClosedEvent)):
            self._put(Change(ChangeKind.WRITTEN, src))
        elif isinstance(event, FileDeletedEvent):
            self._put(Change(ChangeKind.DELETED, src))
        elif isinstance(event, FileMovedEvent):
            self._put(Change(ChangeKind.MOVED, src, self._path(event.dest_path)))
        elif isinstance(event, DirMovedEvent):
            self._put(Change(ChangeKind.DIR_MOVED, src, self._path(event.dest_path)))
        elif isinstance(event, DirCreatedEvent):
            self._put(Change(ChangeKind.DIR_ADDED, src))
        elif isinstance(event, DirDeletedEvent):
            self._put(Change(ChangeKind.DIR_DELETED, src))


    def _path(self, raw: str | bytes) -> Path:
        """The event's path as the library sees it: through the link for a followed folder."""
        path = os.fsdecode(raw)
        for real, link in self.aliases.items():
            if path == real or _inside(path, real):
                return Path(link + path[len(real):])
        return Path(path)

    def _is_link_change(self, event: FileSystemEvent, src: Path) -> bool:
        """A symlinked folder created, moved in, deleted or renamed (a symlink is a file here)."""
        if src in self.links:
            return isinstance(event, (FileDeletedEvent, FileMovedEvent))
        if isinstance(event, FileCreatedEvent):
            return src.is_symlink() and src.is_dir()
        if isinstance(event, FileMovedEvent):
            dest = self._path(event.dest_path)
            return dest.is_symlink() and dest.is_dir()
        return False


_EVENT_FILTER = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
    DirMovedEvent, DirCreatedEvent, DirDeletedEvent,
]


class Watcher:
    """Own the observers for every root; `changes` is drained by the main loop."""

    def __init__(self, roots: tuple[Path, ...], mode: str, poll_interval_s: float,
                 wake: Callable[[], None], mountinfo: Path = MOUNTINFO) -> None:
        self.roots = roots
        self.mountinfo = mountinfo
        self.mode = mode
        self.poll_interval_s = poll_interval_s
        self.changes: queue.SimpleQueue[Change] = queue.SimpleQueue()
        self._handler = _Handler(self.changes, wake)
        self._observers: list[BaseObserver] = []
        self.modes: dict[Path, WatchMode] = {}
        # threads wake at this interval only to check for stop(): keep an idle daemon quiet
        self._inotify: BaseObserver = Observer(timeout=OBSERVER_TIMEOUT_S)
        self._polling: BaseObserver = PollingObserver(timeout=self.poll_interval_s)
        self._links: dict[Path, tuple[BaseObserver, ObservedWatch]] = {}
        self.polled_mounts: dict[Path, str] = {}  # network mounts inside inotify trees -> type
        self._mount_watches: dict[Path, ObservedWatch] = {}

    def start(self) -> None:
        """Start watching every root that exists; a missing root is logged and skipped."""
        for root in self.roots:
            self.modes[root] = self._schedule(root)
        self._start_observers()

    def _start_observers(self) -> None:
        for observer in (self._inotify, self._polling):
            if observer.emitters and observer not in self._observers:
                observer.daemon = True
                observer.start()
                self._observers.append(observer)

    def follow(self, links: list[Path]) -> list[Path]:
        """Watch the symlinked folders a walk followed, and only those; return the new ones.

        watchdog watches a tree without descending into symlinked folders (nor through a
        symlink), so each gets a watch of its own on its real path (by polling when that is on a
        network filesystem), and its events are told under the link's path.
        """
        for link in [link for link in self._links if link not in links]:
            observer, watch = self._links.pop(link)
            observer.unschedule(watch)
            for mount in [m for m in self._mount_watches if link in m.parents]:
                self._polling.unschedule(self._mount_watches.pop(mount))
                del self.polled_mounts[mount]
            self._handler.aliases = {r: a for r, a in self._handler.aliases.items()
                                     if r != watch.path}
        added = [link for link in links if link not in self._links and link.is_dir()]
        for link in added:
            real = os.path.realpath(link)
            fs_type = filesystem_type(link, self.mountinfo)
            # replaced, not changed in place: the observer threads read it
            self._handler.aliases = {**self._handler.aliases, real: str(link)}
            observer, watch, refused = self._watch(real, uses_polling(self.mode, fs_type))
            if refused is not None:
                fs_type += f", {refused}"
            self._links[link] = (observer, watch)
            if observer is self._inotify:
                self._poll_blind_submounts(link)
            log.info("watching symlinked folder %s (%s) %s", link, fs_type,
                     "by polling" if observer is self._polling else "with inotify",
                     extra={"EVENT": "watching", "TRACK_PATH": str(link), "FS_TYPE": fs_type,
                            "WATCH_MODE": "poll" if observer is self._polling else "inotify"})
        self._handler.links = frozenset(self._links)
        self._start_observers()
        return added

    def _watch(self, path: str, poll: bool) -> tuple[BaseObserver, ObservedWatch, str | None]:
        """Schedule a recursive watch on `path`: by inotify unless `poll`, or when inotify
        refuses it (whose reason is returned), by polling."""
        refused = None
        if not poll:
            try:
                return self._inotify, self._inotify.schedule(
                    self._handler, path, recursive=True, event_filter=_EVENT_FILTER), None
            except OSError as exc:
                refused = exc.strerror or str(exc)
        return self._polling, self._polling.schedule(
            self._handler, path, recursive=True, event_filter=_EVENT_FILTER), refused

    def _schedule(self, root: Path) -> WatchMode:
        if not root.is_dir():
            log.warning("library folder %s does not exist or is not a folder; not watching it",
                        root, extra={"EVENT": "root_missing", "TRACK_PATH": str(root)})
            return WatchMode.MISSING
        fs_type = filesystem_type(root, self.mountinfo)
        poll = uses_polling(self.mode, fs_type)
        *_, refused = self._watch(str(root), poll)
        if poll:
            why = ("configured" if self.mode == "poll"
                   else f"{fs_type} does not report remote changes to inotify")
            log.info("watching %s by polling every %g s (%s)", root, self.poll_interval_s, why,
                     extra={"EVENT": "watching", "WATCH_MODE": "poll", "FS_TYPE": fs_type})
            return WatchMode.POLL
        if refused is not None:
            log.warning("cannot watch %s with inotify (%s); polling every %g s instead",
                        root, refused, self.poll_interval_s,
                        extra={"EVENT": "watching", "WATCH_MODE": "poll", "FS_TYPE": fs_type})
            return WatchMode.POLL
        log.info("watching %s with inotify (%s)", root, fs_type,
                 extra={"EVENT": "watching", "WATCH_MODE": "inotify", "FS_TYPE": fs_type})
        self._poll_blind_submounts(root)
        return WatchMode.INOTIFY

    def _poll_blind_submounts(self, tree: Path) -> None:
        """Poll the network and FUSE mounts inside a tree watched with inotify (which sees
        only this machine's changes there), besides its inotify watches."""
        if self.mode != "auto":
            return  # "inotify" was asked for explicitly
        for mount, fs_type in blind_submounts(tree, self.mountinfo):
            if mount in self._mount_watches:
                continue
            self._mount_watches[mount] = self._polling.schedule(
                self._handler, str(mount), recursive=True, event_filter=_EVENT_FILTER)
            self.polled_mounts[mount] = fs_type
            log.info("also polling %s every %g s (%s mounted inside %s: inotify does not see "
                     "changes made by other machines)", mount, self.poll_interval_s, fs_type, tree,
                     extra={"EVENT": "watching", "WATCH_MODE": "poll", "FS_TYPE": fs_type,
                            "TRACK_PATH": str(mount)})

    def check_coverage(self, dirs: int, wait_s: float = 0.0) -> bool:
        """Compare the watches placed with the folders under inotify roots; warn when short.

        watchdog silently stops adding watches at fs.inotify.max_user_watches: folders past it
        get no events, so say so, with the sysctl that fixes it, and let the rescan cover them.
        `wait_s` gives watches just scheduled (symlinked folders) time to be placed.
        """
        if WatchMode.INOTIFY not in self.modes.values() or dirs == 0:
            return True
        if any(observer is self._polling for observer, _ in self._links.values()):
            return True  # folders under a polled link need no watch, and are not told apart
        deadline = time.monotonic() + wait_s
        watches = count_inotify_watches()
        while watches < dirs and time.monotonic() < deadline:
            time.sleep(0.05)
            watches = count_inotify_watches()
        if watches >= dirs:
            return True
        limit = watch_limit()
        needed = max(dirs * 2, 524288)
        log.warning("only %d of %d library folders are watched (inotify watch limit %s); the rest "
                    "are covered by the periodic rescan. Fix: sysctl fs.inotify.max_user_watches=%d "
                    "(and in /etc/sysctl.d/ to keep it)", watches, dirs, limit, needed,
                    extra={"EVENT": "watch_limit", "WATCHES": watches, "FOLDERS": dirs,
                                   "WATCH_LIMIT": limit, "WATCHES_NEEDED": needed})
        for root, mode in self.modes.items():
            if mode == WatchMode.INOTIFY:
                self.modes[root] = WatchMode.INOTIFY_PARTIAL
        return False

    def polled(self) -> list[Path]:
        """Return the folders watched by polling: roots, symlinked folders or mounts inside."""
        return sorted(Path(emitter.watch.path) for emitter in self._polling.emitters)

    def mark_missing(self, root: Path) -> bool:
        """Note that a root went away; return True when that is news."""
        if self.modes.get(root) == WatchMode.MISSING:
            return False
        self.modes[root] = WatchMode.MISSING
        return True

    def summary(self) -> str:
        """Return how the roots are watched, for the status line: "inotify", "poll", "mixed"."""
        modes = set(self.modes.values())
        return modes.pop() if len(modes) == 1 else "mixed" if modes else "none"

    def stop(self) -> None:
        for observer in self._observers:
            observer.stop()
        for observer in self._observers:
            observer.join(timeout=OBSERVER_TIMEOUT_S + 5)
        self._observers.clear()
