"""radio/history.py: what was played, the seeds, and the repeat window by count and by hours."""

from __future__ import annotations

import json
from pathlib import Path

from tunescout.radio.history import KEEP, PlayHistory

HOUR = 3600.0


def test_the_window_by_count_keeps_the_last_n_songs(tmp_path: Path) -> None:
    history = PlayHistory(None, window_tracks=3, window_s=0.0)
    for i in range(6):
        history.note(f"s{i}.flac", 1000.0 + i)
    assert history.in_window(2000.0) == {"s3.flac", "s4.flac", "s5.flac"}


def test_the_window_by_hours_keeps_what_played_recently(tmp_path: Path) -> None:
    history = PlayHistory(None, window_tracks=0, window_s=8 * HOUR)
    now = 100 * HOUR
    history.note("yesterday.flac", now - 24 * HOUR)
    history.note("this-morning.flac", now - 7.5 * HOUR)
    history.note("just-now.flac", now - 60)
    assert history.in_window(now) == {"this-morning.flac", "just-now.flac"}
    assert history.in_window(now + HOUR) == {"just-now.flac"}


def test_either_window_excludes_a_song(tmp_path: Path) -> None:
    """200 tracks OR 8 hours: recent songs past the count, and old songs within the count."""
    history = PlayHistory(None, window_tracks=2, window_s=HOUR)
    now = 10 * HOUR
    history.note("long-ago.flac", now - 5 * HOUR)  # neither among the last 2 nor within the hour
    for i in range(3):
        history.note(f"recent{i}.flac", now - 600 + i)
    history.note("last.flac", now - 10)
    assert history.in_window(now) == {"recent0.flac", "recent1.flac", "recent2.flac", "last.flac"}
    history2 = PlayHistory(None, window_tracks=2, window_s=HOUR)
    history2.note("a.flac", now - 5 * HOUR)
    history2.note("b.flac", now - 4 * HOUR)
    assert history2.in_window(now) == {"a.flac", "b.flac"}  # the count alone


def test_recent_songs_are_distinct_newest_first_and_repeats_are_noted_once() -> None:
    history = PlayHistory(None, window_tracks=10, window_s=HOUR)
    assert history.note("a", 1.0) and not history.note("a", 2.0)  # the same song still playing
    for uri, at in (("b", 3.0), ("a", 4.0), ("c", 5.0)):
        history.note(uri, at)
    assert history.recent(2) == ["c", "a"]
    assert history.recent(5) == ["c", "a", "b"]
    assert [p.uri for p in history.items] == ["a", "b", "a", "c"]


def test_it_survives_a_restart_and_an_unreadable_file_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "radio-history.json"
    history = PlayHistory.load(path, path, window_tracks=5, window_s=HOUR)
    assert history.items == []  # no file yet
    history.note("a.flac", 10.0)
    history.note("b.flac", 20.0)
    again = PlayHistory.load(path, path, window_tracks=5, window_s=HOUR)
    assert [(p.uri, p.at) for p in again.items] == [("a.flac", 10.0), ("b.flac", 20.0)]
    path.write_text("{not json")
    assert PlayHistory.load(path, path, window_tracks=5, window_s=HOUR).items == []
    path.write_text(json.dumps({"version": 1, "played": [{"uri": "x"}]}))  # a field missing
    assert PlayHistory.load(path, path, window_tracks=5, window_s=HOUR).items == []


def test_the_foreground_reads_the_daemons_history_and_never_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "radio-history.json"
    daemon = PlayHistory.load(path, path, window_tracks=5, window_s=HOUR)
    daemon.note("a.flac", 1.0)
    before = path.read_bytes()
    foreground = PlayHistory.load(None, path, window_tracks=5, window_s=HOUR)
    foreground.note("b.flac", 2.0)
    assert [p.uri for p in foreground.items] == ["a.flac", "b.flac"]
    assert path.read_bytes() == before


def test_at_most_keep_entries_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    history = PlayHistory(None, window_tracks=KEEP * 2, window_s=0.0)
    for i in range(KEEP + 4):
        history.note(f"s{i}", float(i))
    history.path = path  # saved from the last one on (thousands of atomic writes are slow)
    history.note(f"s{KEEP + 4}", float(KEEP + 4))
    assert len(history.items) == KEEP and history.items[0].uri == "s5"
    assert len(json.loads(path.read_text())["played"]) == KEEP
