"""Tempo and key of tunescout and of plain librosa against Essentia, on real music, and codec consistency.

    /opt/tunescout/venv/bin/python bench/quality.py [--dest DIR] [--jobs N] [--verbose]

Needs the evaluation set of bench/evalset.py (run it first; `--dest` as there). Essentia is the
reference: bench/reference.py runs in a bench-only venv (made here on first use from
/usr/bin/python3 with `pip install essentia`, `--essentia-venv` to choose) and caches its results
beside the manifest. Per track, in `--jobs` processes with one BLAS/numba thread each:

- tunescout: `analyse_file`, the `rhythm` group's `tempo_bpm` and the `tonal` group's key and mode;
- librosa: `librosa.load(sr=22050)`, `beat.beat_track`'s tempo, and the key whose Krumhansl-Kessler
  profile correlates best with the mean `chroma_cqt` (the plain pipeline of bench/analysis.py).
  Its results are cached (librosa.json beside the manifest, per file size and librosa version):
  it is the baseline, tunescout is what changes. `--fresh` measures it again.

Figures: tempo within 4 % of Essentia's (and allowing ×2/×½), the MIREX key score as mir_eval's
weighted_score gives it (1 same key, 0.5 the reference's fifth above, 0.3 relative, 0.2 parallel),
and codec consistency: a track in several codecs is consistent when every encoding's tempo lies
within 1 % of the others and all keys are identical. `--verbose` lists every track and how each
tempo relates to Essentia's (×2, ×3/2, ...), for finding what the estimator gets wrong.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

DEFAULT_DEST = Path.home() / ".cache" / "tunescout-bench" / "evalset"
DEFAULT_ESSENTIA_VENV = Path.home() / ".cache" / "tunescout-bench" / "essentia-venv"
ONE_THREAD = {
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
}
TOOLS = ("tunescout", "librosa")
TEMPO_TOLERANCE = 0.04  # the issue's "within 4 % of Essentia"
CODEC_TEMPO_TOLERANCE = 0.01
TARGETS = {"tempo": 0.85, "key": 0.80, "codecs": 1.0}
PITCHES = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6,
           "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11}
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
RATIOS = {"×2": 2.0, "×½": 0.5, "×3/2": 1.5, "×2/3": 2 / 3, "×4/3": 4 / 3, "×3/4": 0.75,
          "×3": 3.0, "×⅓": 1 / 3, "×4": 4.0, "×¼": 0.25}
# Krumhansl-Kessler probe-tone ratings, the textbook profiles a plain librosa pipeline would use
KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


@dataclass(frozen=True)
class Estimate:
    """One tool's tempo and key for one file; key and mode None when the tool found none."""

    bpm: float | None
    key: str | None
    mode: str | None
    error: str | None = None
    digest: str | None = None  # tunescout's alone, for the coherence figure's playlists
    duration_s: float | None = None
    groups: dict[str, dict[str, Any]] | None = None


# --- the tools, in pool workers ------------------------------------------------------------------

_RUN: dict[str, Any] = {}


def _init_worker() -> None:
    """Import both stacks and warm them up once per worker, so numba compiles before any file."""
    warnings.simplefilter("ignore")  # audioread's deprecation, librosa's n_fft on short tails
    from tunescout.analysis import analyse_file, warm_up

    warm_up()
    _RUN["tunescout"] = analyse_file
    import librosa
    import numpy as np

    t = np.arange(5 * 22050) / 22050
    warm = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    warm[::11025] = 1.0
    librosa.beat.beat_track(y=warm, sr=22050)
    librosa.feature.chroma_cqt(y=warm, sr=22050)


def _job(item: tuple[str, str]) -> tuple[str, str, dict[str, Any], float]:
    """Run one tool on one file; return (tool, path, estimate as a dict, seconds)."""
    tool, path = item
    start = time.monotonic()
    try:
        estimate = _tunescout(Path(path)) if tool == "tunescout" else _librosa(path)
    except Exception as exc:  # a file a tool cannot read is a result, not the end of the run
        estimate = Estimate(None, None, None, f"{type(exc).__name__}: {exc}")
    return tool, path, estimate.__dict__, time.monotonic() - start


def _tunescout(path: Path) -> Estimate:
    """Return the tempo and key that tunescout's analysis stores for a file."""
    analysis = _RUN["tunescout"](path)
    groups = {group.name: group.values for group in analysis.features}
    rhythm, tonal = groups.get("rhythm", {}), groups.get("tonal", {})
    return Estimate(rhythm.get("tempo_bpm"), tonal.get("key"), tonal.get("mode"),
                    digest=analysis.digest, duration_s=analysis.duration_s, groups=groups)


def _librosa(path: str) -> Estimate:
    """Return librosa's beat_track tempo and the best Krumhansl-Kessler key of the mean chroma_cqt."""
    import librosa
    import numpy as np

    y, sr = librosa.load(path, sr=22050, mono=True)
    tempo, _beats = librosa.beat.beat_track(y=y, sr=sr)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    best = (-2.0, 0, "major")
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            best = max(best, (r, tonic, mode))
    bpm = float(np.atleast_1d(tempo)[0])
    return Estimate(bpm if bpm > 0 else None, NAMES[best[1]], best[2])


# --- running them ------------------------------------------------------------------------------


def essentia_results(manifest: Path, venv: Path, jobs: int) -> dict[str, Any]:
    """Return Essentia's cached results, making the venv and measuring what is missing first."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making the Essentia venv {venv} (pip install essentia)", file=sys.stderr)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "essentia"], check=True)
    script = Path(__file__).resolve().parent / "reference.py"
    subprocess.run([str(python), str(script), str(manifest), "--jobs", str(jobs)], check=True)
    results: dict[str, Any] = json.loads((manifest.parent / "essentia.json").read_text())
    return results


def files_of(track: dict[str, Any]) -> dict[str, str]:
    """Return label -> path under the set's folder of a track: the shipped file and its codecs."""
    return {"original": track["file"], **track.get("codecs", {})}


def run_tools(root: Path, tracks: list[dict[str, Any]], jobs: int,
              fresh: bool) -> dict[tuple[str, str], Estimate]:
    """Run both tools on every file of every track; return (tool, relative path) -> estimate."""
    cache_path = root / "librosa.json"
    cache = {} if fresh or not cache_path.exists() else json.loads(cache_path.read_text())
    results: dict[tuple[str, str], Estimate] = {}
    todo = []
    for track in tracks:
        for relative in files_of(track).values():
            stamp = {"bytes": (root / relative).stat().st_size, "librosa": version("librosa")}
            cached = cache.get(relative)
            if cached is not None and cached.pop("stamp", None) == stamp:
                results[("librosa", relative)] = Estimate(**cached)
            else:
                todo.append(("librosa", str(root / relative)))
            todo.append(("tunescout", str(root / relative)))
    print(f"analysing {len(todo)} files ({len(tracks)} tracks, {len(results)} librosa results "
          f"cached) in {jobs} processes", file=sys.stderr)
    seconds = dict.fromkeys(TOOLS, 0.0)
    with multiprocessing.get_context("fork").Pool(jobs, initializer=_init_worker) as pool:
        for done, (tool, path, estimate, spent) in enumerate(pool.imap_unordered(_job, todo), 1):
            relative = str(Path(path).relative_to(root))
            results[(tool, relative)] = Estimate(**estimate)
            seconds[tool] += spent
            if done % 20 == 0 or done == len(todo):
                print(f"  {done}/{len(todo)} files", file=sys.stderr)
    _save_librosa_cache(cache_path, root, results, version("librosa"))
    counts = {tool: sum(1 for t, _ in todo if t == tool) for tool in TOOLS}
    print("  cpu time per file: " + ", ".join(
        f"{tool} {spent / counts[tool]:.1f} s" if counts[tool] else f"{tool} cached"
        for tool, spent in seconds.items()), file=sys.stderr)
    return results


def _save_librosa_cache(path: Path, root: Path, results: dict[tuple[str, str], Estimate],
                        librosa_version: str) -> None:
    """Write librosa's results with the file size and librosa version they hold for."""
    cache = {relative: {**estimate.__dict__, "stamp": {"bytes": (root / relative).stat().st_size,
                                                       "librosa": librosa_version}}
             for (tool, relative), estimate in sorted(results.items())
             if tool == "librosa" and estimate.error is None}
    path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")


# --- scoring -----------------------------------------------------------------------------------


def within(bpm: float | None, reference: float, tolerance: float = TEMPO_TOLERANCE) -> bool:
    """Tell whether a tempo is within `tolerance` (relative) of the reference."""
    return bpm is not None and abs(bpm - reference) <= tolerance * reference


def within_octave(bpm: float | None, reference: float) -> bool:
    """Tell whether a tempo is within 4 % of the reference, its double or its half."""
    return any(within(bpm, reference * factor) for factor in (1.0, 2.0, 0.5))


def relation(bpm: float | None, reference: float) -> str:
    """Name how a tempo relates to the reference: "ok", "×2", "×3/2", ..., or the bare ratio."""
    if bpm is None:
        return "none"
    if within(bpm, reference):
        return "ok"
    for name, factor in RATIOS.items():
        if within(bpm, reference * factor):
            return name
    return f"×{bpm / reference:.2f}"


def mirex(key: str | None, mode: str | None, ref_key: str, ref_mode: str) -> float:
    """Return mir_eval's weighted key score of an estimate against the reference.

    1 for the same key; 0.5 for the reference's fifth above in the same mode; 0.3 for the
    relative key (C major against A minor and back); 0.2 for the parallel key (C major, C minor).
    """
    if key is None or mode is None:
        return 0.0
    est, ref = PITCHES[key], PITCHES[ref_key]
    if mode == ref_mode:
        return 1.0 if est == ref else 0.5 if (est - ref) % 12 == 7 else 0.0
    if est == ref:
        return 0.2
    if ref_mode == "major" and (ref - est) % 12 == 3:
        return 0.3
    return 0.3 if ref_mode == "minor" and (est - ref) % 12 == 3 else 0.0


def codec_consistency(estimates: dict[str, Estimate]) -> tuple[bool, bool]:
    """Return (tempo within 1 % across every encoding, key and mode identical across them)."""
    tempi = [e.bpm for e in estimates.values() if e.bpm is not None]
    tempo_ok = len(tempi) == len(estimates) and max(tempi) <= min(tempi) * (1 + CODEC_TEMPO_TOLERANCE)
    key_ok = len({(e.key, e.mode) for e in estimates.values()}) == 1
    return tempo_ok, key_ok


# --- reporting ---------------------------------------------------------------------------------


@dataclass
class Scores:
    """One tool's figures over the set."""

    tempo: float
    tempo_octave: float
    key: float
    key_exact: float
    codecs: float
    codec_tempo: float
    codec_key: float
    errors: int


def score(tool: str, tracks: list[dict[str, Any]], essentia: dict[str, Any],
          results: dict[tuple[str, str], Estimate]) -> Scores:
    """Compute one tool's figures: shares of tracks, mean MIREX score, shares of codec tracks."""
    tempo = octave = key = exact = 0.0
    for track in tracks:
        ref, mine = essentia[track["id"]], results[(tool, track["file"])]
        tempo += within(mine.bpm, ref["bpm"])
        octave += within_octave(mine.bpm, ref["bpm"])
        points = mirex(mine.key, mine.mode, ref["key"], ref["scale"])
        key += points
        exact += points == 1.0
    coded = [_codec_estimates(tool, t, results) for t in tracks if "codecs" in t]
    checks = [codec_consistency(c) for c in coded]
    n, m = len(tracks), max(1, len(coded))
    errors = sum(1 for (t, _), e in results.items() if t == tool and e.error)
    return Scores(tempo / n, octave / n, key / n, exact / n, sum(a and b for a, b in checks) / m,
                  sum(a for a, _ in checks) / m, sum(b for _, b in checks) / m, errors)


def _codec_estimates(tool: str, track: dict[str, Any],
                     results: dict[tuple[str, str], Estimate]) -> dict[str, Estimate]:
    """Return encoding label -> the tool's estimate for every file of one track."""
    return {label: results[(tool, relative)] for label, relative in files_of(track).items()}


def print_table(scores: dict[str, Scores], tracks: list[dict[str, Any]]) -> None:
    """Print the figures of both tools side by side, with the issue's targets."""
    n, coded = len(tracks), sum(1 for t in tracks if "codecs" in t)
    rows = [
        (f"tempo within 4 % of Essentia ({n} tracks)", "tempo", "≥ 85 %", True),
        ("tempo within 4 %, allowing ×2 and ×½", "tempo_octave", "", True),
        ("key, MIREX weighted score", "key", "≥ 0.80", False),
        ("key identical to Essentia's", "key_exact", "", True),
        (f"codec consistency ({coded} tracks × {1 + len(tracks[0].get('codecs', {}))} files)",
         "codecs", "100 %", True),
        ("  tempo within 1 % across encodings", "codec_tempo", "", True),
        ("  key identical across encodings", "codec_key", "", True),
    ]
    print(f"\n{'':50} {'tunescout':>10} {'librosa':>10}   target")
    for label, field, target, percent in rows:
        cells = [getattr(scores[tool], field) for tool in TOOLS]
        text = [f"{v:.0%}" if percent else f"{v:.2f}" for v in cells]
        print(f"{label:50} {text[0]:>10} {text[1]:>10}   {target}")
    if any(s.errors for s in scores.values()):
        print(f"{'files a tool could not analyse':50} "
              + " ".join(f"{scores[t].errors:>10}" for t in TOOLS))


def print_failures(tracks: list[dict[str, Any]], essentia: dict[str, Any],
                   results: dict[tuple[str, str], Estimate]) -> None:
    """Print how each tool's tempo misses fall (×2, ×3/2, ...) and every codec inconsistency."""
    for tool in TOOLS:
        kinds: dict[str, list[str]] = {}
        for track in tracks:
            kind = relation(results[(tool, track["file"])].bpm, essentia[track["id"]]["bpm"])
            if kind in RATIOS or kind == "none":
                kinds.setdefault(kind, []).append(track["id"])
            elif kind != "ok":
                kinds.setdefault("other", []).append(f"{track['id']} ({kind})")
        ordered = sorted(kinds.items(), key=lambda kv: -len(kv[1]))
        listing = "; ".join(f"{kind} {len(ids)}" for kind, ids in ordered)
        print(f"\n{tool} tempo misses by ratio to Essentia: {listing or 'none'}")
        for kind, ids in ordered:
            print(f"  {kind:6} {', '.join(ids)}")
    print()
    for tool in TOOLS:
        for track in (t for t in tracks if "codecs" in t):
            estimates = _codec_estimates(tool, track, results)
            if codec_consistency(estimates) != (True, True):
                spread = ", ".join(f"{label} {_bpm(e.bpm)} {e.key} {e.mode}"
                                   for label, e in estimates.items())
                print(f"{tool} codec inconsistency, {track['id']}: {spread}")


def print_tracks(tracks: list[dict[str, Any]], essentia: dict[str, Any],
                 results: dict[tuple[str, str], Estimate]) -> None:
    """Print every track: Essentia's tempo (and confidence, 0-5.32) and key, each tool's, how the
    tempo relates to Essentia's, and each key's MIREX points."""
    width = max(len(track["id"]) for track in tracks)
    print(f"\n{'track':{width}} {'essentia':>8} {'conf':>4} {'tunescout':>14} {'librosa':>14}   "
          f"{'essentia':9} {'tunescout':12} {'librosa':12}")
    for track in tracks:
        ref = essentia[track["id"]]
        cells, keys = [], []
        for tool in TOOLS:
            mine = results[(tool, track["file"])]
            cells.append(f"{_bpm(mine.bpm)} {relation(mine.bpm, ref['bpm']):>6}")
            points = mirex(mine.key, mine.mode, ref["key"], ref["scale"])
            keys.append(f"{mine.key or '-'} {(mine.mode or '')[:3]} {points:.1f}")
        print(f"{track['id']:{width}} {ref['bpm']:8.1f} {ref['bpm_confidence']:4.1f} {cells[0]:>14} "
              f"{cells[1]:>14}   {ref['key'] + ' ' + ref['scale'][:3]:9} {keys[0]:12} {keys[1]:12}")


def _bpm(bpm: float | None) -> str:
    return "-" if bpm is None else f"{bpm:.1f}"


def coherence(tracks: list[dict[str, Any]], results: dict[tuple[str, str], Estimate],
              length: int) -> tuple[float, float]:
    """Return (share of a seed's picks from its own album, the share a random pick would have).

    Every track is a seed once, for a playlist with the default rules but `length`, built by the
    daemon's engine over tunescout's features of the shipped files. The album (and, as every
    soundtrack here is one composer's or one band's, the artist) is the source package.
    """
    from tunescout.playlists.catalogue import Catalogue, Track
    from tunescout.playlists.engine import similar_playlist
    from tunescout.playlists.request import Rules

    library = []
    for track in tracks:
        mine = results[("tunescout", track["file"])]
        tags = {"album": track["album"], "artist": track["album"], "title": track["id"]}
        library.append(Track(Path(track["file"]), mine.digest or track["id"], mine.duration_s,
                             tags, mine.groups or {}))
    catalogue = Catalogue.build(library)
    shares, chances = [], []
    for seed, track in enumerate(tracks):
        picks = similar_playlist(catalogue, [seed], Rules(length=length)).tracks
        same = sum(1 for pick in picks if pick.album == track["album"])
        shares.append(same / max(1, len(picks)))
        album_size = sum(1 for other in tracks if other["album"] == track["album"])
        chances.append((album_size - 1) / (len(tracks) - 1))
    return sum(shares) / len(shares), sum(chances) / len(chances)


def print_coherence(tracks: list[dict[str, Any]], results: dict[tuple[str, str], Estimate]) -> None:
    """Print the album coherence of similar-playlists at the default length and at 10 tracks.

    The default album spacing caps the share: about one pick in `album_spacing` can be from the
    seed's album, and no more than the album's other tracks; the cap is printed beside it.
    """
    from tunescout.playlists.request import Rules

    defaults = Rules()
    print()
    for length in (defaults.length, 10):
        share, chance = coherence(tracks, results, length)
        cap = sum(min(sum(1 for o in tracks if o["album"] == t["album"]) - 1,
                      -(-length // max(1, defaults.album_spacing))) for t in tracks) / len(tracks) / length
        print(f"coherence, default rules, {length} tracks: {share:.0%} of a seed's picks from its own "
              f"album, {chance:.0%} at random (×{share / chance:.1f}); album spacing "
              f"{defaults.album_spacing} allows about {cap:.0%}")


def print_copies(tracks: list[dict[str, Any]], results: dict[tuple[str, str], Estimate]) -> None:
    """Print how the playlists' "same recording" test (playlists/copies.py) groups every file."""
    from tunescout.playlists.catalogue import Catalogue, Track

    files = [(t["id"], rel) for t in tracks for rel in files_of(t).values()]
    library = [Track(Path(rel), (e := results[("tunescout", rel)]).digest or rel, e.duration_s,
                     {"title": rel}, e.groups or {}) for _, rel in files]
    groups = {frozenset(files[i][0] for i in m) for m in Catalogue.build(library).recording_members}
    merged = sum(1 for g in groups if len(g) > 1)
    split = sum(1 for t in tracks if sum(t["id"] in g for g in groups) > 1)
    print(f"same recording: {len(files)} files of {len(tracks)} tracks make {len(groups)} recordings; "
          f"{merged} hold two tracks, {split} tracks are split")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"default {DEFAULT_DEST}")
    parser.add_argument("--essentia-venv", type=Path, default=DEFAULT_ESSENTIA_VENV)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="measure librosa again, not from its cache")
    parser.add_argument("--verbose", action="store_true", help="list every track")
    args = parser.parse_args()
    os.environ.update(ONE_THREAD)  # before any numpy import: the workers inherit it
    manifest = args.dest.expanduser().resolve() / "manifest.json"
    if not manifest.exists():
        sys.exit(f"no evaluation set at {manifest.parent}: run bench/evalset.py first")
    tracks = json.loads(manifest.read_text())["tracks"]
    essentia = essentia_results(manifest, args.essentia_venv.expanduser(), args.jobs)
    results = run_tools(manifest.parent, tracks, max(1, args.jobs), args.fresh)
    scores = {tool: score(tool, tracks, essentia, results) for tool in TOOLS}
    if args.verbose:
        print_tracks(tracks, essentia, results)
    print_failures(tracks, essentia, results)
    print_table(scores, tracks)
    print_coherence(tracks, results)
    print_copies(tracks, results)


if __name__ == "__main__":
    main()
