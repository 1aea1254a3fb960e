"""Config files for test daemons, written as TOML from dicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ANALYSER = "support.analysers:by_name"  # behaves by file name: see support/analysers.py


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    path.write_text(toml_text(sections))
    return path


def cheap_sections(music: Path, db: Path, **overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Config for a daemon on the cheap test analyser, with the memory gate out of the way."""
    sections: dict[str, dict[str, Any]] = {
        "library": {"paths": [str(music)]},
        "store": {"path": str(db)},
        "intake": {"settle": "0.5 s"},
        "workers": {"analyser": ANALYSER, "max_workers": 2},
        "memory": {"min_available": "50 MB", "pause_above_percent": 99,
                   "resume_below_percent": 98},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return sections
