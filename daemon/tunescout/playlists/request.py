"""What a playlist request says, numpy-free so that `config` can import it typed.

The rules (`Rules`), a configured playlist (`PlaylistSpec`), and parsing what people write:
ranges ("100-130", "2:30-6:00"), weights ("timbre=1,tonal=0.5") and the `[[playlists]]` config
tables, whose tag expressions (tagexpr.py, a leaf) are checked here, so that a typo in a
configured playlist is reported when the config is read, not at the first rebuild. Imports
leaves only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from tunescout.convert import Converter, choice, did_you_mean, flag, int_in, number, resolve_path, text
from tunescout.errors import PlaylistError
from tunescout.models import FEATURE_GROUPS
from tunescout.tagexpr import parse_where

Order = Literal["flow", "ramp", "similarity"]
ORDERS: tuple[Order, ...] = ("flow", "ramp", "similarity")
FORMATS = ("m3u8", "json", "mpd")  # mpd: .m3u, paths relative to MPD's music_directory
HISTORY_KEEP = 100  # playlists remembered for "not in the last K playlists"
DEFAULT_WEIGHTS: Mapping[str, float] = {"timbre": 1.0, "rhythm": 1.0, "tonal": 0.5, "loudness": 0.5}
PREFERENCES = ("lossless", "bitrate", "path")
"""Which copy of a recording a playlist uses, decided in this order: a lossless file first, then
the higher bitrate, then the smaller path. Any order of any of them (`prefer`, `--prefer`)."""
MIN_DURATION_S = 30.0  # jingles, stings and broken stubs are not playlist material


@dataclass(frozen=True)
class Rules:
    """Everything that shapes a playlist besides its seeds; the defaults make a sensible mix."""

    length: int = 30
    order: Order = "flow"
    bpm_range: tuple[float, float] | None = None  # (from, to): a ramp goes from → to
    bpm_tolerance_pct: float | None = None  # around the seeds; along a path, per step
    key_compatible: bool = False
    duration_range_s: tuple[float, float] | None = None
    loudness_range_lufs: tuple[float, float] | None = None
    where: str | None = None
    artist_spacing: int = 3  # two tracks by one artist are at least this many positions apart
    album_spacing: int = 5
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    exclude_digests: frozenset[str] = frozenset()  # e.g. everything in the last K playlists
    min_duration_s: float = MIN_DURATION_S  # shorter candidates are left out (seeds may be short)
    include_suspect: bool = False  # files the analysis decoded only in part are left out
    prefer: tuple[str, ...] = PREFERENCES

    def check(self) -> None:
        """Raise PlaylistError for a request that makes no sense."""
        if self.length < 1:
            raise PlaylistError("--length must be at least 1")
        if self.order not in ORDERS:
            raise PlaylistError(f"--order must be one of {', '.join(ORDERS)}")
        unknown = sorted(set(self.weights) - set(FEATURE_GROUPS))
        if unknown:
            raise PlaylistError(f"unknown weight {unknown[0]!r}; groups are {', '.join(FEATURE_GROUPS)}")
        if any(w < 0 or not math.isfinite(w) for w in self.weights.values()):
            raise PlaylistError("weights must be zero or more")
        if not any(self.weights.get(g, 0.0) > 0 for g in FEATURE_GROUPS):
            raise PlaylistError("at least one weight must be above zero")
        if self.artist_spacing < 0 or self.album_spacing < 0:
            raise PlaylistError("spacing cannot be negative")
        if self.bpm_tolerance_pct is not None and self.bpm_tolerance_pct < 0:
            raise PlaylistError("--bpm-tolerance cannot be negative")
        if self.min_duration_s < 0 or not math.isfinite(self.min_duration_s):
            raise PlaylistError("--min-duration must be zero or more seconds")
        problem = check_preference(self.prefer)
        if problem:
            raise PlaylistError(f"--prefer: {problem}")


def check_preference(prefer: tuple[str, ...] | list[str]) -> str | None:
    """Return what is wrong with a copy preference such as ("lossless", "bitrate", "path"), or None."""
    for criterion in prefer:
        if criterion not in PREFERENCES:
            return f"unknown preference {criterion!r}{did_you_mean(criterion, PREFERENCES)}; " \
                   f"use some of {', '.join(PREFERENCES)}"
    if len(set(prefer)) != len(prefer):
        return "a preference is named twice"
    return None


def parse_preference(text: str) -> tuple[str, ...]:
    """Return the copy preference of "lossless,bitrate,path"; raise PlaylistError when wrong."""
    prefer = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    problem = check_preference(prefer)
    if problem:
        raise PlaylistError(f"--prefer: {problem}")
    return prefer


@dataclass(frozen=True)
class PlaylistSpec:
    """One `[[playlists]]` table (or one command line): what to build and where to write it."""

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
    music_directory: Path | None = None  # format "mpd": paths are relative to it
    subsonic: bool = False  # also put it on the [subsonic] server after each rebuild


# --- ranges and weights --------------------------------------------------------------------------


def parse_range(text: str, what: str, *, clock: bool = False) -> tuple[float, float]:
    """Return (from, to) of "100-130", "-14..-8" or "2:30-6:00" (clock=True: m:ss allowed)."""
    match = re.match(r"^\s*(-?[\d.:]+?)\s*(?:\.\.|-|\bto\b)\s*(-?[\d.:]+)\s*$", text)
    if match is None:
        raise PlaylistError(f"{what}: cannot read {text!r}; write it like 100-130 (or -14..-8)")
    try:
        low, high = (_clock(g) if clock else float(g) for g in match.groups())
    except ValueError as exc:
        raise PlaylistError(f"{what}: cannot read {text!r}: {exc}") from exc
    return low, high


def _clock(text: str) -> float:
    """Return seconds of "245", "4:05" or "1:02:03"."""
    parts = text.split(":")
    if not all(p.replace(".", "", 1).isdigit() for p in parts) or len(parts) > 3:
        raise ValueError(f"{text!r} is not a duration like 4:05 or 245")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60.0 + float(part)
    return seconds


def parse_weights(text: str) -> dict[str, float]:
    """Return weights from "timbre=1,rhythm=1,tonal=0.5"; groups not named keep their default."""
    weights = dict(DEFAULT_WEIGHTS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        name = name.strip().lower()
        if name not in FEATURE_GROUPS:
            raise PlaylistError(f"--weights: unknown group {name!r}; groups are {', '.join(FEATURE_GROUPS)}")
        try:
            weights[name] = float(value)
        except ValueError as exc:
            raise PlaylistError(f"--weights: {item!r} needs a number, as in {name}=0.5") from exc
    return weights


# --- the [[playlists]] config tables -------------------------------------------------------------

_SPEC_KEYS = (
    "name", "output", "seeds", "query", "from", "to", "length", "order", "bpm", "bpm_tolerance",
    "key_compatible", "duration", "loudness", "where", "artist_spacing", "album_spacing", "weights",
    "format", "relative", "exclude_recent", "music_directory", "min_duration", "include_suspect",
    "prefer", "subsonic",
)
_RULE_KEYS = {
    "length": "length", "order": "order", "bpm": "bpm_range", "bpm_tolerance": "bpm_tolerance_pct",
    "key_compatible": "key_compatible", "duration": "duration_range_s",
    "loudness": "loudness_range_lufs", "where": "where", "artist_spacing": "artist_spacing",
    "album_spacing": "album_spacing", "weights": "weights", "min_duration": "min_duration_s",
    "include_suspect": "include_suspect", "prefer": "prefer",
}


def parse_playlist_specs(raw: Any, base_dir: Path | None = None) -> tuple[list[PlaylistSpec], list[str]]:
    """Turn the `[[playlists]]` array into specs; return them with every problem as `playlists[i].key: …`."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        return [], ["playlists: expected [[playlists]] tables"]
    specs: list[PlaylistSpec] = []
    problems: list[str] = []
    names: set[str] = set()
    converters = _converters(base_dir)
    for position, table in enumerate(raw):
        where = f"playlists[{position}]"
        spec, found = _parse_spec(table, converters)
        problems.extend(f"{where}.{p}" for p in found)
        if spec is not None:
            if spec.name in names:
                problems.append(f"{where}.name: {spec.name!r} is used by another playlist")
            names.add(spec.name)
            specs.append(spec)
    return specs, problems


def _parse_spec(table: Mapping[str, Any],
                converters: Mapping[str, Converter]) -> tuple[PlaylistSpec | None, list[str]]:
    problems = [f"{key}: unknown key{did_you_mean(key, _SPEC_KEYS)}"
                for key in table if key not in _SPEC_KEYS]
    values: dict[str, Any] = {}
    for key, convert in converters.items():
        if key in table:
            try:
                values[key] = convert(table[key])
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


RULE_KEYS = tuple(_RULE_KEYS)


def parse_rules(table: Mapping[str, Any], keys: tuple[str, ...], base: Rules,
                base_dir: Path | None = None) -> tuple[Rules, list[str]]:
    """Read the rule keys among `keys` from a table (`[radio]`): the rules and each problem as `key: …`."""
    converters = _converters(base_dir)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key in keys:
        if key in table:
            try:
                values[_RULE_KEYS[key]] = converters[key](table[key])
            except (ValueError, PlaylistError) as exc:
                problems.append(f"{key}: {exc}")
    return replace(base, **values), problems


def _spec(values: Mapping[str, Any]) -> PlaylistSpec:
    rules = Rules(**{attr: values[key] for key, attr in _RULE_KEYS.items() if key in values})
    output: Path = values["output"]
    fmt = values.get("format") or ("json" if output.suffix.lower() == ".json" else "m3u8")
    return PlaylistSpec(
        name=values["name"], output=output, rules=rules, seeds=tuple(values.get("seeds", ())),
        query=values.get("query"), path_from=values.get("from"), path_to=values.get("to"),
        format=fmt, relative=values.get("relative", False),
        exclude_recent=values.get("exclude_recent", 0), music_directory=values.get("music_directory"),
        subsonic=values.get("subsonic", False),
    )


def _converters(base_dir: Path | None) -> dict[str, Converter]:
    """Return the converter of each key; paths are relative to the config file's folder."""

    def path(value: Any) -> Path:
        return resolve_path(value, base_dir)

    def paths(value: Any) -> list[Path]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise ValueError('expected a list of files such as ["/srv/music/a.flac"]')
        return [path(v) for v in items]

    return {
        "name": text, "output": path, "seeds": paths, "query": _expression, "from": path, "to": path,
        "length": int_in(1, 1000), "order": choice(*ORDERS), "bpm": _range("bpm"),
        "bpm_tolerance": number, "key_compatible": flag, "duration": _range("duration", clock=True),
        "loudness": _range("loudness"), "where": _expression, "artist_spacing": int_in(0, 100),
        "album_spacing": int_in(0, 100), "weights": _weights, "format": choice(*FORMATS),
        "relative": flag, "exclude_recent": int_in(0, HISTORY_KEEP), "music_directory": path,
        "min_duration": _seconds, "include_suspect": flag, "prefer": _preference, "subsonic": flag,
    }


def _range(what: str, clock: bool = False) -> Converter:
    def convert(value: Any) -> tuple[float, float]:
        if isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return float(value[0]), float(value[1])
        if isinstance(value, str):
            return parse_range(value, what, clock=clock)
        raise ValueError(f'expected "FROM-TO" or [FROM, TO], such as "{"2:00-7:00" if clock else "100-130"}"')
    return convert


def _seconds(value: Any) -> float:
    return _clock(value.strip()) if isinstance(value, str) else number(value)


def _preference(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ValueError('expected a list such as ["lossless", "bitrate", "path"]')
    prefer = tuple(v.strip().lower() for v in items if v.strip())
    problem = check_preference(prefer)
    if problem:
        raise ValueError(problem)
    return prefer


def _weights(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError("expected a table such as { timbre = 1, rhythm = 1, tonal = 0.5 }")
    weights = dict(DEFAULT_WEIGHTS)
    for group, weight in value.items():
        if group not in FEATURE_GROUPS:
            raise ValueError(f"unknown group {group!r}{did_you_mean(group, FEATURE_GROUPS)}")
        weights[group] = number(weight)
    if not any(w > 0 for w in weights.values()):
        raise ValueError("at least one weight must be above zero")
    return weights


def _expression(value: Any) -> str:
    expression = text(value)
    parse_where(expression)  # a typo is reported when the config is read, not at the first rebuild
    return expression
