"""A library folder with its config and database, and `tunescout run` on it as a real process.

One helper for every daemon test; options say what differs (a notify socket, the log target, a
journal identifier, more environment, a shell around the exec). The daemon's output goes to a
file, read back as lines whose UPPERCASE fields (`EVENT=analysed TRACK_PATH=...`) tests wait on:
a file rather than a pipe, so no reader thread outlives a test.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from support.config import ANALYSER, cheap_sections, toml_text
from support.processes import daemon_env, wait_for
from tunescout.errors import StoreError
from tunescout.store.reader import StoreReader

TIMEOUT_S = 60.0  # a shared, noisy 2-core machine

_HEADER = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) ([A-Z]+) ([\w.]+): (.*)")
_FIELD = re.compile(r' ([A-Z][A-Z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"]+)$')


@dataclass(frozen=True)
class LogLine:
    """One line of the daemon's stderr: `TIME LEVEL LOGGER: MESSAGE KEY=value ...`."""

    at: str
    level: str
    logger: str
    message: str
    fields: dict[str, str]


def parse_line(line: str) -> LogLine | None:
    """Return the parts of a log line, None for anything else (a traceback, a child's output)."""
    match = _HEADER.fullmatch(line.rstrip("\n"))
    if match is None:
        return None
    at, level, logger, rest = match.groups()
    fields: dict[str, str] = {}
    while field := _FIELD.search(rest):
        value = field[2]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value[1:-1])
        fields[field[1]] = value
        rest = rest[:field.start()]
    return LogLine(at, level, logger, rest, dict(reversed(fields.items())))


class Library:
    """A temporary library, database and config for one test."""

    def __init__(self, root: Path, analyser: str = ANALYSER, **sections: dict[str, Any]):
        self.root = root
        self.music = root / "music"
        self.music.mkdir(parents=True, exist_ok=True)
        self.db = root / "state" / "tunescout.db"
        self.sections = cheap_sections(self.music, self.db, workers={"analyser": analyser})
        for name, values in sections.items():
            self.sections.setdefault(name, {}).update(values)
        self.config = root / "tunescout.toml"
        self.write_config()

    def write_config(self, text: str | None = None) -> None:
        """Write the config of the sections, or `text` as it is (a broken one, say)."""
        self.config.write_text(toml_text(self.sections) if text is None else text)

    def drop(self, name: str, data: bytes = b"not really audio\n") -> Path:
        """Write a file into the library the way a copy does: elsewhere first, then moved in."""
        temp = self.root / f".{name}.incoming"
        temp.write_bytes(data)
        path = self.music / name
        temp.rename(path)
        return path

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
    """`tunescout run` on a library as a real process, its stdout and stderr in a file.

    `notify` is the NOTIFY_SOCKET address (a path, or `@name`); `log_target` the `--log-target`
    (None: the config's); `identifier` the journal's SYSLOG_IDENTIFIER; `env` more variables;
    `shell_prefix` runs the daemon as `sh -c 'PREFIX exec tunescout …'` (the pid stays the same);
    `wrapper` is an argv that execs the rest (support/listen_fds.py), `pass_fds` its descriptors.
    """

    def __init__(self, library: Library, *, env: Mapping[str, str] | None = None,
                 notify: str | None = None, log_target: str | None = "stderr",
                 identifier: str | None = None, args: Sequence[str] = (),
                 shell_prefix: str | None = None, wrapper: Sequence[str] = (),
                 pass_fds: Sequence[int] = ()) -> None:
        self.library = library
        self.identifier = identifier
        variables = dict(env or {})
        if notify is not None:
            variables["NOTIFY_SOCKET"] = notify
        if identifier is not None:
            variables["TUNESCOUT_LOG_IDENTIFIER"] = identifier
        argv = [sys.executable, "-m", "tunescout", "--config", str(library.config), "run", *args]
        if log_target is not None:
            argv += ["--log-target", log_target]
        if shell_prefix is not None:  # `exec` keeps the pid, as systemd's own exec does
            argv = ["/bin/sh", "-c", f'{shell_prefix} exec "$@"', "sh", *argv]
        argv = [*wrapper, *argv]
        self.output = _new_file(library.root, "daemon{}.log")
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=daemon_env(**variables), cwd=library.root,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         pass_fds=tuple(pass_fds))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def drop(self, name: str, data: bytes = b"not really audio\n") -> Path:
        return self.library.drop(name, data)

    # --- what it said --------------------------------------------------------------------------

    def log(self) -> str:
        """Return everything the daemon wrote so far."""
        return self.output.read_text(errors="replace")

    def lines(self) -> list[LogLine]:
        return [parsed for line in self.log().splitlines() if (parsed := parse_line(line))]

    def events(self, event: str, **fields: str | Path) -> list[LogLine]:
        """Return the lines with EVENT=event and the given fields (`TRACK_PATH=path`), oldest first."""
        wanted = {"EVENT": event, **{key: str(value) for key, value in fields.items()}}
        return [line for line in self.lines()
                if all(line.fields.get(key) == value for key, value in wanted.items())]

    def wait_for_event(self, event: str, count: int = 1, timeout_s: float = TIMEOUT_S,
                       **fields: str | Path) -> list[LogLine]:
        """Return the matching lines once there are `count`; fail if the daemon exits first."""
        found = wait_for(lambda: len(self.events(event, **fields)) >= count or self.proc.poll() is not None,
                         timeout_s, what=f"{count} EVENT={event} {fields} in the daemon's log")
        assert found and len(self.events(event, **fields)) >= count, \
            f"daemon exited {self.proc.returncode}:\n{self.log()}"
        return self.events(event, **fields)

    def wait_log(self, text: str, timeout_s: float = TIMEOUT_S) -> None:
        wait_for(lambda: text in self.log() or self.proc.poll() is not None, timeout_s,
                 what=f"{text!r} in the daemon's log")
        assert text in self.log(), f"daemon exited {self.proc.returncode}:\n{self.log()}"

    # --- what it did ---------------------------------------------------------------------------

    def analysed(self) -> int:
        if not self.library.db.exists():
            return 0
        try:
            store = StoreReader.open(self.library.db)
        except StoreError:
            return 0  # created a moment ago, not migrated yet
        try:
            return store.counts().analysed
        finally:
            store.close()

    def wait_analysed(self, count: int, timeout_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self.analysed() < count:
            assert self.proc.poll() is None, f"the daemon exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"not {count} analysed in time:\n{self.log()}"
            time.sleep(0.1)

    def zygote(self, timeout_s: float = TIMEOUT_S) -> psutil.Process:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for child in psutil.Process(self.pid).children():
                try:
                    if "tunescout.workers.zygote" in child.cmdline():
                        return child
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.05)
        raise AssertionError(f"no zygote under pid {self.pid}:\n{self.log()}")

    # --- its journal (when it logs there) ------------------------------------------------------

    def journal(self, *matches: str) -> list[dict[str, Any]]:
        """Return its journal entries (optionally `FIELD=value` matches), oldest first."""
        assert self.identifier, "started without a journal identifier"
        subprocess.run(["journalctl", "--sync"], check=True, timeout=TIMEOUT_S)
        out = subprocess.run(["journalctl", "--no-pager", "-o", "json", "-t", self.identifier,
                              *matches], capture_output=True, check=True, timeout=TIMEOUT_S).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for_journal(self, event: str, count: int = 1,
                         timeout_s: float = TIMEOUT_S) -> list[dict[str, Any]]:
        """Return the journal entries with EVENT=event once there are `count` of them."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [e for e in self.journal() if e.get("EVENT") == event]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline or self.proc.poll() is not None:
                events = [e.get("EVENT") for e in self.journal()]
                raise AssertionError(f"no EVENT={event} in the journal (events: {events}); "
                                     f"output:\n{self.log()}")
            time.sleep(0.2)

    # --- its end -------------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = TIMEOUT_S) -> int:
        """Send `sig` (SIGTERM: what systemd sends) and wait; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _new_file(folder: Path, pattern: str) -> Path:
    """Return the first `pattern.format(n)` in `folder` that does not exist yet."""
    n = 0
    while (folder / pattern.format(n)).exists():
        n += 1
    return folder / pattern.format(n)
