"""The read side: the queries the CLI, the zygote's children and the playlist thread make, on a
read-only connection, answered as frozen dataclasses.

A reader never writes: the type has no write, and its connection is opened `mode=ro`, so
SQLite refuses one too. The daemon's writer (`store.writer.StoreWriter`) is a reader as well.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from tunescout.models import FEATURE_VERSIONS
from tunescout.store.schema import blob, connect_reader, path_of


@dataclass(frozen=True)
class Counts:
    """The counts `tunescout status` shows; `failed` includes the quarantined files."""

    files: int
    analysed: int
    failed: int
    quarantined: int
    queued: int
    suspect: dict[str, int] = field(default_factory=dict)  # analysed with a warning, by its kind


@dataclass(frozen=True)
class Failure:
    """Why one file failed, as `show` prints it."""

    kind: str
    reason: str
    at: float
    attempts: int
    quarantined: bool


@dataclass(frozen=True)
class FailureRow:
    """One line of `tunescout failures`."""

    path: Path
    kind: str
    reason: str
    at: float
    quarantined: bool
    attempts: int


@dataclass(frozen=True)
class WarningRow:
    """One line of `tunescout failures --warnings`: a file that decoded, but not whole."""

    path: Path
    kind: str  # models.DecodeWarning's value: "truncated", "corrupt"
    warning: str
    duration_s: float | None
    analysed_at: float | None


@dataclass(frozen=True)
class FileDetail:
    """Everything known about one file.

    A file can be known by a failure or a queue entry alone (it failed before it was ever
    stat'ed, or it waits for its first analysis): `recorded` says whether it has a files row,
    and the fields from `size_bytes` on are that row's (their defaults when it has none).
    """

    path: Path
    state: str | None  # the row's state, "queued" for a queued file not yet analysed, or None
    queued: bool
    failure: Failure | None
    recorded: bool = False
    size_bytes: int | None = None
    mtime_ns: int | None = None
    digest: str | None = None
    duration_s: float | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    cover: dict[str, Any] | None = None
    tags_error: str | None = None
    analysed_at: float | None = None
    decode_warning: str | None = None
    features: dict[str, dict[str, Any]] = field(default_factory=dict)  # by group: {"version": n, **values}
    id: int | None = None  # the files row's id: stable across moves and re-analysis (the HTTP API's)
    warning_kind: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the object `show --json` prints: the row's keys only when there is a row,
        in the order the command has always printed them."""
        data: dict[str, Any] = {"path": str(self.path), "state": self.state}
        if self.recorded:
            data.update(
                id=self.id,
                size_bytes=self.size_bytes, mtime_ns=self.mtime_ns, digest=self.digest,
                duration_s=self.duration_s, tags=self.tags, cover=self.cover,
                tags_error=self.tags_error, analysed_at=self.analysed_at,
                decode_warning=self.decode_warning, warning_kind=self.warning_kind,
                features=self.features,
            )
        failure = self.failure
        data["queued"] = self.queued
        data["failure"] = (
            {"kind": failure.kind, "reason": failure.reason, "at": failure.at,
             "attempts": failure.attempts, "quarantined": failure.quarantined}
            if failure else None
        )
        return data


@dataclass(frozen=True)
class TrackRow:
    """One analysed file as the playlists read it."""

    path: Path
    digest: str
    duration_s: float | None
    tags: dict[str, Any]
    features: dict[str, dict[str, Any]]  # by group: the stored values
    id: int = 0  # the files row's id: kept when the file moves or is analysed again
    size_bytes: int | None = None  # the file's size: with the duration, its bitrate
    decode_warning: str | None = None  # decoded only in part: a suspect file
    warning_kind: str | None = None  # "truncated", "corrupt" (models.DecodeWarning) or None

    @property
    def suspect(self) -> bool:
        """Tell whether the file decoded only in part: playlists leave it out by default."""
        return self.warning_kind is not None


class DaemonState(TypedDict, total=False):
    """What the daemon writes for `tunescout status` (JSON in the daemon_state table); a stopped
    daemon writes only state, pid, updated_at and status."""

    state: str
    pid: int
    updated_at: float
    started_at: float
    status: str
    paused_reason: str | None
    workers: int
    running_children: int
    in_flight: list[str]
    watch: dict[str, str]  # library root -> inotify, poll, ...
    polled: list[str]
    settling: int
    analysis_error: str | None
    memory_available_bytes: int | None
    unanalysed: dict[str, int]  # extension -> files of formats left out, last walk
    radio: dict[str, Any] | None  # the radio's RadioStatus.as_json(), with [radio] configured
    subsonic: dict[str, Any] | None  # the [subsonic] link's state and its pushed playlists
    cluster: str | None  # with [workers] scheduler: "cluster 4 workers, 8 in flight", ...


class StoreReader:
    """Read-only queries on one connection: what `status`, `show`, `failures`, `playlist` and
    `doctor`, the zygote's children and the playlist thread ask."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> StoreReader:
        """Open the database for reading only, as the CLI does while the daemon runs."""
        return cls(connect_reader(path), path)

    def close(self) -> None:
        self._conn.close()

    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def queue_length(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM queue").fetchone()[0])

    def counts(self) -> Counts:
        """Return the counts `tunescout status` shows."""
        by_state = dict(self._conn.execute("SELECT state, count(*) FROM files GROUP BY state").fetchall())
        return Counts(
            files=sum(by_state.values()),
            analysed=by_state.get("analysed", 0),
            failed=by_state.get("failed", 0) + by_state.get("quarantined", 0),
            quarantined=by_state.get("quarantined", 0),
            queued=self.queue_length(),
            suspect=dict(self._conn.execute(
                "SELECT warning_kind, count(*) FROM files WHERE state = 'analysed' "
                "AND warning_kind IS NOT NULL GROUP BY warning_kind ORDER BY warning_kind"
            ).fetchall()),
        )

    def file_detail(self, path: Path) -> FileDetail | None:
        """Return everything known about one file, or None when it is not in the database."""
        key = blob(path)
        row = self._conn.execute(
            "SELECT path, size, mtime_ns, state, digest, duration_s, tags, cover, tags_error, "
            "analysed_at, decode_warning, id, warning_kind FROM files WHERE path = ?",
            (key,),
        ).fetchone()
        failed = self._conn.execute(
            "SELECT kind, reason, at, attempts, quarantined FROM failures WHERE path = ?", (key,)
        ).fetchone()
        queued = self._conn.execute("SELECT 1 FROM queue WHERE path = ?", (key,)).fetchone() is not None
        if row is None and failed is None and not queued:
            return None
        failure = Failure(failed[0], failed[1], failed[2], failed[3], bool(failed[4])) if failed else None
        if row is None:
            return FileDetail(path, "queued" if queued else None, queued, failure)
        return FileDetail(
            path, "queued" if queued and row[3] != "analysed" else row[3], queued, failure,
            recorded=True, size_bytes=row[1], mtime_ns=row[2], digest=row[4], duration_s=row[5],
            tags=json.loads(row[6]) if row[6] else {}, cover=json.loads(row[7]) if row[7] else None,
            tags_error=row[8], analysed_at=row[9], decode_warning=row[10], warning_kind=row[12],
            features=self._features(row[4]) if row[4] else {}, id=row[11],
        )

    def _features(self, digest: str) -> dict[str, dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT grp, version, vals FROM features WHERE digest = ?", (digest,)
        ).fetchall()
        return {grp: {"version": version, **json.loads(vals)} for grp, version, vals in rows}

    def failures(self) -> list[FailureRow]:
        rows = self._conn.execute(
            "SELECT path, kind, reason, at, quarantined, attempts FROM failures ORDER BY at DESC"
        ).fetchall()
        return [FailureRow(path_of(r[0]), r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    def warnings(self) -> list[WarningRow]:
        """Return the analysed files with a decode warning kind, by kind then path."""
        rows = self._conn.execute(
            "SELECT path, warning_kind, decode_warning, duration_s, analysed_at FROM files "
            "WHERE state = 'analysed' AND warning_kind IS NOT NULL ORDER BY warning_kind, path"
        ).fetchall()
        return [WarningRow(path_of(r[0]), r[1], r[2] or "", r[3], r[4]) for r in rows]

    def daemon_state(self) -> DaemonState | None:
        row = self._conn.execute("SELECT value FROM daemon_state WHERE key = 'daemon'").fetchone()
        return json.loads(row[0]) if row else None

    def current_groups(self, digest: str) -> frozenset[str]:
        """Return the feature groups of this recording stored at their current versions."""
        rows = self._conn.execute("SELECT grp, version FROM features WHERE digest = ?", (digest,))
        return frozenset(group for group, version in rows
                         if version >= FEATURE_VERSIONS.get(group, version + 1))

    def analysed_fingerprint(self) -> tuple[int, float, int]:
        """Return what changes when the analysed library does: count, newest analysis, path ids.

        Cheap enough to poll every few seconds at 100,000 files (one pass over the files
        table), unlike `PRAGMA data_version`, which the daemon's status heartbeat changes too.
        """
        row = self._conn.execute(
            "SELECT count(*), coalesce(max(analysed_at), 0), coalesce(sum(id), 0) FROM files "
            "WHERE state = 'analysed' AND digest IS NOT NULL"
        ).fetchone()
        return int(row[0]), float(row[1]), int(row[2])

    def playlist_tracks(self) -> list[TrackRow]:
        """Return every analysed file (path, digest, duration_s, tags, features by group, size,
        decode warning), by path."""
        rows = self._conn.execute(
            "SELECT f.path, f.digest, f.duration_s, f.tags, g.grp, g.vals, f.id, f.size, "
            "f.decode_warning, f.warning_kind FROM files f "
            "LEFT JOIN features g ON g.digest = f.digest "
            "WHERE f.state = 'analysed' AND f.digest IS NOT NULL ORDER BY f.path"
        )
        tracks: list[TrackRow] = []
        last: bytes | None = None  # the rows of one file are adjacent: one per feature group
        for raw, digest, duration_s, tags, grp, vals, ident, size, warning, kind in rows:
            if raw != last:
                tracks.append(TrackRow(path_of(raw), digest, duration_s,
                                       json.loads(tags) if tags else {}, {}, ident, size, warning, kind))
                last = raw
            if grp is not None:
                tracks[-1].features[grp] = json.loads(vals)
        return tracks

    def analysed_paths(self, limit: int) -> list[Path]:
        """Return up to `limit` analysed files, the most recently analysed first (doctor's probe)."""
        rows = self._conn.execute(
            "SELECT path FROM files WHERE state = 'analysed' AND digest IS NOT NULL "
            "ORDER BY analysed_at DESC LIMIT ?", (limit,))
        return [path_of(raw) for (raw,) in rows]

    def analysed_version(self) -> tuple[int, float, int, int, float]:
        """Return what changes whenever the analysed tracks do (count, last analysis, ids, paths,
        mtimes: a tag-only edit changes the file's mtime and not its analysis).

        One pass over `files`, cheap enough to ask every few seconds: a reader (the HTTP API)
        rebuilds its index only when this changes, not at every daemon heartbeat.
        """
        row = self._conn.execute(
            "SELECT count(*), coalesce(max(analysed_at), 0), coalesce(sum(id), 0), "
            "coalesce(sum(length(path)), 0), total(mtime_ns) FROM files WHERE state = 'analysed'"
        ).fetchone()
        return int(row[0]), float(row[1]), int(row[2]), int(row[3]), float(row[4])
