"""The database's schema, its migrations, and opening a connection: the writer's (creating and
migrating the file) or a reader's (read-only, refusing a schema it does not know).

Paths are stored as BLOBs of their exact bytes, so names that are not UTF-8 survive: `blob` and
`path_of` are the one spelling of that, for the reader and the writer alike.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tunescout.errors import DatabaseLocked, DiskFull, StoreError

_MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        path BLOB NOT NULL UNIQUE,
        dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'analysed', 'failed', 'quarantined')),
        digest TEXT,
        duration_s REAL,
        tags TEXT,
        cover TEXT,
        tags_error TEXT,
        decode_warning TEXT,
        first_seen REAL NOT NULL,
        analysed_at REAL
    );
    CREATE INDEX files_digest ON files (digest);
    CREATE INDEX files_inode ON files (dev, ino);
    CREATE TABLE features (
        digest TEXT NOT NULL,
        grp TEXT NOT NULL,
        version INTEGER NOT NULL,
        vals TEXT NOT NULL,
        computed_at REAL NOT NULL,
        PRIMARY KEY (digest, grp)
    );
    CREATE TABLE failures (
        path BLOB PRIMARY KEY,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL,
        size INTEGER, mtime_ns INTEGER,
        attempts INTEGER NOT NULL DEFAULT 1,
        quarantined INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE queue (
        path BLOB PRIMARY KEY,
        priority INTEGER NOT NULL,
        enqueued_at REAL NOT NULL,
        solo INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX queue_order ON queue (priority DESC, enqueued_at);
    CREATE TABLE daemon_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: recordings no file refers to any more, kept for a grace period (delete, then re-add)
    """
    CREATE TABLE orphans (digest TEXT PRIMARY KEY, since REAL NOT NULL);
    """,
    # 3: per folder, the fingerprint of the last reconcile walk that agreed with its files rows
    # (NULL once a row of that folder changed) and how many rows it had then: see library/walk.py
    # Orphans are noted from now on where a file lets go of its digest (`_let_go` in the writer),
    # not found by a scan of every feature at each reconcile: the ones a version 2 database has
    # are noted here.
    """
    CREATE TABLE folders (path BLOB PRIMARY KEY, files INTEGER NOT NULL, fingerprint BLOB);
    INSERT OR IGNORE INTO orphans (digest, since) SELECT DISTINCT digest, -1 FROM features
        WHERE digest NOT IN (SELECT digest FROM files WHERE digest IS NOT NULL);
    """,
    # 4: what a decode warning amounts to ("truncated", "corrupt": models.DecodeWarning), so that
    # status can count suspect files and playlists leave them out; the warnings a version 3
    # database holds are classified from their text (the messages decode.py has always written).
    """
    ALTER TABLE files ADD COLUMN warning_kind TEXT;
    UPDATE files SET warning_kind = CASE
        WHEN decode_warning LIKE '%partial decode%' OR decode_warning LIKE '%stopped early%'
            THEN 'truncated'
        WHEN decode_warning LIKE '%corrupt packet%' THEN 'corrupt'
        END
        WHERE decode_warning IS NOT NULL;
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)


def blob(path: Path) -> bytes:
    """Return a path as the bytes the database keys it by."""
    return os.fsencode(path)


def path_of(raw: bytes) -> Path:
    """Return the path a database key names (undecodable bytes become surrogates, losslessly)."""
    return Path(os.fsdecode(raw))


def _explain(exc: sqlite3.Error, path: Path) -> str:
    """Return what went wrong with the database in words that say how to fix it."""
    text = str(exc)
    if "readonly" in text or "unable to open" in text:
        return (
            f"cannot open the database {path} ({text}); check that its folder exists and is "
            "writable by this user, or set store.path"
        )
    if "locked" in text or "busy" in text:
        return f"the database {path} is locked by another process ({text}); is a second daemon running?"
    if "malformed" in text or "not a database" in text:
        return (
            f"the database {path} is damaged ({text}); move it aside and restart: the daemon "
            "rebuilds it from the library"
        )
    return f"database {path}: {text}"


WRITE_WAIT_S = 2.0
"""How long a write waits for another process's lock before it is kept for later (DatabaseLocked):
short, so that the daemon's loop keeps pinging systemd's watchdog while the lock lasts."""


def connect_writer(path: Path) -> sqlite3.Connection:
    """Open (creating and migrating) the database for the daemon, the only writer."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=WRITE_WAIT_S, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a power cut loses no committed result
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn, path)
    except sqlite3.Error as exc:
        raise StoreError(_explain(exc, path)) from exc
    except OSError as exc:
        raise StoreError(f"cannot create the folder of {path}: {exc.strerror}") from exc
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """Open the database read-only, as the CLI does while the daemon runs; refuse a schema this
    tunescout cannot read (a reader never migrates: that is the daemon's write)."""
    if not path.exists():
        raise StoreError(
            f"no database at {path}: start the daemon (tunescout run) or scan once "
            "(tunescout scan), or point store.path at the right file"
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(_explain(exc, path)) from exc
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"the database {path} has schema {version}, newer than this tunescout "
            f"({SCHEMA_VERSION}): upgrade tunescout"
        )
    if version < SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"the database {path} has an old schema ({version}): "
                         "start the daemon to migrate it")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """Run a block as one write transaction; an SQLite error comes out as an explained StoreError
    (DiskFull or DatabaseLocked when waiting will cure it). Nothing of a failed block stays: a
    COMMIT refused for want of space leaves its transaction open, so it is rolled back too."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise _store_error(exc, path) from exc


def _store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """Return the StoreError an SQLite error means: one that waiting cures, or one to explain."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _free_bytes(path) < 1 << 20):
        need = _room_needed(path)
        return DiskFull(f"the disk under the database {path} is full ({exc}): free at least "
                        f"~{need} MB there; analysis waits and resumes by itself",
                        f"disk full: {path.parent} needs ~{need} MB")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        holder = lock_holder(path)
        who = f"pid {holder}" if holder else "another process"
        return DatabaseLocked(f"the database {path} is locked by {who} ({exc}); analysis waits "
                              "and goes on when it is free", f"database locked by {who}")
    return StoreError(_explain(exc, path))


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def _room_needed(path: Path) -> int:
    """Return the MB to free, roughly: room for the write-ahead log to take a checkpoint's worth
    of pages (1 % of the database, at least 16 MB), less what is free."""
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    return max(16, math.ceil((max(16 << 20, size // 100) - _free_bytes(path)) / 1e6))


def lock_holder(path: Path) -> int | None:
    """Return the pid of another process holding a POSIX write lock on the database or its WAL
    index (/proc/locks), or None. SQLite's write lock in WAL mode is a byte lock on `DB-shm`."""
    inodes = set()
    for candidate in (path, path.with_name(path.name + "-shm")):
        with suppress(OSError):
            st = candidate.stat()
            inodes.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if (len(fields) < 6 or fields[1] not in ("POSIX", "OFDLCK") or fields[3] != "WRITE"
                or not fields[4].isdigit()):
            continue  # readers hold READ locks; the one in the way holds the WRITE lock
        major, minor, inode = fields[5].split(":")
        pid = int(fields[4])
        if pid != os.getpid() and (int(major, 16), int(minor, 16), int(inode)) in inodes:
            return pid
    return None


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database {path} has schema {version}, newer than this tunescout "
            f"({SCHEMA_VERSION}): upgrade tunescout or move the database aside"
        )
    for number in range(version, SCHEMA_VERSION):
        with transaction(conn, path):
            for statement in _MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
