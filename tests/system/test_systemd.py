"""The unit under a real systemd: runs tests/system/inside.sh inside systemd-sandbox.sh.

inside.sh installs the shipped unit plus a test drop-in (ExecStart → the tunescout of the Python
running these tests, the cheap test analyser, a library in the sandbox's /srv), then checks start
after READY=1, StatusText, analysis of a dropped file (`tunescout status`/`show`, `journalctl -u
tunescout EVENT=analysed`), reload, a clean stop (Result=success), the read-only library, the
database in /var/lib/private/tunescout, and a watchdog kill of a stuck main loop. Needs root and
the workplace's sandbox tool; skips, saying why, elsewhere.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SANDBOX = Path(os.environ.get("TUNESCOUT_SYSTEMD_SANDBOX",
                              REPO.parent / "shared" / "tools" / "systemd-sandbox.sh"))
INSIDE = Path(__file__).resolve().parent / "inside.sh"
SOCKET = Path(__file__).resolve().parent / "socket.sh"
TIMEOUT_S = 240


def _not_world_traversable(path: Path) -> Path | None:
    """Return the first folder on the way to `path` that a stranger cannot enter, if any."""
    for folder in [*reversed(path.parents), path]:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (the sandbox boots systemd in new namespaces)"
    if not SANDBOX.is_file() or not os.access(SANDBOX, os.X_OK):
        return f"no systemd sandbox tool at {SANDBOX}"
    if not Path("/lib/systemd/systemd").exists():
        return "systemd is not installed"
    if not (Path(sys.executable).parent / "tunescout").exists():
        return f"no tunescout command beside {sys.executable}"
    for path in (REPO / "tests", Path(sys.prefix)):
        blocked = _not_world_traversable(path)
        if blocked is not None:
            return f"DynamicUser cannot reach {path}: {blocked} is not world-searchable"
    return None


def _sandbox(script: Path, passed: str) -> None:
    """Run `script` inside the systemd sandbox with systemd/ as the units; it must print `passed`."""
    binds = [REPO]
    prefix = Path(sys.prefix).resolve()
    if REPO not in prefix.parents and prefix != REPO:
        binds.append(prefix)
    env = {**os.environ, "SANDBOX_BIND": " ".join(str(b) for b in binds),
           "TUNESCOUT_BIN": str(Path(sys.executable).parent / "tunescout")}
    result = subprocess.run([str(SANDBOX), str(REPO / "systemd"), str(script)], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert passed in output, output


@pytest.mark.slow
@pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")
def test_unit_under_real_systemd() -> None:
    _sandbox(INSIDE, "ALL SYSTEM CHECKS PASSED")


@pytest.mark.slow
@pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")
def test_socket_activation_under_real_systemd() -> None:
    """tunescout.socket as shipped: the first request starts the daemon (PrivateNetwork=yes, no
    IP sockets of its own), which answers it and similar_tracks on the socket systemd made."""
    _sandbox(SOCKET, "ALL SOCKET CHECKS PASSED")
