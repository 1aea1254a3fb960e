"""Exec a command as systemd execs a socket-activated service: the given descriptor becomes fd 3,
LISTEN_FDS=1 and LISTEN_PID=<this process's pid>, which the exec keeps (sd_listen_fds(3)).

    python tests/support/listen_fds.py FD COMMAND [ARG...]
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    fd, command = int(sys.argv[1]), sys.argv[2:]
    if fd != 3:
        os.dup2(fd, 3)  # dup2 leaves the copy inheritable
        os.close(fd)
    os.set_inheritable(3, True)
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="tunescout.socket")
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
