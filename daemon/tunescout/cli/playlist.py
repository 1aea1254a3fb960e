"""`tunescout playlist`: similar to seeds, a path from A to B, or a tag query, as M3U8 or JSON.

cli/main.py wires it in with `add_playlist_parser(sub)`, imported only when the command is
`playlist` (its options need numpy).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunescout.cli.output import Exit, err, out_bytes
from tunescout.config import Config
from tunescout.errors import PlaylistError
from tunescout.playlists.atomic import atomic_write
from tunescout.playlists.catalogue import Catalogue, TrackNotFound
from tunescout.playlists.engine import NoMatch
from tunescout.playlists.explain import Playlist
from tunescout.playlists.history import recent_digests, record_history
from tunescout.playlists.keeper import build_from_spec, tracks_from_rows
from tunescout.playlists.render import explain_text, outside, relative_folder, render
from tunescout.playlists.request import (
    FORMATS,
    ORDERS,
    PlaylistSpec,
    Rules,
    parse_preference,
    parse_range,
    parse_weights,
)
from tunescout.store.reader import StoreReader


def default_history(env: Mapping[str, str]) -> Path:
    """Return where the command line remembers its playlists: the user's XDG state folder."""
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", "~")).expanduser() / ".local" / "state"
    return base / "tunescout" / "playlist-history.json"


def add_playlist_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `playlist` to the command's subparsers and return it."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "playlist", help="build a playlist from the analysed library",
        description="Build a playlist: similar to --seed tracks, a path --from A --to B, or the "
                    "tracks of a --query. Ranges are FROM-TO; write negative ones as --loudness=-14..-8.")
    source = parser.add_argument_group("what to build (one of)")
    source.add_argument("--seed", action="append", type=Path, default=[], metavar="PATH",
                        help="a track the playlist is similar to (repeat for several)")
    source.add_argument("--from", dest="path_from", type=Path, metavar="A", help="start of a path")
    source.add_argument("--to", dest="path_to", type=Path, metavar="B", help="end of a path")
    source.add_argument("--query", metavar="EXPR", help="tracks matching a tag expression")
    rules = parser.add_argument_group("rules")
    rules.add_argument("--length", type=int, default=30, metavar="N")
    rules.add_argument("--bpm-tolerance", type=float, metavar="PCT",
                       help="tempo within PCT %% of a seed (along a path: of the previous track)")
    rules.add_argument("--bpm", metavar="MIN-MAX", help="tempo range; a ramp goes from MIN to MAX")
    rules.add_argument("--key-compatible", action="store_true",
                       help="each step to the same key, a Camelot neighbour or the relative key")
    rules.add_argument("--duration", metavar="MIN-MAX", help="seconds or m:ss, e.g. 2:00-7:30")
    rules.add_argument("--where", action="append", default=[], metavar="EXPR",
                       help="tag expression, e.g. 'genre=rock and not artist~live' (repeat: and)")
    rules.add_argument("--loudness", metavar="MIN..MAX", help="integrated loudness in LUFS")
    rules.add_argument("--order", choices=ORDERS, default="flow")
    rules.add_argument("--artist-spacing", type=int, default=Rules.artist_spacing, metavar="N",
                       help="no artist twice within N tracks (default %(default)s)")
    rules.add_argument("--album-spacing", type=int, default=Rules.album_spacing, metavar="N",
                       help="no album twice within N tracks (default %(default)s)")
    rules.add_argument("--min-duration", type=float, default=Rules.min_duration_s, metavar="SECONDS",
                       help="leave out shorter tracks (default %(default)g; 0 keeps every length)")
    rules.add_argument("--include-suspect", action="store_true",
                       help="also use files the analysis could decode only in part")
    rules.add_argument("--prefer", metavar="ORDER", default=",".join(Rules.prefer),
                       help="which copy of a recording to use (default %(default)s)")
    rules.add_argument("--weights", metavar="G=W,...", help="e.g. timbre=1,rhythm=1,tonal=0.5,loudness=0.5")
    rules.add_argument("--exclude-recent", type=int, default=0, metavar="K",
                       help="leave out tracks of the last K playlists written with --output")
    output = parser.add_argument_group("output")
    output.add_argument("--explain", action="store_true", help="say why each track is there")
    output.add_argument("--format", choices=FORMATS, default=None)
    output.add_argument("--json", action="store_true", help="same as --format json")
    output.add_argument("--output", "-o", type=Path, metavar="FILE", help="write here (default stdout)")
    output.add_argument("--relative", action="store_true", help="paths relative to FILE's folder")
    output.add_argument("--music-directory", type=Path, metavar="DIR",
                        help="MPD's music_directory, for --format mpd (default: [radio] "
                        "music_directory, else the only library path)")
    output.add_argument("--name", help="playlist name (default: the output file's name)")
    output.add_argument("--history", type=Path, metavar="FILE",
                        help="playlist history file (default: $XDG_STATE_HOME/tunescout/…)")
    output.add_argument("--no-history", action="store_true", help="do not remember this playlist")
    return parser


def spec_from_args(args: argparse.Namespace) -> PlaylistSpec:
    """Turn the command line into a PlaylistSpec; raise PlaylistError for a bad request."""
    chosen = [bool(args.seed), args.path_from is not None or args.path_to is not None, bool(args.query)]
    if sum(chosen) != 1:
        raise PlaylistError("give --seed PATH (one or more), --from A --to B, or --query EXPR")
    if (args.path_from is None) != (args.path_to is None):
        raise PlaylistError("a path needs both --from and --to")
    if args.relative and args.output is None:
        raise PlaylistError("--relative needs --output: paths are relative to its folder")
    where = " and ".join(f"({w})" for w in args.where) or None
    rules = Rules(
        length=args.length, order=args.order,
        bpm_range=parse_range(args.bpm, "--bpm") if args.bpm else None,
        bpm_tolerance_pct=args.bpm_tolerance, key_compatible=args.key_compatible,
        duration_range_s=parse_range(args.duration, "--duration", clock=True) if args.duration else None,
        loudness_range_lufs=parse_range(args.loudness, "--loudness") if args.loudness else None,
        where=where, artist_spacing=args.artist_spacing, album_spacing=args.album_spacing,
        weights=parse_weights(args.weights) if args.weights else dict(Rules().weights),
        min_duration_s=args.min_duration, include_suspect=args.include_suspect,
        prefer=parse_preference(args.prefer),
    )
    rules.check()
    fmt = "json" if args.json else args.format
    if fmt is None:
        fmt = "json" if args.output is not None and args.output.suffix.lower() == ".json" else "m3u8"
    output = Path(os.path.abspath(args.output)) if args.output else Path("-")
    return PlaylistSpec(
        name=args.name or (output.stem if args.output else "tunescout"), output=output, rules=rules,
        seeds=tuple(args.seed), query=args.query, path_from=args.path_from, path_to=args.path_to,
        format=fmt, relative=args.relative, exclude_recent=args.exclude_recent,
        music_directory=Path(os.path.abspath(args.music_directory)) if args.music_directory else None,
    )


def cmd_playlist(args: argparse.Namespace, config: Config) -> int:
    """Build one playlist and print or write it."""
    try:
        spec = spec_from_args(args)
    except PlaylistError as exc:
        err(str(exc))
        return Exit.USAGE
    if spec.format == "mpd" and spec.music_directory is None:
        fallback = (config.radio.music_directory if config.radio else None) or (
            config.library.paths[0] if len(config.library.paths) == 1 else None)
        if fallback is None:
            err("--format mpd needs --music-directory (MPD's music_directory)")
            return Exit.USAGE
        spec = replace(spec, music_directory=fallback)
    history = args.history or default_history(os.environ)
    store = StoreReader.open(config.store.path)
    try:
        rows = store.playlist_tracks()
    finally:
        store.close()
    if not rows:
        err(f"no analysed tracks in {config.store.path} yet: start the daemon or run tunescout scan")
        return Exit.FAILED
    try:
        playlist = _build(Catalogue.build(tracks_from_rows(rows)), spec, history)
    except TrackNotFound as exc:
        err(str(exc))
        return Exit.NOT_FOUND
    except NoMatch as exc:
        err(str(exc))
        return Exit.FAILED
    except PlaylistError as exc:
        err(str(exc))
        return Exit.USAGE
    return _emit(playlist, spec, args, history)


def _build(cat: Catalogue, spec: PlaylistSpec, history: Path) -> Playlist:
    exclude = recent_digests(history, spec.exclude_recent)
    return build_from_spec(cat, spec, exclude)


def _emit(playlist: Playlist, spec: PlaylistSpec, args: argparse.Namespace, history: Path) -> int:
    for note in playlist.notes:
        err(note)
    if not playlist.entries:
        err("no track satisfies the rules")
        return Exit.FAILED
    # a list a hard rule cut short is still written, but the command says it failed to fill it
    done = Exit.FAILED if playlist.stopped_by is not None else Exit.OK
    folder = relative_folder(spec)
    if folder is not None:
        left = outside(playlist, folder)
        if left:
            where = "MPD's music_directory" if spec.format == "mpd" else "the playlist's folder"
            err(f"warning: {len(left)} tracks are outside {where} {folder} (such as {left[0]})"
                 + ("; left out" if spec.format == "mpd" else "; MPD resolves relative paths against "
                    "its music_directory: use --format mpd"))
    data = render(playlist, spec.name, spec.format, relative_to=folder, explain=args.explain)
    if args.output is None:
        out_bytes(data)
        return done
    try:
        atomic_write(spec.output, data)
        if not args.no_history:
            record_history(history, spec.name, playlist, time.time())
    except PlaylistError as exc:
        err(str(exc))
        return Exit.FAILED
    if args.explain and spec.format != "json":
        for entry in playlist.entries:
            sys.stderr.write(f"{entry.track.path}\n  {explain_text(entry)}\n")
    err(f"wrote {len(playlist.entries)} tracks to {spec.output}")
    return done
