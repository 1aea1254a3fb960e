"""A real Subsonic server for the tests: supysonic (from PyPI) on a library folder, served by
waitress on a free loopback port, stopped by pid; and a small client to look at what it holds.

`Supysonic(folder, music)` writes its config (`supysonic.conf` in its own folder, which it reads
from its working directory), makes a user, adds `music` as its music folder and scans it with
`supysonic-cli`; `start()` serves it, `stop()` stops it (the data stays: `start()` again is the
same server with the same song ids).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.http import free_port

USER = "tunescout"
TIMEOUT_S = 60.0


def needs_supysonic() -> None:
    try:
        import supysonic  # noqa: F401
        import waitress  # noqa: F401
    except ImportError:
        pytest.skip("needs supysonic and waitress (pip install 'tunescout[test]')")


class Supysonic:
    """One supysonic server: its data in `folder`, its library `music`, its user USER."""

    def __init__(self, folder: Path, music: Path, password: str = "a-subsonic-password",
                 *, new: bool = True) -> None:
        needs_supysonic()
        self.folder = folder
        self.music = music
        self.password = password
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "supysonic.conf").write_text(
            f"[base]\ndatabase_uri = sqlite:///{folder / 'supysonic.db'}\n"
            f"[webapp]\ncache_dir = {folder / 'cache'}\nmount_webui = no\nlog_level = WARNING\n"
            f"[daemon]\nsocket = {folder / 'daemon.sock'}\nrun_watcher = no\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        if new:
            self.cli("user", "add", USER, "-p", password)
            self.cli("folder", "add", "library", str(music))

    def clone(self, folder: Path) -> Supysonic:
        """Return a copy of this server's data (the same songs with the same ids), not started,
        on a port of its own: for a test that stops and starts its server."""
        folder.mkdir(parents=True)
        shutil.copyfile(self.folder / "supysonic.db", folder / "supysonic.db")
        return Supysonic(folder, self.music, self.password, new=False)

    def cli(self, *args: str) -> str:
        """Run `supysonic-cli ARGS` on this server's data; return what it printed."""
        proc = subprocess.run([sys.executable, "-m", "supysonic.cli", *args], cwd=self.folder,
                              env=self._env(), capture_output=True, timeout=TIMEOUT_S)
        assert proc.returncode == 0, f"supysonic-cli {' '.join(args)}: {proc.stdout!r} {proc.stderr!r}"
        return proc.stdout.decode(errors="replace")

    def scan(self) -> None:
        out = self.cli("folder", "scan", "library")
        assert "Scanning done" in out, out

    def start(self) -> None:
        assert self.proc is None
        log = (self.folder / "server.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "supysonic.server", "-S", "waitress", "-h", "127.0.0.1",
                 "-p", str(self.port), "--threads", "4"],
                cwd=self.folder, env=self._env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        from support.processes import wait_for

        wait_for(self._answers, TIMEOUT_S, what=f"supysonic answering on {self.url}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.folder / "server.log").read_text(errors="replace")
            raise AssertionError(f"supysonic exited {self.proc.returncode}:\n{log}")
        try:
            return self.call("ping")["status"] == "ok"
        except OSError:
            return False

    def _env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.folder)}

    # --- asking it, as a client would ----------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Ask the server `method` (JSON, the user's password); return `subsonic-response`."""
        pairs = [("u", USER), ("p", "enc:" + self.password.encode().hex()), ("v", "1.12.0"),
                 ("c", "tests"), ("f", "json")]
        for key, value in params.items():
            pairs.extend((key, str(v)) for v in (value if isinstance(value, list) else [value]))
        url = f"{self.url}/rest/{method}.view?{urllib.parse.urlencode(pairs)}"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                data = json.loads(exc.read())
        answer: dict[str, Any] = data["subsonic-response"]
        return answer

    def songs(self) -> dict[str, str]:
        """Return path (inside the music folder) -> song id of every song it has."""
        found = self.call("search3", query="", songCount=10000, artistCount=0, albumCount=0)
        return {song["path"]: song["id"] for song in found["searchResult3"].get("song", [])}

    def playlists(self) -> list[dict[str, Any]]:
        return list(self.call("getPlaylists")["playlists"].get("playlist", []))

    def playlist_songs(self, playlist_id: str) -> list[str]:
        entries = self.call("getPlaylist", id=playlist_id)["playlist"].get("entry", [])
        return [entry["id"] for entry in entries]


def token_auth(password: str) -> tuple[str, str]:
    """Return (token, salt) of the Subsonic API's token authentication for `password`."""
    salt = secrets.token_hex(6)
    return hashlib.md5((password + salt).encode(), usedforsecurity=False).hexdigest(), salt
