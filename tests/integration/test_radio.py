"""The radio against a real MPD (a private instance on a free port, a null output) on real audio:
the queue stays `ahead` long across next, style changes, user adds, clear and stop, random mode,
messages and an MPD restart; nothing repeats; the foreground command and the daemon thread."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.daemon import Daemon, Library
from support.mpd import MPD, Foreground, analysed_library, need_mpd, no_repeats, start_playing, wait_ahead
from support.playlists import synthetic_tracks
from support.processes import wait_for

AHEAD = 4


@pytest.fixture
def radio_library(tmp_path: Path) -> Iterator[tuple[Library, MPD, dict[str, str]]]:
    """An analysed library of 4 clusters × 12 real WAV files, and an MPD serving it."""
    need_mpd()
    library = Library(tmp_path / "lib")
    tracks = analysed_library(library.db, library.music, synthetic_tracks(per_cluster=12, artists=6))
    cluster = {str(t.path.relative_to(library.music)): t.path.parent.name for t in tracks}
    mpd = MPD(tmp_path / "mpd", library.music).start()
    try:
        yield library, mpd, cluster
    finally:
        mpd.stop()


@pytest.fixture
def foreground() -> Iterator[list[Foreground]]:
    started: list[Foreground] = []
    yield started
    for radio in started:
        if radio.proc.poll() is None:
            radio.proc.kill()
            radio.proc.wait()


def test_the_foreground_radio_keeps_the_queue_ahead_and_follows_the_user(
        radio_library: tuple[Library, MPD, dict[str, str]], foreground: list[Foreground]) -> None:
    library, mpd, cluster = radio_library
    start_playing(mpd, "slow/000.wav")
    radio = Foreground(library, "--mpd", mpd.address, "--ahead", str(AHEAD))
    foreground.append(radio)
    wait_ahead(mpd, AHEAD)
    assert [cluster[u] for u in mpd.queue()] == ["slow"] * (AHEAD + 1)
    for _ in range(3):  # each track change: one addition, the queue stays AHEAD long
        mpd.mpc("next")
        wait_ahead(mpd, AHEAD)
        no_repeats(mpd)
    added = radio.events("radio_added")
    assert len(added) == AHEAD + 3 and all(a["REASON"].startswith("seed ") for a in added)
    assert all(Path(a["TRACK_PATH"]).is_relative_to(library.music) for a in added)
    # the user adds a song: it counts as queued
    mpd.mpc("add", "mid/005.wav")
    time.sleep(1.5)
    assert mpd.ahead() == AHEAD + 1
    # the user jumps to another style and drops the rest: the radio follows
    mpd.mpc("insert", "fast/003.wav")
    mpd.mpc("next")
    mpd.mpc("crop")
    wait_ahead(mpd, AHEAD)
    assert [cluster[u] for u in mpd.queue()[-AHEAD:]] == ["fast"] * AHEAD
    no_repeats(mpd)
    # played songs never come back inside the window
    played = set(mpd.queue())
    for _ in range(6):
        mpd.mpc("next")
        wait_ahead(mpd, AHEAD)
    history = mpd.queue()
    assert len(history) == len(set(history)) and played <= set(history)
    assert radio.stop() == 0
    assert "Traceback" not in radio.log()


def test_random_mode_messages_clear_and_stop_are_obeyed(
        radio_library: tuple[Library, MPD, dict[str, str]], foreground: list[Foreground]) -> None:
    library, mpd, _ = radio_library
    start_playing(mpd, "mid/000.wav")
    radio = Foreground(library, "--mpd", mpd.address, "--ahead", str(AHEAD))
    foreground.append(radio)
    wait_ahead(mpd, AHEAD)
    mpd.mpc("random", "on")
    radio.wait_log("random mode is on")
    mpd.mpc("next")
    time.sleep(1.5)
    assert mpd.ahead() < AHEAD  # paused: nothing added
    mpd.mpc("random", "off")
    wait_ahead(mpd, AHEAD)
    mpd.mpc("sendmessage", "tunescout", "pause")
    radio.wait_log("paused by a message")
    mpd.mpc("next")
    time.sleep(1.5)
    assert mpd.ahead() == AHEAD - 1
    mpd.mpc("sendmessage", "tunescout", "resume")
    wait_ahead(mpd, AHEAD)
    mpd.mpc("clear")  # cleared and stopped: left alone
    radio.wait_log("the queue is empty and stopped")
    time.sleep(1.5)
    assert mpd.queue() == []
    mpd.mpc("add", "rave/001.wav")
    mpd.mpc("play")
    wait_ahead(mpd, AHEAD)
    assert radio.stop() == 0
    assert "Traceback" not in radio.log()


def test_the_radio_reconnects_when_mpd_restarts_and_says_so_once(
        radio_library: tuple[Library, MPD, dict[str, str]], foreground: list[Foreground]) -> None:
    library, mpd, _ = radio_library
    start_playing(mpd, "slow/001.wav")
    radio = Foreground(library, "--mpd", mpd.address, "--ahead", str(AHEAD))
    foreground.append(radio)
    wait_ahead(mpd, AHEAD)
    mpd.kill()  # killed, not stopped: mid-command for all the radio knows
    radio.wait_log("radio_disconnected")
    time.sleep(3)  # a few retries
    mpd.start(update=False)
    radio.wait_log("connected to MPD at", timeout_s=60)
    start_playing(mpd, "slow/001.wav")  # a killed MPD may not have saved its queue
    wait_ahead(mpd, AHEAD, timeout_s=60)
    mpd.mpc("next")
    wait_ahead(mpd, AHEAD)
    assert len(radio.events("radio_disconnected")) == 1
    assert radio.stop() == 0
    assert "Traceback" not in radio.log()


def test_faults_get_one_clear_line_and_no_traceback(
        radio_library: tuple[Library, MPD, dict[str, str]], foreground: list[Foreground],
        tmp_path: Path) -> None:
    library, mpd, _ = radio_library
    nobody = MPD(tmp_path / "unused", library.music)  # a free port nothing listens on
    unreachable = Foreground(library, "--mpd", nobody.address)
    foreground.append(unreachable)
    unreachable.wait_log("cannot connect to MPD")
    # a music directory that is not MPD's: the chosen songs are not in its database
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    start_playing(mpd, "slow/002.wav")
    wrong = Foreground(library, "--mpd", mpd.address, "--music-directory", str(elsewhere))
    foreground.append(wrong)
    wrong.wait_log("radio waiting: none of the 48 analysed tracks is under MPD")
    time.sleep(1)
    assert len(unreachable.events("radio_disconnected")) == 1
    for radio in (unreachable, wrong):
        assert radio.stop() == 0
        assert "Traceback" not in radio.log()
    assert mpd.ahead() == 0


def test_a_wrong_password_is_said_once(tmp_path: Path, foreground: list[Foreground]) -> None:
    need_mpd()
    library = Library(tmp_path / "lib")
    analysed_library(library.db, library.music, synthetic_tracks(per_cluster=2, artists=2))
    mpd = MPD(tmp_path / "mpd", library.music, password="right").start()
    try:
        anonymous = Foreground(library, "--mpd", mpd.address)
        wrong = Foreground(library, "--mpd", mpd.address, MPD_PASSWORD="wrong")
        foreground.extend([anonymous, wrong])
        anonymous.wait_log("without a password: set MPD_PASSWORD")
        wrong.wait_log("refused the password")
        time.sleep(2.5)
        for radio in (anonymous, wrong):
            assert len(radio.events("radio_disconnected")) == 1
            assert radio.stop() == 0
            assert "Traceback" not in radio.log()
    finally:
        mpd.stop()


def test_the_daemon_runs_the_radio_in_a_thread_and_status_shows_it(
        radio_library: tuple[Library, MPD, dict[str, str]], start_daemon: object) -> None:
    library, mpd, cluster = radio_library
    library.sections["radio"] = {"mpd": mpd.address, "ahead": AHEAD}
    library.write_config()
    start_playing(mpd, "rave/004.wav")
    daemon: Daemon = start_daemon(library)  # type: ignore[operator]
    wait_ahead(mpd, AHEAD, timeout_s=60)
    mpd.mpc("next")
    wait_ahead(mpd, AHEAD)
    assert {cluster[u] for u in mpd.queue()} == {"rave"}

    def radio_status() -> dict[str, object] | None:
        data = json.loads(library.cli("status", "--json").stdout)
        radio = data.get("radio")
        return radio if radio and radio.get("added", 0) >= AHEAD + 1 else None

    radio = wait_for(radio_status, 90, what="the radio in status --json")
    assert radio["connected"] and radio["state"] == "running" and radio["ahead"] == AHEAD
    assert radio["seeds"] and radio["last_added"]["reason"].startswith("seed ")
    text = library.cli("status").stdout.decode()
    assert "radio running" in text and "last added" in text
    assert len(daemon.events("radio_added")) >= AHEAD + 1
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_mpd_playlists_load_into_the_real_mpd(radio_library: tuple[Library, MPD, dict[str, str]],
                                              tmp_path: Path) -> None:
    """`--format mpd` (and `[[playlists]] format = "mpd"`) write an .m3u MPD lists and loads whole."""
    from tunescout.config import load_config
    from tunescout.playlists.keeper import rebuild_playlists
    from tunescout.store.reader import StoreReader

    library, mpd, _ = radio_library
    out = mpd.playlists / "evening.m3u"
    proc = library.cli("playlist", "--seed", str(library.music / "mid/001.wav"), "--length", "8",
                       "--format", "mpd", "--output", str(out))
    assert b"outside" not in proc.stderr
    assert not any(line.startswith(b"/") for line in out.read_bytes().splitlines())
    library.sections["playlists"] = {}  # replaced below: an array of tables
    text = library.config.read_text().replace("[playlists]\n", "")
    library.config.write_text(text + f'[[playlists]]\nname = "kept"\noutput = "{mpd.playlists}/kept.m3u"\n'
                              f'seeds = ["{library.music}/slow/003.wav"]\nlength = 6\nformat = "mpd"\n')
    config = load_config(library.config)
    store = StoreReader.open(library.db)
    try:
        assert rebuild_playlists(store, config.playlists.specs, time.time()) == [mpd.playlists / "kept.m3u"]
    finally:
        store.close()
    assert set(mpd.mpc("lsplaylists").split()) >= {"evening", "kept"}
    mpd.mpc("clear")
    mpd.mpc("load", "evening")
    assert len(mpd.queue()) == 8
    mpd.mpc("load", "kept")
    assert len(mpd.queue()) == 14
    # an .m3u8 with --relative in MPD's playlist folder: paths climb out; the command says so
    proc = library.cli("playlist", "--seed", str(library.music / "mid/001.wav"), "--length", "3",
                       "--relative", "--output", str(mpd.playlists / "bad.m3u8"))
    assert b"use --format mpd" in proc.stderr
