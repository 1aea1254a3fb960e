"""What crosses process boundaries: zygote control messages and one result line per file.

Every message is one JSON object. Paths travel as `os.fsdecode` strings: JSON escapes the lone
surrogates that stand for bytes that are not UTF-8, so names survive the trip without loss.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunescout.errors import ProtocolError
from tunescout.models import FeatureGroup, TrackAnalysis

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
