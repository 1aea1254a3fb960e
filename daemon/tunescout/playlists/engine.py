"""Build playlists: tracks and their features in, ordered tracks with reasons out. Pure numpy.

A `Catalogue` indexes a library once: standardised vectors, tempo, Camelot key, loudness, and
which tracks share a recording, an artist or an album. Each playlist is one linear pass over the
weighted (N, D) matrix for the base score, then a greedy walk that picks one track per position
from a shortlist: the cheapest track that breaks no rule (no recording twice, artist and album
spacing, key-compatible steps, seed quotas). When the shortlist runs dry it grows fourfold, up to
every candidate; nothing is ever compared pairwise over the whole library.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from tunescout.errors import PlaylistError
from tunescout.playlists.camelot import KEY_COMPATIBLE, KEY_DISTANCE
from tunescout.playlists.catalogue import Catalogue, IntArray
from tunescout.playlists.explain import Playlist, explain_picks, label, shortfall
from tunescout.playlists.request import Rules, parse_where
from tunescout.playlists.vectors import FloatArray, column_weights

FLOW_WEIGHT = 0.6  # how much a smooth step counts against closeness to the seed
RAMP_WEIGHT = 1.0
TEMPO_UNIT = math.log2(1.04)  # a 4 % tempo step costs as much as one Camelot step
RAMP_UNIT = math.log2(1.02)
SHORTLIST_PER_TRACK = 40
SHORTLIST_MIN = 2000
_NEVER = np.iinfo(np.int64).max // 4


# --- filters -------------------------------------------------------------------------------------


def _within(values: FloatArray, bounds: tuple[float, float]) -> npt.NDArray[np.bool_]:
    low, high = min(bounds), max(bounds)
    with np.errstate(invalid="ignore"):
        return (values >= low) & (values <= high)  # NaN (unknown) is never within


def candidate_mask(cat: Catalogue, rules: Rules) -> npt.NDArray[np.bool_]:
    """Return which tracks pass the filters that do not depend on the seed or the order."""
    mask = np.ones(len(cat), dtype=bool)
    if rules.bpm_range is not None:
        mask &= _within(cat.tempo_bpm, rules.bpm_range)
    if rules.duration_range_s is not None:
        mask &= _within(cat.duration_s, rules.duration_range_s)
    if rules.loudness_range_lufs is not None:
        mask &= _within(cat.lufs, rules.loudness_range_lufs)
    if rules.key_compatible:
        mask &= cat.camelot < 24
    if rules.where:
        keep = parse_where(rules.where)
        mask &= np.fromiter((keep(t.tags) for t in cat.tracks), dtype=bool, count=len(cat))
    if rules.exclude_digests:
        excluded = np.fromiter((t.digest in rules.exclude_digests for t in cat.tracks), bool, len(cat))
        for group in np.unique(cat.recording[excluded]):
            mask[cat.recording_members[group]] = False
    return mask


# --- the greedy walk -----------------------------------------------------------------------------

StepCost = Callable[[int, int, IntArray], tuple[FloatArray, npt.NDArray[np.bool_]]]
"""(position, previous index or -1, shortlist) → (cost, extra feasibility) over the shortlist."""


class _Walk:
    """Pick one track per position, cheapest first, never breaking a spacing or duplicate rule."""

    def __init__(self, cat: Catalogue, rules: Rules, order_by: FloatArray, candidates: IntArray) -> None:
        self.cat = cat
        self.rules = rules
        self.order_by = order_by  # the base score that ranks the shortlist
        self.candidates = candidates
        self.size = min(len(candidates), max(SHORTLIST_PER_TRACK * rules.length, SHORTLIST_MIN))
        self.shortlist = self._shortlist()
        self.free_from = np.zeros(len(cat), dtype=np.int64)  # first position a track may take
        self.free_until = np.full(len(cat), _NEVER, dtype=np.int64)  # first position it may not
        self.picks: list[int] = []

    def _shortlist(self) -> IntArray:
        if self.size >= len(self.candidates):
            return self.candidates
        scores = self.order_by[self.candidates]
        return self.candidates[np.argpartition(scores, self.size - 1)[: self.size]]

    def place(self, index: int, position: int) -> None:
        """Record a track at a position (-1: a seed before the list): block its recording and kin."""
        cat, rules = self.cat, self.rules
        self.free_from[cat.recording_members[cat.recording[index]]] = _NEVER
        for artist in cat.artists[index]:
            self._block(cat.artist_members[artist], position + rules.artist_spacing)
        if cat.album[index] >= 0:
            self._block(cat.album_members[cat.album[index]], position + rules.album_spacing)

    def _block(self, members: Sequence[int], free_from: int) -> None:
        rows = np.asarray(members, dtype=np.intp)
        self.free_from[rows] = np.maximum(self.free_from[rows], free_from)

    def reserve_end(self, index: int, position: int) -> None:
        """Keep an anchor's recording, artist and album out of the positions just before it."""
        cat, rules = self.cat, self.rules
        self.free_from[cat.recording_members[cat.recording[index]]] = _NEVER
        groups = [(cat.artist_members[a], rules.artist_spacing) for a in cat.artists[index]]
        if cat.album[index] >= 0:
            groups.append((cat.album_members[cat.album[index]], rules.album_spacing))
        for members, spacing in groups:
            rows = np.asarray(members, dtype=np.intp)
            self.free_until[rows] = np.minimum(self.free_until[rows], position - spacing + 1)

    def step(self, position: int, previous: int, cost: StepCost) -> int | None:
        """Return the track for this position, growing the shortlist when nothing there fits."""
        while True:
            rows = self.shortlist
            values, extra = cost(position, previous, rows)
            ok = extra & (self.free_from[rows] <= position) & (position < self.free_until[rows])
            if self.rules.key_compatible and previous >= 0 and self.cat.camelot[previous] < 24:
                ok &= KEY_COMPATIBLE[self.cat.camelot[previous], self.cat.camelot[rows]]
            if ok.any():
                best = int(rows[np.flatnonzero(ok)[np.argmin(values[ok])]])
                self.place(best, position)
                self.picks.append(best)
                return best
            if self.size >= len(self.candidates):
                return None
            self.size *= 4
            self.shortlist = self._shortlist()


# --- similar to seeds ----------------------------------------------------------------------------


def similar_playlist(cat: Catalogue, seeds: Sequence[int], rules: Rules, *,
                     seed_weights: Sequence[float] | None = None,
                     queued: Sequence[int] = ()) -> Playlist:
    """Return tracks similar to one or more seeds (never the seeds), ordered as rules.order asks.

    With several seeds each gets a share of the playlist, filled from the tracks nearest to it,
    so that one seed with a dense neighbourhood does not take the whole list. `seed_weights`
    (the radio: the song playing weighs most) replace the shares: each seed's distances are
    divided by its weight, so a track must be that much closer to a lighter seed to count.
    `queued` are tracks already lined up before the new ones (the radio's queue, oldest first):
    never picked again, the spacing rules count them, and the flow continues from the last.
    """
    rules.check()
    if not seeds:
        raise PlaylistError("give at least one seed")
    weights = np.asarray(seed_weights if seed_weights is not None else [1.0] * len(seeds), dtype=np.float64)
    if len(weights) != len(seeds) or not np.all(weights > 0):
        raise PlaylistError("every seed needs a weight above zero")
    weighted = cat.matrix.values * column_weights(cat.matrix.layout, rules.weights)
    squared = np.stack([_squared_distances(weighted, weighted[s]) / w**2
                        for s, w in zip(seeds, weights, strict=True)])
    nearest = np.argmin(squared, axis=0)
    base = np.sqrt(squared[nearest, np.arange(len(cat))])
    mask = candidate_mask(cat, rules)
    if rules.bpm_tolerance_pct is not None:
        mask &= _near_tempo(cat.tempo_bpm, [cat.tempo_bpm[s] for s in seeds], rules.bpm_tolerance_pct)
    walk = _Walk(cat, rules, base, np.flatnonzero(mask))
    for seed in seeds:
        walk.place(seed, -1 - len(queued))
    for back, index in enumerate(reversed(queued)):
        walk.place(index, -1 - back)
    quota = (np.full(len(seeds), rules.length) if seed_weights is not None
             else np.full(len(seeds), -(-rules.length // len(seeds))))
    taken = np.zeros(len(seeds), dtype=np.intp)
    cost = _order_cost(cat, rules, base, walk.shortlist)

    def step_cost(pos: int, prev: int, rows: IntArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        return cost(pos, prev, rows), taken[nearest[rows]] < quota[nearest[rows]]

    before = queued[-1] if queued else seeds[0]
    for position in range(rules.length):
        chosen = walk.step(position, walk.picks[-1] if walk.picks else before, step_cost)
        if chosen is None:
            break
        taken[nearest[chosen]] += 1
    refs = [int(seeds[nearest[i]]) for i in walk.picks]
    entries = explain_picks(cat, rules, walk.picks, [cat.matrix.values[r] for r in refs],
                       [f"seed {label(cat.tracks[r])}" for r in refs], before)
    return Playlist("similar", entries, tuple(cat.tracks[s] for s in seeds), shortfall(rules, entries))


def _squared_distances(weighted: FloatArray, ref: FloatArray) -> FloatArray:
    diff = weighted - ref
    return np.asarray(np.einsum("ij,ij->i", diff, diff), dtype=np.float64)


def _near_tempo(tempo: FloatArray, refs: Sequence[float], tolerance_pct: float) -> npt.NDArray[np.bool_]:
    ok = np.zeros(len(tempo), dtype=bool)
    with np.errstate(invalid="ignore"):
        for ref in refs:
            if math.isfinite(ref):
                ok |= np.abs(tempo / ref - 1.0) <= tolerance_pct / 100.0
    return ok


def _order_cost(cat: Catalogue, rules: Rules, base: FloatArray, shortlist: IntArray) -> Callable[
        [int, int, IntArray], FloatArray]:
    """Return the per-position cost of each shortlisted track for the requested order."""
    top = np.sort(base[shortlist])[: rules.length]
    typical = float(np.median(top)) if top.size and np.median(top) > 0 else 1.0
    if rules.order == "similarity":
        return lambda pos, prev, rows: base[rows]
    if rules.order == "flow":
        def flow(pos: int, prev: int, rows: IntArray) -> FloatArray:
            return base[rows] / typical + FLOW_WEIGHT * _transition(cat, prev, rows)
        return flow
    start, end = _ramp_ends(cat, rules, shortlist[np.argsort(base[shortlist])[: rules.length]])
    log_tempo = np.log2(np.where(np.isfinite(cat.tempo_bpm), cat.tempo_bpm, 1.0))
    unknown = ~np.isfinite(cat.tempo_bpm)

    def ramp(pos: int, prev: int, rows: IntArray) -> FloatArray:
        share = pos / max(rules.length - 1, 1)
        target = math.log2(start) + share * (math.log2(end) - math.log2(start))
        off = np.where(unknown[rows], 4.0, np.abs(log_tempo[rows] - target) / RAMP_UNIT)
        return base[rows] / typical + RAMP_WEIGHT * off
    return ramp


def _ramp_ends(cat: Catalogue, rules: Rules, closest: IntArray) -> tuple[float, float]:
    """Return the ramp's first and last tempo: --bpm FROM-TO, else the closest tracks' spread."""
    if rules.bpm_range is not None:
        return rules.bpm_range
    tempi = cat.tempo_bpm[closest]
    tempi = tempi[np.isfinite(tempi) & (tempi > 0)]
    if not tempi.size:
        return 120.0, 120.0
    low, high = np.percentile(tempi, [10.0, 90.0])
    return float(low), float(high)


def _transition(cat: Catalogue, prev: int, rows: IntArray) -> FloatArray:
    """Return how rough the step from `prev` to each row is: tempo (in 4 % units) plus key steps."""
    if prev < 0:
        return np.zeros(len(rows))
    key = KEY_DISTANCE[cat.camelot[prev], cat.camelot[rows]]
    with np.errstate(invalid="ignore", divide="ignore"):
        tempo = np.abs(np.log2(cat.tempo_bpm[rows] / cat.tempo_bpm[prev])) / TEMPO_UNIT
    return np.asarray(np.where(np.isfinite(tempo), np.minimum(tempo, 6.0), 2.0) + key, dtype=np.float64)


# --- a path from A to B --------------------------------------------------------------------------


def path_playlist(cat: Catalogue, start: int, end: int, rules: Rules) -> Playlist:
    """Return A, then tracks that move step by step towards B, then B: `rules.length` in all.

    Every track is projected on the segment A→B in the weighted space: `along` is how far (0 at
    A, 1 at B) and `off` how far from the line. Playlist position i wants along = i / (length - 1);
    each pick must lie further along than the one before, so the path never turns back. The cost
    of a pick is its squared distance off the line (in units of the corridor's median) plus its
    squared distance from the target point (in steps): real libraries are not straight lines, and
    without the second term a path would leap ahead to wherever the line is well covered.
    """
    rules.check()
    if start == end or cat.recording[start] == cat.recording[end]:
        raise PlaylistError("--from and --to are the same recording")
    weighted = cat.matrix.values * column_weights(cat.matrix.layout, rules.weights)
    span = weighted[end] - weighted[start]
    span2 = float(span @ span) or 1e-12
    rel = weighted - weighted[start]
    along = (rel @ span) / span2
    off2 = np.maximum(np.einsum("ij,ij->i", rel, rel) - along**2 * span2, 0.0)
    length = max(rules.length, 2)
    inner = replace(rules, length=length)
    walk = _Walk(cat, inner, off2, np.flatnonzero(candidate_mask(cat, rules) & (along > 0) & (along < 1)))
    walk.place(start, -1)  # walk position p is playlist position p + 1
    walk.reserve_end(end, length - 2)
    picks, last = [start], 0.0
    step = 1.0 / (length - 1)
    # Being one step early or late costs as much as lying a typical distance off the line.
    typical = float(np.median(off2[walk.shortlist])) if walk.shortlist.size else 1.0
    typical = typical if typical > 0 else 1.0

    def step_cost(pos: int, prev: int, rows: IntArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        ok = along[rows] > last
        if rules.bpm_tolerance_pct is not None:
            ok &= _near_tempo(cat.tempo_bpm[rows], [cat.tempo_bpm[prev]], rules.bpm_tolerance_pct)
        if pos == length - 3:  # the last free track also steps into B
            ok &= _steps_into(cat, rules, rows, end)
        return off2[rows] / typical + ((along[rows] - (pos + 1) * step) / step) ** 2, ok

    for position in range(length - 2):
        chosen = walk.step(position, picks[-1], step_cost)
        if chosen is None:
            break
        picks.append(chosen)
        last = float(along[chosen])
    while len(picks) > 1 and not _steps_into(cat, rules, np.array(picks[-1:]), end)[0]:
        picks.pop()  # the walk stopped early on a track that cannot lead into B
    picks.append(end)
    shares = [float(np.clip(along[i], 0.0, 1.0)) for i in picks]
    a, b = cat.matrix.values[start], cat.matrix.values[end]
    entries = explain_picks(cat, rules, picks, [a + s * (b - a) for s in shares],
                       [f"path {100 * s:.0f} %" for s in shares], -1)
    return Playlist("path", entries, (cat.tracks[start], cat.tracks[end]), shortfall(inner, entries))


def _steps_into(cat: Catalogue, rules: Rules, rows: IntArray, end: int) -> npt.NDArray[np.bool_]:
    """Return which rows may come right before a fixed track under the tempo and key rules."""
    ok = np.ones(len(rows), dtype=bool)
    if rules.bpm_tolerance_pct is not None and math.isfinite(cat.tempo_bpm[end]):
        with np.errstate(invalid="ignore", divide="ignore"):
            ok &= np.abs(cat.tempo_bpm[end] / cat.tempo_bpm[rows] - 1.0) <= rules.bpm_tolerance_pct / 100.0
    if rules.key_compatible and cat.camelot[end] < 24:
        ok &= KEY_COMPATIBLE[cat.camelot[rows], cat.camelot[end]]
    return ok


# --- a tag query ---------------------------------------------------------------------------------


def query_playlist(cat: Catalogue, query: str, rules: Rules) -> Playlist:
    """Return a playlist of tracks matching a tag expression, starting from its most central one.

    The start is the match nearest the matches' mean vector: a stable, typical seed, so the
    daemon rebuilds the same list until the library changes.
    """
    rules.check()
    where = f"({query}) and ({rules.where})" if rules.where else query
    narrowed = replace(rules, where=where, length=max(rules.length - 1, 1))
    matches = np.flatnonzero(candidate_mask(cat, narrowed))
    if not matches.size:
        raise PlaylistError(f"no analysed track matches {query!r}")
    weighted = cat.matrix.values[matches] * column_weights(cat.matrix.layout, rules.weights)
    centre = int(matches[np.argmin(_squared_distances(weighted, weighted.mean(axis=0)))])
    first = explain_picks(cat, rules, [centre], [cat.matrix.values[matches].mean(axis=0)],
                     [f"centre of {query}"], -1)
    rest = similar_playlist(cat, [centre], narrowed).entries if rules.length > 1 else ()
    entries = first + rest
    return Playlist("query", entries, (), shortfall(rules, entries))
