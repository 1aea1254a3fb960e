"""Deadlines instead of sleeps, and the environments test processes run in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import TESTS

# what systemd hands the daemon: never inherited from whatever runs the tests
PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "TUNESCOUT_CONFIG", "JOURNAL_STREAM")


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


def daemon_env(**extra: str) -> dict[str, str]:
    """Return an environment in which children can import the test analysers."""
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_as_nobody(code: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run Python `code` as uid/gid 65534 (root reads any file; nobody does not), or skip."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to run as an unprivileged uid (setpriv)")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-c", code, *args],
                          capture_output=True, text=True, env={**os.environ, "HOME": str(home)})
