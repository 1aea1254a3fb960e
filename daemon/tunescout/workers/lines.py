"""Read a child's result pipe as lines: the one reader the supervisor and a cluster worker share.

A child writes one JSON line per file (protocol.py). A line longer than `MAX_LINE_BYTES` is
garbage, not a result: it is flagged as soon as the unfinished part passes the limit, so a child
that writes without newlines cannot make its reader hold gigabytes.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from tunescout import protocol

READ_BYTES = 65536


class Lines(NamedTuple):
    """What one `LineReader.read` found: whole lines (blank ones dropped), and whether an
    unfinished line passed the limit (its bytes so far are dropped)."""

    lines: list[bytes]
    too_long: bool


class LineReader:
    """Split a non-blocking pipe into lines; close it at end of file (`eof`)."""

    def __init__(self, fd: int, limit: int = protocol.MAX_LINE_BYTES) -> None:
        self.fd = fd
        self.limit = limit
        self.eof = False
        self._buffer = b""

    def read(self) -> Lines:
        """Read what the pipe holds now (up to an over-long line); at end of file the last
        unterminated line counts too."""
        lines: list[bytes] = []
        too_long = False
        while not self.eof:
            try:
                data = os.read(self.fd, READ_BYTES)
            except BlockingIOError:
                break
            if not data:
                self.eof = True
                os.close(self.fd)
                if self._buffer.strip():
                    lines.append(self._buffer)
                self._buffer = b""
                break
            self._buffer += data
            if b"\n" in data:
                *whole, self._buffer = self._buffer.split(b"\n")
                lines.extend(line for line in whole if line.strip())
            if len(self._buffer) > self.limit:
                self._buffer = b""
                too_long = True
                break  # the caller stops trusting the child before it reads any further
        return Lines(lines, too_long)
