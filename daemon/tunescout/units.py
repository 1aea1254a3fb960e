"""Sizes, durations and paths: parse what a person writes, format what a person reads."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: float | str) -> int:
    """Return bytes for 300000000, "300 MB" or "1.5 GiB"; raise ValueError with a hint otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"300 MB\" or \"1 GiB\", got a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    match = _SIZE_RE.match(value)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"cannot read {value!r} as a size; write it like \"300 MB\" or \"1 GiB\"")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def format_size(nbytes: float) -> str:
    """Return a short binary size such as "1.2 GiB" or "640 MiB"."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - loop always returns


def format_duration(seconds: float) -> str:
    """Return "2 d 9 h", "14 min", "42 s": the two largest units, for status lines."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, _ = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


_DURATION_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0,
    "h": 3600.0, "d": 86400.0,
}


def parse_duration(value: float | str) -> float:
    """Return seconds for 90, "90 s", "15 min", "6 h" or "2 d"; raise ValueError with a hint."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"5 s\" or \"6 h\", got a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _SIZE_RE.match(value)
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        raise ValueError(f"cannot read {value!r} as a duration; write it like \"5 s\" or \"6 h\"")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def path_json(path: Path | str | bytes) -> dict[str, str]:
    """Return a path for JSON: `path` readable, plus `path_b64` (exact bytes) when not UTF-8."""
    raw = os.fsencode(path)
    try:
        return {"path": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"path": raw.decode("utf-8", "backslashreplace"),
                "path_b64": base64.b64encode(raw).decode("ascii")}


def folder_of(path: bytes) -> bytes:
    """Return the folder of a file's path bytes (b"/m/a/x.mp3" -> b"/m/a")."""
    return path[:path.rindex(b"/")] or b"/"


def is_within(path: bytes, folder: bytes) -> bool:
    """Return True when `path` is `folder` or lies anywhere under it (not merely a prefix)."""
    return path == folder or path.startswith(folder.rstrip(b"/") + b"/")


def subtree_range(folder: bytes) -> tuple[bytes, bytes]:
    """Return (low, high) such that the paths strictly between them are exactly those under
    `folder`: the way to ask an index on path for one folder's subtree ("0" follows "/")."""
    base = folder.rstrip(b"/")
    return base + b"/", base + b"0"
