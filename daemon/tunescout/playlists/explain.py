"""Why each track is where it is: the results a playlist is made of, and their reasons.

An Explanation gives the distance (in total and per feature group) to what the track was
measured against, and the tempo and key step from the track before it, so that `--explain`
and the JSON output say why without recomputing anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tunescout.models import FEATURE_GROUPS
from tunescout.playlists.camelot import key_step
from tunescout.playlists.catalogue import Catalogue, Track
from tunescout.playlists.request import Rules
from tunescout.playlists.steps import step_pct
from tunescout.playlists.vectors import FloatArray, group_distances


@dataclass(frozen=True)
class Explanation:
    """Why a track is where it is."""

    reference: str  # what the distance is measured to: "seed Artist - Title", "path 40 %"
    distance: float  # weighted, in standardised units (σ)
    by_group: Mapping[str, float]  # unweighted RMS distance per feature group, in σ
    bpm: float | None
    bpm_step_pct: float | None  # from the previous track (or the seed / start), octave-folded
    key: str | None
    key_step: str | None
    bpm_octave: int = 0  # 1: the step lands on double time, -1: on half time (bpm_step_pct is from there)
    relaxed: str | None = None  # "album spacing": the preference given up so that the list could fill


@dataclass(frozen=True)
class Entry:
    track: Track
    why: Explanation


@dataclass(frozen=True)
class Playlist:
    mode: str  # "similar", "path" or "query"
    entries: tuple[Entry, ...]
    seeds: tuple[Track, ...]
    notes: tuple[str, ...] = ()  # e.g. "only 12 of 30 tracks satisfy the rules"
    stopped_by: str | None = None  # the hard rule that ended the list early ("--key-compatible")

    @property
    def tracks(self) -> list[Track]:
        return [entry.track for entry in self.entries]



def explain_picks(cat: Catalogue, rules: Rules, picks: Sequence[int], refs: Sequence[FloatArray],
                  labels: Sequence[str], before: int,
                  relaxed: Mapping[int, str] | None = None) -> tuple[Entry, ...]:
    """Return the entries with their distance by group and their tempo/key step from the previous.

    `refs` are the standardised (unweighted) vectors each pick is measured against; `relaxed`
    names, by position in `picks`, the spacing given up to place that pick.
    """
    if not picks:
        return ()
    entries = []
    previous = before
    rows = np.asarray(picks, dtype=np.intp)  # every pick's distances by group in one pass
    by_group = group_distances(cat.matrix, rows, np.asarray(refs).reshape(len(rows), -1)).tolist()
    # each track's tempo and key read once (a Track reads them from its feature dicts)
    tempo = {i: cat.tracks[i].tempo_bpm for i in {*picks, before} if i >= 0}
    keys = {i: cat.tracks[i].camelot for i in tempo}
    weights = [rules.weights.get(g, 0.0) for g in FEATURE_GROUPS]
    for i, index in enumerate(picks):
        track = cat.tracks[index]
        groups = dict(zip(FEATURE_GROUPS, by_group[i], strict=True))
        total = math.sqrt(sum(w * d * d for w, d in zip(weights, by_group[i], strict=True)))
        step, octave = _bpm_step(tempo[previous] if previous >= 0 else None, tempo[index])
        entries.append(Entry(track, Explanation(
            reference=labels[i], distance=total, by_group=groups, bpm=tempo[index],
            bpm_step_pct=step, key=keys[index],
            key_step=key_step(keys[previous], keys[index]) if previous >= 0 else None,
            bpm_octave=octave, relaxed=(relaxed or {}).get(i),
        )))
        previous = index
    return tuple(entries)


def _bpm_step(before: float | None, after: float | None) -> tuple[float | None, int]:
    """Return the tempo step from the track before, to the nearest octave (70 → 140 is 0 %)."""
    if before is None or after is None or before <= 0 or after <= 0:
        return None, 0
    return step_pct(before, after)


def label(track: Track) -> str:
    return f"{track.artist} - {track.title}" if track.artist else track.title


def shortfall(rules: Rules, entries: Sequence[Entry], stopped_by: str | None = None) -> tuple[str, ...]:
    """Return the notes of a playlist: what was relaxed, and why it is shorter than asked."""
    notes = []
    relaxed = [e.why.relaxed for e in entries if e.why.relaxed]
    if relaxed:
        kinds = " and ".join(sorted({k for r in relaxed for k in r.split(" and ")}))
        notes.append(f"{kinds} relaxed for {len(relaxed)} of {len(entries)} tracks: no other track "
                     "fitted the rules (--artist-spacing / --album-spacing)")
    if stopped_by is not None:
        notes.append(f"stopped after {len(entries)} of {rules.length} tracks: no further track keeps "
                     f"{stopped_by}")
    elif len(entries) < rules.length:
        notes.append(f"only {len(entries)} of {rules.length} tracks satisfy the rules; loosen a filter")
    return tuple(notes)
