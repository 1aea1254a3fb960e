"""Build playlists: tracks and their features in, ordered tracks with reasons out. Pure numpy.

A `Catalogue` indexes a library once: standardised vectors, tempo, Camelot key, loudness, and
which tracks share a recording, an artist or an album. Each playlist is one linear pass over the
weighted (N, D) matrix for the base score, then a greedy walk that picks one track per position
from a shortlist (walk.py): the cheapest track that breaks no rule (no recording twice,
key-compatible and tempo steps, the ramp, seed quotas) and keeps the artist and album spacing.
Spacing is a preference: when it alone stops the list it is relaxed, and the entry says so. A hard
rule never bends: the list stops there and names the rule (`stopped_by`).

Given a `Space` (space.py: the weighted matrix, its norms and the seed-independent masks, kept
per library change by whoever asks often: the HTTP API, the radio), a playlist skips rebuilding
them and finds the distances by one product per seed, made exact on the shortlist: the same
answers, a fraction of the time.
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
from tunescout.playlists.request import Rules
from tunescout.playlists.space import Space, plain_distances, weighted_matrix
from tunescout.playlists.steps import near_tempo, octave_steps, squared_distances, within_tolerance
from tunescout.playlists.vectors import FloatArray, column_weights
from tunescout.playlists.walk import Walk
from tunescout.tagexpr import parse_where

FLOW_WEIGHT = 0.6  # how much a smooth step counts against closeness to the seed
RAMP_WEIGHT = 1.0
TEMPO_UNIT = math.log2(1.04)  # a 4 % tempo step costs as much as one Camelot step
RAMP_UNIT = math.log2(1.02)
RAMP_SLACK_PCT = 10.0  # a ramp's track lies within this of its position's tempo (or --bpm-tolerance)


# --- filters -------------------------------------------------------------------------------------


def _within(values: FloatArray, bounds: tuple[float, float]) -> npt.NDArray[np.bool_]:
    low, high = min(bounds), max(bounds)
    with np.errstate(invalid="ignore"):
        return (values >= low) & (values <= high)  # NaN (unknown) is never within


def candidate_mask(cat: Catalogue, rules: Rules, space: Space | None = None) -> npt.NDArray[np.bool_]:
    """Return which tracks pass the filters that do not depend on the seed or the order.

    Of each recording only the preferred copy (rules.prefer) is a candidate; files decoded only
    in part and tracks shorter than rules.min_duration_s are left out unless asked for (a
    `space` keeps these three, the same for every request, from one request to the next).
    """
    if space is not None and space.cat is cat:
        mask = space.base_mask(rules)
    else:
        mask = cat.copies_used(rules.prefer)
        if not rules.include_suspect:
            mask &= ~cat.suspect
        if rules.min_duration_s > 0:
            mask &= _within(cat.duration_s, (rules.min_duration_s, math.inf))
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


# --- similar to seeds ----------------------------------------------------------------------------


def similar_playlist(cat: Catalogue, seeds: Sequence[int], rules: Rules, *,
                     seed_weights: Sequence[float] | None = None,
                     queued: Sequence[int] = (), space: Space | None = None) -> Playlist:
    """Return tracks similar to one or more seeds (never the seeds), ordered as rules.order asks.

    With several seeds each gets a share of the playlist, filled from the tracks nearest to it,
    so that one seed with a dense neighbourhood does not take the whole list. `seed_weights`
    (the radio: the song playing weighs most) replace the shares: each seed's distances are
    divided by its weight, so a track must be that much closer to a lighter seed to count.
    `queued` are tracks already lined up before the new ones (the radio's queue, oldest first):
    never picked again, the spacing rules count them, and the flow continues from the last.
    `space` (built for this catalogue and the rules' weights) makes it faster, not different.
    """
    rules.check()
    if not seeds:
        raise PlaylistError("give at least one seed")
    weights = np.asarray(seed_weights if seed_weights is not None else [1.0] * len(seeds), dtype=np.float64)
    if len(weights) != len(seeds) or not np.all(weights > 0):
        raise PlaylistError("every seed needs a weight above zero")
    fast = space if space is not None and space.serves(cat, rules) else None
    if fast is not None:
        distances = fast.distances(seeds, weights)
        nearest, base, shortlist = distances.nearest, distances.base, distances.shortlist
    else:
        nearest, base = plain_distances(weighted_matrix(cat, rules.weights), seeds, weights)
        shortlist = None
    mask = candidate_mask(cat, rules, fast)
    if rules.bpm_tolerance_pct is not None:
        mask &= near_tempo(cat.tempo_bpm, [cat.tempo_bpm[s] for s in seeds], rules.bpm_tolerance_pct)
    walk = Walk(cat, rules, base, np.flatnonzero(mask), shortlist, cost_is_rank=rules.order == "similarity")
    for seed in seeds:
        walk.place(seed, -1 - len(queued))
    for back, index in enumerate(reversed(queued)):
        walk.place(index, -1 - back)
    quota = (np.full(len(seeds), rules.length) if seed_weights is not None
             else np.full(len(seeds), -(-rules.length // len(seeds))))
    taken = np.zeros(len(seeds), dtype=np.intp)
    cost = _order_cost(cat, rules, base, walk.shortlist)
    ramp = _ramp_rule(cat, rules, base, walk.shortlist) if rules.order == "ramp" else None

    def step_cost(pos: int, prev: int, rows: IntArray) -> tuple[FloatArray, dict[str, npt.NDArray[np.bool_]]]:
        hard = {"each seed's share": taken[nearest[rows]] < quota[nearest[rows]]}
        if ramp is not None:
            hard[ramp.name(pos)] = ramp.keeps(pos, rows)
        return cost(pos, prev, rows), hard

    before = queued[-1] if queued else seeds[0]
    for position in range(rules.length):
        chosen = walk.step(position, walk.picks[-1] if walk.picks else before, step_cost)
        if chosen is None:
            break
        taken[nearest[chosen]] += 1
    refs = [int(seeds[nearest[i]]) for i in walk.picks]
    names = {r: f"seed {label(cat.tracks[r])}" for r in set(refs)}  # a label reads the tags: once a seed
    entries = explain_picks(cat, rules, walk.picks, [cat.matrix.values[r] for r in refs],
                            [names[r] for r in refs], before, walk.relaxed)
    return Playlist("similar", entries, tuple(cat.tracks[s] for s in seeds),
                    shortfall(rules, entries, walk.stopped_by), walk.stopped_by)


def _order_cost(cat: Catalogue, rules: Rules, base: FloatArray,
                shortlist: IntArray) -> Callable[[int, int, IntArray], FloatArray]:
    """Return the per-position cost of each shortlisted track for the requested order."""
    if rules.order == "similarity":
        return lambda pos, prev, rows: base[rows]
    top = np.sort(base[shortlist])[: rules.length]
    typical = float(np.median(top)) if top.size and np.median(top) > 0 else 1.0
    if rules.order == "flow":
        def flow(pos: int, prev: int, rows: IntArray) -> FloatArray:
            return base[rows] / typical + FLOW_WEIGHT * _transition(cat, prev, rows)
        return flow
    ramp = _ramp_rule(cat, rules, base, shortlist)
    log_tempo = np.log2(np.where(np.isfinite(cat.tempo_bpm), cat.tempo_bpm, 1.0))
    unknown = ~np.isfinite(cat.tempo_bpm)

    def ramp_cost(pos: int, prev: int, rows: IntArray) -> FloatArray:
        target = math.log2(ramp.target(pos))
        off = np.where(unknown[rows], 4.0, np.abs(log_tempo[rows] - target) / RAMP_UNIT)
        return base[rows] / typical + RAMP_WEIGHT * off
    return ramp_cost


class _RampRule:
    """A ramp's tempo at each position, log-spaced from its first number to its second; a track
    lies within RAMP_SLACK_PCT (or --bpm-tolerance) of its position's tempo, so the ramp starts
    near its first number and really ends near the second, or stops short and says so."""

    def __init__(self, cat: Catalogue, start: float, end: float, length: int, slack_pct: float) -> None:
        self.tempo = cat.tempo_bpm
        self.start, self.end, self.length = start, end, length
        self.limit = math.log2(1.0 + slack_pct / 100.0)
        self.slack_pct = slack_pct

    def target(self, position: int) -> float:
        share = position / max(self.length - 1, 1)
        return float(2.0 ** (math.log2(self.start) + share * (math.log2(self.end) - math.log2(self.start))))

    def keeps(self, position: int, rows: IntArray) -> npt.NDArray[np.bool_]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.abs(np.log2(self.tempo[rows] / self.target(position))) <= self.limit + 1e-12)

    def name(self, position: int) -> str:
        return f"the ramp (a track within {self.slack_pct:g} % of {self.target(position):.0f} BPM)"


def _ramp_rule(cat: Catalogue, rules: Rules, base: FloatArray, shortlist: IntArray) -> _RampRule:
    start, end = _ramp_ends(cat, rules, shortlist[np.argsort(base[shortlist])[: rules.length]])
    slack = max(RAMP_SLACK_PCT, rules.bpm_tolerance_pct or 0.0)
    return _RampRule(cat, start, end, rules.length, slack)


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
        tempo = np.abs(octave_steps(cat.tempo_bpm[prev], cat.tempo_bpm[rows])) / TEMPO_UNIT
    return np.asarray(np.where(np.isfinite(tempo), np.minimum(tempo, 6.0), 2.0) + key, dtype=np.float64)


# --- a path from A to B --------------------------------------------------------------------------


def path_playlist(cat: Catalogue, start: int, end: int, rules: Rules, *,
                  space: Space | None = None) -> Playlist:
    """Return A, then tracks that move step by step towards B, then B: `rules.length` in all.

    Every track is projected on the segment A→B in the weighted space: `along` is how far (0 at
    A, 1 at B) and `off` how far from the line. Playlist position i wants along = i / (length - 1);
    each pick must lie further along than the one before, so the path never turns back. The cost
    of a pick is its squared distance off the line (in units of the corridor's median) plus its
    squared distance from the target point (in steps): real libraries are not straight lines, and
    without the second term a path would leap ahead to wherever the line is well covered.
    A `space` lends its masks; the projection is the plain one (one pass over the matrix).
    """
    rules.check()
    if start == end or cat.recording[start] == cat.recording[end]:
        raise PlaylistError("--from and --to are the same recording")
    fast = space if space is not None and space.serves(cat, rules) else None
    weighted = weighted_matrix(cat, rules.weights)
    span = weighted[end] - weighted[start]
    span2 = float(span @ span) or 1e-12
    rel = weighted - weighted[start]
    along = (rel @ span) / span2
    off2 = np.maximum(np.einsum("ij,ij->i", rel, rel) - along**2 * span2, 0.0)
    length = max(rules.length, 2)
    inner = replace(rules, length=length)
    ahead = candidate_mask(cat, rules, fast) & (along > 0) & (along < 1)
    walk = Walk(cat, inner, off2, np.flatnonzero(ahead))
    walk.place(start, -1)  # walk position p is playlist position p + 1
    walk.anchor_played = True
    walk.reserve_end(end, length - 2)
    picks, last = [start], 0.0
    step = 1.0 / (length - 1)
    # Being one step early or late costs as much as lying a typical distance off the line.
    typical = float(np.median(off2[walk.shortlist])) if walk.shortlist.size else 1.0
    typical = typical if typical > 0 else 1.0
    tolerance = None if rules.bpm_tolerance_pct is None else f"--bpm-tolerance {rules.bpm_tolerance_pct:g} %"

    def step_cost(pos: int, prev: int, rows: IntArray) -> tuple[FloatArray, dict[str, npt.NDArray[np.bool_]]]:
        hard = {"the direction towards B": along[rows] > last}
        if tolerance is not None and rules.bpm_tolerance_pct is not None:
            hard[tolerance] = within_tolerance(cat.tempo_bpm[prev], cat.tempo_bpm[rows],
                                               rules.bpm_tolerance_pct)
        if pos == length - 3:  # the last free track also steps into B
            hard.update(_into(cat, rules, rows, end))
        return off2[rows] / typical + ((along[rows] - (pos + 1) * step) / step) ** 2, hard

    for position in range(length - 2):
        chosen = walk.step(position, picks[-1], step_cost)
        if chosen is None:
            break
        picks.append(chosen)
        last = float(along[chosen])
    kept = len(picks)
    while kept > 0 and not _steps_into(cat, rules, np.array(picks[kept - 1:kept]), end)[0]:
        kept -= 1  # the walk stopped early on a track that cannot lead into B
    stopped_by = None
    if kept:
        picks = [*picks[:kept], end]
    else:  # not even A steps into B: the path stops short rather than jump
        broken = _into(cat, rules, np.array(picks[-1:]), end)
        stopped_by = " and ".join(name for name, ok in broken.items() if not ok[0])
    shares = [float(np.clip(along[i], 0.0, 1.0)) for i in picks]
    a, b = cat.matrix.values[start], cat.matrix.values[end]
    relaxed = {i + 1: why for i, why in walk.relaxed.items() if i + 1 < len(picks)}
    entries = explain_picks(cat, rules, picks, [a + s * (b - a) for s in shares],
                            [f"path {100 * s:.0f} %" for s in shares], -1, relaxed)
    return Playlist("path", entries, (cat.tracks[start], cat.tracks[end]),
                    shortfall(inner, entries, stopped_by), stopped_by)


def _into(cat: Catalogue, rules: Rules, rows: IntArray, end: int) -> dict[str, npt.NDArray[np.bool_]]:
    """Return, per step rule, which rows may come right before a fixed track."""
    hard: dict[str, npt.NDArray[np.bool_]] = {}
    if rules.bpm_tolerance_pct is not None and math.isfinite(cat.tempo_bpm[end]):
        hard[f"--bpm-tolerance {rules.bpm_tolerance_pct:g} % into B"] = within_tolerance(
            cat.tempo_bpm[rows], np.full(len(rows), cat.tempo_bpm[end]), rules.bpm_tolerance_pct)
    if rules.key_compatible and cat.camelot[end] < 24:
        hard["--key-compatible into B"] = np.asarray(KEY_COMPATIBLE[cat.camelot[rows], cat.camelot[end]])
    return hard


def _steps_into(cat: Catalogue, rules: Rules, rows: IntArray, end: int) -> npt.NDArray[np.bool_]:
    """Return which rows may come right before a fixed track under the tempo and key rules."""
    ok = np.ones(len(rows), dtype=bool)
    for allowed in _into(cat, rules, rows, end).values():
        ok &= allowed
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
        raise NoMatch(f"no analysed track matches {query!r} (and the other rules)")
    weighted = cat.matrix.values[matches] * column_weights(cat.matrix.layout, rules.weights)
    centre = int(matches[np.argmin(squared_distances(weighted, weighted.mean(axis=0)))])
    first = explain_picks(cat, rules, [centre], [cat.matrix.values[matches].mean(axis=0)],
                          [f"centre of {query}"], -1)
    rest = similar_playlist(cat, [centre], narrowed) if rules.length > 1 else None
    entries = first + (rest.entries if rest else ())
    stopped_by = rest.stopped_by if rest else None
    return Playlist("query", entries, (), shortfall(rules, entries, stopped_by), stopped_by)


class NoMatch(PlaylistError):
    """A query that no analysed track matches: the command's "nothing satisfied the rules"."""
