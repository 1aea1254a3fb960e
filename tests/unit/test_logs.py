"""Lines on stderr carry the journal's UPPERCASE fields, so tests and `grep` can match on them."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from support.daemon import parse_line
from tunescout.logs import setup_logging


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The package's logger, put back as it was: setup_logging changes it for the process."""
    logger = logging.getLogger("tunescout")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_a_stderr_line_has_time_level_logger_message_and_fields(
        package_logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    assert setup_logging("info", "stderr", env={}) == "stderr"
    logging.getLogger("tunescout.x").info(
        "analysed %s", "/a/b c.flac",
        extra={"EVENT": "analysed", "TRACK_PATH": "/a/b c.flac", "TEMPO_BPM": None, "NOTE": 'say "hi"'})
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} INFO tunescout\.x: analysed /a/b c\.flac "
                        r'EVENT=analysed TRACK_PATH="/a/b c\.flac" NOTE="say \\"hi\\""', line), line
    parsed = parse_line(line)
    assert parsed is not None
    assert (parsed.level, parsed.logger, parsed.message) == ("INFO", "tunescout.x", "analysed /a/b c.flac")
    assert parsed.fields == {"EVENT": "analysed", "TRACK_PATH": "/a/b c.flac", "NOTE": 'say "hi"'}


def test_a_line_without_fields_is_the_message_alone(
        package_logger: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "stderr", env={})
    logging.getLogger("tunescout.x").warning("plain words")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" WARNING tunescout.x: plain words")
