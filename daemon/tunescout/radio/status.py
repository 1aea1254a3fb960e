"""What the radio is doing, as `status` shows it: one snapshot, replaced (never mutated) on change.

The radio's thread builds a new `RadioStatus` at every change and hands it to whoever watches
(the daemon writes it into its state row under "radio"; the foreground command logs it), so a
reader in another thread always sees one consistent picture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Addition:
    uri: str
    label: str
    reason: str
    at: float


@dataclass(frozen=True)
class RadioStatus:
    """state: connecting, disconnected, waiting, idle, paused, running, starved."""

    mpd: str
    state: str = "connecting"
    reason: str | None = None  # why paused, waiting, starved or disconnected
    connected: bool = False
    mpd_version: str | None = None
    ahead: int = 0  # songs queued after the current one
    wanted: int = 0
    seeds: tuple[str, ...] = ()  # "Artist - Title", the song playing first
    last_added: Addition | None = None
    added: int = 0  # songs added since the radio started
    skipped: int = 0  # chosen songs MPD's database does not have (not indexed yet)
    updated_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        data.pop("extra")
        return {**data, **self.extra}

    def line(self) -> str:
        """Return the one-line summary `status` prints."""
        parts = [f"radio {self.state}" + (f": {self.reason}" if self.reason else "")]
        if self.connected:
            parts.append(f"{self.ahead}/{self.wanted} ahead")
        if self.seeds:
            parts.append(f"seed {self.seeds[0]}")
        if self.last_added is not None:
            parts.append(f"last added {self.last_added.label}")
        return " · ".join(parts)


def status_line(data: dict[str, Any]) -> str:
    """Return the summary line of a RadioStatus read back from JSON (`tunescout status`)."""
    last = data.get("last_added")
    return RadioStatus(
        mpd=str(data.get("mpd", "")), state=str(data.get("state", "?")), reason=data.get("reason"),
        connected=bool(data.get("connected")), ahead=int(data.get("ahead") or 0),
        wanted=int(data.get("wanted") or 0), seeds=tuple(data.get("seeds") or ()),
        last_added=Addition(**last) if isinstance(last, dict) else None,
    ).line()
