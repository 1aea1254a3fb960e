"""Demux and decode one file's audio to float32 blocks at the analysis rate, hashing the packets.

The decoder works block by block so that a two-hour mix never has to be held as one array; the
audio digest is computed from the compressed packets of the chosen stream while demuxing, so a
tag edit (which changes neither packets nor stream choice) keeps the digest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import av
import av.error
import numpy as np

from tunescout.analysis.halving import HalvingResampler, mono_resampler
from tunescout.analysis.integrity import LastPacket, incomplete_end
from tunescout.analysis.pcm import Accumulator, Block, FrameBatcher, MonoResampler, Resampler, to_mono
from tunescout.errors import AnalysisError
from tunescout.models import DecodeWarning, FailureKind

__all__ = ["ANALYSIS_RATE_HZ", "AudioReader", "StreamInfo", "packet_digest", "read_mono", "to_mono"]

log = logging.getLogger(__name__)

ANALYSIS_RATE_HZ = 22050
"""Every signal is resampled to this rate: librosa's default, enough for all our features."""

BLOCK_SAMPLES = 1 << 16
"""Samples per channel in one decoded block (about 3 s at the analysis rate)."""

MAX_BAD_PACKETS = 50
"""Corrupt packets are skipped; past this many, and more bad than good, the file is undecodable."""

DIGEST_BYTES = 16

_EMPTY: Block = np.zeros((0, 0), dtype=np.float32)


@dataclass(frozen=True)
class StreamInfo:
    """What the container says about the chosen audio stream, before decoding."""

    container: str
    codec: str
    sample_rate_hz: int
    channels: tuple[str, ...]  # FFmpeg channel names ("FL", "LFE", …; "NONE" when unknown)
    expected_s: float | None  # the container's duration estimate, if any


class AudioReader:
    """Read one file's best audio stream as planar float32 blocks at `rate_hz`.

    With `mono=True` the blocks have one channel: decoded frames are gathered raw into blocks of
    `block_samples` at the stream's own rate (pcm.FrameBatcher: no Python work per frame but a
    FIFO write), the channels averaged once per block (the way librosa mixes them) and only that
    one channel resampled, a block at a time (44.1 kHz with libswresample's own taps in numba:
    halving.py).

    Use as a context manager; iterate `blocks()` once, then read `digest`, `samples`,
    `problems` (skipped packets, partial decode) and `warning_kind` (what they amount to).
    """

    def __init__(
        self,
        path: Path,
        *,
        rate_hz: int = ANALYSIS_RATE_HZ,
        block_samples: int = BLOCK_SAMPLES,
        on_native: Callable[[Block], None] | None = None,
        mono: bool = False,
    ) -> None:
        self.path = path
        self.on_native = on_native
        self.mono = mono
        self.rate_hz = rate_hz
        self.block_samples = block_samples
        self.samples = 0
        self.problems: list[str] = []
        self.warning_kind: DecodeWarning | None = None
        self._last: av.Packet[av.AudioStream] | None = None
        self._hash = hashlib.blake2b(digest_size=DIGEST_BYTES)
        self._finished = False
        self._good_packets = 0
        self._file = _open_file(path)
        try:
            self._container = _open_container(self._file, path)
        except BaseException:
            self._file.close()
            raise
        try:
            self._stream = _choose_stream(self._container)
        except BaseException:
            self.close()
            raise
        self.info = _describe(self._container, self._stream)

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the demuxer and the file; FFmpeg buffers are freed here, not by the GC."""
        self._container.close()
        self._file.close()

    @property
    def digest(self) -> str:
        """Return the hex digest of the compressed audio packets; valid after `blocks()` ends."""
        if not self._finished:
            raise RuntimeError("the digest is known only after every block was read")
        return self._hash.hexdigest()

    @property
    def duration_s(self) -> float:
        """Return the duration decoded so far, in seconds."""
        return self.samples / self.rate_hz

    def blocks(self) -> Iterator[Block]:
        """Yield (channels, samples) float32 blocks of the decoded audio at the analysis rate.

        When the reader was given `on_native`, it is called with blocks of the same audio at the
        stream's own rate first: loudness is measured there, before resampling drops the top
        octave (up to 1.3 LU on bright material at 22050 Hz).
        """
        try:
            if self.mono and self.info.sample_rate_hz > 0:
                yield from self._mono_blocks()
            else:
                yield from self._blocks()
        except av.error.FFmpegError as exc:  # e.g. the resampler rejecting a frame
            raise AnalysisError(FailureKind.DECODE, _reason(exc)) from exc
        self._finished = True
        self._check_complete()

    def _blocks(self) -> Iterator[Block]:
        """Gather decoded chunks into blocks, passing the native ones to `on_native`."""
        analysis = Accumulator(self.block_samples)
        native = Accumulator(self.block_samples)
        for chunk, native_chunk in self._decoded_chunks():
            if native_chunk is not None and (native_block := native.push(native_chunk)) is not None:
                self._deliver_native(native_block)
            if (block := analysis.push(chunk)) is not None:
                self.samples += block.shape[1]
                yield block
        if (native_block := native.flush()) is not None:
            self._deliver_native(native_block)
        if (block := analysis.flush()) is not None:
            self.samples += block.shape[1]
            yield block

    def _deliver_native(self, block: Block) -> None:
        """Hand a native-rate block to the caller's consumer."""
        if self.on_native is not None:
            self.on_native(block)

    def _mono_blocks(self) -> Iterator[Block]:
        """Gather native-rate blocks, hand them to `on_native`, then mix and resample each."""
        layout = self._stream.layout if self._stream.layout.nb_channels else None
        native = FrameBatcher(self.block_samples, layout, self.info.sample_rate_hz)
        mixer = mono_resampler(self.info.sample_rate_hz, self.rate_hz)
        push = native.push
        for frame in self._frames():
            if (block := push(frame)) is not None:
                yield from self._mono_from(block, mixer)
        if (block := native.flush(final=True)) is not None:
            yield from self._mono_from(block, mixer)
        if (tail := mixer.flush()).shape[1]:
            self.samples += tail.shape[1]
            yield tail

    def _mono_from(self, block: Block,
                   mixer: MonoResampler | HalvingResampler) -> Iterator[Block]:
        """Deliver one native block, then yield its mono mix at the analysis rate."""
        self._deliver_native(block)
        out = mixer.resample(to_mono(block))
        if out.shape[1]:
            self.samples += out.shape[1]
            yield out

    def _decoded_chunks(self) -> Iterator[tuple[Block, Block | None]]:
        """Resample every frame; pair each analysis-rate chunk with its native twin."""
        layout = self._stream.layout if self._stream.layout.nb_channels else None
        resampler = Resampler(self.rate_hz, layout)
        native = Resampler(self.info.sample_rate_hz, layout) if self.on_native else None
        for frame in self._frames():
            if native is not None:
                for native_chunk in native.resample(frame):
                    yield _EMPTY, native_chunk
            for chunk in resampler.resample(frame):
                yield chunk, None
        if native is not None:
            for native_chunk in native.flush():
                yield _EMPTY, native_chunk
        for chunk in resampler.flush():
            yield chunk, None

    def _frames(self) -> Iterator[av.AudioFrame]:
        """Demux, hash and decode packet by packet, skipping (and counting) corrupt ones."""
        bad_packets = 0
        for packet in self._demuxed():
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                bad_packets += 1
                if bad_packets > MAX_BAD_PACKETS and bad_packets > self._good_packets:
                    raise AnalysisError(
                        FailureKind.DECODE, f"mostly corrupt: {bad_packets} bad packets ({_reason(exc)})"
                    ) from exc
                continue
            self._good_packets += 1
            yield from decoded
        if bad_packets:
            self._note(DecodeWarning.CORRUPT, f"skipped {bad_packets} corrupt packet(s)")

    def _note(self, kind: DecodeWarning, problem: str) -> None:
        """Record a problem and what it makes the file (truncated wins)."""
        self.problems.append(problem)
        if self.warning_kind is not DecodeWarning.TRUNCATED:
            self.warning_kind = kind

    def _demuxed(self) -> Iterator[av.Packet[av.AudioStream]]:
        """Yield the stream's packets, hashing their bytes; a broken tail ends the stream early."""
        try:
            update = self._hash.update
            for packet in self._container.demux(self._stream):
                if packet.size:
                    update(packet)
                    self._last = packet  # described once, at the end (_last_described)
                yield packet
        except av.error.FFmpegError as exc:
            if self._good_packets == 0:
                raise AnalysisError(FailureKind.DECODE, _reason(exc)) from exc
            self._note(DecodeWarning.TRUNCATED, f"demuxing stopped early: {_reason(exc)}")

    def _check_complete(self) -> None:
        """Fail on a file with no audio at all; note a decode that ended well short."""
        if self.samples == 0:
            raise AnalysisError(FailureKind.DECODE, "no audio decoded (empty or truncated stream)")
        if found := incomplete_end(self.path, self.info.container, self.info.codec,
                                   self.info.expected_s, self.duration_s, self._last_described()):
            self._note(*found)

    def _last_described(self) -> LastPacket | None:
        """Return where the last packet demuxed starts, its size and first bytes."""
        if self._last is None:
            return None
        return LastPacket(self._last.pos, self._last.size, bytes(memoryview(self._last)[:4]))


def packet_digest(path: Path) -> tuple[str, float | None]:
    """Return the audio digest and the container's duration without decoding anything.

    The same hash as `AudioReader.digest`, at demuxing cost (a few percent of a decode), so a
    recording analysed before (a tag edit, a copy) is recognised before any work is done.
    """
    with AudioReader(path) as reader:
        for _ in reader._demuxed():
            pass
        if reader.problems:
            raise AnalysisError(FailureKind.DECODE, "; ".join(reader.problems))
        return reader._hash.hexdigest(), reader.info.expected_s


def read_mono(path: Path, *, max_s: float | None = None) -> tuple[Block, str, float]:
    """Decode a whole file to mono; return (signal up to `max_s`, digest, full duration in s)."""
    with AudioReader(path) as reader:
        limit = None if max_s is None else int(max_s * reader.rate_hz)
        parts: list[Block] = []
        kept = 0
        for block in reader.blocks():
            if limit is None or kept < limit:
                mono = to_mono(block)[: None if limit is None else limit - kept]
                parts.append(mono)
                kept += len(mono)
        return np.concatenate(parts), reader.digest, reader.duration_s


def _open_file(path: Path) -> IO[bytes]:
    """Open the file ourselves: OS errors are `io` failures, and non-UTF-8 names just work."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by AudioReader.close
    except OSError as exc:
        raise AnalysisError(FailureKind.IO, f"cannot open: {exc.strerror or exc}") from exc
    try:
        size = handle.seek(0, 2)
        handle.seek(0)
    except OSError as exc:
        handle.close()
        raise AnalysisError(FailureKind.IO, f"cannot read: {exc.strerror or exc}") from exc
    if size == 0:
        handle.close()
        raise AnalysisError(FailureKind.DECODE, "empty file (0 bytes)")
    return handle


def _open_container(handle: IO[bytes], path: Path) -> av.container.InputContainer:
    """Probe the container; anything FFmpeg cannot recognise is a `decode` failure."""
    try:
        # Tags are read by mutagen; FFmpeg's copy of them must not fail on bytes that are not
        # UTF-8 (PyAV's default is strict: a Latin-1 RIFF INFO tag would stop the decode).
        return av.open(handle, mode="r", metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise AnalysisError(FailureKind.DECODE, _reason(exc)) from exc
    except OSError as exc:
        raise AnalysisError(FailureKind.IO, f"cannot read: {exc.strerror or exc}") from exc


def _choose_stream(container: av.container.InputContainer) -> av.AudioStream:
    """Pick FFmpeg's best audio stream, as ffmpeg would; the choice is part of the identity."""
    if not container.streams.audio:
        raise AnalysisError(FailureKind.DECODE, "no audio stream")
    stream = container.streams.best("audio")
    if not isinstance(stream, av.AudioStream):
        # FFmpeg finds no usable stream when the probe could not read any parameters.
        first = container.streams.audio[0]
        raise AnalysisError(FailureKind.DECODE, f"no decodable audio stream "
                            f"({first.codec_context.name}, no sample rate found)")
    return stream


def _describe(container: av.container.InputContainer, stream: av.AudioStream) -> StreamInfo:
    """Collect the stream facts that tell whether a decode came out complete."""
    expected: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        expected = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        expected = container.duration / 1_000_000
    return StreamInfo(
        container=container.format.name,
        codec=stream.codec_context.name,
        sample_rate_hz=stream.rate or 0,
        channels=tuple(ch.name for ch in stream.layout.channels),
        expected_s=expected,
    )


def _reason(exc: av.error.FFmpegError) -> str:
    """Return FFmpeg's message in lower case, without the errno or the file name."""
    if isinstance(exc, av.error.EOFError):
        return "unexpected end of file (truncated?)"
    message = exc.strerror or str(exc)
    return message[:1].lower() + message[1:]
