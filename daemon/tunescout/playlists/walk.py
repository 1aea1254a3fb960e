"""The greedy walk a playlist is picked by: one track per position from a shortlist, cheapest first.

Never a recording twice nor a hard rule broken; the artist and album spacing kept unless nothing
else fits. When the shortlist runs dry it grows fourfold, up to every candidate; nothing is ever
compared pairwise over the whole library. A hard rule never bends: the walk stops there and
`stopped_by` names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from tunescout.playlists.camelot import KEY_COMPATIBLE
from tunescout.playlists.catalogue import Catalogue, IntArray
from tunescout.playlists.request import Rules
from tunescout.playlists.vectors import FloatArray

SHORTLIST_PER_TRACK = 40
SHORTLIST_MIN = 2000
# When the cost of a pick is the score the shortlist is ranked by (similarity order), the cheapest
# fitting track of a shortlist is the cheapest of all whenever the shortlist holds one that fits
# (and when it holds none, it grows): the length of the shortlist changes the time, not the picks.
RANKED_PER_TRACK = 8
RANKED_MIN = 200
_NEVER = np.iinfo(np.int64).max // 4

StepCost = Callable[[int, int, IntArray], tuple[FloatArray, dict[str, npt.NDArray[np.bool_]]]]
"""(position, previous index or -1, shortlist) → (cost, each hard rule's feasibility) over the shortlist."""

SPACINGS = ("album spacing", "artist spacing")  # given up in this order when nothing else fits


class Walk:
    """Pick one track per position, cheapest first: never a recording twice nor a hard rule broken,
    the artist and album spacing kept unless nothing else fits."""

    def __init__(self, cat: Catalogue, rules: Rules, order_by: FloatArray, candidates: IntArray,
                 nearest: Callable[[IntArray, int], IntArray] | None = None, *,
                 cost_is_rank: bool = False) -> None:
        self.cat = cat
        self.rules = rules
        self.order_by = order_by  # the base score that ranks the shortlist
        self.candidates = candidates
        # a Space's distances: the `size` candidates of the lowest score, made exact
        self.nearest = nearest
        per_track, least = ((RANKED_PER_TRACK, RANKED_MIN) if cost_is_rank
                            else (SHORTLIST_PER_TRACK, SHORTLIST_MIN))
        self.size = min(len(candidates), max(per_track * rules.length, least))
        self.shortlist = self._shortlist()
        self.used = np.zeros(len(cat), dtype=bool)  # recordings already placed
        # first position a track may take, and the first it may not, per spacing
        self.free_from = {kind: np.zeros(len(cat), dtype=np.int64) for kind in SPACINGS}
        self.free_until = {kind: np.full(len(cat), _NEVER, dtype=np.int64) for kind in SPACINGS}
        self.picks: list[int] = []
        self.relaxed: dict[int, str] = {}  # pick number -> the spacing given up for it
        self.stopped_by: str | None = None
        self.anchor_played = False  # a path's A is played: the first step is a real step

    def _shortlist(self) -> IntArray:
        if self.nearest is not None:
            return self.nearest(self.candidates, self.size)
        if self.size >= len(self.candidates):
            return self.candidates
        scores = self.order_by[self.candidates]
        return self.candidates[np.argpartition(scores, self.size - 1)[: self.size]]

    def _kin(self, index: int) -> dict[str, list[Sequence[int]]]:
        cat = self.cat
        album = [cat.album_members[cat.album[index]]] if cat.album[index] >= 0 else []
        return {"artist spacing": [cat.artist_members[a] for a in cat.artists[index]],
                "album spacing": album}

    def _spacing(self, kind: str) -> int:
        return self.rules.artist_spacing if kind == "artist spacing" else self.rules.album_spacing

    def place(self, index: int, position: int) -> None:
        """Record a track at a position (-1: a seed before the list): block its recording and kin."""
        self.used[self.cat.recording_members[self.cat.recording[index]]] = True
        for kind, groups in self._kin(index).items():
            for members in groups:
                rows = np.asarray(members, dtype=np.intp)
                free = self.free_from[kind]
                free[rows] = np.maximum(free[rows], position + self._spacing(kind))

    def reserve_end(self, index: int, position: int) -> None:
        """Keep an anchor's recording, artist and album out of the positions just before it."""
        self.used[self.cat.recording_members[self.cat.recording[index]]] = True
        for kind, groups in self._kin(index).items():
            for members in groups:
                rows = np.asarray(members, dtype=np.intp)
                until = self.free_until[kind]
                until[rows] = np.minimum(until[rows], position - self._spacing(kind) + 1)

    def _spaced(self, kind: str, rows: IntArray, position: int) -> npt.NDArray[np.bool_]:
        return np.asarray((self.free_from[kind][rows] <= position) & (position < self.free_until[kind][rows]))

    def step(self, position: int, previous: int, cost: StepCost) -> int | None:
        """Return the track for this position, growing the shortlist when nothing there fits.

        With every candidate in view and still nothing, the spacings are given up one by one
        (album first); failing that the walk stops and `stopped_by` names the hard rule.
        """
        while True:
            rows = self.shortlist
            values, hard = cost(position, previous, rows)
            chained = previous >= 0 and (bool(self.picks) or self.anchor_played)
            if self.rules.key_compatible and chained and self.cat.camelot[previous] < 24:
                hard = {**hard, "--key-compatible": KEY_COMPATIBLE[self.cat.camelot[previous],
                                                                   self.cat.camelot[rows]]}
            fresh = ~self.used[rows]
            for name in hard.values():
                fresh = fresh & name
            spaced = [self._spaced(kind, rows, position) for kind in SPACINGS]
            ok = fresh & spaced[0] & spaced[1]
            if ok.any():
                return self._take(rows, values, ok, position, None)
            if self.size < len(self.candidates):
                self.size *= 4
                self.shortlist = self._shortlist()
                continue
            for given_up, ok in (("album spacing", fresh & spaced[1]),
                                 ("artist and album spacing", fresh)):
                if ok.any():
                    return self._take(rows, values, ok, position, given_up)
            self.stopped_by = blocking(~self.used[rows], hard)
            return None

    def _take(self, rows: IntArray, values: FloatArray, ok: npt.NDArray[np.bool_], position: int,
              given_up: str | None) -> int:
        best = int(rows[np.flatnonzero(ok)[np.argmin(values[ok])]])
        if given_up is not None:
            # say only what this pick actually breaks: album spacing alone, or artist spacing too
            broken = [kind for kind in SPACINGS if not self._spaced(kind, np.array([best]), position)[0]]
            words = [k.split()[0] for k in sorted(broken)]
            self.relaxed[len(self.picks)] = " and ".join(words) + " spacing" if words else given_up
        self.place(best, position)
        self.picks.append(best)
        return best


def blocking(fresh: npt.NDArray[np.bool_], hard: dict[str, npt.NDArray[np.bool_]]) -> str | None:
    """Return which hard rule stopped a walk (None: every candidate is used up)."""
    if not fresh.any() or not hard:
        return None
    alone = [name for name in hard
             if (fresh & np.logical_and.reduce([m for n, m in hard.items() if n != name] or [fresh])).any()]
    return " or ".join(alone) if alone else " and ".join(hard)


