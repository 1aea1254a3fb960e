from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from tunescout.errors import StoreError
from tunescout.models import FEATURE_VERSIONS, FeatureGroup, FileIdentity, TrackAnalysis
from tunescout.store.reader import Failure, FileDetail, StoreReader, TrackRow
from tunescout.store.schema import SCHEMA_VERSION
from tunescout.store.writer import PRIORITY_BACKFILL, PRIORITY_NEW, StoreWriter

IDENT = FileIdentity(1, 2, 3000, 123_000_000_000)


def analysis(digest: str = "d1") -> TrackAnalysis:
    groups = tuple(FeatureGroup(n, v, {"x": 1.5}) for n, v in FEATURE_VERSIONS.items())
    return TrackAnalysis(digest=digest, duration_s=12.5, tags={"title": "T", "artist": ["A", "B"]},
                         features=groups)


@pytest.fixture
def store(tmp_path: Path) -> StoreWriter:
    return StoreWriter.open(tmp_path / "sub" / "t.db")


def test_new_database_is_migrated_in_wal_mode(store: StoreWriter) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity_check() == "ok"


def test_queue_orders_new_arrivals_before_backfill(store: StoreWriter) -> None:
    store.enqueue([Path("/m/a.mp3"), Path("/m/b.mp3")], PRIORITY_BACKFILL)
    assert store.enqueue([Path("/m/c.mp3"), Path("/m/a.mp3")], PRIORITY_NEW) == 1
    jobs = store.next_jobs(10, set())
    assert [j.path.name for j in jobs] == ["a.mp3", "c.mp3", "b.mp3"]
    assert [j.path.name for j in store.next_jobs(10, {Path("/m/a.mp3")})] == ["c.mp3", "b.mp3"]


def test_result_and_dequeue_are_one_transaction(store: StoreWriter) -> None:
    path = Path("/m/a.mp3")
    store.enqueue([path], PRIORITY_NEW)
    store.record_analysis(path, IDENT, analysis())
    assert store.queue_length() == 0
    detail = store.file_detail(path)
    assert detail is not None
    assert detail.state == "analysed"
    assert detail.tags == {"title": "T", "artist": ["A", "B"]}
    assert set(detail.features) == set(FEATURE_VERSIONS)
    assert detail.features["rhythm"] == {"version": FEATURE_VERSIONS["rhythm"], "x": 1.5}
    assert asdict(store.counts()) == {"files": 1, "analysed": 1, "failed": 0, "quarantined": 0, "queued": 0,
                                     "suspect": {}}


def test_failure_then_success_clears_it(store: StoreWriter) -> None:
    path = Path("/m/bad.mp3")
    store.enqueue([path], PRIORITY_NEW)
    store.record_failure(path, IDENT, "decode", "invalid data", quarantine=False)
    assert [(f.kind, f.reason) for f in store.failures()] == [("decode", "invalid data")]
    assert store.counts().failed == 1
    assert store.retry(None) == 1
    assert store.queue_length() == 1
    store.record_analysis(path, IDENT, analysis())
    assert store.failures() == []


def test_paths_that_are_not_utf8_survive(store: StoreWriter) -> None:
    path = Path(os.fsdecode(b"/m/caf\xe9 \xff.mp3"))
    store.enqueue([path], PRIORITY_NEW)
    assert os.fsencode(store.next_jobs(1, set())[0].path) == b"/m/caf\xe9 \xff.mp3"
    store.record_analysis(path, IDENT, analysis())
    assert list(store.identities()) == [b"/m/caf\xe9 \xff.mp3"]
    assert store.file_detail(path) is not None


def test_rename_file_and_tree_keep_analysis(store: StoreWriter) -> None:
    for name in ("a.mp3", "b.mp3"):
        store.record_analysis(Path("/m/album") / name, IDENT, analysis(name))
    store.record_analysis(Path("/m/albumX.mp3"), IDENT, analysis("x"))  # a prefix, not inside
    assert store.rename(Path("/m/album"), Path("/m/renamed"), tree=True) == 2
    assert sorted(store.identities()) == [b"/m/albumX.mp3", b"/m/renamed/a.mp3", b"/m/renamed/b.mp3"]
    assert store.rename(Path("/m/renamed/a.mp3"), Path("/m/a.mp3"), tree=False) == 1
    detail = store.file_detail(Path("/m/a.mp3"))
    assert detail is not None and detail.digest == "a.mp3"
    assert store.remove_tree(Path("/m/renamed")) == 1
    assert sorted(store.identities()) == [b"/m/a.mp3", b"/m/albumX.mp3"]


def test_readonly_reader_sees_writes_and_cannot_write(store: StoreWriter) -> None:
    reader = StoreReader.open(store.path)
    store.record_analysis(Path("/m/a.mp3"), IDENT, analysis())
    assert reader.counts().analysed == 1
    assert not hasattr(reader, "enqueue")  # the reader's type has no writes (mypy holds callers to it)
    # and its connection is read-only: a writer on one fails with the explained StoreError
    readonly = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None)
    try:
        with pytest.raises(StoreError, match=r"readonly database.*writable by this user"):
            StoreWriter(readonly, store.path).enqueue([Path("/m/b.mp3")], PRIORITY_NEW)
    finally:
        readonly.close()
    reader.close()


def test_missing_database_is_explained(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database at"):
        StoreReader.open(tmp_path / "none.db")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this tunescout"):
        StoreWriter.open(path)


def test_not_a_database_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="damaged"):
        StoreWriter.open(path)


def test_unwritable_folder_is_explained(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        StoreWriter.open(blocker / "sub" / "t.db")


def test_orphaned_features_are_pruned_after_the_grace_period(store: StoreWriter) -> None:
    store.record_analysis(Path("/m/a.mp3"), IDENT, analysis("kept"))
    store.record_analysis(Path("/m/b.mp3"), IDENT, analysis("gone"))
    store.remove_files([Path("/m/b.mp3")])
    day = 86400.0
    assert store.prune_orphans(30 * day, now=1000 * day) == 0  # orphaned from now on
    assert store.current_groups("gone") == set(FEATURE_VERSIONS)
    assert store.prune_orphans(30 * day, now=1029 * day) == 0  # within the grace period
    store.record_analysis(Path("/m/c.mp3"), IDENT, analysis("gone"))  # re-added: not an orphan
    assert store.prune_orphans(30 * day, now=1031 * day) == 0
    store.remove_files([Path("/m/c.mp3")])
    assert store.prune_orphans(30 * day, now=1040 * day) == 0
    assert store.prune_orphans(30 * day, now=1071 * day) == 1
    assert store.current_groups("gone") == set() and store.current_groups("kept") == set(FEATURE_VERSIONS)


def test_recordings_with_a_stale_or_missing_group_are_found_once(store: StoreWriter) -> None:
    for name, digest in (("a", "d1"), ("a copy", "d1"), ("b", "d2"), ("c", "d3"), ("d", "d4")):
        store.record_analysis(Path(f"/m/{name}.mp3"), IDENT, analysis(digest))
    assert store.stale_recordings() == ([], {})
    conn = sqlite3.connect(store.path)
    with conn:  # as if FEATURE_VERSIONS["rhythm"] had been raised for d1 and d2, and d3 lost a group
        conn.execute("UPDATE features SET version = version - 1 "
                     "WHERE grp = 'rhythm' AND digest IN ('d1', 'd2')")
        conn.execute("DELETE FROM features WHERE grp = 'timbre' AND digest = 'd3'")
    conn.close()
    store.enqueue([Path("/m/b.mp3")], 1)  # already queued: not again
    paths, per_group = store.stale_recordings()
    assert paths == [Path("/m/a copy.mp3"), Path("/m/c.mp3")]  # one file per recording
    assert per_group == {"rhythm": 1, "timbre": 1}
    assert store.current_groups("d1") == set(FEATURE_VERSIONS) - {"rhythm"}


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    from tunescout.store.schema import _MIGRATIONS

    conn.executescript(_MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO files (path, dev, ino, size, mtime_ns, state, first_seen) "
                 "VALUES (x'2f612e6d7033', 1, 2, 3, 4, 'analysed', 0)")
    conn.commit()
    conn.close()
    store = StoreWriter.open(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert list(store.identities()) == [b"/a.mp3"]  # the rows survive
    assert store.prune_orphans(1.0) == 0


def test_a_version_2_database_keeps_its_orphans_and_the_rest(tmp_path: Path) -> None:
    """From schema 3 orphans are noted when a file lets go of its digest; the migration notes
    the features a version 2 database already had without a file."""
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    from tunescout.store.schema import _MIGRATIONS

    conn.executescript(_MIGRATIONS[0] + ";" + _MIGRATIONS[1] + "; PRAGMA user_version = 2;")
    conn.execute("INSERT INTO files (path, dev, ino, size, mtime_ns, state, digest, first_seen) "
                 "VALUES (x'2f612e6d7033', 1, 2, 3, 4, 'analysed', 'kept', 0)")
    for digest in ("kept", "gone"):
        conn.execute("INSERT INTO features (digest, grp, version, vals, computed_at) "
                     "VALUES (?, 'rhythm', ?, '{}', 0)", (digest, FEATURE_VERSIONS["rhythm"]))
    conn.commit()
    conn.close()
    store = StoreWriter.open(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.folders() == {}  # every folder is compared file by file at the first reconcile
    day = 86400.0
    assert store.prune_orphans(30 * day, now=100 * day) == 0  # noted now, kept for 30 days
    assert store.prune_orphans(30 * day, now=131 * day) == 1
    assert store.current_groups("gone") == set() and store.current_groups("kept") == {"rhythm"}


def test_an_edited_file_lets_go_of_its_old_recording(store: StoreWriter) -> None:
    store.record_analysis(Path("/m/a.mp3"), IDENT, analysis("old"))
    store.record_analysis(Path("/m/copy.mp3"), IDENT, analysis("old"))
    store.record_analysis(Path("/m/a.mp3"), IDENT, analysis("new"))  # re-encoded in place
    assert store.prune_orphans(0.0, now=10.0) == 0  # the copy still refers to "old"
    store.remove_tree(Path("/m"))
    assert store.prune_orphans(0.0, now=20.0) == 2  # both recordings, once no file has them
    assert store.current_groups("old") == store.current_groups("new") == set()


def test_queued_among_answers_for_few_and_for_many_paths(store: StoreWriter) -> None:
    store.enqueue([Path("/m/a.mp3"), Path("/m/b.mp3"), Path("/m/c.mp3")], PRIORITY_NEW)
    assert store.queued_among([b"/m/a.mp3", b"/m/x.mp3", b"/m/c.mp3"]) == {b"/m/a.mp3", b"/m/c.mp3"}
    many = [b"/n/%d.mp3" % i for i in range(2500)] + [b"/m/b.mp3"]
    assert store.queued_among(many) == {b"/m/b.mp3"}
    assert store.queued_among([]) == set()


def test_file_detail_is_a_dataclass_with_the_show_json_shape(store: StoreWriter) -> None:
    store.record_analysis(Path("/m/a.mp3"), IDENT, analysis())
    store.record_failure(Path("/m/gone.mp3"), None, "io", "cannot stat", quarantine=False)
    detail = store.file_detail(Path("/m/a.mp3"))
    assert detail is not None and detail.recorded and detail.failure is None
    assert list(detail.as_json()) == [
        "path", "state", "id", "size_bytes", "mtime_ns", "digest", "duration_s", "tags", "cover",
        "tags_error", "analysed_at", "decode_warning", "warning_kind", "features", "queued", "failure"]
    # known by its failure alone: no files row, so none of the row's keys
    only = store.file_detail(Path("/m/gone.mp3"))
    assert only == FileDetail(Path("/m/gone.mp3"), None, False,
                              Failure("io", "cannot stat", only.failure.at, 1, False))  # type: ignore[union-attr]
    assert list(only.as_json()) == ["path", "state", "queued", "failure"]
    assert only.as_json()["failure"] == {"kind": "io", "reason": "cannot stat",
                                         "at": only.failure.at, "attempts": 1, "quarantined": False}  # type: ignore[union-attr]
    store.enqueue([Path("/m/new.mp3")], PRIORITY_NEW)
    assert store.file_detail(Path("/m/new.mp3")) == FileDetail(Path("/m/new.mp3"), "queued", True, None)


def test_playlist_tracks_are_rows_with_their_groups(store: StoreWriter) -> None:
    store.record_analysis(Path("/m/b.mp3"), IDENT, analysis("d2"))
    store.record_analysis(Path("/m/a.mp3"), IDENT, analysis("d1"))
    store.record_failure(Path("/m/c.mp3"), IDENT, "decode", "bad", quarantine=False)
    reader = StoreReader.open(store.path)
    tracks = reader.playlist_tracks()
    reader.close()
    assert [t.path for t in tracks] == [Path("/m/a.mp3"), Path("/m/b.mp3")]  # analysed only, by path
    assert tracks[0] == TrackRow(Path("/m/a.mp3"), "d1", 12.5, {"title": "T", "artist": ["A", "B"]},
                                 {group: {"x": 1.5} for group in FEATURE_VERSIONS}, tracks[0].id,
                                 IDENT.size, None)
    assert tracks[1].id != tracks[0].id > 0  # the files row's id: the HTTP API's track id


def test_daemon_state_round_trips(store: StoreWriter) -> None:
    assert store.daemon_state() is None
    store.set_daemon_state({"state": "stopped", "pid": 7, "updated_at": 1.0, "status": "stopped"})
    reader = StoreReader.open(store.path)
    assert reader.daemon_state() == {"state": "stopped", "pid": 7, "updated_at": 1.0, "status": "stopped"}
    reader.close()


def test_a_reader_does_not_migrate_an_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    from tunescout.store.schema import _MIGRATIONS

    conn.executescript(_MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.close()
    with pytest.raises(StoreError, match="start the daemon to migrate it"):
        StoreReader.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1  # untouched
    conn.close()


def test_playlist_tracks_carry_the_decode_warning(store: StoreWriter) -> None:
    store.record_analysis(Path("/m/cut.mp3"), IDENT,
                          replace(analysis("d3"), decode_warning="decoded 6.0 s of 180.0 s"))
    reader = StoreReader.open(store.path)
    [track] = reader.playlist_tracks()
    reader.close()
    assert track.decode_warning == "decoded 6.0 s of 180.0 s" and track.size_bytes == IDENT.size


def test_a_version_3_database_gets_its_warnings_classified(tmp_path: Path) -> None:
    """Schema 4 adds files.warning_kind; the warnings already stored are classified by their text."""
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path)
    from tunescout.store.schema import _MIGRATIONS

    conn.executescript(";".join(_MIGRATIONS[:3]) + "; PRAGMA user_version = 3;")
    warnings = {b"/cut.mp3": "partial decode: 3.0 s of 6.0 s expected",
                b"/bad.flac": "skipped 4 corrupt packet(s)",
                b"/both.flac": "skipped 1 corrupt packet(s); partial decode: 2.9 s of 6.0 s expected",
                b"/ok.ogg": None}
    for n, (name, warning) in enumerate(warnings.items()):
        conn.execute("INSERT INTO files (path, dev, ino, size, mtime_ns, state, digest, duration_s, "
                     "decode_warning, first_seen) VALUES (?, 1, ?, 3, 4, 'analysed', ?, 6.0, ?, 0)",
                     (name, n, f"d{n}", warning))
    conn.commit()
    conn.close()
    StoreWriter.open(path).close()
    reader = StoreReader.open(path)
    assert reader.counts().suspect == {"corrupt": 1, "truncated": 2}
    assert [(r.path.name, r.kind) for r in reader.warnings()] == [
        ("bad.flac", "corrupt"), ("both.flac", "truncated"), ("cut.mp3", "truncated")]
    assert {t.path.name: t.suspect for t in reader.playlist_tracks()} == {
        "bad.flac": True, "both.flac": True, "cut.mp3": True, "ok.ogg": False}
