"""`tunescout doctor`: check everything the daemon depends on and say how to fix what is wrong."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tunescout.config import Config
from tunescout.errors import StoreError
from tunescout.library.watcher import MOUNTINFO, blind_submounts, filesystem_type, uses_polling, watch_limit
from tunescout.store.reader import StoreReader
from tunescout.store.schema import SCHEMA_VERSION
from tunescout.units import format_size
from tunescout.workers.memory import read_memory
from tunescout.workers.zygote_client import child_env

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


class Level(StrEnum):
    """How bad a finding is: `fail` makes doctor exit 1."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One finding and, when it is not ok, what to do about it (`fix`)."""

    name: str
    level: Level
    message: str
    fix: str = ""


def check_all(config: Config, env: Mapping[str, str], *, analysis: bool = True) -> list[Check]:
    """Run every check, cheapest first."""
    checks = [Check("config", Level.OK, f"{config.source}")]
    checks.append(_check_database(config.store.path))
    for root in config.library.paths:
        checks.extend(_check_root(root, config.library.watch))
    checks.append(_check_journal(env))
    checks.append(_check_memory(config))
    if config.radio is not None or config.workers.scheduler:
        from tunescout.cli import doctor_integrations  # it uses Check: imported once this module is

        if config.radio is not None:
            checks.extend(doctor_integrations.check_radio(config))
        if config.workers.scheduler:
            checks.extend(doctor_integrations.check_cluster(config))
    checks.append(_check_numba_cache(env))
    if config.subsonic.url is not None:
        checks.append(_check_subsonic(config))
    if analysis:
        checks.append(_check_analysis(config, env))
    return checks


def _check_database(path: Path) -> Check:
    if not path.exists():
        folder = next((p for p in path.parents if p.exists()), Path("/"))
        if os.access(folder, os.W_OK):
            return Check("database", Level.OK, f"{path} does not exist yet; the daemon creates it")
        return Check("database", Level.FAIL, f"{path} does not exist and {folder} is not writable",
                     f"create {path.parent} writable by the daemon's user, or set [store] path")
    try:
        store = StoreReader.open(path)
    except StoreError as exc:
        return Check("database", Level.FAIL, str(exc), "see the message; the daemon migrates old schemas")
    try:
        integrity = store.integrity_check()
        counts = store.counts()
    finally:
        store.close()
    if integrity != "ok":
        return Check("database", Level.FAIL, f"{path}: integrity check says {integrity}",
                     "stop the daemon, move the database aside and start it again: the library is "
                     "analysed anew")
    return Check("database", Level.OK, f"{path}: schema {SCHEMA_VERSION}, integrity ok, "
                 f"{counts.files} files, {counts.queued} queued")


def _count_dirs(root: Path, limit: int) -> int:
    count, stack = 0, [os.fsencode(root)]
    while stack and count <= limit:
        folder = stack.pop()
        count += 1
        try:
            with os.scandir(folder) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return count


def _inotify_works(root: Path) -> str | None:
    """Return None when an inotify watch can be placed on `root`, else the reason."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return os.strerror(ctypes.get_errno())
    try:
        if libc.inotify_add_watch(fd, os.fsencode(root), 0x00000002) < 0:  # IN_MODIFY
            return os.strerror(ctypes.get_errno())
        return None
    finally:
        os.close(fd)


def _check_root(root: Path, watch: str, mountinfo: Path = MOUNTINFO) -> Iterator[Check]:
    name = f"library {root}"
    if not root.exists():
        yield Check(name, Level.FAIL, "does not exist (not mounted?)",
                    "mount it or fix [library] paths; the daemon waits for it and keeps its files")
        return
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        yield Check(name, Level.FAIL, "is not a readable folder",
                    "make it readable by the daemon's user (chmod o+rx, or SupplementaryGroups=)")
        return
    fs_type = filesystem_type(root, mountinfo)
    if uses_polling(watch, fs_type):
        yield Check(name, Level.OK, f"{fs_type}: watched by polling (inotify does not see changes made "
                    "on other machines)")
        return
    why = _inotify_works(root)
    if why is not None:
        yield Check(name, Level.WARN, f"{fs_type}: inotify cannot watch it ({why}); polling is used",
                    "raise fs.inotify.max_user_instances, or set [library] watch = \"poll\"")
        return
    limit = watch_limit()
    dirs = _count_dirs(root, (limit or 1 << 30) + 1)
    if limit is not None and dirs > limit * 0.9:
        yield Check(name, Level.WARN, f"{fs_type}: {dirs:,} folders against an inotify watch limit of "
                    f"{limit:,}", f"sysctl fs.inotify.max_user_watches={max(dirs * 2, 524288)} (and "
                    "in /etc/sysctl.d/ to keep it); until then folders past the limit are covered "
                    "by the periodic rescan only")
        return
    polled = blind_submounts(root, mountinfo) if watch == "auto" else []
    yield Check(name, Level.OK, f"{fs_type}, inotify, {dirs:,} folders"
                + (f" (watch limit {limit:,})" if limit else "")
                + "".join(f"; {mount} ({kind}) also polled" for mount, kind in polled))


def _check_journal(env: Mapping[str, str]) -> Check:
    if not JOURNAL_SOCKET.exists():
        return Check("journal", Level.WARN, f"no journald socket at {JOURNAL_SOCKET}; logs go to stderr",
                     "fine outside systemd; under systemd, is systemd-journald running?")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(str(JOURNAL_SOCKET))
    except OSError as exc:
        return Check("journal", Level.WARN, f"journald does not answer at {JOURNAL_SOCKET}: {exc.strerror}",
                     "systemctl status systemd-journald")
    return Check("journal", Level.OK, "journald reachable")


def _check_memory(config: Config) -> Check:
    reading = read_memory()
    budget = config.workers.child_budget_bytes
    need = budget + config.memory.reserve_bytes + config.memory.min_available_bytes
    figures = (f"{format_size(reading.available_bytes)} of {format_size(reading.total_bytes)} "
               f"available ({reading.source}); {format_size(budget)} per child")
    if need > reading.total_bytes:
        return Check("memory", Level.FAIL, f"{figures}: not even one child fits",
                     "lower [workers] child_budget or [memory] reserve/min_available, or raise MemoryMax=")
    if budget < 256 * 2**20:
        return Check("memory", Level.WARN, f"{figures}: a budget under 256 MiB fails on ordinary tracks",
                     "set [workers] child_budget to at least 512 MiB")
    return Check("memory", Level.OK, figures)


SUBSONIC_SAMPLE = 50  # songs whose paths are looked for on disk


def _check_subsonic(config: Config) -> Check:
    """[subsonic]: the server answers, takes the login, and its song paths are our files."""
    from tunescout.errors import SubsonicError
    from tunescout.subsonic.client import SubsonicClient
    from tunescout.subsonic.songs import song_keys

    client = SubsonicClient(config.subsonic, timeout_s=10)
    roots = config.library.paths
    folder = config.subsonic.music_folder or (roots[0] if len(roots) == 1 else None)
    try:
        client.ping()
        answer = client.call("search3", query="", songCount=SUBSONIC_SAMPLE, artistCount=0,
                             albumCount=0)
        songs = (answer.get("searchResult3") or {}).get("song") or []
    except SubsonicError as exc:
        fix = {"unreachable": "is the server running, and subsonic.url its address?",
               "refused": "set subsonic.user and subsonic.password (or token and salt) to a user "
                          "of the server"}.get(exc.reason, "check subsonic.url")
        return Check("subsonic", Level.FAIL, str(exc), fix)
    server = f"{client.server.get('type', 'Subsonic')} {client.server.get('serverVersion', '')}".strip()
    if not songs:
        return Check("subsonic", Level.WARN, f"{config.subsonic.url} ({server}) has no songs",
                     "let the server scan the library")
    found = sum(1 for song in songs if any(
        (root / key).exists() if not key.startswith("/") else Path(key).exists()
        for key in song_keys(str(song.get("path") or ""), folder) for root in roots))
    if not found:
        return Check("subsonic", Level.FAIL,
                     f"{config.subsonic.url} ({server}): none of {len(songs)} songs is a file of the "
                     f"library (the server reports paths like {songs[0].get('path')!r})",
                     f"set subsonic.music_folder to the folder the server sees the library as "
                     f"(now {folder}); on Navidrome turn on Report Real Path for the player")
    return Check("subsonic", Level.OK, f"{config.subsonic.url} ({server}): login accepted; "
                 f"{found} of {len(songs)} songs sampled are files of the library")


def _check_numba_cache(env: Mapping[str, str]) -> Check:
    cache = env.get("NUMBA_CACHE_DIR")
    if not cache:
        return Check("numba cache", Level.OK, "NUMBA_CACHE_DIR not set: numba caches beside librosa's "
                     "sources when they are writable (under systemd the unit sets it)")
    path = Path(cache)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as exc:
        return Check("numba cache", Level.FAIL, f"{path} is not writable ({exc.strerror}): every start "
                     "recompiles (~17 s, +150 MiB)", "point NUMBA_CACHE_DIR at a writable folder "
                     "(the unit uses CacheDirectory=)")
    return Check("numba cache", Level.OK, f"{path} writable")


_PROBE = (
    "import time; t = time.monotonic()\n"
    "import importlib; spec = {spec!r}\n"
    "module = importlib.import_module(spec.partition(':')[0]); getattr(module, spec.partition(':')[2])\n"
    "warm = getattr(module, 'warm_up', None); warm and warm()\n"
    "import av, librosa\n"
    "print(f'PyAV {{av.__version__}} (FFmpeg {{av.library_versions[\"libavcodec\"]}}), librosa "
    "{{librosa.__version__}}, warm-up {{time.monotonic() - t:.1f}} s')\n"
)


def _check_analysis(config: Config, env: Mapping[str, str]) -> Check:
    """Import the analysis stack and warm it up in a separate process, as the zygote does."""
    code = _PROBE.format(spec=config.workers.analyser)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=child_env(env), timeout=300)
    except subprocess.TimeoutExpired:
        return Check("analysis", Level.FAIL, "the analysis stack did not warm up within 5 minutes",
                     "check the machine's load and the numba cache")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("analysis", Level.FAIL, f"the analysis stack cannot start: {last}",
                     "reinstall: bash scripts/setup.sh install")
    return Check("analysis", Level.OK, proc.stdout.strip())
