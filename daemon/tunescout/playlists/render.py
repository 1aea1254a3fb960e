"""Render playlists as M3U8 or JSON, with the reasons `--explain` shows, and read M3U8 back.

An M3U8 file is UTF-8 text, except that each path line holds the file name's exact bytes, so a
name that is not UTF-8 still resolves on the server that reads it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunescout.models import FEATURE_GROUPS
from tunescout.playlists.catalogue import Track
from tunescout.playlists.explain import Entry, Playlist
from tunescout.playlists.request import PlaylistSpec
from tunescout.units import path_json


def _line(text: str) -> str:
    """Return text safe for one M3U line: no line breaks."""
    return " ".join(text.split())


def _display(track: Track) -> str:
    return _line(f"{track.artist} - {track.title}" if track.artist else track.title)


def _written_path(path: Path, folder: Path | None) -> bytes:
    """Return the bytes of a path as written: absolute, or relative to the playlist's folder."""
    raw = os.fsencode(path)
    if folder is None:
        return raw
    return os.path.relpath(raw, os.fsencode(os.path.abspath(folder)))


def explain_text(entry: Entry) -> str:
    """Return one line saying why a track is in the playlist."""
    why = entry.why
    groups = ", ".join(f"{g} {why.by_group[g]:.2f}" for g in FEATURE_GROUPS if g in why.by_group)
    parts = [f"{why.reference}: distance {why.distance:.2f} ({groups})"]
    if why.bpm is not None:
        step = f" ({why.bpm_step_pct:+.1f} %)" if why.bpm_step_pct is not None else ""
        if why.bpm_step_pct is not None and why.bpm_octave:
            step = f" ({why.bpm_step_pct:+.1f} % from {'double' if why.bpm_octave > 0 else 'half'} time)"
        parts.append(f"{why.bpm:.1f} BPM{step}")
    if why.key_step:
        parts.append(f"key {why.key_step}")
    elif why.key:
        parts.append(f"key {why.key}")
    if why.relaxed:
        parts.append(f"{why.relaxed} relaxed: nothing else fitted")
    return "; ".join(parts)


def render_m3u8(playlist: Playlist, name: str, *, relative_to: Path | None = None,
                explain: bool = False) -> bytes:
    """Return an extended M3U (UTF-8) playlist: #EXTINF:seconds,Artist - Title then the path."""
    lines = [b"#EXTM3U", f"#PLAYLIST:{_line(name)}".encode()]
    for note in playlist.notes:
        lines.append(f"# {_line(note)}".encode())
    for entry in playlist.entries:
        track = entry.track
        seconds = round(track.duration_s) if track.duration_s is not None else -1
        lines.append(f"#EXTINF:{seconds},{_display(track)}".encode())
        if explain:
            lines.append(f"# {_line(explain_text(entry))}".encode())
        lines.append(_written_path(track.path, relative_to))
    return b"\n".join(lines) + b"\n"


def playlist_data(playlist: Playlist, name: str, *, relative_to: Path | None = None,
                  explain: bool = False) -> dict[str, Any]:
    """Return the playlist as JSON-ready data for scripts."""
    tracks = []
    for entry in playlist.entries:
        track = entry.track
        item: dict[str, Any] = {
            **path_json(_written_path(track.path, relative_to)),
            "digest": track.digest, "duration_s": track.duration_s, "artist": track.artist,
            "title": track.title, "album": track.album, "tempo_bpm": track.tempo_bpm,
            "camelot": track.camelot,
        }
        if explain:
            why = entry.why
            item["why"] = {
                "reference": why.reference, "distance": _finite(why.distance),
                "by_group": {g: _finite(d) for g, d in why.by_group.items()},
                "bpm_step_pct": why.bpm_step_pct, "bpm_octave": why.bpm_octave,
                "key_step": why.key_step, "relaxed": why.relaxed,
                "text": explain_text(entry),
            }
        tracks.append(item)
    return {
        "name": name, "mode": playlist.mode,
        "seeds": [{**path_json(s.path), "artist": s.artist, "title": s.title} for s in playlist.seeds],
        "notes": list(playlist.notes), "stopped_by": playlist.stopped_by, "tracks": tracks,
    }


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def render_json(playlist: Playlist, name: str, *, relative_to: Path | None = None,
                explain: bool = False) -> bytes:
    data = playlist_data(playlist, name, relative_to=relative_to, explain=explain)
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")


def relative_folder(spec: PlaylistSpec) -> Path | None:
    """Return the folder a spec's paths are written relative to: MPD's music directory for
    format "mpd" (MPD resolves playlist entries there, never against the playlist's folder),
    the playlist's own folder with `relative`, else None (absolute paths)."""
    if spec.format == "mpd":
        return spec.music_directory
    return spec.output.parent if spec.relative else None


def outside(playlist: Playlist, folder: Path) -> list[Path]:
    """Return the tracks whose path relative to `folder` climbs out of it (`../`)."""
    base = os.fsencode(os.path.abspath(folder))
    real = os.path.realpath(base)
    return [t.path for t in playlist.tracks
            if _written_path(t.path, folder).startswith(b"../")
            and not os.path.realpath(os.fsencode(t.path)).startswith(real.rstrip(b"/") + b"/")
            and not os.fsencode(t.path).startswith(base.rstrip(b"/") + b"/")]


def for_mpd(playlist: Playlist, music_directory: Path) -> tuple[Playlist, list[Path]]:
    """Return the playlist without the tracks MPD cannot load (outside its music directory)."""
    left_out = set(outside(playlist, music_directory))
    if not left_out:
        return playlist, []
    kept = tuple(e for e in playlist.entries if e.track.path not in left_out)
    note = f"{len(left_out)} tracks left out: outside MPD's music_directory {music_directory}"
    return replace(playlist, entries=kept, notes=(*playlist.notes, note)), sorted(left_out)


def render(playlist: Playlist, name: str, fmt: str, *, relative_to: Path | None = None,
           explain: bool = False) -> bytes:
    """Return the playlist's bytes in `fmt` ("m3u8", "mpd": an .m3u relative to relative_to, or "json")."""
    if fmt == "mpd" and relative_to is not None:
        mpd_playlist, _ = for_mpd(playlist, relative_to)
        return render_m3u8(mpd_playlist, name, relative_to=relative_to, explain=explain)
    if fmt == "json":
        return render_json(playlist, name, relative_to=relative_to, explain=explain)
    return render_m3u8(playlist, name, relative_to=relative_to, explain=explain)


@dataclass(frozen=True)
class M3UItem:
    """One entry read back from an M3U8 file."""

    path: Path
    duration_s: int | None
    display: str


def read_m3u8(path: Path) -> list[M3UItem]:
    """Parse an extended M3U file; relative paths resolve against the file's folder."""
    folder = os.fsencode(os.path.abspath(path.parent))
    items: list[M3UItem] = []
    duration: int | None = None
    display = ""
    for raw in path.read_bytes().splitlines():
        line = raw.rstrip(b"\r")
        if line.startswith(b"#EXTINF:"):
            head, _, title = line[8:].decode("utf-8", "replace").partition(",")
            number = int(head.strip()) if head.strip().lstrip("-").isdigit() else -1
            duration, display = (number if number >= 0 else None), title
        elif line and not line.startswith(b"#"):
            full = line if os.path.isabs(line) else os.path.normpath(os.path.join(folder, line))
            items.append(M3UItem(Path(os.fsdecode(full)), duration, display))
            duration, display = None, ""
    return items
