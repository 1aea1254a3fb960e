"""Write playlists (M3U8, JSON) atomically, keep their history, and rebuild the daemon's playlists.

An M3U8 file is UTF-8 text, except that each path line holds the file name's exact bytes, so a
name that is not UTF-8 still resolves on the server that reads it. Files are replaced atomically
(a temp file in the same folder, fsync, rename, fsync the folder): a music server scanning the
folder sees the old playlist or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from tunescout.errors import PlaylistError
from tunescout.models import FEATURE_GROUPS
from tunescout.playlists.engine import (
    ORDERS,
    Catalogue,
    Entry,
    Playlist,
    Rules,
    Track,
    parse_range,
    path_playlist,
    query_playlist,
    similar_playlist,
)
from tunescout.playlists.tagquery import parse_where
from tunescout.units import path_json

log = logging.getLogger(__name__)

HISTORY_KEEP = 100  # playlists remembered for "not in the last K playlists"
FORMATS = ("m3u8", "json")


# --- rendering -----------------------------------------------------------------------------------


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
        parts.append(f"{why.bpm:.1f} BPM{step}")
    if why.key_step:
        parts.append(f"key {why.key_step}")
    elif why.key:
        parts.append(f"key {why.key}")
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
                "bpm_step_pct": why.bpm_step_pct, "key_step": why.key_step,
                "text": explain_text(entry),
            }
        tracks.append(item)
    return {
        "name": name, "mode": playlist.mode,
        "seeds": [{**path_json(s.path), "artist": s.artist, "title": s.title} for s in playlist.seeds],
        "notes": list(playlist.notes), "tracks": tracks,
    }


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def render_json(playlist: Playlist, name: str, *, relative_to: Path | None = None,
                explain: bool = False) -> bytes:
    data = playlist_data(playlist, name, relative_to=relative_to, explain=explain)
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")


def render(playlist: Playlist, name: str, fmt: str, *, relative_to: Path | None = None,
           explain: bool = False) -> bytes:
    """Return the playlist's bytes in `fmt` ("m3u8" or "json")."""
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


# --- atomic writes -------------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file in the same folder, fsync, rename, fsync the folder.

    A new file gets mode 0644 (the music server usually runs as another user); a replaced one
    keeps its mode.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchmod(handle.fileno(), mode)
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_folder(folder)
    except OSError as exc:
        raise PlaylistError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable: a power cut after this keeps the new playlist."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- history: which tracks recent playlists held -------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    name: str
    at: float
    digests: tuple[str, ...]


def read_history(path: Path) -> list[HistoryEntry]:
    """Return the remembered playlists, oldest first; a missing or unreadable file is empty."""
    try:
        data = json.loads(path.read_bytes())
        return [HistoryEntry(str(e["name"]), float(e["at"]), tuple(str(d) for d in e["digests"]))
                for e in data["playlists"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable playlist history %s: %s", path, exc,
                    extra={"HISTORY_PATH": str(path), "EVENT": "history_unreadable"})
        return []


def recent_digests(path: Path, count: int) -> frozenset[str]:
    """Return the digests of every track in the last `count` playlists."""
    if count <= 0:
        return frozenset()
    return frozenset(d for entry in read_history(path)[-count:] for d in entry.digests)


def record_history(path: Path, name: str, playlist: Playlist, now: float, keep: int = HISTORY_KEEP) -> None:
    """Append a playlist to the history (atomically), keeping the last `keep`."""
    entries = read_history(path)
    entries.append(HistoryEntry(name, now, tuple(t.digest for t in playlist.tracks)))
    data = {"version": 1, "playlists": [
        {"name": e.name, "at": e.at, "digests": list(e.digests)} for e in entries[-keep:]
    ]}
    atomic_write(path, json.dumps(data).encode())


# --- playlists the daemon keeps ------------------------------------------------------------------


@dataclass(frozen=True)
class PlaylistSpec:
    """One `[[playlists]]` table: what to build and where to write it."""

    name: str
    output: Path
    rules: Rules = field(default_factory=Rules)
    seeds: tuple[Path, ...] = ()
    query: str | None = None
    path_from: Path | None = None
    path_to: Path | None = None
    format: str = "m3u8"
    relative: bool = False
    exclude_recent: int = 0


class PlaylistSource(Protocol):
    """What rebuilding reads: the Store's one playlist read."""

    def playlist_tracks(self) -> list[dict[str, Any]]: ...


def tracks_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Track]:
    """Return Tracks from `Store.playlist_tracks()` rows."""
    return [Track(Path(r["path"]), str(r["digest"]), r.get("duration_s"), r.get("tags") or {},
                  r.get("features") or {}) for r in rows]


def build_from_spec(cat: Catalogue, spec: PlaylistSpec, exclude: frozenset[str] = frozenset()) -> Playlist:
    """Build the playlist a spec describes; raise PlaylistError when it cannot be built."""
    rules = replace(spec.rules, exclude_digests=spec.rules.exclude_digests | exclude)
    if spec.path_from is not None and spec.path_to is not None:
        return path_playlist(cat, cat.index(spec.path_from), cat.index(spec.path_to), rules)
    if spec.query is not None:
        return query_playlist(cat, spec.query, rules)
    return similar_playlist(cat, [cat.index(p) for p in spec.seeds], rules)


def rebuild_playlists(store: PlaylistSource, specs: Sequence[PlaylistSpec], now: float,
                      history: Path | None = None) -> list[Path]:
    """Rebuild every configured playlist; write (atomically) those whose content changed.

    Returns the files written. A playlist that cannot be built (its seed left the library) is
    logged and its old file kept: the next rebuild tries again.
    """
    if not specs:
        return []
    cat = Catalogue.build(tracks_from_rows(store.playlist_tracks()))
    written: list[Path] = []
    for spec in specs:
        try:
            exclude = recent_digests(history, spec.exclude_recent) if history else frozenset()
            playlist = build_from_spec(cat, spec, exclude)
            folder = spec.output.parent if spec.relative else None
            data = render(playlist, spec.name, spec.format, relative_to=folder)
            if _unchanged(spec.output, data):
                continue
            atomic_write(spec.output, data)
            if history is not None:
                record_history(history, spec.name, playlist, now)
        except PlaylistError as exc:
            log.warning("playlist %s not rebuilt: %s", spec.name, exc,
                        extra={"PLAYLIST": spec.name, "EVENT": "playlist_failed"})
            continue
        log.info("wrote playlist %s (%d tracks)", spec.output, len(playlist.entries),
                 extra={"PLAYLIST": spec.name, "PLAYLIST_PATH": str(spec.output),
                        "TRACKS": len(playlist.entries), "EVENT": "playlist_written"})
        written.append(spec.output)
    return written


def _unchanged(path: Path, data: bytes) -> bool:
    """Return whether the file already holds exactly `data` (rewriting would make servers rescan)."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


class PlaylistKeeper:
    """Decide when to rebuild: after the library has been quiet for `debounce_s`.

    A library that never goes quiet (a first scan) still gets its playlists every
    `MAX_DELAY_FACTOR` debounce periods. The clock is passed in, so tests need no sleeps.
    """

    MAX_DELAY_FACTOR = 10

    def __init__(self, specs: Sequence[PlaylistSpec], debounce_s: float, history: Path | None,
                 now: float) -> None:
        self.specs = tuple(specs)
        self.debounce_s = debounce_s
        self.history = history
        self._first_change: float | None = now  # build once at start
        self._last_change = now

    def note_change(self, now: float) -> None:
        """Call when an analysis was recorded or files left the library."""
        if self._first_change is None:
            self._first_change = now
        self._last_change = now

    def next_due(self) -> float | None:
        """Return when a rebuild could next be due (the caller's clock), or None when idle."""
        if self._first_change is None or not self.specs:
            return None
        return min(self._last_change + self.debounce_s,
                   self._first_change + self.MAX_DELAY_FACTOR * self.debounce_s)

    def due(self, now: float) -> bool:
        if self._first_change is None or not self.specs:
            return False
        quiet = now - self._last_change >= self.debounce_s
        overdue = now - self._first_change >= self.MAX_DELAY_FACTOR * self.debounce_s
        return quiet or overdue

    def rebuild(self, store: PlaylistSource, now: float) -> list[Path]:
        """Rebuild every playlist now and wait for the next change."""
        self._first_change = None
        return rebuild_playlists(store, self.specs, now, self.history)


# --- the [[playlists]] config tables -------------------------------------------------------------

_SPEC_KEYS = (
    "name", "output", "seeds", "query", "from", "to", "length", "order", "bpm", "bpm_tolerance",
    "key_compatible", "duration", "loudness", "where", "artist_spacing", "album_spacing", "weights",
    "format", "relative", "exclude_recent",
)


def parse_playlist_specs(raw: Any, base_dir: Path | None = None) -> tuple[list[PlaylistSpec], list[str]]:
    """Turn the `[[playlists]]` array into specs; return them with every problem as `playlists[i].key: …`."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        return [], ["playlists: expected [[playlists]] tables"]
    specs: list[PlaylistSpec] = []
    problems: list[str] = []
    names: set[str] = set()
    for number, table in enumerate(raw):
        where = f"playlists[{number}]"
        spec, found = _parse_spec(table, base_dir)
        problems.extend(f"{where}.{p}" for p in found)
        if spec is not None:
            if spec.name in names:
                problems.append(f"{where}.name: {spec.name!r} is used by another playlist")
            names.add(spec.name)
            specs.append(spec)
    return specs, problems


def _parse_spec(table: Mapping[str, Any], base_dir: Path | None) -> tuple[PlaylistSpec | None, list[str]]:
    problems: list[str] = []
    for key in table:
        if key not in _SPEC_KEYS:
            close = difflib.get_close_matches(key, _SPEC_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{key}: unknown key{hint}")
    values: dict[str, Any] = {}
    for key, convert in _CONVERTERS.items():
        if key in table:
            try:
                values[key] = convert(table[key], base_dir)
            except (ValueError, PlaylistError) as exc:
                problems.append(f"{key}: {exc}")
    for key in ("name", "output"):
        if key not in table:
            problems.append(f"{key}: required")
    sources = [k for k in ("seeds", "query", "from") if k in table]
    if len(sources) != 1:
        problems.append("seeds: give exactly one of seeds, query, or from + to")
    if ("from" in table) != ("to" in table):
        problems.append("to: a path needs both from and to")
    if problems:
        return None, problems
    return _spec(values), []


def _spec(values: Mapping[str, Any]) -> PlaylistSpec:
    rule_keys = {"length": "length", "order": "order", "bpm": "bpm_range",
                 "bpm_tolerance": "bpm_tolerance_pct", "key_compatible": "key_compatible",
                 "duration": "duration_range_s", "loudness": "loudness_range_lufs", "where": "where",
                 "artist_spacing": "artist_spacing", "album_spacing": "album_spacing",
                 "weights": "weights"}
    rules = Rules(**{attr: values[key] for key, attr in rule_keys.items() if key in values})
    output: Path = values["output"]
    fmt = values.get("format") or ("json" if output.suffix.lower() == ".json" else "m3u8")
    return PlaylistSpec(
        name=values["name"], output=output, rules=rules, seeds=tuple(values.get("seeds", ())),
        query=values.get("query"), path_from=values.get("from"), path_to=values.get("to"),
        format=fmt, relative=values.get("relative", False),
        exclude_recent=values.get("exclude_recent", 0),
    )


def _text(value: Any, _: Path | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def _path(value: Any, base_dir: Path | None) -> Path:
    path = Path(os.path.expanduser(_text(value, base_dir)))
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _paths(value: Any, base_dir: Path | None) -> list[Path]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError('expected a list of files such as ["/srv/music/a.flac"]')
    return [_path(v, base_dir) for v in items]


def _whole(low: int, high: int) -> Any:
    def convert(value: Any, _: Path | None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return value
    return convert


def _number(value: Any, _: Path | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("expected a number, zero or more")
    return float(value)


def _flag(value: Any, _: Path | None) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _range(what: str, clock: bool = False) -> Any:
    def convert(value: Any, _: Path | None) -> tuple[float, float]:
        if isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return float(value[0]), float(value[1])
        if isinstance(value, str):
            return parse_range(value, what, clock=clock)
        raise ValueError(f'expected "FROM-TO" or [FROM, TO], such as "{"2:00-7:00" if clock else "100-130"}"')
    return convert


def _choice(*choices: str) -> Any:
    def convert(value: Any, _: Path | None) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return str(value)
    return convert


def _weights(value: Any, _: Path | None) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError("expected a table such as { timbre = 1, rhythm = 1, tonal = 0.5 }")
    weights = dict(Rules().weights)
    for group, weight in value.items():
        if group not in FEATURE_GROUPS:
            close = difflib.get_close_matches(group, FEATURE_GROUPS, n=1)
            raise ValueError(f"unknown group {group!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        weights[group] = _number(weight, None)
    if not any(w > 0 for w in weights.values()):
        raise ValueError("at least one weight must be above zero")
    return weights


def _expression(value: Any, base_dir: Path | None) -> str:
    text = _text(value, base_dir)
    parse_where(text)  # a typo is reported when the config is read, not at the first rebuild
    return text


_CONVERTERS: dict[str, Any] = {
    "name": _text, "output": _path, "seeds": _paths, "query": _expression, "from": _path, "to": _path,
    "length": _whole(1, 1000), "order": _choice(*ORDERS), "bpm": _range("bpm"),
    "bpm_tolerance": _number, "key_compatible": _flag, "duration": _range("duration", clock=True),
    "loudness": _range("loudness"), "where": _expression, "artist_spacing": _whole(0, 100),
    "album_spacing": _whole(0, 100), "weights": _weights, "format": _choice(*FORMATS),
    "relative": _flag, "exclude_recent": _whole(0, HISTORY_KEEP),
}
