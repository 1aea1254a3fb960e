"""One base error and one class per layer; every message is meant for a person."""

from __future__ import annotations

from tunescout.models import FailureKind


class TunescoutError(Exception):
    """Base of every error tunescout raises on purpose."""


class ConfigError(TunescoutError):
    """The configuration is unreadable or invalid; `problems` lists each as `section.key: message`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class StoreError(TunescoutError):
    """The database cannot be opened, migrated or written; the message says how to fix it."""


class DatabaseUnavailable(StoreError):
    """A write that will succeed later, when the disk has room again or another process lets go
    of the database: the daemon keeps what it could not store and waits, instead of failing.

    `status` is the short words for systemd's STATUS line."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class DiskFull(DatabaseUnavailable):
    """The filesystem under the database has no room for the write."""


class DatabaseLocked(DatabaseUnavailable):
    """Another process holds the database's write lock for longer than the busy timeout."""


class ProtocolError(TunescoutError):
    """A message on the child pipe or the zygote socket is malformed."""


class PlaylistError(TunescoutError):
    """A playlist request that cannot be met as asked (bad expression, bad range, bad weights)."""


class AnalysisError(TunescoutError):
    """One file could not be analysed, and which kind of failure it is."""

    def __init__(self, kind: FailureKind, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")



class ApiError(TunescoutError):
    """An HTTP API request that cannot be answered: `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class SubsonicError(TunescoutError):
    """The Subsonic server cannot be asked: `reason` is a short word for the journal's REASON
    (unreachable, refused, not_subsonic, failed), the message says what to fix."""

    def __init__(self, reason: str, message: str, code: int | None = None) -> None:
        self.reason = reason
        self.code = code  # the Subsonic error code, when the server gave one
        super().__init__(message)
