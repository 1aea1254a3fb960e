"""A real MPD for the radio tests: a private config, a null audio output, its own free port,
started in the foreground and stopped by pid; and an analysed library of real audio files.

MPD only lists files it can decode, so the tracks are short real WAV files (8 kHz mono, cheap
to write) with synthetic analyses recorded in the store (support/playlists.py's clusters).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from support.daemon import Library, parse_line
from support.processes import daemon_env, wait_for
from tunescout.models import FEATURE_VERSIONS, FeatureGroup, FileIdentity, TrackAnalysis
from tunescout.playlists.catalogue import Track
from tunescout.store.writer import StoreWriter


def need_mpd() -> None:
    if not (shutil.which("mpd") and shutil.which("mpc")):
        pytest.skip("needs Debian's mpd and mpc (bash scripts/setup.sh test installs them)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MPD:
    """`mpd --no-daemon CONF` on `music`, at 127.0.0.1:`port`; `mpc` talks to it."""

    def __init__(self, root: Path, music: Path, *, password: str | None = None) -> None:
        need_mpd()
        self.root = root
        self.music = music
        self.port = free_port()
        self.password = password
        self.playlists = root / "playlists"
        self.playlists.mkdir(parents=True, exist_ok=True)
        self.conf = root / "mpd.conf"
        auth = f'password "{password}@read,add,control,admin"\n' if password else ""
        self.conf.write_text(
            f'music_directory "{music}"\nplaylist_directory "{self.playlists}"\n'
            f'db_file "{root}/mpd.db"\nstate_file "{root}/mpd.state"\npid_file "{root}/mpd.pid"\n'
            f'log_file "{root}/mpd.log"\nbind_to_address "127.0.0.1"\nport "{self.port}"\n'
            f'auto_update "no"\nzeroconf_enabled "no"\n{auth}'
            'audio_output {\n  type "null"\n  name "null"\n  mixer_type "none"\n}\n')
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, update: bool = True) -> MPD:
        self.proc = subprocess.Popen(["mpd", "--no-daemon", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, 30, what=f"MPD on port {self.port}")
        if update:
            self.mpc("update", "--wait")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"mpd exited {self.proc.returncode}: {(self.root / 'mpd.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"OK MPD")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def mpc(self, *args: str, check: bool = True) -> str:
        host = f"{self.password}@127.0.0.1" if self.password else "127.0.0.1"
        proc = subprocess.run(["mpc", "--host", host, "--port", str(self.port), *args],
                              capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"mpc {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def queue(self) -> list[str]:
        return [line for line in self.mpc("playlist", "-f", "%file%").splitlines() if line]

    def position(self) -> int:
        """Return the current song's position in the queue (1-based, as mpc), 0 when none."""
        out = self.mpc("status", "%songpos%").strip()
        return int(out) if out.isdigit() else 0

    def ahead(self) -> int:
        return len(self.queue()) - self.position()


def write_audio(path: Path, seconds: float = 60.0, freq_hz: float = 440.0) -> None:
    """Write a quiet 8 kHz mono WAV tone: real audio MPD indexes, a few hundred kB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(8000 * seconds)) / 8000.0
    soundfile.write(path, (0.05 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), 8000,
                    subtype="PCM_16")


def analysed_library(db: Path, music: Path, tracks: list[Track], seconds: float = 60.0) -> list[Track]:
    """Write a real WAV for each synthetic track under `music`, record its analysis; return them re-pathed."""
    stored = []
    store = StoreWriter.open(db)
    try:
        for i, track in enumerate(tracks):
            path = music / track.path.relative_to("/music").with_suffix(".wav")
            write_audio(path, seconds, 220.0 + 10 * i)
            result = TrackAnalysis(
                digest=track.digest, duration_s=seconds, tags=dict(track.tags),
                features=tuple(FeatureGroup(name, FEATURE_VERSIONS[name], dict(v))
                               for name, v in track.features.items()),
            )
            store.record_analysis(path, FileIdentity.from_stat(path.stat()), result)
            stored.append(Track(path, track.digest, seconds, track.tags, track.features))
    finally:
        store.close()
    return stored


def wait_ahead(mpd: MPD, count: int, timeout_s: float = 30.0) -> None:
    wait_for(lambda: mpd.ahead() == count, timeout_s, what=f"{count} songs queued ahead in MPD "
             f"(now {mpd.ahead()})")


def settle(seconds: float = 0.5) -> None:
    time.sleep(seconds)


class Foreground:
    """`tunescout radio` as a real process, its output in a file."""

    def __init__(self, library: Library, *args: str, **env: str) -> None:
        self.output = library.root / f"radio-{time.monotonic_ns()}.log"
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tunescout", "--config", str(library.config), "radio", *args],
                env=daemon_env(**env), stdin=subprocess.DEVNULL, stdout=out, stderr=out)

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def events(self, event: str) -> list[dict[str, str]]:
        lines = (parse_line(line) for line in self.log().splitlines())
        return [line.fields for line in lines if line is not None and line.fields.get("EVENT") == event]

    def wait_log(self, text: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the radio's output after {timeout_s:.0f} s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def start_playing(mpd: MPD, uri: str) -> None:
    mpd.mpc("clear")
    mpd.mpc("add", uri)
    mpd.mpc("play")


def no_repeats(mpd: MPD) -> None:
    queue = mpd.queue()
    assert len(queue) == len(set(queue)), queue
