"""Run what the analysis children do, under the unit's sandboxing (tests/system/inside.sh).

librosa with numba's JIT (W+X pages, cache in NUMBA_CACHE_DIR), then a forked child that does what
zygote children do: setpgid, prctl(PR_SET_PDEATHSIG), setrlimit, and a result pipe received over an
AF_UNIX SOCK_SEQPACKET socketpair (SCM_RIGHTS). Prints one line per step; exits non-zero on failure.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import time

import numpy as np


def analyse() -> None:
    started = time.monotonic()
    import librosa  # the stack the zygote imports

    sr = 22050
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr * 10) / sr)).astype(np.float32)
    y[:: sr // 2] += 1.0  # clicks at 120 BPM
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    mfcc = librosa.feature.mfcc(y=y, sr=sr)
    print(f"librosa: tempo {float(np.atleast_1d(tempo)[0]):.0f}, mfcc {mfcc.shape}, "
          f"{time.monotonic() - started:.1f} s", flush=True)
    cache = os.environ["NUMBA_CACHE_DIR"]
    assert os.listdir(cache), f"numba cached nothing in {cache}"
    print(f"numba cache: {cache}: {len(os.listdir(cache))} entries", flush=True)


def fork_like_the_zygote() -> None:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
            limit = 8 * 1024**3
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            resource.setrlimit(resource.RLIMIT_CPU, (60, 65))
            message, fds, _, _ = socket.recv_fds(child, 100, 1)
            os.write(fds[0], b"child: " + message + b"\n")
            code = 0
        finally:
            os._exit(code)
    socket.send_fds(parent, [b"setpgid, prctl, setrlimit, SCM_RIGHTS ok"], [write_fd])
    os.close(write_fd)
    line = os.read(read_fd, 200).decode().strip()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child wait status {status}"
    print(line, flush=True)


if __name__ == "__main__":
    analyse()
    fork_like_the_zygote()
    print("STACK PROBE OK", flush=True)
