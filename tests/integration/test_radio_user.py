"""The radio against a real MPD while the user acts: a queue edited while the radio adds, a
library with nothing analysed yet, and `mpc sendmessage tunescout reseed`."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from support.audio import write_track
from support.daemon import Daemon, Library
from support.mpd import MPD, Foreground, analysed_library, need_mpd, no_repeats, start_playing, wait_ahead
from support.playlists import synthetic_tracks
from support.processes import wait_for
from tunescout.radio.mpd import MPDClient, as_dict, parse_address, records

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


class Editor(threading.Thread):
    """Another MPD client, as a user's phone app: add a song, delete two, over and over (so the
    radio has to refill while the queue moves under it)."""

    def __init__(self, mpd: MPD, songs: list[str]) -> None:
        super().__init__(name="mpd-editor")
        self.client = MPDClient.connect(parse_address(mpd.address))
        self.songs = songs
        self.stop = threading.Event()
        self.rounds = 0
        self.ours: set[str] = set()  # ids of the songs this client queued and did not delete

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                song = self.songs[self.rounds % len(self.songs)]
                self.ours.add(as_dict(self.client.command("addid", song))["Id"])
                status = as_dict(self.client.command("status"))
                after = records(self.client.command(
                    "playlistinfo", f"{int(status['song']) + 1}:"), "file")
                for victim in {after[(7 * self.rounds + k) % len(after)]["Id"] for k in (0, 3)}:
                    self.client.command("deleteid", victim)  # the radio's or its own
                    self.ours.discard(victim)
                self.rounds += 1
                self.stop.wait(0.05)
        finally:
            self.client.close()

    def clean_up(self, mpd: MPD) -> None:
        """Delete what it queued and still is there: the user is done."""
        client = MPDClient.connect(parse_address(mpd.address))
        try:
            queued = {r["Id"] for r in records(client.command("playlistinfo"), "file")}
            for song_id in self.ours & queued:
                client.command("deleteid", song_id)
        finally:
            client.close()


def test_a_queue_edited_while_the_radio_adds_stays_ahead_without_duplicates(
        radio_library: tuple[Library, MPD, dict[str, str]], foreground: list[Foreground]) -> None:
    library, mpd, _ = radio_library
    start_playing(mpd, "slow/000.wav")
    radio = Foreground(library, "--mpd", mpd.address, "--ahead", str(AHEAD))
    foreground.append(radio)
    wait_ahead(mpd, AHEAD)
    editor = Editor(mpd, [f"rave/{i:03d}.wav" for i in range(12)])
    editor.start()
    try:
        wait_for(lambda: editor.rounds >= 60 or not editor.is_alive(), 60, what="60 edits")
    finally:
        editor.stop.set()
        editor.join(timeout=30)
    assert editor.rounds >= 60, "the editing client failed"
    refills = len(radio.events("radio_added"))
    assert refills > AHEAD + 10, "the radio refilled while the queue was edited"
    editor.clean_up(mpd)
    wait_ahead(mpd, AHEAD)  # only the radio's songs, AHEAD of them again
    no_repeats(mpd)
    added = {a["MPD_URI"] for a in radio.events("radio_added")}
    assert set(mpd.queue()[1:]) <= added  # what is left after the user's songs: the radio's
    assert radio.proc.poll() is None
    assert not radio.events("radio_disconnected") and not radio.events("radio_error")
    assert radio.stop() == 0
    assert "Traceback" not in radio.log()


def test_reseed_drops_the_radios_songs_and_follows_the_current_one(
        radio_library: tuple[Library, MPD, dict[str, str]], foreground: list[Foreground]) -> None:
    library, mpd, cluster = radio_library
    start_playing(mpd, "slow/000.wav")
    radio = Foreground(library, "--mpd", mpd.address, "--ahead", str(AHEAD))
    foreground.append(radio)
    wait_ahead(mpd, AHEAD)
    for _ in range(2):  # a history of slow songs
        mpd.mpc("next")
        wait_ahead(mpd, AHEAD)
    mpd.mpc("insert", "fast/003.wav")  # the user jumps to another style, keeping the queue
    mpd.mpc("next")
    wait_for(lambda: mpd.queue()[mpd.position() - 1] == "fast/003.wav", 30, what="fast/003 playing")
    mpd.mpc("add", "mid/005.wav")  # and queues a song of their own
    queued = [cluster[u] for u in mpd.queue()[mpd.position():]]
    assert queued.count("slow") >= AHEAD - 1 and queued[-1] == "mid", queued  # the radio's older picks
    before = len(radio.events("radio_added"))
    mpd.mpc("sendmessage", "tunescout", "reseed")
    radio.wait_log("radio: reseed (message)")
    wait_for(lambda: len(radio.events("radio_added")) >= before + AHEAD - 1, 30,
             what="the additions after the reseed")
    wait_ahead(mpd, AHEAD)
    after = mpd.queue()[mpd.position():]
    assert after[0] == "mid/005.wav", "the user's own song is kept"
    assert [cluster[u] for u in after[1:]] == ["fast"] * (AHEAD - 1), after
    added = radio.events("radio_added")[before:]
    assert all(a["REASON"].startswith("seed ") for a in added)
    no_repeats(mpd)
    assert radio.stop() == 0
    assert "Traceback" not in radio.log()


def _write_library(folder: Path, count: int) -> list[Path]:
    """Write real tracks elsewhere and move them in, as a copy does; the first one plays
    through the whole test (MPD plays in real time, even into a null output)."""
    staging = folder.parent / f".{folder.name}.incoming"
    staging.mkdir()
    for i in range(count):
        write_track(staging / f"{i:02d}.flac", seconds=300.0 if i == 0 else 8.0, kind="drums",
                    bpm=90.0 + 4 * i, sample_rate=22050, channels=1)
    staging.rename(folder)
    return sorted(folder.iterdir())


def test_nothing_analysed_yet_is_said_once_and_the_radio_starts_when_tracks_are(
        tmp_path: Path, start_daemon: object) -> None:
    """The daemon's radio on a library whose analysis is held back (the memory gate, then a
    reload): one line, a state in `status`, no busy loop, then additions once tracks are analysed."""
    need_mpd()
    library = Library(tmp_path / "lib", analyser="tunescout.analysis:analyse_file")
    tracks = _write_library(library.music / "new", 8)
    mpd = MPD(tmp_path / "mpd", library.music).start()
    try:
        library.sections["memory"] = {"min_available": "1000 TB"}  # analysis paused from the start
        library.sections["radio"] = {"mpd": mpd.address, "ahead": AHEAD, "min_duration": 0}
        library.write_config()
        start_playing(mpd, "new/00.flac")
        daemon: Daemon = start_daemon(library)  # type: ignore[operator]
        daemon.wait_for_event("paused")

        def waiting() -> dict[str, object] | None:
            radio = json.loads(library.cli("status", "--json").stdout).get("radio")
            return radio if radio and radio.get("state") == "waiting" else None

        radio = wait_for(waiting, 60, what="the radio waiting in status --json")
        assert radio["connected"] and radio["reason"] == "nothing is analysed yet"
        assert "radio waiting: nothing is analysed yet" in library.cli("status").stdout.decode()
        process = psutil.Process(daemon.pid)
        cpu = process.cpu_times()
        # a few idle turns of the radio (it looks at the database every 10 s at most)
        threading.Event().wait(12)
        used = sum(process.cpu_times()[:2]) - sum(cpu[:2])
        assert used < 2.0, f"the daemon used {used:.1f} s of CPU in 12 s while the radio waited"
        assert mpd.ahead() == 0
        assert len(daemon.events("radio_waiting")) == 1, daemon.log()
        library.sections["memory"] = {"min_available": "50 MB"}
        library.write_config()
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_analysed(len(tracks), timeout_s=240)
        wait_ahead(mpd, AHEAD, timeout_s=60)
        added = daemon.events("radio_added")
        assert len(added) == AHEAD and all(Path(a.fields["TRACK_PATH"]) in tracks for a in added)
        no_repeats(mpd)
        assert daemon.stop() == 0
        assert "Traceback" not in daemon.log()
    finally:
        mpd.stop()
