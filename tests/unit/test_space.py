"""The prepared library (playlists/space.py) answers exactly as the plain path: same tracks, same
order, same distances and notes, for every kind of request, on a real store of synthetic rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.playlists import fill_store, synthetic_tracks
from tunescout.playlists.catalogue import Catalogue
from tunescout.playlists.engine import candidate_mask, path_playlist, similar_playlist
from tunescout.playlists.explain import Playlist
from tunescout.playlists.request import DEFAULT_WEIGHTS, Rules
from tunescout.playlists.space import Space, plain_distances, weighted_matrix
from tunescout.radio.picker import choose_next
from tunescout.store.reader import StoreReader
from tunescout.webapi import answers
from tunescout.webapi.index import TrackIndex


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> TrackIndex:
    """A TrackIndex of 384 synthetic tracks read back from a real store, plus two copies of one."""
    root = tmp_path_factory.mktemp("space")
    tracks = synthetic_tracks(per_cluster=96, artists=12, seed=7)
    twin = replace(tracks[5], path=Path("/music/copies/twin.flac"), digest="d-twin")  # one recording
    fill_store(root / "tunescout.db", root / "music", [*tracks, twin])
    store = StoreReader.open(root / "tunescout.db")
    try:
        rows, version = store.playlist_tracks(), store.analysed_version()
    finally:
        store.close()
    return TrackIndex.build(rows, version)


def shape(playlist: Playlist) -> list[Any]:
    """Everything a playlist says, exactly (floats compared bit for bit)."""
    return [[(e.track.path, e.why.reference, e.why.distance, tuple(e.why.by_group.items()), e.why.relaxed,
              e.why.bpm_step_pct, e.why.key_step) for e in playlist.entries],
            playlist.notes, playlist.stopped_by, [t.path for t in playlist.seeds]]


RULES = [
    Rules(length=20, order="similarity"),
    Rules(length=20, order="similarity", artist_spacing=0, album_spacing=0),
    Rules(length=30, order="flow"),
    Rules(length=25, order="ramp"),
    Rules(length=40, order="flow", key_compatible=True, bpm_tolerance_pct=4.0),
    Rules(length=15, order="similarity", where="genre = rock or genre = techno", artist_spacing=6),
    Rules(length=120, order="similarity", artist_spacing=20),  # spacing relaxed, the shortlist grows
    Rules(length=10, order="flow", bpm_range=(105.0, 145.0), duration_range_s=(150.0, 420.0)),
]


@pytest.mark.parametrize("rules", RULES, ids=lambda r: f"{r.order}-{r.length}")
def test_similar_fast_path_answers_as_the_plain_path(index: TrackIndex, rules: Rules) -> None:
    cat = index.catalogue
    for seed in range(0, len(cat), 37):
        plain = similar_playlist(cat, [seed], rules)
        fast = similar_playlist(cat, [seed], rules, space=index.space)
        assert shape(fast) == shape(plain), f"seed {seed}"
        assert fast.entries, "a request that answers nothing compares nothing"


def test_several_weighted_seeds_and_a_queue_answer_as_the_plain_path(index: TrackIndex) -> None:
    """The radio's refill: three seeds, newest heaviest, a queue and recent plays left out."""
    cat = index.catalogue
    rng = np.random.default_rng(3)
    for _ in range(8):
        seeds = [int(s) for s in rng.choice(len(cat), 3, replace=False)]
        queued = [int(s) for s in rng.choice(len(cat), 4, replace=False) if s not in seeds]
        played = [int(s) for s in rng.choice(len(cat), 20, replace=False)]
        plain = choose_next(cat, Rules(), seeds, queued, played, 12)
        fast = choose_next(cat, Rules(), seeds, queued, played, 12, space=index.space)
        assert shape(fast) == shape(plain)
        assert len(fast.entries) == 12


def test_paths_answer_as_the_plain_path(index: TrackIndex) -> None:
    cat = index.catalogue
    for start, end in [(0, 200), (10, 300), (100, 383), (250, 20)]:
        for rules in (Rules(length=12), Rules(length=8, key_compatible=True, bpm_tolerance_pct=8.0)):
            plain = path_playlist(cat, start, end, rules)
            fast = path_playlist(cat, start, end, rules, space=index.space)
            assert shape(fast) == shape(plain)


def test_the_http_answers_are_the_plain_paths(index: TrackIndex) -> None:
    """What /api/similar_tracks and /api/find_path answer equals the plain engine's playlist."""
    cat = index.catalogue
    for seed in (3, 77, 190, 301):
        item = index.ids[seed]
        got = answers.similar_tracks(index, {"item_id": item, "n": "25"})
        plain = similar_playlist(cat, [seed], Rules(length=25, order="similarity"))
        assert [g["item_id"] for g in got] == [index.ids[cat.by_path[e.track.path]] for e in plain.entries]
        assert [g["distance"] for g in got] == [round(e.why.distance, 4) for e in plain.entries]
    path = answers.find_path(index, {"start_song_id": index.ids[4], "end_song_id": index.ids[299],
                                     "max_steps": "10"})
    plain_path = path_playlist(cat, 4, 299, Rules(length=10, order="flow"))
    assert [p["item_id"] for p in path["path"]] == [index.ids[cat.by_path[e.track.path]]
                                                    for e in plain_path.entries]


def test_the_copy_of_a_recording_stays_out_on_the_fast_path(index: TrackIndex) -> None:
    cat = index.catalogue
    twin = cat.by_path[next(p for p in cat.by_path if p.name == "twin.flac")]
    assert len(cat.recording_members[cat.recording[twin]]) == 2
    mask = candidate_mask(cat, Rules(), index.space)
    assert np.array_equal(mask, candidate_mask(cat, Rules()))
    assert mask[list(cat.recording_members[cat.recording[twin]])].sum() == 1


def test_a_space_for_other_weights_or_another_catalogue_is_not_used(index: TrackIndex) -> None:
    """Rules with their own weights, or a space of an older catalogue, take the plain path."""
    cat = index.catalogue
    timbre_only = Rules(length=15, weights={"timbre": 1.0})
    assert not index.space.serves(cat, timbre_only)
    assert shape(similar_playlist(cat, [9], timbre_only, space=index.space)) == shape(
        similar_playlist(cat, [9], timbre_only))
    other = Catalogue.build(list(cat.tracks[:200]))
    assert not index.space.serves(other, Rules())
    assert shape(similar_playlist(other, [9], Rules(), space=index.space)) == shape(
        similar_playlist(other, [9], Rules()))


def _nearest_set(weighted: np.ndarray, candidates: np.ndarray, seeds: Sequence[int], size: int) -> set[int]:
    _, base = plain_distances(weighted, seeds, np.ones(len(seeds)))
    return {int(i) for i in candidates[np.argsort(base[candidates], kind="stable")[:size]]}


@pytest.mark.parametrize("seeds", [[0], [5, 900, 2100]])
def test_a_cut_shortlist_is_the_exact_nearest(seeds: list[int]) -> None:
    """At 3,000 tracks the shortlist (2,000) is cut from the product's nearest, made exact: it
    holds exactly the candidates nearest by the plain distances, with their plain values."""
    cat = Catalogue.build(synthetic_tracks(per_cluster=750, artists=40, seed=11))
    space = Space(cat, DEFAULT_WEIGHTS)
    candidates = np.flatnonzero(candidate_mask(cat, Rules(), space))
    distances = space.distances(seeds, np.ones(len(seeds)))
    shortlist = distances.shortlist(candidates, 2000)
    assert len(shortlist) == 2000 < len(candidates)
    weighted = weighted_matrix(cat, DEFAULT_WEIGHTS)
    assert set(shortlist.tolist()) == _nearest_set(weighted, candidates, seeds, 2000)
    nearest, base = plain_distances(weighted, seeds, np.ones(len(seeds)))
    assert np.array_equal(distances.base[shortlist], base[shortlist])  # bit for bit
    assert np.array_equal(distances.nearest[shortlist], nearest[shortlist])
    assert not distances.exact.all(), "the point: not every track was recomputed"
    for rules in (Rules(length=20, order="similarity"), Rules(length=30),
                  Rules(length=80, artist_spacing=30)):
        assert shape(similar_playlist(cat, seeds, rules, space=space)) == shape(
            similar_playlist(cat, seeds, rules))


def test_ties_at_the_cut_fall_back_to_every_candidate() -> None:
    """Many tracks at one distance around the cut: the bound cannot separate them, so every
    candidate is made exact and the shortlist is taken as the plain path takes it."""
    tracks = synthetic_tracks(per_cluster=750, artists=40, seed=12)
    same = tracks[1]
    # one sound, no known length (so not taken for copies of one recording)
    tracks = [replace(t, features=same.features, duration_s=None) if 100 <= i < 2900 else t
              for i, t in enumerate(tracks)]
    cat = Catalogue.build(tracks)
    space = Space(cat, DEFAULT_WEIGHTS)
    candidates = np.flatnonzero(candidate_mask(cat, Rules(min_duration_s=0), space))
    distances = space.distances([0], np.ones(1))
    assert len(candidates) > 2800
    shortlist = distances.shortlist(candidates, 2000)
    assert distances.exact[candidates].all()
    _, base = plain_distances(weighted_matrix(cat, DEFAULT_WEIGHTS), [0], np.ones(1))
    assert base[shortlist].max() <= np.partition(base[candidates], 1999)[1999]


def test_similarity_picks_do_not_depend_on_the_shortlist_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """Similarity order starts from a short shortlist (its cost is the rank): the picks are those
    of a shortlist holding every candidate, the rules included, also when it has to grow."""
    from tunescout.playlists import walk

    cat = Catalogue.build(synthetic_tracks(per_cluster=750, artists=6, seed=13))
    space = Space(cat, DEFAULT_WEIGHTS)
    cases = [(seed, rules) for seed in (0, 800, 1700, 2999) for rules in (
        Rules(length=20, order="similarity"), Rules(length=60, order="similarity", artist_spacing=8),
        Rules(length=30, order="similarity", key_compatible=True, bpm_tolerance_pct=2.0))]
    short = [shape(similar_playlist(cat, [seed], rules, space=space)) for seed, rules in cases]
    monkeypatch.setattr(walk, "RANKED_MIN", 10**9)
    assert short == [shape(similar_playlist(cat, [seed], rules)) for seed, rules in cases]
    # 6 artists to a cluster and a spacing of 8: the list reaches into other clusters, beyond
    # the first shortlist (8 × 60 of the seed's own 750)
    assert {p.parent for p, *_ in short[1][0]} != {cat.tracks[0].path.parent}


def test_the_http_index_leaves_suspect_files_out(index: TrackIndex) -> None:
    """A file decoded only in part is no answer of similar_tracks (as in every playlist)."""
    from tunescout.store.reader import TrackRow

    cat = index.catalogue

    def rows(warning: str | None) -> list[TrackRow]:
        return [TrackRow(t.path, t.digest, t.duration_s, dict(t.tags),
                         {g: dict(v) for g, v in t.features.items()}, id=i + 1,
                         decode_warning=warning if i == 1 else None)
                for i, t in enumerate(cat.tracks)]

    ask = {"item_id": "1", "n": str(len(cat) - 1), "eliminate_duplicates": "false"}
    clean = answers.similar_tracks(TrackIndex.build(rows(None), ("v",)), ask)
    assert "2" in {i["item_id"] for i in clean}
    suspect = TrackIndex.build(rows("truncated: 60 % decoded"), ("v",))
    assert suspect.catalogue.suspect[1]
    assert "2" not in {i["item_id"] for i in answers.similar_tracks(suspect, ask)}
