"""Rules that keep their word, on the synthetic catalogue: spacing relaxes and says so, hard rules
never bend (a path or ramp stops short and names the rule), half and double tempo are neighbours,
short and suspect files stay out by default."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from support.playlists import TIMBRE, cluster_of, make_track, synthetic_tracks
from tunescout.playlists.catalogue import Catalogue, Track
from tunescout.playlists.engine import NoMatch, path_playlist, query_playlist, similar_playlist
from tunescout.playlists.render import explain_text
from tunescout.playlists.request import Rules
from tunescout.playlists.steps import step_pct, within_tolerance


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return Catalogue.build(synthetic_tracks(per_cluster=24))


def test_half_and_double_tempo_are_neighbours() -> None:
    assert step_pct(70.0, 140.0) == (0.0, 1)
    assert step_pct(140.0, 70.0) == (0.0, -1)
    assert step_pct(70.0, 150.0)[0] == pytest.approx(100 * (150 / 140 - 1))
    assert within_tolerance(70.0, np.array([140.0, 35.5, 100.0, np.nan]), 3.0).tolist() == [
        True, True, False, False]


def test_bpm_tolerance_counts_double_time_as_the_same_tempo() -> None:
    rng = np.random.default_rng(3)
    tracks = [make_track(f"/music/t/{i}.flac", artist=f"a{i}", title=f"t{i}", album=f"b{i}", genre="x",
                         timbre=TIMBRE["slow"] + rng.normal(0, 0.3, 31), tempo_bpm=bpm, camelot="8A",
                         lufs=-12.0, rng=rng) for i, bpm in enumerate([70.0, 140.0, 141.0, 105.0, 71.0])]
    cat = Catalogue.build(tracks)
    playlist = similar_playlist(cat, [0], Rules(length=4, bpm_tolerance_pct=2.0))
    assert sorted(t.tempo_bpm or 0 for t in playlist.tracks) == [71.0, 140.0, 141.0]
    steps = [abs(e.why.bpm_step_pct or 0) for e in playlist.entries]
    assert max(steps) < 2.0  # 70 → 140 is a 0 % step, not +100 %
    assert any("double time" in explain_text(e) or "half time" in explain_text(e) for e in playlist.entries)


def test_spacing_relaxes_for_a_query_of_one_artist_and_says_so(cat: Catalogue) -> None:
    playlist = query_playlist(cat, "artist='mid artist 3'", Rules(length=10))
    assert len(playlist.entries) == 3  # every match: 24 tracks / 8 artists
    assert all(t.artist == "mid artist 3" for t in playlist.tracks)
    assert all(e.why.relaxed and "artist" in e.why.relaxed for e in playlist.entries[1:])
    assert any("spacing relaxed" in note for note in playlist.notes)
    assert "relaxed" in explain_text(playlist.entries[1])
    assert playlist.stopped_by is None


def test_spacing_is_kept_while_other_tracks_fit(cat: Catalogue) -> None:
    playlist = similar_playlist(cat, [0], Rules(length=10))
    assert not any(e.why.relaxed for e in playlist.entries)
    assert not any("relaxed" in n for n in playlist.notes)


def test_a_query_with_no_match_raises_no_match(cat: Catalogue) -> None:
    with pytest.raises(NoMatch):
        query_playlist(cat, "genre=polka", Rules())


def test_a_path_that_cannot_keep_its_tempo_rule_stops_short_and_names_it(cat: Catalogue) -> None:
    slow = next(i for i, t in enumerate(cat.tracks) if cluster_of(t) == "slow")
    fast = next(i for i, t in enumerate(cat.tracks) if cluster_of(t) == "fast")
    rules = Rules(length=8, bpm_tolerance_pct=15.0, key_compatible=True)
    playlist = path_playlist(cat, slow, fast, rules)
    assert playlist.stopped_by is not None and "into B" in playlist.stopped_by
    assert playlist.tracks[-1] is not cat.tracks[fast]  # never the +75 % jump into B
    for entry in playlist.entries[1:]:
        assert abs(entry.why.bpm_step_pct or 0.0) <= 15.0
    assert any("stopped after" in note for note in playlist.notes)


def test_a_path_whose_rules_hold_reaches_b(cat: Catalogue) -> None:
    tracks = [t for t in cat.tracks if cluster_of(t) in ("mid", "fast")]
    small = Catalogue.build(tracks)
    a = next(i for i, t in enumerate(small.tracks) if cluster_of(t) == "mid")
    b = next(i for i, t in enumerate(small.tracks) if cluster_of(t) == "fast")
    playlist = path_playlist(small, a, b, Rules(length=6))
    assert playlist.stopped_by is None and playlist.tracks[-1] is small.tracks[b]


def test_a_ramp_starts_near_its_first_number_and_stops_at_the_key_rule(cat: Catalogue) -> None:
    seed = next(i for i, t in enumerate(cat.tracks) if cluster_of(t) == "mid")
    rules = Rules(length=12, order="ramp", bpm_range=(110.0, 170.0), key_compatible=True)
    playlist = similar_playlist(cat, [seed], rules)
    first = playlist.tracks[0].tempo_bpm
    assert first is not None and abs(first / 110.0 - 1) <= 0.10
    assert playlist.stopped_by is not None and "--key-compatible" in playlist.stopped_by
    free = similar_playlist(cat, [seed], replace(rules, key_compatible=False))
    tempi = [t.tempo_bpm or 0 for t in free.tracks]
    assert abs(tempi[0] / 110 - 1) <= 0.10 and tempi[-1] > 135  # it really ramps when it may


def _short_and_suspect(cat: Catalogue) -> list[Track]:
    tracks = list(cat.tracks)
    tracks[1] = replace(tracks[1], duration_s=5.0)
    tracks[2] = replace(tracks[2], decode_warning="decoded 6 s of 240 s (truncated)")
    return tracks


def test_jingles_and_suspect_files_are_left_out_by_default(cat: Catalogue) -> None:
    tracks = _short_and_suspect(cat)
    small = Catalogue.build(tracks[:24])
    every = Rules(length=23, artist_spacing=0, album_spacing=0)
    names = {t.path for t in similar_playlist(small, [0], every).tracks}
    assert tracks[1].path not in names and tracks[2].path not in names
    loose = replace(every, min_duration_s=0.0, include_suspect=True)
    names = {t.path for t in similar_playlist(small, [0], loose).tracks}
    assert tracks[1].path in names and tracks[2].path in names


def test_the_new_keys_of_a_configured_playlist() -> None:
    from pathlib import Path

    from tunescout.playlists.request import parse_playlist_specs

    specs, problems = parse_playlist_specs([{
        "name": "x", "output": "/o.m3u8", "query": "genre=rock", "min_duration": "0:45",
        "include_suspect": True, "prefer": ["bitrate", "path"]}], Path("/"))
    assert problems == []
    assert specs[0].rules.min_duration_s == 45.0 and specs[0].rules.include_suspect
    assert specs[0].rules.prefer == ("bitrate", "path")
    _, problems = parse_playlist_specs([{"name": "x", "output": "/o.m3u8", "query": "genre=rock",
                                         "prefer": ["lossles"]}], Path("/"))
    assert problems and "did you mean 'lossless'" in problems[0]
