"""The result-pipe line reader the supervisor and a cluster worker share, on real pipes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tunescout import protocol
from tunescout.workers.lines import READ_BYTES, LineReader


@pytest.fixture
def pipe() -> Iterator[tuple[LineReader, int]]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    reader = LineReader(read_fd, limit=100)
    yield reader, write_fd
    for fd in (write_fd, *(() if reader.eof else (read_fd,))):
        try:
            os.close(fd)
        except OSError:
            pass


def test_whole_lines_come_out_and_a_partial_one_waits(pipe: tuple[LineReader, int]) -> None:
    reader, w = pipe
    os.write(w, b'{"a": 1}\n\n  \n{"b": 2}\n{"c"')
    assert reader.read() == ([b'{"a": 1}', b'{"b": 2}'], False)
    assert reader.read() == ([], False)  # nothing new: no BlockingIOError escapes
    os.write(w, b": 3}\n")
    assert reader.read() == ([b'{"c": 3}'], False)
    assert not reader.eof


def test_the_last_unterminated_line_counts_at_end_of_file(pipe: tuple[LineReader, int]) -> None:
    reader, w = pipe
    os.write(w, b"one\ntwo")
    os.close(w)
    assert reader.read() == ([b"one", b"two"], False)
    assert reader.eof
    with pytest.raises(OSError):
        os.fstat(reader.fd)  # closed by the reader
    assert reader.read() == ([], False)


def test_an_over_long_line_is_flagged_before_it_is_finished(pipe: tuple[LineReader, int]) -> None:
    reader, w = pipe
    os.write(w, b"ok\n" + b"x" * 101)  # no newline yet: 101 bytes pass the limit of 100
    assert reader.read() == ([b"ok"], True)
    os.write(w, b"\nafter\n")  # the rest of the garbage line, then a line the caller ignores
    assert reader.read() == ([b"after"], False)


def test_a_line_at_the_limit_is_a_line(pipe: tuple[LineReader, int]) -> None:
    reader, w = pipe
    os.write(w, b"y" * 100)
    assert reader.read() == ([], False)
    os.write(w, b"\n")
    assert reader.read() == ([b"y" * 100], False)


def test_the_default_limit_is_the_protocols_and_spans_many_reads() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    reader = LineReader(read_fd)
    assert reader.limit == protocol.MAX_LINE_BYTES
    written = too_long = 0
    try:
        while not too_long and written < protocol.MAX_LINE_BYTES + 4 * READ_BYTES:
            try:
                written += os.write(write_fd, b"z" * READ_BYTES)
            except BlockingIOError:
                pass
            found = reader.read()
            assert found.lines == []
            too_long = found.too_long
        assert too_long and written > protocol.MAX_LINE_BYTES
    finally:
        os.close(write_fd)
        reader.read()
        assert reader.eof
