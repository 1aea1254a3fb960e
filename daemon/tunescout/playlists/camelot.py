"""Camelot codes ("8A", "12B"): the one parser, its inverse, and which keys mix.

A code is a number 1..12 round the circle of fifths and A (minor) or B (major). As an index
0..23 it is (number - 1) * 2 + (B); the tables below have a 25th row and column for "unknown".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def camelot_index(code: Any) -> int | None:
    """Return 0..23 for "1A".."12B" (number-1)*2 + (B), or None when not a Camelot code."""
    if not isinstance(code, str) or len(code) < 2 or code[-1] not in "AB" or not code[:-1].isdigit():
        return None
    number = int(code[:-1])
    if not 1 <= number <= 12:
        return None
    return (number - 1) * 2 + (code[-1] == "B")


def camelot_code(index: int) -> str:
    """Return the code of an index 0..23: the inverse of camelot_index."""
    return f"{index // 2 + 1}{'B' if index % 2 else 'A'}"


def _key_tables() -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Return (compatible, distance) over 24 Camelot codes plus a last row/column for "unknown"."""
    compatible = np.zeros((25, 25), dtype=bool)
    distance = np.full((25, 25), 1.0)  # unknown keys: one step, neither free nor forbidden
    for a in range(24):
        for b in range(24):
            steps = abs(a // 2 - b // 2)
            steps = min(steps, 12 - steps)
            letter = a % 2 != b % 2
            compatible[a, b] = (steps <= 1 and not letter) or (steps == 0 and letter)
            distance[a, b] = steps + letter
    return compatible, distance


KEY_COMPATIBLE, KEY_DISTANCE = _key_tables()


def camelot_compatible(a: str | None, b: str | None) -> bool:
    """Return whether two Camelot codes mix: same, ±1 on the wheel, or relative major/minor."""
    ia, ib = camelot_index(a), camelot_index(b)
    return ia is not None and ib is not None and bool(KEY_COMPATIBLE[ia, ib])


def key_step(a: str | None, b: str | None) -> str | None:
    """Describe the move from key a to key b: "8A→9A (+1)", "8A→8B (relative)", "8A→3B (clash)"."""
    ia, ib = camelot_index(a), camelot_index(b)
    if ia is None or ib is None:
        return None
    if ia == ib:
        how = "same"
    elif ia // 2 == ib // 2:
        how = "relative"
    elif KEY_COMPATIBLE[ia, ib]:
        how = "+1" if (ib // 2 - ia // 2) % 12 == 1 else "-1"
    else:
        how = "clash"
    return f"{a}→{b} ({how})"
