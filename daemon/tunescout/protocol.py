"""What crosses process boundaries: zygote control messages and one result line per file.

Every message is one JSON object. Paths travel as `os.fsdecode` strings: JSON escapes the lone
surrogates that stand for bytes that are not UTF-8, so names survive the trip without loss.
Each message is a frozen dataclass here, so that mypy follows them from the sender to the
receiver; `encode_message` and the three `*_from_wire` functions are the only places that
know the JSON keys ("op" for the zygote's socket, "t" for a child's result lines).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from tunescout.errors import ProtocolError
from tunescout.models import DecodeWarning, FailureKind, FeatureGroup, TrackAnalysis

VERSION = 1
MAX_LINE_BYTES = 4 * 1024 * 1024  # a result line longer than this is garbage, not a result


def encode(message: dict[str, Any]) -> bytes:
    """Return one message as a JSON line (ASCII only, so any path survives)."""
    return json.dumps({"v": VERSION, **message}, ensure_ascii=True, allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one message; raise ProtocolError for anything that is not one of ours."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not a message: {_preview(line)}") from exc
    if not isinstance(message, dict) or message.get("v") != VERSION:
        raise ProtocolError(f"not a version {VERSION} message: {_preview(line)}")
    return message


def _preview(line: bytes) -> str:
    text = line[:80].decode("utf-8", "backslashreplace")
    return repr(text) + ("…" if len(line) > 80 else "")


def analysis_to_dict(result: TrackAnalysis) -> dict[str, Any]:
    return asdict(result)


def analysis_from_dict(data: dict[str, Any]) -> TrackAnalysis:
    """Rebuild a TrackAnalysis from a result message; raise ProtocolError when it is malformed."""
    try:
        groups = tuple(
            FeatureGroup(str(g["name"]), int(g["version"]), dict(g["values"])) for g in data["features"]
        )
        return TrackAnalysis(
            digest=str(data["digest"]),
            duration_s=float(data["duration_s"]),
            tags=dict(data["tags"]),
            cover=dict(data["cover"]) if data.get("cover") is not None else None,
            tags_error=str(data["tags_error"]) if data.get("tags_error") else None,
            decode_warning=str(data["decode_warning"]) if data.get("decode_warning") else None,
            warning_kind=DecodeWarning(data["warning_kind"]) if data.get("warning_kind") else None,
            features_reused=bool(data.get("features_reused", False)),
            features_kept=tuple(str(g) for g in data.get("features_kept", ())),
            features=groups,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed analysis: {exc!r}") from exc


def path_to_wire(path: Path) -> str:
    return str(path)


def path_from_wire(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"expected a path, got {value!r}")
    return Path(value)


# --- the daemon to the zygote ------------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    """Fork a child for a batch; the write end of its result pipe travels beside (SCM_RIGHTS)."""

    batch: str
    paths: tuple[Path, ...]
    budget_bytes: int
    cpu_s: int
    store: Path | None = None  # the database the child may read stored feature groups from


@dataclass(frozen=True)
class Kill:
    """Send a signal to a batch's child (its process group)."""

    batch: str
    signal: int


@dataclass(frozen=True)
class Exit:
    """Kill every child and leave."""


Control = Spawn | Kill | Exit


# --- the zygote to the daemon ------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The analysis stack is imported and warm: batches may be spawned."""

    pid: int
    warmup_ms: int


@dataclass(frozen=True)
class StartFailed:
    """The analysis stack cannot start (on the wire: op "error"); the zygote exits."""

    message: str


@dataclass(frozen=True)
class Spawned:
    batch: str
    pid: int


@dataclass(frozen=True)
class Exited:
    """A child was reaped: its wait status and peak RSS, as wait4 gave them."""

    batch: str
    pid: int
    status: int
    maxrss_kb: int


Report = Ready | StartFailed | Spawned | Exited


# --- a child's result lines --------------------------------------------------------------------


@dataclass(frozen=True)
class FileStarted:
    """The child began the file at `index` of its batch: the one to blame if it dies now."""

    index: int
    path: Path


@dataclass(frozen=True)
class FileAnalysed:
    index: int
    path: Path
    analysis: TrackAnalysis
    duration_ms: int | None = None
    peak_rss_kb: int | None = None


@dataclass(frozen=True)
class FileFailed:
    index: int
    path: Path
    kind: FailureKind
    reason: str
    duration_ms: int | None = None
    peak_rss_kb: int | None = None


Result = FileStarted | FileAnalysed | FileFailed
Message = Control | Report | Result

_T = TypeVar("_T")


def encode_message(message: Message) -> bytes:
    """Return the wire line of any message."""
    return encode(_to_wire(message))


def _to_wire(message: Message) -> dict[str, Any]:
    match message:
        case Spawn():
            return {"op": "spawn", "batch": message.batch, "budget": message.budget_bytes,
                    "cpu_s": message.cpu_s,
                    "store": str(message.store) if message.store else None,
                    "paths": [path_to_wire(p) for p in message.paths]}
        case Kill():
            return {"op": "kill", "batch": message.batch, "signal": message.signal}
        case Exit():
            return {"op": "exit"}
        case Ready():
            return {"op": "ready", "pid": message.pid, "warmup_ms": message.warmup_ms}
        case StartFailed():
            return {"op": "error", "message": message.message}
        case Spawned():
            return {"op": "spawned", "batch": message.batch, "pid": message.pid}
        case Exited():
            return {"op": "exited", "batch": message.batch, "pid": message.pid,
                    "status": message.status, "maxrss_kb": message.maxrss_kb}
        case FileStarted():
            return {"t": "start", "i": message.index, "path": path_to_wire(message.path)}
        case FileAnalysed():
            return {"t": "ok", "analysis": analysis_to_dict(message.analysis), "i": message.index,
                    "path": path_to_wire(message.path), "duration_ms": message.duration_ms,
                    "peak_rss_kb": message.peak_rss_kb}
        case FileFailed():
            return {"t": "fail", "kind": str(message.kind), "reason": message.reason,
                    "i": message.index, "path": path_to_wire(message.path),
                    "duration_ms": message.duration_ms, "peak_rss_kb": message.peak_rss_kb}


def control_from_wire(data: bytes) -> Control:
    """Parse what the daemon sent the zygote; raise ProtocolError for anything else."""
    message = decode(data)
    op = message.get("op")
    if op == "spawn":
        paths = _field(message, "paths", list)
        store = _optional(message, "store", str)
        return Spawn(_field(message, "batch", str), tuple(path_from_wire(p) for p in paths),
                     _field(message, "budget", int), _field(message, "cpu_s", int),
                     Path(store) if store else None)
    if op == "kill":
        return Kill(_field(message, "batch", str), _field(message, "signal", int))
    if op == "exit":
        return Exit()
    raise ProtocolError(f"unknown control message {op!r}")


def report_from_wire(data: bytes) -> Report:
    """Parse what the zygote sent the daemon; raise ProtocolError for anything else."""
    message = decode(data)
    op = message.get("op")
    if op == "ready":
        return Ready(_field(message, "pid", int), _optional(message, "warmup_ms", int) or 0)
    if op == "error":
        return StartFailed(str(message.get("message")))
    if op == "spawned":
        return Spawned(_field(message, "batch", str), _field(message, "pid", int))
    if op == "exited":
        return Exited(_field(message, "batch", str), _field(message, "pid", int),
                      _field(message, "status", int), _optional(message, "maxrss_kb", int) or 0)
    raise ProtocolError(f"unknown zygote message {op!r}")


def result_from_wire(line: bytes) -> Result:
    """Parse one result line of a child; raise ProtocolError when it is not one.

    A well-formed "ok" line whose analysis is malformed is that file's failure (kind protocol),
    not garbage: the child is sound, one result of it is not.
    """
    message = decode(line)
    kind = message.get("t")
    index = _field(message, "i", int)
    path = path_from_wire(message.get("path"))
    if kind == "start":
        return FileStarted(index, path)
    duration_ms = _optional(message, "duration_ms", int)
    peak_rss_kb = _optional(message, "peak_rss_kb", int)
    if kind == "ok":
        try:
            analysis = analysis_from_dict(_field(message, "analysis", dict))
        except ProtocolError as exc:
            return FileFailed(index, path, FailureKind.PROTOCOL, str(exc))
        return FileAnalysed(index, path, analysis, duration_ms, peak_rss_kb)
    if kind == "fail":
        reason = _optional(message, "reason", str) or "no reason given"
        return FileFailed(index, path, _failure_kind(message.get("kind", "internal")), reason,
                          duration_ms, peak_rss_kb)
    raise ProtocolError(f"unknown result type {kind!r}")


def _failure_kind(value: Any) -> FailureKind:
    try:
        return FailureKind(value)
    except ValueError as exc:
        raise ProtocolError(f"unknown failure kind {value!r}") from exc


def _field(message: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    value = message.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"{key!r} must be {kind.__name__}, got {_short(value)}")
    return value


def _optional(message: Mapping[str, Any], key: str, kind: type[_T]) -> _T | None:
    return None if message.get(key) is None else _field(message, key, kind)


def _short(value: Any) -> str:
    text = repr(value)
    return text[:80] + ("…" if len(text) > 80 else "")
