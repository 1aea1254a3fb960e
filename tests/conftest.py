"""Shared fixtures: config files, a real daemon process, and deadlines instead of sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def run_as_nobody(code: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run Python `code` as uid/gid 65534 (root reads any file; nobody does not), or skip."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to run as an unprivileged uid (setpriv)")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-c", code, *args],
                          capture_output=True, text=True, env={**os.environ, "HOME": str(home)})


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.1,
             what: str = "condition") -> Any:
    """Poll until `predicate` returns something truthy; fail the test with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    path.write_text(toml_text(sections))
    return path


def cheap_sections(music: Path, db: Path, **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Config for a daemon on the cheap test analyser, with the memory gate out of the way."""
    sections: dict[str, dict[str, Any]] = {
        "library": {"paths": [str(music)]},
        "store": {"path": str(db)},
        "intake": {"settle": "0.5 s"},
        "workers": {"analyser": "analysers:by_name", "max_workers": 2},
        "memory": {"min_available": "50 MB", "pause_above_percent": 99,
                   "resume_below_percent": 98},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return sections


def daemon_env(**extra: str) -> dict[str, str]:
    """Return an environment in which children can import the test analysers."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "TUNESCOUT_CONFIG",
                        "JOURNAL_STREAM")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class DaemonProcess:
    """Stop or kill a `tunescout run` held in `self.proc` (shared by the daemon helpers)."""

    proc: subprocess.Popen[bytes]

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Library:
    """A temporary library, database and config for one test."""

    def __init__(self, root: Path, analyser: str = "analysers:by_name", **sections: dict[str, Any]):
        self.root = root
        self.music = root / "music"
        self.music.mkdir(parents=True, exist_ok=True)
        self.db = root / "state" / "tunescout.db"
        config = cheap_sections(self.music, self.db, workers={"analyser": analyser})
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        self.config = write_config(root / "tunescout.toml", config)

    def cli(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """Run `tunescout --config … ARGS` as a real process."""
        proc = subprocess.run([sys.executable, "-m", "tunescout", "--config", str(self.config), *args],
                              capture_output=True, env=env or daemon_env(), timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"tunescout {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout.decode(errors='replace')}\n"
                                 f"{proc.stderr.decode(errors='replace')}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)


class Daemon:
    """`tunescout run` as a real process, its stderr collected on a thread."""

    def __init__(self, library: Library, env: dict[str, str] | None = None) -> None:
        self.library = library
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tunescout", "--config", str(library.config), "run",
             "--log-target", "stderr"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or daemon_env(),
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.decode("utf-8", "replace"))

    def log(self) -> str:
        return "".join(self.output)

    def wait_log(self, text: str, timeout_s: float = 60) -> None:
        wait_for(lambda: text in self.log() or self.proc.poll() is not None, timeout_s,
                 what=f"{text!r} in the daemon's log")
        assert text in self.log(), f"daemon exited {self.proc.returncode}:\n{self.log()}"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library(tmp_path)


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(library: Library, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(library, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        daemon.stop()
