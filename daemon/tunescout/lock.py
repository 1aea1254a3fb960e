"""One writer per database: an advisory lock on a file beside it, which dies with its holder.

The daemon (and `scan`, which writes results too) holds an exclusive `flock` on `DB.lock` for
as long as it runs; the kernel drops it when the process ends, however it ends (kill -9
included), so a stale lock never blocks a restart. The file holds the holder's pid and command,
so a second writer can say who is in the way, and `status` can tell a running daemon from a
"running" row left behind by one that died.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from tunescout.errors import StoreError


class DatabaseBusy(StoreError):
    """Another process holds the database's writer lock."""

    def __init__(self, db: Path, holder: Holder | None) -> None:
        self.db = db
        self.holder = holder
        who = f"{holder.command} (pid {holder.pid})" if holder else "another process"
        super().__init__(f"tunescout {who} is already using the database {db}")


@dataclass(frozen=True)
class Holder:
    """Who holds the lock: read from the lock file."""

    pid: int
    command: str


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


class DatabaseLock:
    """The exclusive writer lock of one database (a context manager; `release` to end early)."""

    def __init__(self, db: Path, command: str) -> None:
        self.db = db
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> DatabaseLock:
        """Take the lock or raise DatabaseBusy naming its holder; StoreError when it cannot be made."""
        path = lock_path(self.db)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {path}: {exc.strerror}; check that its "
                             "folder is writable by this user, or set store.path") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DatabaseBusy(self.db, read_holder(self.db)) from None
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.command}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays for the next holder
            self._fd = None

    def __enter__(self) -> DatabaseLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *_: object) -> None:
        self.release()


def read_holder(db: Path) -> Holder | None:
    """Return who holds the database's lock now, or None when nobody does (read-only: the CLI).

    A shared lock that can be taken means no writer holds the exclusive one.
    """
    path = lock_path(db)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            return _parse(os.pread(fd, 4096, 0))
        return None
    finally:
        os.close(fd)


def _parse(data: bytes) -> Holder | None:
    pid, _, command = data.decode(errors="replace").strip().partition(" ")
    return Holder(int(pid), command or "?") if pid.isdigit() else Holder(0, "?")
