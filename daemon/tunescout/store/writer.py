"""The write side: the daemon's one writer. The queue, the results, renames and removals,
retries, the reconcile's folder fingerprints, orphaned recordings and the daemon's state.

`StoreWriter` is a `StoreReader` (subclassing, not composition): the daemon reads on the
connection it writes on (the supervisor's queue, the reconcile's identities see its own
commits at once, with no second connection and WAL snapshot to keep in step), and a writer
goes wherever a reader is asked for. Only the wiring, the library, the supervisor and the
CLI's `retry` open one; tests/test_layers.py holds that.

The reads here (the queue, identities, fingerprints, stale recordings) are the ones that plan
the daemon's writes; a read-only opener has no use for them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tunescout.models import FEATURE_VERSIONS, FileIdentity, Job, TrackAnalysis
from tunescout.store.reader import DaemonState, StoreReader
from tunescout.store.schema import blob as _b
from tunescout.store.schema import connect_writer, transaction
from tunescout.store.schema import path_of as _p
from tunescout.units import folder_of, subtree_range

# Queue priorities: new arrivals from the watcher go ahead of the reconcile backfill.
PRIORITY_BACKFILL = 0
PRIORITY_NEW = 10
PRIORITY_RETRY = 5


class StoreWriter(StoreReader):
    """The SQLite database as the daemon writes it, through one StoreWriter."""

    @classmethod
    def open(cls, path: Path) -> StoreWriter:
        """Open (creating and migrating) the database for the daemon, the only writer."""
        return cls(connect_writer(path), path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with transaction(self._conn, self.path) as conn:
            yield conn

    # --- the queue ----------------------------------------------------------------------------

    def enqueue(self, paths: Iterable[Path], priority: int) -> int:
        """Queue files (raising the priority of those already queued); return how many are new."""
        now = time.time()
        added = 0
        with self._transaction() as conn:
            for path in paths:
                blob = _b(path)
                known = conn.execute("SELECT 1 FROM queue WHERE path = ?", (blob,)).fetchone()
                conn.execute(
                    "INSERT INTO queue (path, priority, enqueued_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (path) DO UPDATE SET priority = max(priority, excluded.priority)",
                    (blob, priority, now),
                )
                added += known is None
        return added

    def next_jobs(self, limit: int, exclude: set[Path]) -> list[Job]:
        """Return up to `limit` queued jobs, best first, skipping those already in flight."""
        rows = self._conn.execute(
            "SELECT path, priority, solo, attempts FROM queue ORDER BY priority DESC, enqueued_at, rowid "
            "LIMIT ?",
            (limit + len(exclude),),
        ).fetchall()
        jobs = [Job(_p(r[0]), r[1], bool(r[2]), r[3]) for r in rows]
        return [j for j in jobs if j.path not in exclude][:limit]

    def has_queued(self) -> bool:
        """Return True when any job waits (cheap: the main loop asks on every turn)."""
        return self._conn.execute("SELECT 1 FROM queue LIMIT 1").fetchone() is not None

    def mark_solo(self, path: Path) -> None:
        """Retry a file alone after the child that had it died."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE queue SET solo = 1, attempts = attempts + 1, priority = ? WHERE path = ?",
                (PRIORITY_RETRY, _b(path)),
            )

    # --- results ------------------------------------------------------------------------------

    def record_analysis(self, path: Path, identity: FileIdentity, result: TrackAnalysis) -> None:
        """Store one file's tags and features and take it off the queue, in one transaction."""
        now = time.time()
        with self._transaction() as conn:
            before = conn.execute("SELECT digest FROM files WHERE path = ?", (_b(path),)).fetchone()
            conn.execute(
                "INSERT INTO files (path, dev, ino, size, mtime_ns, state, digest, duration_s, tags, "
                "cover, tags_error, decode_warning, warning_kind, first_seen, analysed_at) "
                "VALUES (?, ?, ?, ?, ?, 'analysed', ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (path) DO UPDATE SET dev = excluded.dev, ino = excluded.ino, "
                "size = excluded.size, mtime_ns = excluded.mtime_ns, state = 'analysed', "
                "digest = excluded.digest, duration_s = excluded.duration_s, tags = excluded.tags, "
                "cover = excluded.cover, tags_error = excluded.tags_error, "
                "decode_warning = excluded.decode_warning, warning_kind = excluded.warning_kind, "
                "analysed_at = excluded.analysed_at",
                (
                    _b(path), identity.dev, identity.ino, identity.size, identity.mtime_ns,
                    result.digest, result.duration_s, json.dumps(result.tags),
                    json.dumps(result.cover) if result.cover is not None else None,
                    result.tags_error, result.decode_warning,
                    str(result.warning_kind) if result.warning_kind else None, now, now,
                ),
            )
            for group in result.features:
                conn.execute(
                    "INSERT OR REPLACE INTO features (digest, grp, version, vals, computed_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (result.digest, group.name, group.version, json.dumps(group.values), now),
                )
            conn.execute("DELETE FROM failures WHERE path = ?", (_b(path),))
            conn.execute("DELETE FROM queue WHERE path = ?", (_b(path),))
            conn.execute("DELETE FROM orphans WHERE digest = ?", (result.digest,))
            if before is not None and before[0] not in (None, result.digest):
                _let_go(conn, [before[0]])
            _unsettle(conn, [_b(path)])

    def record_failure(
        self, path: Path, identity: FileIdentity | None, kind: str, reason: str, *, quarantine: bool
    ) -> None:
        """Record why a file failed and take it off the queue; it is retried when it changes."""
        now = time.time()
        state = "quarantined" if quarantine else "failed"
        with self._transaction() as conn:
            if identity is not None:
                conn.execute(
                    "INSERT INTO files (path, dev, ino, size, mtime_ns, state, first_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                    "dev = excluded.dev, ino = excluded.ino, size = excluded.size, "
                    "mtime_ns = excluded.mtime_ns, state = excluded.state",
                    (_b(path), identity.dev, identity.ino, identity.size, identity.mtime_ns, state, now),
                )
                _unsettle(conn, [_b(path)])
            conn.execute(
                "INSERT INTO failures (path, kind, reason, at, size, mtime_ns, quarantined) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET kind = excluded.kind, "
                "reason = excluded.reason, at = excluded.at, size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, attempts = attempts + 1, "
                "quarantined = excluded.quarantined",
                (
                    _b(path), kind, reason, now,
                    identity.size if identity else None, identity.mtime_ns if identity else None,
                    int(quarantine),
                ),
            )
            conn.execute("DELETE FROM queue WHERE path = ?", (_b(path),))

    def remove_files(self, paths: Iterable[Path]) -> int:
        """Forget files that left the library; their features stay, keyed by audio digest."""
        with self._transaction() as conn:
            blobs = [_b(path) for path in paths]
            gone = []
            for blob in blobs:
                gone += conn.execute("DELETE FROM files WHERE path = ? RETURNING digest",
                                     (blob,)).fetchall()
                conn.execute("DELETE FROM failures WHERE path = ?", (blob,))
                conn.execute("DELETE FROM queue WHERE path = ?", (blob,))
            _let_go(conn, [digest for (digest,) in gone if digest])
            _unsettle(conn, blobs)
        return len(gone)

    def rename(self, old: Path, new: Path, *, tree: bool) -> int:
        """Move a file's (or a folder's) rows to a new path, keeping the analysis; return files moved."""
        with self._transaction() as conn:
            counts = [_rename_rows(conn, t, _b(old), _b(new), tree) for t in ("files", "failures", "queue")]
            if tree:
                _forget_folders_under(conn, _b(old))
                low, high = subtree_range(_b(new))
                _unsettle(conn, [r[0] for r in conn.execute(
                    "SELECT path FROM files WHERE path > ? AND path < ?", (low, high))])
            else:
                _unsettle(conn, [_b(old), _b(new)])
        return counts[0]

    def remove_tree(self, folder: Path) -> int:
        """Forget every file under a folder that was deleted; return how many files."""
        low, high = subtree_range(_b(folder))
        with self._transaction() as conn:
            gone = conn.execute("DELETE FROM files WHERE path > ? AND path < ? RETURNING digest",
                                (low, high)).fetchall()
            for table in ("failures", "queue"):
                conn.execute(f"DELETE FROM {table} WHERE path > ? AND path < ?", (low, high))
            _let_go(conn, [digest for (digest,) in gone if digest])
            _forget_folders_under(conn, _b(folder))
        return len(gone)

    def retry(self, paths: Iterable[Path] | None) -> int:
        """Forget failures (all when `paths` is None) and queue those files again."""
        with self._transaction() as conn:
            if paths is None:
                blobs = [r[0] for r in conn.execute("SELECT path FROM failures")]
            else:
                blobs = [_b(p) for p in paths]
            now = time.time()
            count = 0
            for blob in blobs:
                count += conn.execute("DELETE FROM failures WHERE path = ?", (blob,)).rowcount
                conn.execute("UPDATE files SET state = 'pending' WHERE path = ?", (blob,))
                conn.execute(
                    "INSERT OR IGNORE INTO queue (path, priority, enqueued_at) VALUES (?, ?, ?)",
                    (blob, PRIORITY_RETRY, now),
                )
            _unsettle(conn, blobs)
        return count

    # --- reconcile ----------------------------------------------------------------------------

    def identities(self) -> dict[bytes, tuple[FileIdentity, str]]:
        """Return every known file's identity and state, keyed by path bytes, for reconcile."""
        rows = self._conn.execute("SELECT path, dev, ino, size, mtime_ns, state FROM files")
        make = FileIdentity._make
        return {r[0]: (make(r[1:5]), r[5]) for r in rows}

    def file_identity(self, path: Path) -> tuple[FileIdentity, str] | None:
        """Return the identity and state recorded for one file, or None when it is unknown."""
        row = self._conn.execute(
            "SELECT dev, ino, size, mtime_ns, state FROM files WHERE path = ?", (_b(path),)
        ).fetchone()
        return (FileIdentity(row[0], row[1], row[2], row[3]), row[4]) if row else None

    def path_with_identity(self, identity: FileIdentity) -> Path | None:
        """Return the path recorded for this inode, size and mtime, if any (a moved file)."""
        row = self._conn.execute(
            "SELECT path FROM files WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ?",
            tuple(identity)).fetchone()
        return _p(row[0]) if row else None

    def queued_paths(self) -> set[bytes]:
        return {r[0] for r in self._conn.execute("SELECT path FROM queue")}

    def queued_among(self, paths: list[bytes]) -> set[bytes]:
        """Return which of these paths are queued: point lookups for a few, one read for many
        (a rescan during a long backfill need not load the whole queue for three new files)."""
        if len(paths) > 2000:
            return self.queued_paths() & set(paths)
        lookup = "SELECT 1 FROM queue WHERE path = ?"
        return {p for p in paths if self._conn.execute(lookup, (p,)).fetchone() is not None}

    def folder_fingerprints(self) -> dict[bytes, bytes]:
        """Return the fingerprint of every folder whose rows agreed with the last walk of it."""
        return dict(self._conn.execute(
            "SELECT path, fingerprint FROM folders WHERE fingerprint IS NOT NULL").fetchall())

    def folders(self) -> dict[bytes, tuple[int, bytes | None]]:
        """Return every folder with rows: (rows when its fingerprint was stored, fingerprint)."""
        return {r[0]: (r[1], r[2]) for r in self._conn.execute(
            "SELECT path, files, fingerprint FROM folders")}

    def identities_in(self, folders: Iterable[bytes]) -> dict[bytes, tuple[FileIdentity, str]]:
        """Return the identity and state of the files directly in these folders."""
        make = FileIdentity._make
        known: dict[bytes, tuple[FileIdentity, str]] = {}
        for folder in folders:
            low, high = subtree_range(folder)
            rows = self._conn.execute(
                "SELECT path, dev, ino, size, mtime_ns, state FROM files "
                "WHERE path > ? AND path < ? AND instr(substr(path, ?), ?) = 0",
                (low, high, len(low) + 1, b"/"))
            known.update((r[0], (make(r[1:5]), r[5])) for r in rows)
        return known

    def files_under(self, folder: bytes) -> int:
        """Count the files anywhere under a folder (an index range, not a table scan)."""
        low, high = subtree_range(folder)
        return int(self._conn.execute(
            "SELECT count(*) FROM files WHERE path > ? AND path < ?", (low, high)).fetchone()[0])

    def settle_folders(self, agreed: Iterable[tuple[bytes, int, bytes]],
                       forgotten: Iterable[bytes], unsettled: Iterable[bytes]) -> None:
        """Store the fingerprints of folders whose rows agree with a walk, forget those of
        folders with work to do, drop the rows of folders that hold no file any more."""
        agreed, forgotten, unsettled = list(agreed), list(forgotten), list(unsettled)
        if not (agreed or forgotten or unsettled):
            return  # a reconcile that found nothing new: no write, no fsync
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO folders (path, files, fingerprint) VALUES (?, ?, ?)", agreed)
            _unsettle_folders(conn, unsettled)
            conn.executemany("DELETE FROM folders WHERE path = ?", ((f,) for f in forgotten))

    def unsettle_all(self) -> None:
        """Forget every folder fingerprint: the next reconcile compares file by file."""
        with self._transaction() as conn:
            conn.execute("UPDATE folders SET fingerprint = NULL")

    # --- daemon state -------------------------------------------------------------------------

    def set_daemon_state(self, state: DaemonState) -> None:
        """Store what `tunescout status` shows of the daemon (it also says when it last did)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO daemon_state (key, value) VALUES ('daemon', ?)",
                (json.dumps(state),),
            )

    def probe_write(self) -> None:
        """Write one small row: raises DatabaseUnavailable while the disk is full or another
        process holds the write lock (an empty transaction would not touch the disk)."""
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO daemon_state (key, value) VALUES ('probe', ?)",
                         (json.dumps(time.time()),))

    # --- recordings: orphans and stale feature groups -----------------------------------------

    def prune_orphans(self, grace_s: float, now: float | None = None) -> int:
        """Forget the features of recordings no file has referred to for `grace_s`; return how many.

        A deleted file's analysis stays meanwhile, so a delete-then-re-add (some tools do that)
        or a disk that comes back costs nothing.
        """
        now = time.time() if now is None else now
        if self._conn.execute("SELECT 1 FROM orphans LIMIT 1").fetchone() is None:
            return 0  # the usual case: nothing to write, no transaction
        with self._transaction() as conn:
            conn.execute("UPDATE orphans SET since = ? WHERE since < 0", (now,))  # newly noted
            conn.execute("DELETE FROM orphans WHERE EXISTS "
                         "(SELECT 1 FROM files WHERE files.digest = orphans.digest)")
            expired = "SELECT digest FROM orphans WHERE since <= ?"
            pruned = conn.execute(f"SELECT count(*) FROM ({expired})", (now - grace_s,)).fetchone()[0]
            conn.execute(f"DELETE FROM features WHERE digest IN ({expired})", (now - grace_s,))
            conn.execute("DELETE FROM orphans WHERE since <= ?", (now - grace_s,))
        return int(pruned)

    def stale_recordings(self) -> tuple[list[Path], dict[str, int]]:
        """Return one file of every analysed recording with a feature group missing or stored at
        an older version (none already queued), and how many recordings each group concerns."""
        current = " OR ".join("(grp = ? AND version >= ?)" for _ in FEATURE_VERSIONS)
        params = [v for item in FEATURE_VERSIONS.items() for v in item]
        rows = self._conn.execute(
            "SELECT min(path), digest FROM files WHERE state = 'analysed' AND digest IS NOT NULL "
            f"AND digest NOT IN (SELECT digest FROM features WHERE {current} GROUP BY digest "
            "HAVING count(*) = ?) AND path NOT IN (SELECT path FROM queue) GROUP BY digest",
            (*params, len(FEATURE_VERSIONS))).fetchall()
        per_group = {group: 0 for group in FEATURE_VERSIONS}
        for _, digest in rows:
            for group in FEATURE_VERSIONS.keys() - self.current_groups(digest):
                per_group[group] += 1
        return [_p(r[0]) for r in rows], {g: n for g, n in per_group.items() if n}


def _rename_rows(conn: sqlite3.Connection, table: str, old: bytes, new: bytes, tree: bool) -> int:
    if not tree:
        return conn.execute(f"UPDATE OR REPLACE {table} SET path = ? WHERE path = ?", (new, old)).rowcount
    prefix, high = subtree_range(old)
    rows = conn.execute(f"SELECT path FROM {table} WHERE path > ? AND path < ?",
                        (prefix, high)).fetchall()
    for (path,) in rows:
        conn.execute(f"UPDATE OR REPLACE {table} SET path = ? WHERE path = ?",
                     (new.rstrip(b"/") + b"/" + path[len(prefix):], path))
    return len(rows)


def _unsettle(conn: sqlite3.Connection, paths: Iterable[bytes]) -> None:
    """Forget the fingerprints of the folders of these files: their rows changed."""
    _unsettle_folders(conn, {folder_of(p) for p in paths})


def _unsettle_folders(conn: sqlite3.Connection, folders: Iterable[bytes]) -> None:
    conn.executemany(
        "INSERT INTO folders (path, files, fingerprint) VALUES (?, 0, NULL) "
        "ON CONFLICT (path) DO UPDATE SET fingerprint = NULL", ((f,) for f in folders))


def _forget_folders_under(conn: sqlite3.Connection, folder: bytes) -> None:
    low, high = subtree_range(folder)
    conn.execute("DELETE FROM folders WHERE path = ? OR (path > ? AND path < ?)",
                 (folder.rstrip(b"/") or b"/", low, high))


def _let_go(conn: sqlite3.Connection, digests: Iterable[str]) -> None:
    """Note the recordings no file refers to any more: their features are kept for a grace
    period (a delete-then-re-add costs nothing), then pruned. Stamped by `prune_orphans`."""
    conn.executemany(
        "INSERT OR IGNORE INTO orphans (digest, since) SELECT ?, -1 "
        "WHERE NOT EXISTS (SELECT 1 FROM files WHERE digest = ?)", ((d, d) for d in set(digests)))
