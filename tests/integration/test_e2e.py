"""The daemon end to end: a real `tunescout run`, real audio files, real analysis, real SQLite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.audio import write_garbage, write_tags, write_track
from support.daemon import Daemon, Library
from support.processes import daemon_env, wait_for
from tunescout.config import DEFAULT_ANALYSER
from tunescout.models import FEATURE_VERSIONS

FORMATS = ("wav", "flac", "mp3", "ogg")


def _counts(library: Library) -> dict[str, int]:
    status = library.json("status")
    return {k: status[k] for k in ("files", "analysed", "failed", "queued")}


def _wait_counts(library: Library, daemon: Daemon, timeout_s: float = 120, **expected: int) -> None:
    def done() -> bool:
        assert daemon.proc.poll() is None, f"daemon exited:\n{daemon.log()}"
        proc = library.cli("status", "--json", check=False)
        if proc.returncode == 4:
            return False  # the daemon has not created its database yet
        counts = json.loads(proc.stdout)
        return all(counts[k] == v for k, v in expected.items())

    wait_for(done, timeout_s, interval_s=0.5, what=f"counts {expected} (log:\n{daemon.log()[-3000:]})")


def _mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_files_dropped_in_are_analysed_and_inspectable(tmp_path: Path, start_daemon) -> None:
    library = Library(tmp_path, analyser=DEFAULT_ANALYSER)
    daemon = start_daemon(library)
    daemon.wait_for_event("started")
    outside = tmp_path / "incoming"
    outside.mkdir()
    for i, ext in enumerate(FORMATS):
        src = write_track(outside / f"{i} song.{ext}", seconds=6, kind="drums", bpm=120,
                          tags={"title": f"Song {ext}", "artist": "Tester", "album": "Fixtures",
                                "tracknumber": f"{i + 1}/4"})
        shutil.move(src, library.music / src.name)  # moved in, as a download manager does
    write_garbage(library.music / "broken.mp3", 20_000)  # written in place
    _wait_counts(library, daemon, files=5, analysed=4, failed=1, queued=0)

    shown = library.json("show", str(library.music / "2 song.mp3"))
    assert shown["state"] == "analysed"
    assert shown["tags"]["title"] == "Song mp3"
    assert shown["tags"]["tracknumber"] == 3
    assert shown["duration_s"] == pytest.approx(6, abs=0.2)
    assert 60 <= shown["features"]["rhythm"]["tempo_bpm"] <= 200  # accuracy: test_analysis_*
    assert {"rhythm", "tonal", "loudness", "timbre"} <= set(shown["features"])
    assert all(group["version"] >= 1 for group in shown["features"].values())
    assert shown["analysed_at"] > 0 and shown["failure"] is None

    failures = library.json("failures")
    assert [(f["path"], f["kind"]) for f in failures] == [(str(library.music / "broken.mp3"), "decode")]
    assert failures[0]["reason"] and failures[0]["at"] > 0

    status = library.json("status")
    assert status["daemon"]["state"] == "running"
    # the daemon process stays small: the analysis stack lives only in the zygote and children
    maps = _mapped_libraries(daemon.proc.pid)
    assert "numba" not in maps and "llvmlite" not in maps and "libav" not in maps
    assert daemon.stop() == 0
    assert library.json("status")["daemon"]["state"] == "stopped"


def test_restart_reconciles_new_changed_and_deleted(tmp_path: Path, start_daemon) -> None:
    library = Library(tmp_path)
    for name in ("keep.flac", "edit.flac", "delete.flac"):
        (library.music / name).write_bytes(os.urandom(3000))
    daemon = start_daemon(library)
    _wait_counts(library, daemon, files=3, analysed=3)
    assert daemon.stop() == 0
    before = library.json("show", str(library.music / "keep.flac"))["analysed_at"]

    (library.music / "delete.flac").unlink()
    (library.music / "edit.flac").write_bytes(os.urandom(4000))
    (library.music / "sub").mkdir()
    (library.music / "sub" / "new.flac").write_bytes(os.urandom(3000))
    daemon = start_daemon(library)
    daemon.wait_log("reconciled 3 files: 1 new, 1 changed, 0 moved, 1 removed, 1 unchanged")
    daemon.wait_for_event("analysed", TRACK_PATH=library.music / "edit.flac")
    daemon.wait_for_event("analysed", TRACK_PATH=library.music / "sub" / "new.flac")
    _wait_counts(library, daemon, files=3, analysed=3, queued=0)
    assert library.json("show", str(library.music / "keep.flac"))["analysed_at"] == before
    assert library.json("show", str(library.music / "edit.flac"))["size_bytes"] == 4000
    assert library.cli("show", str(library.music / "delete.flac"), check=False).returncode == 3
    assert daemon.stop() == 0


def test_sigterm_loses_nothing_and_analyses_nothing_twice(tmp_path: Path, start_daemon) -> None:
    """Stop in the middle of a backlog of slow files, start again: each file analysed once."""
    library = Library(tmp_path, workers={"batch_size": 2})
    names = [f"slow-{i}.mp3" for i in range(8)]
    for name in names:
        (library.music / name).write_bytes(os.urandom(2000))
    daemon = start_daemon(library)
    daemon.wait_for_event("analysed")
    assert daemon.stop(signal.SIGTERM) == 0
    first = daemon
    counts = _counts(library)
    assert counts["analysed"] + counts["queued"] == 8, counts
    assert counts["queued"] > 0

    daemon = start_daemon(library)
    _wait_counts(library, daemon, analysed=8, queued=0)
    assert daemon.stop(signal.SIGINT) == 0  # Ctrl-C stops cleanly too
    for name in names:
        analysed = [d.events("analysed", TRACK_PATH=library.music / name) for d in (first, daemon)]
        assert sum(map(len, analysed)) == 1, name


def test_non_utf8_names_are_shown_without_loss(tmp_path: Path) -> None:
    library = Library(tmp_path)
    raw = os.fsencode(library.music) + b"/caf\xe9 \xff.flac"
    with open(raw, "wb") as fh:
        fh.write(os.urandom(3000))
    proc = library.cli("scan", str(library.music))
    assert b"1 analysed, 0 failed, 0 not recorded" in proc.stdout
    path = os.fsdecode(raw)
    shown = library.json("show", path)
    assert shown["path_b64"] and os.fsencode(path) == __import__("base64").b64decode(shown["path_b64"])
    text = library.cli("show", path).stdout
    assert text.splitlines()[0] == raw  # the exact bytes on a terminal


def test_scan_records_every_file_and_exits_0(tmp_path: Path) -> None:
    library = Library(tmp_path, analyser=DEFAULT_ANALYSER)
    write_track(library.music / "ok.flac", seconds=4, tags={"title": "ok"})
    write_garbage(library.music / "bad.ogg", 5000)
    proc = library.cli("scan", str(library.music))
    assert proc.stdout.strip().splitlines()[0] == b"1 analysed, 1 failed, 0 not recorded"
    (failure,) = library.json("failures")
    assert failure["kind"] == "decode"
    status = library.json("status")
    assert (status["analysed"], status["failed"], status["queued"]) == (1, 1, 0)


def test_scan_with_nothing_to_do_says_so(tmp_path: Path) -> None:
    library = Library(tmp_path)
    proc = library.cli("scan", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2
    assert b"no such file or folder" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_status_before_anything_ran(tmp_path: Path) -> None:
    library = Library(tmp_path)
    proc = library.cli("status", check=False)
    assert proc.returncode == 4
    assert b"no database at" in proc.stderr and b"Traceback" not in proc.stderr


def test_daemon_side_never_imports_the_analysis_stack() -> None:
    code = (
        "import sys, tunescout.cli.main, tunescout.service, tunescout.workers.supervisor, "
        "tunescout.library.watcher, tunescout.store, tunescout.health, tunescout.logs\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('librosa', 'numba', 'llvmlite', 'av', 'scipy', 'soundfile', 'tunescout.analysis') "
        "or m.startswith('tunescout.analysis'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=daemon_env())
    assert out.stdout.strip() == ""


def test_scan_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import pty

    library = Library(tmp_path)
    for i in range(5):
        (library.music / f"t{i}.flac").write_bytes(os.urandom(2000))
    pid, fd = pty.fork()
    if pid == 0:  # the child: tunescout with its stdout and stderr on the terminal
        os.environ.update(daemon_env())
        os.execv(sys.executable, [sys.executable, "-m", "tunescout", "--config", str(library.config),
                                  "scan", str(library.music)])
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"\r[" in output and b"] 5/5 files" in output
    assert b"5 analysed, 0 failed, 0 not recorded" in output


def test_tag_edits_and_copies_reuse_the_features(tmp_path: Path, start_daemon) -> None:
    """Same audio, same digest: a tag edit re-reads tags, a copy costs a demux, not an analysis."""
    library = Library(tmp_path, analyser=DEFAULT_ANALYSER)
    daemon = start_daemon(library)
    daemon.wait_for_event("started")
    song = write_track(tmp_path / "song.flac", seconds=8, kind="drums", bpm=100,
                       tags={"title": "Before", "artist": "Tester"})
    shutil.move(song, library.music / "song.flac")
    song = library.music / "song.flac"
    daemon.wait_for_event("analysed", TRACK_PATH=song, FEATURES_REUSED="0")
    before = library.json("show", str(song))

    write_tags(song, {"title": "After", "artist": "Tester"})  # in place, as a tag editor does
    daemon.wait_for_event("analysed", TRACK_PATH=song, FEATURES_REUSED="1")
    after = library.json("show", str(song))
    assert after["tags"]["title"] == "After"
    assert after["digest"] == before["digest"]
    assert after["features"] == before["features"]
    assert after["analysed_at"] > before["analysed_at"]

    shutil.copy(song, library.music / "copy.flac")
    daemon.wait_for_event("analysed", TRACK_PATH=library.music / "copy.flac", FEATURES_REUSED="1")
    assert library.json("show", str(library.music / "copy.flac"))["features"] == before["features"]

    # deleted, then added back (some tools do that): the analysis was kept, nothing is recomputed
    shutil.move(library.music / "copy.flac", tmp_path / "away.flac")
    wait_for(lambda: library.cli("show", str(library.music / "copy.flac"), check=False).returncode == 3,
             30, what="the deleted file forgotten")
    shutil.move(tmp_path / "away.flac", library.music / "again.flac")
    daemon.wait_for_event("analysed", TRACK_PATH=library.music / "again.flac", FEATURES_REUSED="1")
    assert daemon.stop() == 0


def test_a_raised_feature_version_recomputes_that_group_once_per_recording(
        tmp_path: Path, start_daemon) -> None:
    """After an upgrade that raises one group's version, the start-up queues one file of every
    recording stored at the old version and recomputes that group alone."""
    library = Library(tmp_path, analyser=DEFAULT_ANALYSER)
    for name, bpm in (("a", 100), ("b", 128)):
        write_track(library.music / f"{name}.flac", seconds=6, kind="drums", bpm=bpm,
                    tags={"title": name, "artist": "Tester"})
    shutil.copy(library.music / "a.flac", library.music / "a copy.flac")  # the same recording
    daemon = start_daemon(library)
    _wait_counts(library, daemon, files=3, analysed=3, queued=0)
    assert daemon.stop() == 0
    before = {p: library.json("show", str(library.music / p)) for p in ("a.flac", "b.flac")}
    conn = sqlite3.connect(library.db)
    with conn:  # what an upgrade that raises rhythm's version finds: rows one version older
        conn.execute("UPDATE features SET version = version - 1 WHERE grp = 'rhythm'")
    stamps = dict(conn.execute("SELECT digest || grp, computed_at FROM features").fetchall())
    conn.close()

    daemon = start_daemon(library)
    daemon.wait_log("2 recordings have features from an older version of tunescout: rhythm (2)")
    for name in ("a copy.flac", "b.flac"):  # one file per recording: the copy sorts first
        daemon.wait_log(f"analysed {library.music / name} (recomputed rhythm; kept the rest)")
    _wait_counts(library, daemon, queued=0)
    assert daemon.stop() == 0
    assert f"analysed {library.music / 'a.flac'}" not in daemon.log()
    conn = sqlite3.connect(library.db)
    rows = conn.execute("SELECT digest || grp, grp, version, computed_at FROM features").fetchall()
    conn.close()
    for key, group, version, computed_at in rows:
        assert version == FEATURE_VERSIONS[group]
        assert (computed_at == stamps[key]) is (group != "rhythm"), group  # the others untouched
    for name, shown in before.items():
        assert library.json("show", str(library.music / name))["features"] == shown["features"]


def test_the_daemon_keeps_configured_playlists(tmp_path: Path, start_daemon) -> None:
    from support.playlists import read_paths

    library = Library(tmp_path, analyser=DEFAULT_ANALYSER)
    out = tmp_path / "playlists" / "similar.m3u8"
    seed = library.music / "seed.flac"
    with library.config.open("a") as fh:
        fh.write(f'\n[playlist_keeper]\ndebounce = "1 s"\n\n[[playlists]]\nname = "Like the seed"\n'
                 f'output = "{out}"\nseeds = ["{seed}"]\nlength = 3\nartist_spacing = 0\n'
                 f'album_spacing = 0\nmin_duration = 0\n')  # 5 s tracks: not jingles here
    for i, bpm in enumerate((100, 104, 140, 98)):
        write_track(library.music / f"t{i}.flac", seconds=5, kind="drums", bpm=bpm,
                    tags={"title": f"T{i}", "artist": f"A{i}"})
    write_track(seed, seconds=5, kind="drums", bpm=100, tags={"title": "Seed", "artist": "S"})
    daemon = start_daemon(library)
    daemon.wait_for_event("playlist_written", TRACK_PATH=out, timeout_s=120)
    paths = read_paths(out)
    assert len(paths) == 3 and seed not in paths
    assert set(paths) <= {library.music / f"t{i}.flac" for i in range(4)}
    # a track leaving the library rewrites the playlist without it
    gone = paths[0]
    gone.unlink()
    wait_for(lambda: gone not in read_paths(out), 60, what="the playlist rewritten without it")
    assert daemon.stop() == 0


def test_retry_queues_failures_again_and_wakes_the_daemon(tmp_path: Path, start_daemon) -> None:
    library = Library(tmp_path)
    bad = library.music / "x-fail.flac"
    bad.write_bytes(os.urandom(3000))
    daemon = start_daemon(library)
    daemon.wait_for_event("failed", TRACK_PATH=bad, timeout_s=30)
    time.sleep(3)  # idle now: the loop sleeps until its next timer (a minute)
    assert len(daemon.events("failed", TRACK_PATH=bad)) == 1  # not retried by itself: it did not change
    proc = library.cli("retry", "--all")
    assert proc.stdout.strip() == b"1 file queued again"
    # the retry picked up at once (SIGUSR1), not at the next heartbeat
    daemon.wait_for_event("failed", count=2, TRACK_PATH=bad, timeout_s=10)
    (failure,) = library.json("failures")  # retry forgot the old row; this is the new one
    assert (failure["kind"], failure["attempts"]) == ("decode", 1)
    assert daemon.stop() == 0
