"""Playlists on synthetic libraries whose structure is known: clusters of tempo, key and timbre."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from support.playlists import CLUSTERS, TIMBRE, cluster_of, make_track, positions_apart, synthetic_tracks
from tunescout.errors import PlaylistError
from tunescout.playlists.camelot import camelot_compatible, key_step
from tunescout.playlists.catalogue import Catalogue, Track, TrackNotFound, normalise_title
from tunescout.playlists.engine import path_playlist, query_playlist, similar_playlist
from tunescout.playlists.explain import Playlist
from tunescout.playlists.request import Rules, parse_range, parse_weights
from tunescout.playlists.vectors import column_weights
from tunescout.tagexpr import parse_where


@pytest.fixture(scope="module")
def library() -> Catalogue:
    return Catalogue.build(synthetic_tracks())


def seed_index(cat: Catalogue, name: str, number: int = 0) -> int:
    return cat.index(Path(f"/music/{name}/{number:03d}.flac"))


# --- similar to seeds ----------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["flow", "similarity", "ramp"])
@pytest.mark.parametrize("cluster", [c.name for c in CLUSTERS])
def test_similar_picks_from_the_seed_cluster(library: Catalogue, cluster: str, order: str) -> None:
    seed = seed_index(library, cluster)
    playlist = similar_playlist(library, [seed], Rules(length=25, order=order))  # type: ignore[arg-type]
    assert len(playlist.entries) == 25
    assert {cluster_of(t) for t in playlist.tracks} == {cluster}
    assert library.tracks[seed] not in playlist.tracks
    assert not playlist.notes


def test_the_seed_and_its_duplicates_never_come_back(tmp_path: Path) -> None:
    tracks = synthetic_tracks(per_cluster=24)
    seed = tracks[0]
    rng = np.random.default_rng(5)
    timbre = TIMBRE["slow"] + rng.normal(0, 0.3, 31)
    same_audio = replace(seed, path=Path("/music/best-of/01.flac"), tags={**seed.tags, "album": "Best of"})
    same_name = make_track("/music/live/01.flac", artist=f"  {str(seed.tags['artist']).upper()} ",
                           title=f"{str(seed.tags['title']).upper()}  (2011  Remaster)", album="Live",
                           genre="ambient", timbre=timbre, tempo_bpm=80.0, camelot="8A", lufs=-18.0, rng=rng)
    # and a recording of another track, twice: only one of them may appear
    other = tracks[1]
    twin = replace(other, path=Path("/music/twin/02.flac"), tags={**other.tags, "album": "Twin"})
    cat = Catalogue.build([*tracks, same_audio, same_name, twin])
    playlist = similar_playlist(cat, [0], Rules(length=20, artist_spacing=0, album_spacing=0))
    paths = {t.path for t in playlist.tracks}
    assert not paths & {seed.path, same_audio.path, same_name.path}
    assert len(paths & {other.path, twin.path}) == 1
    recordings = [(t.digest) for t in playlist.tracks]
    assert len(set(recordings)) == len(recordings)


@pytest.mark.parametrize(("artist_spacing", "album_spacing"), [(3, 5), (6, 8), (8, 12)])
def test_artist_and_album_spacing(library: Catalogue, artist_spacing: int, album_spacing: int) -> None:
    seed = seed_index(library, "mid")
    rules = Rules(length=30, artist_spacing=artist_spacing, album_spacing=album_spacing)
    playlist = similar_playlist(library, [seed], rules)
    seed_track = library.tracks[seed]
    artists = [seed_track.artist] + [t.artist for t in playlist.tracks]  # the seed plays first
    albums = [seed_track.album] + [t.album for t in playlist.tracks]
    assert positions_apart(artists, artist_spacing)
    assert positions_apart(albums, album_spacing)
    assert len(playlist.entries) == 30


def test_without_spacing_the_nearest_artist_repeats(library: Catalogue) -> None:
    """The spacing rule is what spreads artists: without it, neighbours by one artist can cluster."""
    playlist = similar_playlist(library, [seed_index(library, "mid")],
                                Rules(length=30, artist_spacing=0, album_spacing=0, order="similarity"))
    artists = [t.artist for t in playlist.tracks]
    assert not positions_apart(artists, 8)


def test_bpm_range_and_tolerance(library: Catalogue) -> None:
    seed = seed_index(library, "fast")
    seed_tempo = library.tracks[seed].tempo_bpm
    assert seed_tempo is not None
    tolerant = similar_playlist(library, [seed], Rules(length=15, bpm_tolerance_pct=1.5))
    assert tolerant.entries
    for track in tolerant.tracks:
        assert track.tempo_bpm is not None and abs(track.tempo_bpm / seed_tempo - 1) <= 0.015
    ranged = similar_playlist(library, [seed], Rules(length=40, bpm_range=(100.0, 115.0)))
    assert len(ranged.entries) == 40
    for track in ranged.tracks:
        assert track.tempo_bpm is not None and 100.0 <= track.tempo_bpm <= 115.0


def test_key_compatible_steps(library: Catalogue) -> None:
    seed = seed_index(library, "slow")
    playlist = similar_playlist(library, [seed], Rules(length=30, key_compatible=True))
    assert len(playlist.entries) == 30
    keys = [library.tracks[seed].camelot] + [t.camelot for t in playlist.tracks]
    for before, after in itertools.pairwise(keys):
        assert camelot_compatible(before, after), f"{before} → {after}"


def test_duration_loudness_and_tag_filters(library: Catalogue) -> None:
    seed = seed_index(library, "rave")
    rules = Rules(length=20, duration_range_s=(180.0, 300.0), loudness_range_lufs=(-12.0, -9.0),
                  where="genre=rock or genre~techno")
    playlist = similar_playlist(library, [seed], rules)
    assert playlist.entries
    for track in playlist.tracks:
        assert track.duration_s is not None and 180.0 <= track.duration_s <= 300.0
        lufs = track.feature("loudness", "integrated_lufs")
        assert -12.0 <= lufs <= -9.0
        assert track.tags["genre"] in ("rock", "techno")


def test_several_seeds_share_the_playlist(library: Catalogue) -> None:
    seeds = [seed_index(library, "slow"), seed_index(library, "fast")]
    playlist = similar_playlist(library, seeds, Rules(length=20))
    clusters = [cluster_of(t) for t in playlist.tracks]
    assert clusters.count("slow") == 10 and clusters.count("fast") == 10
    assert not {library.tracks[s].path for s in seeds} & {t.path for t in playlist.tracks}
    refs = {e.why.reference for e in playlist.entries}
    assert refs == {f"seed {library.tracks[s].artist} - {library.tracks[s].title}" for s in seeds}


def test_weights_decide_what_similar_means() -> None:
    """Timbre twins sound alike at another tempo; tempo twins share tempo and key, not sound."""
    rng = np.random.default_rng(3)
    base = synthetic_tracks(per_cluster=30)
    seed = base[0]  # slow: 80 BPM, 8A, slow timbre
    twins = []
    for i in range(10):
        twins.append(make_track(f"/music/timbre-twin/{i}.flac", artist=f"tt{i}", title=f"tt{i}",
                                album=f"tt{i}", genre="x", timbre=TIMBRE["slow"] + rng.normal(0, 0.3, 31),
                                tempo_bpm=170.0, camelot="2B", lufs=-18.0, rng=rng))
        twins.append(make_track(f"/music/tempo-twin/{i}.flac", artist=f"bt{i}", title=f"bt{i}",
                                album=f"bt{i}", genre="x", timbre=TIMBRE["rave"] + rng.normal(0, 0.3, 31),
                                tempo_bpm=80.0 * (1 + rng.uniform(-0.01, 0.01)), camelot="8A",
                                lufs=-18.0, rng=rng))
    cat = Catalogue.build([*[t for t in base if cluster_of(t) != "slow"], seed, *twins])
    index = cat.index(seed.path)

    def top(weights: dict[str, float]) -> set[str]:
        rules = Rules(length=10, order="similarity", artist_spacing=0, album_spacing=0, weights=weights)
        return {cluster_of(t) for t in similar_playlist(cat, [index], rules).tracks}

    assert top({"timbre": 1.0}) == {"timbre-twin"}
    assert top({"rhythm": 1.0, "tonal": 1.0}) == {"tempo-twin"}


def test_exclude_digests_and_shortfall(library: Catalogue) -> None:
    seed = seed_index(library, "mid")
    first = similar_playlist(library, [seed], Rules(length=10))
    again = similar_playlist(library, [seed], Rules(length=10, exclude_digests=frozenset(
        t.digest for t in first.tracks)))
    assert not {t.path for t in first.tracks} & {t.path for t in again.tracks}
    narrow = similar_playlist(library, [seed], Rules(length=30, bpm_range=(109.0, 110.0)))
    assert 0 < len(narrow.entries) < 30 and "only" in narrow.notes[0]


def test_explanations(library: Catalogue) -> None:
    seed = seed_index(library, "mid")
    playlist = similar_playlist(library, [seed], Rules(length=5))
    previous = library.tracks[seed]
    for entry in playlist.entries:
        why = entry.why
        assert set(why.by_group) == {"timbre", "rhythm", "tonal", "loudness"}
        assert why.distance >= 0 and all(d >= 0 for d in why.by_group.values())
        assert why.bpm == entry.track.tempo_bpm
        assert previous.tempo_bpm is not None and entry.track.tempo_bpm is not None
        assert why.bpm_step_pct == pytest.approx(100 * (entry.track.tempo_bpm / previous.tempo_bpm - 1))
        assert why.key_step == key_step(previous.camelot, entry.track.camelot)
        previous = entry.track


def tempo_roughness(tracks: Sequence[Track]) -> float:
    tempi = [t.tempo_bpm or 0.0 for t in tracks]
    return sum(abs(math.log2(b / a)) for a, b in itertools.pairwise(tempi))


def test_flow_orders_smoother_than_similarity() -> None:
    """A cluster spread over 100-130 BPM: flow takes small steps where similarity jumps around."""
    rng = np.random.default_rng(11)
    tracks = [make_track(f"/music/wide/{i}.flac", artist=f"a{i}", title=f"t{i}", album=f"al{i}",
                         genre="x", timbre=TIMBRE["mid"] + rng.normal(0, 0.5, 31),
                         tempo_bpm=float(rng.uniform(100, 130)), camelot="3B", lufs=-10.0, rng=rng)
              for i in range(80)]
    cat = Catalogue.build(tracks)
    flow = similar_playlist(cat, [0], Rules(length=25, order="flow"))
    similarity = similar_playlist(cat, [0], Rules(length=25, order="similarity"))
    assert tempo_roughness(flow.tracks) < 0.5 * tempo_roughness(similarity.tracks)


def test_ramp_raises_the_tempo() -> None:
    rng = np.random.default_rng(12)
    tracks = [make_track(f"/music/wide/{i}.flac", artist=f"a{i}", title=f"t{i}", album=f"al{i}",
                         genre="x", timbre=TIMBRE["fast"] + rng.normal(0, 0.5, 31),
                         tempo_bpm=float(rng.uniform(100, 160)), camelot="11A", lufs=-8.0, rng=rng)
              for i in range(150)]
    cat = Catalogue.build(tracks)
    playlist = similar_playlist(cat, [0], Rules(length=20, order="ramp", bpm_range=(105.0, 155.0)))
    tempi = [t.tempo_bpm or 0.0 for t in playlist.tracks]
    assert len(tempi) == 20
    assert tempi[0] < 112 and tempi[-1] > 148
    rises = sum(b >= a for a, b in itertools.pairwise(tempi))
    assert rises >= 17
    down = similar_playlist(cat, [0], Rules(length=20, order="ramp", bpm_range=(155.0, 105.0)))
    assert down.tracks[0].tempo_bpm > down.tracks[-1].tempo_bpm  # type: ignore[operator]


# --- a path from A to B --------------------------------------------------------------------------


def bridge_library(steps: int = 120) -> list[Track]:
    """Two clusters and tracks all along the way between them (tempo, timbre, loudness blend;
    the key moves one Camelot step per quarter, 8A to 11A)."""
    rng = np.random.default_rng(21)
    tracks = synthetic_tracks(per_cluster=30)
    for i in range(steps):
        t = (i + 0.5) / steps
        tracks.append(make_track(
            f"/music/bridge/{i:03d}.flac", artist=f"bridge {i % 12}", title=f"bridge {i}",
            album=f"bridge album {i % 12}-{i // 24}", genre="bridge",
            timbre=(1 - t) * TIMBRE["slow"] + t * TIMBRE["fast"] + rng.normal(0, 0.3, 31),
            tempo_bpm=80.0 * (140.0 / 80.0) ** t, camelot=f"{8 + min(int(4 * t), 3)}A",
            lufs=-18.0 + 10.0 * t, rng=rng))
    return tracks


@pytest.fixture(scope="module")
def bridge() -> Catalogue:
    return Catalogue.build(bridge_library())


def weighted_distance(cat: Catalogue, rules: Rules, a: int, b: int) -> float:
    factors = column_weights(cat.matrix.layout, rules.weights)
    return float(np.linalg.norm((cat.matrix.values[a] - cat.matrix.values[b]) * factors))


def rank_correlation(values: Sequence[float]) -> float:
    """Return Spearman's correlation between the values and their positions."""
    ranks = np.argsort(np.argsort(values))
    return float(np.corrcoef(ranks, np.arange(len(values)))[0, 1])


def monotone_share(values: Sequence[float]) -> float:
    steps = list(itertools.pairwise(values))
    return sum(b > a for a, b in steps) / len(steps)


@pytest.mark.parametrize("length", [5, 12, 24])
def test_path_moves_gradually_from_a_to_b(bridge: Catalogue, length: int) -> None:
    start, end = seed_index(bridge, "slow"), seed_index(bridge, "fast")
    rules = Rules(length=length)
    playlist = path_playlist(bridge, start, end, rules)
    picks = [bridge.by_path[t.path] for t in playlist.tracks]
    assert len(picks) == length
    assert picks[0] == start and picks[-1] == end
    assert len(set(picks)) == length
    from_a = [weighted_distance(bridge, rules, start, i) for i in picks]
    to_b = [weighted_distance(bridge, rules, i, end) for i in picks]
    # overall, not step by step: each track lies a little off the line
    assert rank_correlation(from_a) >= 0.9 and monotone_share(from_a) >= 0.7
    assert rank_correlation([-d for d in to_b]) >= 0.9 and monotone_share([-d for d in to_b]) >= 0.7
    assert np.mean(from_a[: length // 2]) < np.mean(from_a[length // 2 :])
    assert np.mean(to_b[: length // 2]) > np.mean(to_b[length // 2 :])
    tempi = [t.tempo_bpm or 0.0 for t in playlist.tracks]
    assert monotone_share(tempi) >= 0.8
    shares = [float(e.why.reference.split()[1]) for e in playlist.entries]
    assert shares == sorted(shares) and shares[0] == 0 and shares[-1] == 100


def test_path_keeps_the_rules(bridge: Catalogue) -> None:
    start, end = seed_index(bridge, "slow"), seed_index(bridge, "fast")
    rules = Rules(length=16, artist_spacing=4, album_spacing=6, bpm_tolerance_pct=12.0, key_compatible=True)
    playlist = path_playlist(bridge, start, end, rules)
    tracks = playlist.tracks
    assert tracks[0].path == bridge.tracks[start].path and tracks[-1].path == bridge.tracks[end].path
    assert positions_apart([t.artist for t in tracks], 4)
    assert positions_apart([t.album for t in tracks], 6)
    for a, b in itertools.pairwise(tracks):
        assert a.tempo_bpm and b.tempo_bpm and abs(b.tempo_bpm / a.tempo_bpm - 1) <= 0.12
        assert camelot_compatible(a.camelot, b.camelot)


def test_path_that_cannot_reach_b_in_key_stops_short() -> None:
    """No chain of compatible keys leads from 8A to 2B: the path ends early rather than clash."""
    tracks = bridge_library()
    end = next(i for i, t in enumerate(tracks) if t.path == Path("/music/rave/000.flac"))
    cat = Catalogue.build(tracks)
    playlist = path_playlist(cat, seed_index(cat, "slow"), end, Rules(length=10, key_compatible=True))
    keys = [t.camelot for t in playlist.tracks]
    assert all(camelot_compatible(a, b) for a, b in itertools.pairwise(keys[:-1]))
    assert playlist.notes and len(keys) < 10


def test_path_between_one_recording_is_refused(bridge: Catalogue) -> None:
    with pytest.raises(PlaylistError):
        path_playlist(bridge, 3, 3, Rules())


# --- tag queries and expressions -----------------------------------------------------------------


def test_query_playlist_starts_at_the_centre(library: Catalogue) -> None:
    playlist = query_playlist(library, "genre=techno", Rules(length=12))
    assert len(playlist.entries) == 12
    assert {t.tags["genre"] for t in playlist.tracks} == {"techno"}
    assert playlist.entries[0].why.reference == "centre of genre=techno"
    assert len({t.digest for t in playlist.tracks}) == 12
    with pytest.raises(PlaylistError, match="no analysed track"):
        query_playlist(library, "genre=polka", Rules())


@pytest.mark.parametrize(("expression", "expected"), [
    ("genre=rock", True),
    ("GENRE = ROCK", True),
    ("genre=jazz", False),
    ("genre!=jazz", True),
    ("artist~bowie", True),
    ("artist!~bowie", False),
    ("artist = 'David  Bowie'", True),
    ('title="Heroes"', True),
    ("date>=1977", True),
    ("year<1977", False),
    ("genre=jazz or genre=pop", True),
    ("genre=rock and not artist~bowie", False),
    ("(genre=jazz or genre=rock) and date<=1977", True),
    ("mood=happy", False),
    ("mood!=happy", True),
    ("not not genre=pop", True),
])
def test_where_expressions(expression: str, expected: bool) -> None:
    tags = {"artist": "David Bowie", "title": "Heroes", "genre": ["Rock", "Pop"], "date": "1977-10-14"}
    assert parse_where(expression)(tags) is expected


@pytest.mark.parametrize("expression", ["genre=", "genre rock", "(genre=rock", "genre=rock)", "date>x",
                                        "and genre=rock", "genre=rock or"])
def test_bad_where_expressions(expression: str) -> None:
    with pytest.raises(PlaylistError, match="--where"):
        parse_where(expression)


def test_titles_and_keys() -> None:
    assert normalise_title("Song  (2011 Remaster)") == normalise_title("SONG") == "song"
    assert normalise_title("Song - Remastered 2009") == "song"
    assert normalise_title("Song (Remix)") != "song"
    assert camelot_compatible("8A", "9A") and camelot_compatible("8A", "7A")
    assert camelot_compatible("12A", "1A") and camelot_compatible("8A", "8B")
    assert not camelot_compatible("8A", "9B") and not camelot_compatible("8A", "10A")
    assert not camelot_compatible(None, "8A")
    assert key_step("8A", "9A") == "8A→9A (+1)" and key_step("1A", "12A") == "1A→12A (-1)"
    assert key_step("8A", "8B") == "8A→8B (relative)" and key_step("8A", "2B") == "8A→2B (clash)"


def test_parsing_ranges_and_weights() -> None:
    assert parse_range("100-130", "--bpm") == (100.0, 130.0)
    assert parse_range("-14..-8", "--loudness") == (-14.0, -8.0)
    assert parse_range("-14--8", "--loudness") == (-14.0, -8.0)
    assert parse_range("140-100", "--bpm") == (140.0, 100.0)
    assert parse_range("2:30-6:00", "--duration", clock=True) == (150.0, 360.0)
    with pytest.raises(PlaylistError):
        parse_range("fast", "--bpm")
    assert parse_weights("timbre=2, tonal=0") == {"timbre": 2.0, "rhythm": 1.0, "tonal": 0.0, "loudness": 0.5}
    with pytest.raises(PlaylistError, match="unknown group"):
        parse_weights("timbur=1")
    with pytest.raises(PlaylistError):
        Rules(weights={"timbre": 0.0, "rhythm": 0.0, "tonal": 0.0, "loudness": 0.0}).check()


def test_unknown_seed_and_missing_features() -> None:
    rng = np.random.default_rng(0)
    tracks = synthetic_tracks(per_cluster=10)
    bare = Track(Path("/music/bare.flac"), "bare", None, {}, {})
    keyless = make_track("/music/keyless.flac", artist="k", title="k", album="k", genre="ambient",
                         timbre=TIMBRE["slow"], tempo_bpm=None, camelot=None, lufs=None, rng=rng)
    cat = Catalogue.build([*tracks, bare, keyless])
    assert np.isfinite(cat.matrix.values).all()
    with pytest.raises(TrackNotFound):
        cat.index(Path("/music/nowhere.flac"))
    playlist: Playlist = similar_playlist(cat, [cat.index(bare.path)], Rules(length=5))
    assert len(playlist.entries) == 5
    strict = similar_playlist(cat, [0], Rules(length=40, key_compatible=True, bpm_range=(60.0, 200.0)))
    assert keyless.path not in {t.path for t in strict.tracks}
