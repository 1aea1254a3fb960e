"""One base error and one class per layer; every message is meant for a person."""

from __future__ import annotations


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


class ProtocolError(TunescoutError):
    """A message on the child pipe or the zygote socket is malformed."""


class PlaylistError(TunescoutError):
    """A playlist request that cannot be met as asked (bad expression, bad range, bad weights)."""


class AnalysisError(TunescoutError):
    """One file could not be analysed; `kind` is one of FAILURE_KINDS."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")


# The kinds of failure a user sees in `tunescout failures` and in journald's ERROR_KIND.
FAILURE_KINDS = (
    "decode",  # the audio cannot be decoded (corrupt, truncated, not audio)
    "tags",  # the tags cannot be read (the audio may still be analysed)
    "io",  # the file cannot be opened or read (permissions, vanished)
    "memory",  # MemoryError or the child's memory budget was exceeded
    "signal",  # the child was killed by a signal while on this file
    "timeout",  # the child overran its wall-clock deadline on this file
    "protocol",  # the child wrote something that is not a result
    "internal",  # a bug in tunescout: the reason carries the exception
)
