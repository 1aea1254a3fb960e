"""Check what a person wrote in the config and convert it: one wording for every section.

Each converter takes a raw TOML value and returns the typed one, or raises ValueError with a
message that completes "section.key: …". `config` and the `[[playlists]]` tables share them, so
the same mistake reads the same wherever it is made.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Converter = Callable[[Any], Any]


def int_in(low: int, high: int) -> Callable[[Any], int]:
    """Return a converter for a whole number from low to high (a TOML boolean is not one)."""

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number from {low} to {high}")
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, got {value}")
        return value

    return convert


def percent(value: Any) -> float:
    """Return a percentage from 1 to 99: 0 and 100 would make a threshold that never trips."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a percentage such as 75")
    if not 1 <= value <= 99:
        raise ValueError(f"must be from 1 to 99, got {value}")
    return float(value)


def number(value: Any) -> float:
    """Return a number, zero or more."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("expected a number, zero or more")
    return float(value)


def flag(value: Any) -> bool:
    """Return a TOML boolean; "yes" or 1 are refused rather than guessed."""
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def choice(*choices: str) -> Callable[[Any], str]:
    """Return a converter that accepts exactly one of `choices`."""

    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return str(value)

    return convert


def text(value: Any) -> str:
    """Return a string with something in it besides whitespace."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def resolve_path(value: Any, base_dir: Path | None) -> Path:
    """Return a path, `~` expanded; a relative one is relative to the config file's folder."""
    path = Path(os.path.expanduser(text(value)))
    return path if path.is_absolute() or base_dir is None else base_dir / path


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return the tail of an "unknown …" message: the closest choice, else every choice."""
    known = list(choices)
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
