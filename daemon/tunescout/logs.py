"""Logging: journald under systemd, lines on stderr elsewhere; both carry the UPPERCASE fields."""

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
    """Format a line for stderr: time, level, logger, message, then the UPPERCASE fields.

    The fields (`EVENT=analysed TRACK_PATH=/a/b.flac`) are the journal's, so a line on stderr
    says as much as an entry in the journal and a test or a `grep` can match on them.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={_field_value(value)}" for key, value in record.__dict__.items()
                          if key.isupper())
        line = super().formatMessage(record)
        return f"{line} {fields}" if fields else line


def _field_value(value: object) -> str:
    """Return `value` as it goes after `KEY=`: bare, or double-quoted when it has spaces."""
    text = str(value)
    if text and not any(c.isspace() or c in '"\\=' for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


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
        handler.setFormatter(_PlainFormatter())
    handler.addFilter(_DropEmptyFields())
    root = logging.getLogger("tunescout")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False
    return "journal" if use_journal else "stderr"
