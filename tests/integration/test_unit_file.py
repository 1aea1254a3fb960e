"""The systemd unit: `systemd-analyze verify` is clean and `security` rates it 1.0 or better.

The unit's ExecStart is /opt/tunescout/venv/bin/tunescout (scripts/setup.sh as root puts it there),
and verify insists that it exists: the unit is verified as it is when it does, and always as a copy
whose ExecStart names the tunescout of the Python running the tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "tunescout.service"
DROPIN_EXAMPLE = REPO / "systemd" / "tunescout.conf.example-dropin"
INSTALLED = "/opt/tunescout/venv/bin/tunescout"
MAX_EXPOSURE = 1.0

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=120)


def directives(text: str) -> dict[str, list[str]]:
    """Return every `Key=value` of a unit, in order, keys repeated as systemd allows."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def local_copy(folder: Path, dropin: str | None = None) -> Path:
    """Copy the unit with ExecStart naming this Python's tunescout, optionally with a drop-in."""
    tunescout = Path(sys.executable).parent / "tunescout"
    if not tunescout.exists():
        pytest.skip(f"no tunescout command beside {sys.executable} to point ExecStart at")
    text = UNIT.read_text().replace(f"ExecStart={INSTALLED}", f"ExecStart={tunescout}")
    assert f"ExecStart={tunescout} run" in text
    unit = folder / "tunescout.service"
    unit.write_text(text)
    if dropin is not None:
        (folder / "tunescout.service.d").mkdir()
        (folder / "tunescout.service.d" / "library.conf").write_text(dropin)
    return unit


def test_verify_is_clean(tmp_path: Path) -> None:
    result = analyze("verify", str(local_copy(tmp_path)))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.skipif(not Path(INSTALLED).exists(),
                    reason=f"{INSTALLED} is not installed (bash scripts/setup.sh install, as root)")
def test_verify_is_clean_as_installed() -> None:
    result = analyze("verify", str(UNIT))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_example_dropin_verifies_with_the_unit(tmp_path: Path) -> None:
    library = tmp_path / "music"
    library.mkdir()
    dropin = DROPIN_EXAMPLE.read_text().replace("/mnt/music", str(library))
    result = analyze("verify", str(local_copy(tmp_path, dropin)))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def _exposure(unit: Path) -> float:
    result = analyze("security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert result.returncode == 0, f"over the threshold:\n{result.stdout}"
    return float(match.group(1))


def test_security_exposure_is_at_most_one() -> None:
    assert _exposure(UNIT) <= MAX_EXPOSURE


def test_security_exposure_with_the_example_dropin(tmp_path: Path) -> None:
    dropin = DROPIN_EXAMPLE.read_text().replace("#ProtectHome=", "ProtectHome=")
    assert _exposure(local_copy(tmp_path, dropin)) <= MAX_EXPOSURE


def test_unit_has_what_the_daemon_relies_on() -> None:
    unit = directives(UNIT.read_text())
    one = {key: values[-1] for key, values in unit.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main", "the zygote and children must not be able to notify"
    assert one["ExecStart"] == f"{INSTALLED} run"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["Restart"] == "on-failure"
    assert re.fullmatch(r"\d+(s|min)", one["WatchdogSec"])
    assert one["StateDirectory"] == "tunescout"
    assert one["CacheDirectory"] == "tunescout"
    assert "NUMBA_CACHE_DIR=%C/tunescout/numba" in unit["Environment"]
    assert one["IOSchedulingClass"] == "idle"
    assert {"Nice", "CPUWeight", "MemoryMax"} <= unit.keys()
    # numba's JIT maps writable+executable pages; the children call setrlimit
    assert one.get("MemoryDenyWriteExecute", "no") == "no"
    assert not any("@resources" in f for f in unit["SystemCallFilter"])
    # the zygote's control socket (socketpair) and sd_notify and journald are AF_UNIX
    assert "AF_UNIX" in one["RestrictAddressFamilies"].split()


def _expand(group: str, seen: set[str] | None = None) -> set[str]:
    """Return the system calls of a systemd syscall group, nested groups included."""
    seen = set() if seen is None else seen
    if group in seen:
        return set()
    seen.add(group)
    out = analyze("syscall-filter", group).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        calls |= _expand(name, seen) if name.startswith("@") else {name}
    return calls


def test_syscall_filter_allows_what_the_daemon_and_children_call() -> None:
    allowed: set[str] = set()
    for entry in directives(UNIT.read_text())["SystemCallFilter"]:
        negate = entry.startswith("~")
        names = set()
        for name in entry.lstrip("~").split():
            names |= _expand(name) if name.startswith("@") else {name}
        allowed = allowed - names if negate else allowed | names
    needed = {
        "setrlimit", "prlimit64", "getrusage", "prctl", "setpgid", "kill",  # children, zygote
        "fork", "vfork", "clone", "clone3", "execve", "wait4",  # the zygote is fork+exec'd
        "socketpair", "sendmsg", "recvmsg",  # SCM_RIGHTS over SOCK_SEQPACKET; sd_notify
        "pipe2", "mmap", "mprotect", "munmap", "madvise",  # result pipes; numba's JIT
        "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "sched_getaffinity",
    }
    assert needed - allowed == set()


HTTP_DROPIN = REPO / "systemd" / "tunescout-http.conf.example-dropin"


def test_the_http_dropin_verifies(tmp_path: Path) -> None:
    result = analyze("verify", str(local_copy(tmp_path, HTTP_DROPIN.read_text())))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


SOCKET = REPO / "systemd" / "tunescout.socket"


def test_the_socket_unit_verifies_beside_the_service(tmp_path: Path) -> None:
    local_copy(tmp_path)
    shutil.copy(SOCKET, tmp_path / "tunescout.socket")
    result = analyze("verify", str(tmp_path / "tunescout.socket"), str(tmp_path / "tunescout.service"))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_socket_activation_keeps_exposure_at_most_one(tmp_path: Path) -> None:
    """With tunescout.socket the service needs nothing more: the unit as shipped serves HTTP
    (PrivateNetwork=yes, AF_UNIX only), so the exposure stays where it was."""
    unit = local_copy(tmp_path)
    shutil.copy(SOCKET, tmp_path / "tunescout.socket")
    assert _exposure(unit) <= MAX_EXPOSURE
    service = {key: values[-1] for key, values in directives(unit.read_text()).items()}
    assert service["PrivateNetwork"] == "yes"
    assert service["RestrictAddressFamilies"] == "AF_UNIX"
    assert service["IPAddressDeny"] == "any"
    socket_unit = directives(SOCKET.read_text())
    assert socket_unit["ListenStream"] == ["127.0.0.1:8765"]  # loopback: no token needed
    assert socket_unit.get("Accept", ["no"]) == ["no"]  # one daemon, handed the listening socket
    assert socket_unit["IPAddressAllow"] == ["localhost"] and socket_unit["IPAddressDeny"] == ["any"]
    assert "Service" not in socket_unit, "the socket's service is tunescout.service, by its name"


def test_without_the_socket_the_http_dropin_rates_above_one(tmp_path: Path) -> None:
    """The drop-in that lets the daemon make its own IP sockets (for [subsonic], which connects
    out) costs exposure: the README says so and recommends the socket."""
    result = analyze("security", "--offline=yes", str(local_copy(tmp_path, HTTP_DROPIN.read_text())))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) > MAX_EXPOSURE
