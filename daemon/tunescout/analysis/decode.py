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
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO

import av
import av.error
import numpy as np
import numpy.typing as npt

from tunescout.analysis.integrity import LastPacket, incomplete_end
from tunescout.errors import AnalysisError
from tunescout.models import DecodeWarning, FailureKind

log = logging.getLogger(__name__)

ANALYSIS_RATE_HZ = 22050
"""Every signal is resampled to this rate: librosa's default, enough for all our features."""

BLOCK_SAMPLES = 1 << 16
"""Samples per channel in one decoded block (about 3 s at the analysis rate)."""

MAX_BAD_PACKETS = 50
"""Corrupt packets are skipped; past this many, and more bad than good, the file is undecodable."""

DIGEST_BYTES = 16

Block = npt.NDArray[np.float32]
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

    With `mono=True` the blocks have one channel: the channels are averaged at the stream's own
    rate (the way librosa mixes them) and only that one channel is resampled, a block at a time,
    which halves the resampling work for stereo and saves a conversion per packet.

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
        self._last_packet: LastPacket | None = None
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
        analysis = _Accumulator(self.block_samples)
        native = _Accumulator(self.block_samples)
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
        native = _Accumulator(self.block_samples)
        layout = self._stream.layout if self._stream.layout.nb_channels else None
        converter = _Resampler(self.info.sample_rate_hz, layout)
        mixer = _MonoResampler(self.info.sample_rate_hz, self.rate_hz)
        for frame in self._frames():
            for chunk in converter.resample(frame):
                if (block := native.push(chunk)) is not None:
                    yield from self._mono_from(block, mixer)
        for chunk in converter.flush():
            if (block := native.push(chunk)) is not None:
                yield from self._mono_from(block, mixer)
        if (block := native.flush()) is not None:
            yield from self._mono_from(block, mixer)
        if (tail := mixer.flush()).shape[1]:
            self.samples += tail.shape[1]
            yield tail

    def _mono_from(self, block: Block, mixer: _MonoResampler) -> Iterator[Block]:
        """Deliver one native block, then yield its mono mix at the analysis rate."""
        self._deliver_native(block)
        out = mixer.resample(to_mono(block))
        if out.shape[1]:
            self.samples += out.shape[1]
            yield out

    def _decoded_chunks(self) -> Iterator[tuple[Block, Block | None]]:
        """Resample every frame; pair each analysis-rate chunk with its native twin."""
        layout = self._stream.layout if self._stream.layout.nb_channels else None
        resampler = _Resampler(self.rate_hz, layout)
        native = _Resampler(self.info.sample_rate_hz, layout) if self.on_native else None
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
            for packet in self._container.demux(self._stream):
                if packet.size:
                    self._hash.update(view := memoryview(packet))
                    self._last_packet = LastPacket(packet.pos, packet.size, bytes(view[:4]))
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
                                   self.info.expected_s, self.duration_s, self._last_packet):
            self._note(*found)


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


class _Accumulator:
    """Gather small decoded chunks into blocks of at least `size` samples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._parts: list[Block] = []
        self._samples = 0

    def push(self, chunk: Block) -> Block | None:
        """Add a chunk; return a block once enough samples are gathered."""
        if chunk.shape[1] == 0:
            return None
        self._parts.append(chunk)
        self._samples += chunk.shape[1]
        return self.flush() if self._samples >= self.size else None

    def flush(self) -> Block | None:
        """Return what is gathered as one block, or None if nothing is."""
        if not self._parts:
            return None
        block = self._parts[0] if len(self._parts) == 1 else np.concatenate(self._parts, axis=1)
        self._parts, self._samples = [], 0
        return block


class _Resampler:
    """Convert frames to planar float at `rate_hz`, keeping the stream's (or first frame's) layout."""

    def __init__(self, rate_hz: int, layout: av.AudioLayout | None) -> None:
        self.rate_hz = rate_hz
        self._resampler: av.AudioResampler | None = None
        self._layout = layout
        self._source: tuple[str, str, int] | None = None

    def resample(self, frame: av.AudioFrame) -> Iterator[Block]:
        """Yield the frame's samples; a mid-stream format change starts a new resampler."""
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._layout is None:
            self._layout = frame.layout
        if source == ("fltp", self._layout.name, self.rate_hz):
            # Already what we want (MP3, AAC, Vorbis, Opus decoders output planar float):
            # skip a copy through libswresample.
            yield from self.flush()
            yield frame.to_ndarray().astype(np.float32, copy=False)
            return
        if self._resampler is None or source != self._source:
            yield from self.flush()
            # Keep the first layout so every block has the same channels (loudness filters
            # keep per-channel state); only a stream that changes layout gets remixed.
            self._resampler = av.AudioResampler(format="fltp", layout=self._layout,
                                                rate=self.rate_hz)
            self._source = source
        for out in self._resampler.resample(frame):
            yield out.to_ndarray().astype(np.float32, copy=False)

    def flush(self) -> Iterator[Block]:
        """Yield what the current resampler still holds."""
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                yield out.to_ndarray().astype(np.float32, copy=False)
            self._resampler = None


class _MonoResampler:
    """Resample one channel a block at a time, keeping the resampler's state between blocks."""

    def __init__(self, source_hz: int, rate_hz: int) -> None:
        self._source_hz = source_hz
        self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate_hz)
        self._pts = 0

    def resample(self, mono: Block) -> Block:
        """Return the (1, n) resampled samples of a 1-D block (n may be 0 while it fills)."""
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(mono, dtype=np.float32)[None, :], format="fltp", layout="mono"
        )
        frame.sample_rate = self._source_hz
        frame.pts = self._pts
        frame.time_base = Fraction(1, self._source_hz)
        self._pts += len(mono)
        return self._joined(self._resampler.resample(frame))

    def flush(self) -> Block:
        """Return what the resampler still holds."""
        return self._joined(self._resampler.resample(None))

    @staticmethod
    def _joined(frames: list[av.AudioFrame]) -> Block:
        """Concatenate output frames into one (1, n) float32 block."""
        parts = [frame.to_ndarray().astype(np.float32, copy=False) for frame in frames]
        if not parts:
            return np.zeros((1, 0), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def to_mono(block: Block) -> Block:
    """Average the channels: PyAV's own downmix is 3 dB louder than librosa's mean."""
    mono: Block = block[0] if block.shape[0] == 1 else block.mean(axis=0, dtype=np.float32)
    return mono


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
