"""One recording, one entry: the same audio in several codecs, and a re-tagged transcode, written
by the test and analysed for real, is one recording; the copy used is the preferred one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from support.audio import write_track
from tunescout.analysis import analyse_file
from tunescout.playlists.catalogue import Catalogue, Track
from tunescout.playlists.copies import acoustic_pairs
from tunescout.playlists.engine import similar_playlist
from tunescout.playlists.keeper import tracks_from_rows
from tunescout.playlists.request import Rules
from tunescout.store.reader import TrackRow

SECONDS = 40.0
TAGS = {"artist": "Band", "title": "Song", "album": "Record"}


def _track(path: Path) -> Track:
    result = analyse_file(path)
    row = TrackRow(path, result.digest, result.duration_s, dict(result.tags),
                   {g.name: dict(g.values) for g in result.features}, 0, path.stat().st_size,
                   result.decode_warning)
    return tracks_from_rows([row])[0]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> list[Track]:
    folder = tmp_path_factory.mktemp("copies")
    paths = [write_track(folder / f"song.{suffix}", seconds=SECONDS, kind="chords", key="C", tags=TAGS)
             for suffix in ("flac", "mp3", "ogg", "m4a")]
    # a transcode someone re-tagged: another title and artist, the same audio
    paths.append(write_track(folder / "zz copy.opus", seconds=SECONDS, kind="chords", key="C",
                             tags={"artist": "Someone", "title": "Track 01", "album": "Mix"}))
    # another recording of the same length and loudness, in another key
    paths.append(write_track(folder / "other.flac", seconds=SECONDS, kind="chords", key="F#",
                             tags={"artist": "Band", "title": "Other song", "album": "Record"}))
    return [_track(p) for p in paths]


def test_codecs_and_a_retagged_transcode_are_one_recording(library: list[Track]) -> None:
    assert len({t.digest for t in library}) == len(library)  # the digests do not tell them apart
    cat = Catalogue.build(library)
    groups = sorted(sorted(t.path.name for t in (cat.tracks[i] for i in m)) for m in cat.recording_members)
    assert groups == [["other.flac"], ["song.flac", "song.m4a", "song.mp3", "song.ogg", "zz copy.opus"]]


def test_the_signature_alone_matches_the_retagged_copy(library: list[Track]) -> None:
    retagged = [t for t in library if t.path.name in ("song.flac", "zz copy.opus")]
    assert acoustic_pairs(retagged) == [(0, 1)]


def test_a_seed_never_gets_its_copies_and_the_lossless_copy_is_used(library: list[Track]) -> None:
    cat = Catalogue.build(library)
    rules = Rules(length=5, artist_spacing=0, album_spacing=0, min_duration_s=0)
    picks = similar_playlist(cat, [cat.index(library[-1].path)], rules).tracks  # seed: other.flac
    assert [t.path.name for t in picks] == ["song.flac"]  # one copy, lossless first
    for seed in library[:5]:
        picks = similar_playlist(cat, [cat.index(seed.path)], rules).tracks
        assert [t.path.name for t in picks] == ["other.flac"]


def test_the_preference_is_configurable_and_stable(library: list[Track]) -> None:
    rules = Rules(length=5, artist_spacing=0, album_spacing=0, min_duration_s=0, prefer=("bitrate",))
    chosen = set()
    for order in (library, library[::-1], library[2:] + library[:2]):
        cat = Catalogue.build(order)
        chosen.add(similar_playlist(cat, [cat.index(library[-1].path)], rules).tracks[0].path.name)
    assert chosen == {"song.flac"}  # the highest bitrate, whatever the listing order
    lossy = [t for t in library if t.path.suffix != ".flac"]
    cat = Catalogue.build([*lossy, library[-1]])
    by_path = replace(rules, prefer=("path",))
    assert similar_playlist(cat, [len(lossy)], by_path).tracks[0].path.name == "song.m4a"
    lossless = replace(rules, prefer=("lossless", "bitrate", "path"))
    name = similar_playlist(cat, [len(lossy)], lossless).tracks[0].path.name
    assert name == max(lossy, key=lambda t: (t.size_bytes or 0) / (t.duration_s or 1)).path.name
