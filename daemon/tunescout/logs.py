"""Logging: journald with structured UPPERCASE fields under systemd, plain lines elsewhere."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

IDENTIFIER = "tunescout"
IDENTIFIER_ENV = "TUNESCOUT_LOG_IDENTIFIER"  # tells apart the journal lines of one test daemon
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def stderr_is_journal(env: Mapping[str, str]) -> bool:
    """Return True when systemd connected our stderr to journald (JOURNAL_STREAM matches it)."""
    stream = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class _DropEmptyFields(logging.Filter):
    """Remove UPPERCASE extras whose value is None, so the journal shows no "None" fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in [k for k, v in record.__dict__.items() if k.isupper() and v is None]:
            delattr(record, key)
        return True


class _PlainFormatter(logging.Formatter):
    """Format `message` and, at debug level, the structured fields beside it."""

    def __init__(self, with_time: bool) -> None:
        fmt = "%(asctime)s %(levelname)s %(message)s" if with_time else "%(levelname)s %(message)s"
        super().__init__(fmt, datefmt="%Y-%m-%d %H:%M:%S")


def setup_logging(level: str = "info", target: str = "auto", *, identifier: str | None = None,
                  env: Mapping[str, str] | None = None) -> str:
    """Send the package's logs to journald or stderr; return which was chosen.

    The journal's SYSLOG_IDENTIFIER is `identifier`, else $TUNESCOUT_LOG_IDENTIFIER, else
    "tunescout", so that `journalctl -t ID` finds one daemon's lines.
    """
    env = os.environ if env is None else env
    identifier = identifier or env.get(IDENTIFIER_ENV) or IDENTIFIER
    use_journal = target == "journal" or (target == "auto" and stderr_is_journal(env))
    handler: logging.Handler
    if use_journal:
        from systemd.journal import JournalHandler  # only where a journal is wanted

        handler = JournalHandler(SYSLOG_IDENTIFIER=identifier)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PlainFormatter(with_time=sys.stderr.isatty()))
    handler.addFilter(_DropEmptyFields())
    root = logging.getLogger("tunescout")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False
    return "journal" if use_journal else "stderr"
