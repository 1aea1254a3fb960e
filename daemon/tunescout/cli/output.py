"""What every command prints: the exit statuses, lines, JSON, and the one way to report an error.

A user mistake or a failure is one line on stderr (`tunescout: ...`), never a traceback; a command
run with `--json` also prints a JSON object `{"error": {"kind": ..., "message": ...}}` on stdout,
so a script reading stdout always gets JSON.
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Any


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1  # something did not work: failed files, a playlist that could not be filled
    USAGE = 2  # the user's command or configuration is wrong
    NOT_FOUND = 3  # the file (or seed) is not in the database
    UNAVAILABLE = 4  # the database cannot be opened, or another process holds it


# the error kinds of the JSON object, by exit status
_KINDS = {Exit.FAILED: "failed", Exit.USAGE: "usage", Exit.NOT_FOUND: "not_found",
          Exit.UNAVAILABLE: "unavailable"}


def out(text: str) -> None:
    """Write a line to stdout; names that are not UTF-8 go out as the bytes they are."""
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape") + b"\n")


def out_bytes(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def err(text: str) -> None:
    """Write one line to stderr, prefixed with the program's name."""
    sys.stderr.buffer.write(f"tunescout: {text}".encode("utf-8", "surrogateescape") + b"\n")
    sys.stderr.flush()


def dump(data: Any) -> None:
    """Print JSON as valid UTF-8: a stray surrogate (a non-UTF-8 byte) becomes a \\udcXX escape."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace") + b"\n")
    sys.stdout.flush()


def fail(status: Exit, message: str, *, as_json: bool = False, details: list[str] | None = None) -> Exit:
    """Report an error (stderr, and stdout as JSON with `as_json`); return the exit status."""
    err(message)
    for line in details or []:
        sys.stderr.write(f"  {line}\n")
    if as_json:
        error: dict[str, Any] = {"kind": _KINDS.get(status, "error"), "message": message}
        if details:
            error["details"] = details
        dump({"error": error})
    return status
