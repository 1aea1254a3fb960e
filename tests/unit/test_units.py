import pytest

from tunescout.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(("text", "expected"), [
    ("300 MB", 300_000_000), ("1 GiB", 2**30), ("1.5GiB", int(1.5 * 2**30)), (4096, 4096),
    ("768 MiB", 768 * 2**20), ("10k", 10_000),
])
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["lots", "5 zb", "-1 MB", True])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)  # type: ignore[arg-type]


def test_durations() -> None:
    assert parse_duration("5 s") == 5
    assert parse_duration("15 min") == 900
    assert parse_duration("6 h") == 21600
    assert parse_duration(2.5) == 2.5
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")
    assert format_duration(42) == "42 s"
    assert format_duration(14 * 60) == "14 min"
    assert format_duration(2 * 86400 + 9 * 3600) == "2 d 9 h"


def test_format_size() -> None:
    assert format_size(512) == "512 B"
    assert format_size(1.2 * 2**30) == "1.2 GiB"
    assert format_size(640 * 2**20) == "640 MiB"
