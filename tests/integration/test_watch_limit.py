"""The inotify watch limit, in a user namespace with its own small limit (never the machine's)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import TESTS
from support.config import write_config
from support.processes import wait_for

LIMIT = 40


def _userns_works() -> str | None:
    if os.geteuid() != 0:
        return "needs root to drop to an unprivileged uid (setpriv)"
    if not shutil.which("setpriv") or not shutil.which("unshare"):
        return "setpriv/unshare not installed"
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user",
         "--map-root-user", "sh", "-c", f"echo {LIMIT} > /proc/sys/user/max_inotify_watches"],
        capture_output=True, text=True)
    return None if probe.returncode == 0 else f"user namespaces unavailable: {probe.stderr.strip()}"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the unprivileged uid can write (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="tunescout-userns-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_watch_limit_is_reported_and_the_rescan_covers_the_rest(shared_dir: Path) -> None:
    why = _userns_works()
    if why:
        pytest.skip(why)
    music = shared_dir / "music"
    for i in range(LIMIT + 20):  # more folders than watches
        (music / f"artist{i:02d}" / "album").mkdir(parents=True)
    db = shared_dir / "state" / "t.db"
    config = write_config(shared_dir / "c.toml", {
        "library": {"paths": [str(music)]},
        "store": {"path": str(db)},
        "intake": {"settle": "0.5 s", "rescan_interval": "3 s"},
        "workers": {"analyser": "support.analysers:by_name", "max_workers": 1},
        "memory": {"min_available": "50 MB", "pause_above_percent": 99, "resume_below_percent": 98},
    })
    for path in [shared_dir, *shared_dir.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(TESTS), "HOME": str(shared_dir)}
    cmd = (f"echo {LIMIT} > /proc/sys/user/max_inotify_watches && exec {sys.executable} -m tunescout "
           f"--config {config} run --log-target stderr")
    proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare",
                             "--user", "--map-root-user", "sh", "-c", cmd],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(
        line.decode(errors="replace") for line in proc.stdout), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: any("library folders are watched" in line for line in lines), 60,
                 what=f"the watch-limit warning (log: {lines})")
        warning = next(line for line in lines if "library folders are watched" in line)
        assert f"of {1 + 2 * (LIMIT + 20)} library folders" in warning
        assert "sysctl fs.inotify.max_user_watches=" in warning
        # a file in the last folder, which has no watch: the rescan finds it
        late = music / f"artist{LIMIT + 19:02d}" / "album" / "late.flac"
        late.write_bytes(os.urandom(3000))
        late.chmod(0o666)
        wait_for(lambda: any(f"analysed {late}" in line for line in lines), 60,
                 what="the unwatched file analysed by the rescan")
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "tunescout", "--config", str(config), "status", "--json"],
            capture_output=True, check=True, env=env).stdout)
        assert status["daemon"]["status"].endswith("inotify-partial")
    finally:
        proc.terminate()
        code = proc.wait(timeout=60)
        reader.join(timeout=5)
        proc.stdout.close()
    assert code == 0, "".join(lines)
