"""A synthetic library whose structure is known (clusters of tempo, key and timbre), a real
store filled with it, and reading back what the daemon wrote: shared by the playlist tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunescout.models import FEATURE_VERSIONS, FeatureGroup, FileIdentity, TrackAnalysis
from tunescout.playlists.camelot import camelot_index
from tunescout.playlists.catalogue import Track
from tunescout.playlists.render import read_m3u8
from tunescout.store.writer import StoreWriter


def read_paths(path: Path) -> list[Path]:
    """Return the track paths of an M3U8 file (resolved against its folder), [] if absent."""
    if not path.exists():
        return []
    items = read_m3u8(path)
    return [item.path if item.path.is_absolute() else path.parent / item.path for item in items]


# --- the synthetic library -----------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    name: str
    tempo_bpm: float
    camelot: str
    genre: str
    lufs: float


CLUSTERS = (
    Cluster("slow", 80.0, "8A", "ambient", -18.0),
    Cluster("mid", 110.0, "3B", "rock", -11.0),
    Cluster("fast", 140.0, "11A", "techno", -8.0),
    Cluster("rave", 175.0, "5B", "drum and bass", -7.0),
)
_TIMBRE_RNG = np.random.default_rng(1234)
TIMBRE = {c.name: _TIMBRE_RNG.normal(0.0, 4.0, 31) for c in CLUSTERS}


def camelot_key(code: str) -> tuple[str, str]:
    """Return (tonic, mode) of a Camelot code, inverting analysis.key.Key.camelot."""
    pitch_names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    index = camelot_index(code)
    assert index is not None
    number, minor = index // 2 + 1, index % 2 == 0
    major_pitch = next(p for p in range(12) if (7 * p + 7) % 12 + 1 == number)
    return (pitch_names[(major_pitch - 3) % 12], "minor") if minor else (pitch_names[major_pitch], "major")


def features(timbre: np.ndarray, tempo_bpm: float | None, camelot: str | None, lufs: float | None,
             rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Return stored feature groups shaped like the analysis writes them."""
    tonic, mode = camelot_key(camelot) if camelot else (None, None)
    chroma = np.abs(rng.normal(0.3, 0.05, 12))
    if tonic:
        chroma[("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B").index(tonic)] += 0.4
    return {
        "rhythm": {"tempo_bpm": tempo_bpm, "beat_strength": 0.6 + rng.normal(0, 0.02),
                   "onset_rate_hz": (tempo_bpm or 100.0) / 30.0 + rng.normal(0, 0.05)},
        "tonal": {"key": tonic, "mode": mode, "key_strength": 0.7, "camelot": camelot,
                  "chroma_mean": chroma.tolist()},
        "timbre": {"mfcc_mean": timbre[:13].tolist(), "mfcc_std": (np.abs(timbre[13:26]) + 1).tolist(),
                   "spectral_centroid_hz": 2000.0 * 2 ** (timbre[26] / 8), "spectral_bandwidth_hz":
                   1800.0 * 2 ** (timbre[27] / 8), "spectral_rolloff_hz": 4000.0 * 2 ** (timbre[28] / 8),
                   "spectral_flatness": 0.1 + abs(timbre[29]) / 100, "zcr": 0.05 + abs(timbre[30]) / 200},
        "loudness": {"integrated_lufs": lufs, "loudness_range_lu": 6.0, "peak_dbfs": -0.5,
                     "crest_db": 12.0},
    }


def make_track(path: str, *, artist: str, title: str, album: str, genre: str, timbre: np.ndarray,
               tempo_bpm: float | None, camelot: str | None, lufs: float | None, rng: np.random.Generator,
               duration_s: float = 240.0, digest: str | None = None, date: str = "2001") -> Track:
    tags = {"artist": artist, "title": title, "album": album, "genre": genre, "date": date}
    return Track(Path(path), digest or f"d-{path}", duration_s, tags,
                 features(timbre, tempo_bpm, camelot, lufs, rng))


def synthetic_tracks(per_cluster: int = 48, artists: int = 8, seed: int = 0,
                     root: str = "/music") -> list[Track]:
    """Return clusters of tracks: each its own tempo, key family, timbre, genre and loudness.

    Within a cluster tempo varies ±3 %, the key is the cluster's or a Camelot neighbour, and each
    artist has two albums; durations spread from 2 to 8 minutes.
    """
    rng = np.random.default_rng(seed)
    tracks = []
    for cluster in CLUSTERS:
        index = camelot_index(cluster.camelot)
        assert index is not None
        keys = [cluster.camelot, f"{(index // 2 + 1) % 12 + 1}{cluster.camelot[-1]}",
                f"{index // 2 + 1}{'B' if cluster.camelot[-1] == 'A' else 'A'}"]
        for i in range(per_cluster):
            artist = f"{cluster.name} artist {i % artists}"
            tracks.append(make_track(
                f"{root}/{cluster.name}/{i:03d}.flac", artist=artist, title=f"{cluster.name} song {i}",
                album=f"{artist} album {i // (2 * artists)}", genre=cluster.genre,
                timbre=TIMBRE[cluster.name] + rng.normal(0, 0.3, 31),
                tempo_bpm=cluster.tempo_bpm * (1 + rng.uniform(-0.03, 0.03)),
                camelot=keys[i % 5 % 3], lufs=cluster.lufs + rng.normal(0, 0.5), rng=rng,
                duration_s=120.0 + 360.0 * (i / per_cluster)))
    return tracks


def cluster_of(track: Track) -> str:
    return track.path.parent.name


def positions_apart(values: Sequence[str], spacing: int) -> bool:
    last: dict[str, int] = {}
    for position, value in enumerate(values):
        if value in last and position - last[value] < spacing:
            return False
        last[value] = position
    return True


def fill_store(db: Path, music: Path, tracks: list[Track]) -> list[Track]:
    """Write real files for the tracks under `music`, record their analysis; return them re-pathed."""
    stored = []
    with_files = []
    for track in tracks:
        path = music / track.path.relative_to("/music")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(track.digest.encode())
        with_files.append(Track(path, track.digest, track.duration_s, track.tags, track.features))
    store = StoreWriter.open(db)
    try:
        for track in with_files:
            result = TrackAnalysis(
                digest=track.digest, duration_s=track.duration_s or 0.0, tags=dict(track.tags),
                features=tuple(FeatureGroup(name, FEATURE_VERSIONS[name], dict(v))
                               for name, v in track.features.items()),
            )
            store.record_analysis(track.path, FileIdentity.from_stat(track.path.stat()), result)
            stored.append(track)
    finally:
        store.close()
    return stored
