"""Decoding real files of every format: durations, levels, the audio digest and broken files."""

from __future__ import annotations

import os
from pathlib import Path

import av
import librosa
import mutagen.flac
import mutagen.id3
import numpy as np
import pytest
import soundfile

from support.audio import write_damaged, write_garbage, write_tags, write_track, write_truncated
from tunescout.analysis.decode import ANALYSIS_RATE_HZ, AudioReader, read_mono, to_mono
from tunescout.errors import AnalysisError

FORMATS = [".wav", ".aiff", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".alac.m4a", ".wma", ".wv"]


def decode(path: Path) -> tuple[np.ndarray, AudioReader]:
    """Decode a whole file to mono, returning the reader for its digest and problems."""
    with AudioReader(path) as reader:
        signal = np.concatenate([to_mono(block) for block in reader.blocks()])
    return signal, reader


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_decodes_to_its_duration(tmp_path: Path, suffix: str) -> None:
    path = write_track(tmp_path / f"track{suffix}", seconds=5.0)
    signal, reader = decode(path)
    assert signal.dtype == np.float32
    assert len(signal) / ANALYSIS_RATE_HZ == pytest.approx(5.0, rel=0.02)
    assert reader.duration_s == pytest.approx(5.0, rel=0.02)
    assert len(reader.digest) == 32
    assert reader.problems == []


@pytest.mark.parametrize(
    ("sample_rate", "channels", "subtype"),
    [
        (8000, 1, "PCM_16"),
        (96000, 2, "PCM_24"),
        (44100, 2, "PCM_32"),
        (48000, 2, "FLOAT"),
        (44100, 6, "PCM_16"),
        (22050, 1, "PCM_U8"),
    ],
)
def test_wav_rates_widths_and_channels(
    tmp_path: Path, sample_rate: int, channels: int, subtype: str
) -> None:
    path = write_track(
        tmp_path / "t.wav", seconds=3.0, sample_rate=sample_rate, channels=channels, subtype=subtype
    )
    signal, reader = decode(path)
    assert len(reader.info.channels) == channels
    assert reader.info.sample_rate_hz == sample_rate
    assert len(signal) == pytest.approx(3.0 * ANALYSIS_RATE_HZ, rel=0.01)
    # A -12 dBFS sine, every channel the same: the mono mix keeps the level.
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(signal[1000:-1000] ** 2)))
    assert rms_dbfs == pytest.approx(-12.0 - 3.01, abs=0.1)


def test_downmix_level_matches_librosa(tmp_path: Path) -> None:
    """PyAV's own stereo-to-mono mix is 3 dB louder than librosa's; ours must match librosa."""
    path = write_track(tmp_path / "t.flac", seconds=3.0, kind="noise", channels=2)
    ours, _ = decode(path)
    data, rate = soundfile.read(path, dtype="float32")
    # What librosa.load(path, sr=22050, mono=True) does, without its audioread fallback import.
    theirs = librosa.resample(librosa.to_mono(data.T), orig_sr=rate, target_sr=ANALYSIS_RATE_HZ)
    assert len(ours) == len(theirs)
    ratio_db = 10 * np.log10(np.mean(ours**2) / np.mean(theirs**2))
    assert abs(ratio_db) < 0.05


def test_blocks_are_bounded(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=10.0)
    with AudioReader(path, block_samples=8192) as reader:
        sizes = [block.shape for block in reader.blocks()]
    assert all(shape[0] == 2 for shape in sizes)
    assert max(shape[1] for shape in sizes) < 8192 + 4096
    assert sum(shape[1] for shape in sizes) == pytest.approx(10 * ANALYSIS_RATE_HZ, rel=0.01)


def test_native_blocks_keep_the_stream_rate(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.flac", seconds=4.0, sample_rate=48000)
    native: list[np.ndarray] = []
    with AudioReader(path, on_native=native.append) as reader:
        analysed = sum(block.shape[1] for block in reader.blocks())
    assert sum(block.shape[1] for block in native) == 4 * 48000
    assert analysed == 4 * ANALYSIS_RATE_HZ


def test_read_mono_caps_the_signal_but_not_the_duration(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.ogg", seconds=8.0)
    signal, digest, duration_s = read_mono(path, max_s=2.0)
    assert len(signal) == 2 * ANALYSIS_RATE_HZ
    assert duration_s == pytest.approx(8.0, rel=0.01)
    assert digest


# --- the audio digest ---------------------------------------------------------------------------


def digest_of(path: Path) -> str:
    return decode(path)[1].digest


@pytest.mark.parametrize("suffix", [".mp3", ".flac", ".ogg", ".m4a", ".wav"])
def test_digest_survives_retagging(tmp_path: Path, suffix: str) -> None:
    path = write_track(tmp_path / f"t{suffix}", kind="chords", tags={"title": "before"})
    before = digest_of(path)
    write_tags(path, {"title": "after " * 200, "artist": "someone", "comment": "x" * 5000})
    assert digest_of(path) == before


def test_digest_survives_a_cover_and_id3v1(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", tags={"title": "x"})
    before = digest_of(path)
    id3 = mutagen.id3.ID3(path)
    id3.add(mutagen.id3.APIC(encoding=3, mime="image/png", type=3, desc="", data=b"\x89PNG" * 5000))
    id3.save(path, v1=2)
    assert digest_of(path) == before


def test_digest_survives_flac_padding_and_pictures(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.flac", tags={"title": "x"})
    before = digest_of(path)
    flac = mutagen.flac.FLAC(path)
    picture = mutagen.flac.Picture()
    picture.data, picture.mime = b"\xff\xd8" + bytes(100_000), "image/jpeg"
    flac.add_picture(picture)
    flac.save(padding=lambda info: 65536)
    assert digest_of(path) == before


def test_different_audio_has_a_different_digest(tmp_path: Path) -> None:
    a = write_track(tmp_path / "a.flac", freq_hz=440.0)
    b = write_track(tmp_path / "b.flac", freq_hz=441.0)
    c = write_track(tmp_path / "c.flac", freq_hz=440.0)
    assert digest_of(a) != digest_of(b)
    assert digest_of(a) == digest_of(c)


# --- broken files -------------------------------------------------------------------------------


def expect_failure(path: Path, kind: str) -> str:
    with pytest.raises(AnalysisError) as info:
        decode(path)
    assert info.value.kind == kind
    return info.value.reason


def test_missing_file_is_an_io_error(tmp_path: Path) -> None:
    assert "no such file" in expect_failure(tmp_path / "gone.mp3", "io").lower()


def test_directory_is_an_io_error(tmp_path: Path) -> None:
    (tmp_path / "album.flac").mkdir()
    assert "directory" in expect_failure(tmp_path / "album.flac", "io").lower()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_an_io_error(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3")
    path.chmod(0)
    assert "permission denied" in expect_failure(path, "io").lower()


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    assert expect_failure(path, "decode") == "empty file (0 bytes)"


def test_text_renamed_mp3(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp3"
    path.write_text("shopping list: milk, eggs, a better playlist generator\n" * 40)
    assert expect_failure(path, "decode") == "invalid data found when processing input"


def test_random_bytes(tmp_path: Path) -> None:
    for suffix in (".mp3", ".flac", ".ogg", ".m4a"):
        reason = expect_failure(write_garbage(tmp_path / f"noise{suffix}", 50_000), "decode")
        assert reason


def test_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "video.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert expect_failure(path, "decode") == "no audio stream"


@pytest.mark.parametrize("suffix", [".mp3", ".flac", ".wv", ".aiff"])
def test_truncated_file_decodes_partially(tmp_path: Path, suffix: str) -> None:
    full = write_track(tmp_path / f"full{suffix}", seconds=6.0)
    cut = write_truncated(full, tmp_path / f"cut{suffix}", 0.5)
    signal, reader = decode(cut)
    assert len(signal) / ANALYSIS_RATE_HZ == pytest.approx(3.0, abs=0.3)
    if suffix != ".mp3":  # the MP3 header has no length: its estimate shrinks with the file
        assert any(problem.startswith("partial decode") for problem in reader.problems)
    assert reader.warning_kind == "truncated"  # an MP3 by its torn last frame


@pytest.mark.parametrize("suffix", [".mp3", ".ogg"])
@pytest.mark.parametrize("fraction", [0.37, 0.5, 0.81])
def test_a_cut_without_a_length_header_is_truncated(tmp_path: Path, suffix: str,
                                                    fraction: float) -> None:
    """An Ogg stream's length is its last page's; such a cut shows only in the torn last frame
    or page, wherever the cut falls."""
    full = write_track(tmp_path / f"full{suffix}", seconds=8.0, kind="chords")
    _, whole = decode(full)
    assert (whole.problems, whole.warning_kind) == ([], None)
    _, reader = decode(write_truncated(full, tmp_path / f"cut{suffix}", fraction))
    assert reader.warning_kind == "truncated", reader.problems


@pytest.mark.parametrize("suffix", [".flac", ".mp3"])
def test_damaged_frames_make_a_file_corrupt(tmp_path: Path, suffix: str) -> None:
    """Bytes overwritten mid-file: the MP3 decoder rejects packets, the FLAC parser drops the
    frames that fail their CRC silently and only the missing samples tell."""
    full = write_track(tmp_path / f"full{suffix}", seconds=6.0, kind="chords")
    signal, reader = decode(write_damaged(full, tmp_path / f"bad{suffix}"))
    assert reader.warning_kind == "corrupt", reader.problems
    assert 5.0 < len(signal) / ANALYSIS_RATE_HZ < 6.0


@pytest.mark.parametrize("suffix", FORMATS)
def test_whole_files_have_no_warning(tmp_path: Path, suffix: str) -> None:
    _, reader = decode(write_track(tmp_path / f"track{suffix}", seconds=5.0, kind="chords"))
    assert (reader.problems, reader.warning_kind) == ([], None)


@pytest.mark.parametrize("suffix", [".mp3", ".flac", ".ogg", ".m4a"])
def test_file_cut_in_its_header(tmp_path: Path, suffix: str) -> None:
    """Cut after ~1.5 kB: a clear decode error, or (FLAC: one whole frame) a partial decode."""
    full = write_track(tmp_path / f"full{suffix}", seconds=6.0)
    cut = write_truncated(full, tmp_path / f"cut{suffix}", 0.02)
    try:
        _, reader = decode(cut)
    except AnalysisError as exc:
        assert exc.kind == "decode"
        assert exc.reason in {
            "invalid data found when processing input",
            "no audio decoded (empty or truncated stream)",
            "unexpected end of file (truncated?)",
        }
    else:
        assert "partial decode: 0.1 s of 6.0 s expected" in reader.problems


def test_junk_between_tag_and_first_frame(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", tags={"title": "x"})
    data = path.read_bytes()
    tag_end = 10 + _syncsafe(data[6:10])
    path.write_bytes(data[:tag_end] + b"\x00junk\xff" * 400 + data[tag_end:])
    signal, _ = decode(path)
    assert len(signal) / ANALYSIS_RATE_HZ == pytest.approx(6.0, rel=0.02)


def _syncsafe(raw: bytes) -> int:
    return (raw[0] << 21) | (raw[1] << 14) | (raw[2] << 7) | raw[3]


# --- more containers, sample types, rates and layouts ------------------------------------------


@pytest.mark.parametrize(
    ("name", "major", "subtype", "sample_rate", "channels"),
    [
        ("rf64-16.wav", "RF64", "PCM_16", 44100, 2),
        ("rf64-float.wav", "RF64", "FLOAT", 48000, 2),
        ("double.wav", "WAV", "DOUBLE", 44100, 2),
        ("int24.aiff", "AIFF", "PCM_24", 96000, 2),
        ("int32.aiff", "AIFF", "PCM_32", 44100, 1),
        ("float.aiff", "AIFF", "FLOAT", 44100, 2),
        ("hires.flac", "FLAC", "PCM_24", 96000, 2),
        ("surround.flac", "FLAC", "PCM_16", 48000, 6),
        ("phone.flac", "FLAC", "PCM_16", 8000, 1),
    ],
)
def test_sndfile_containers_decode_to_their_duration(
    tmp_path: Path, name: str, major: str, subtype: str, sample_rate: int, channels: int
) -> None:
    path = tmp_path / name
    data = np.repeat(np.sin(np.linspace(0, 2 * np.pi * 440 * 3, 3 * sample_rate))[:, None],
                     channels, axis=1) * 0.25
    soundfile.write(path, data, sample_rate, format=major, subtype=subtype)
    signal, reader = decode(path)
    assert len(reader.info.channels) == channels
    assert reader.info.sample_rate_hz == sample_rate
    assert reader.duration_s == pytest.approx(3.0, rel=0.01)
    assert reader.problems == []
    assert float(np.max(np.abs(signal))) == pytest.approx(0.25, rel=0.05)


@pytest.mark.parametrize(
    ("suffix", "sample_rate", "channels"),
    [(".wv", 96000, 1), (".wv", 8000, 6), (".mp3", 8000, 1), (".m4a", 96000, 2),
     (".opus", 48000, 6), (".alac.m4a", 96000, 1), (".wma", 8000, 2)],
)
def test_codecs_at_odd_rates_and_layouts(
    tmp_path: Path, suffix: str, sample_rate: int, channels: int
) -> None:
    path = write_track(tmp_path / f"t{suffix}", seconds=3.0, sample_rate=sample_rate,
                       channels=channels)
    signal, reader = decode(path)
    assert len(reader.info.channels) == channels
    assert reader.duration_s == pytest.approx(3.0, rel=0.03)
    assert len(signal) == reader.samples


@pytest.mark.parametrize("suffix", [".mp3", ".flac", ".wav"])
def test_mono_reader_matches_the_mean_of_the_channels(tmp_path: Path, suffix: str) -> None:
    """The analysis path mixes at the native rate, then resamples one channel: same signal."""
    path = write_track(tmp_path / f"t{suffix}", seconds=4.0, kind="chords", channels=2)
    stereo, _ = decode(path)
    native: list[np.ndarray] = []
    with AudioReader(path, mono=True, on_native=native.append) as reader:
        parts = list(reader.blocks())
    assert all(part.shape[0] == 1 for part in parts)
    mono = np.concatenate([part[0] for part in parts])
    assert abs(len(mono) - len(stereo)) <= 1
    n = min(len(mono), len(stereo))
    assert np.max(np.abs(mono[:n] - stereo[:n])) < 1e-3
    assert sum(block.shape[1] for block in native) == 4 * 44100
    assert reader.digest == digest_of(path)


def test_junk_before_the_first_frame_without_a_tag(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=4.0)
    path.write_bytes(bytes(range(256)) * 20 + path.read_bytes())
    signal, _ = decode(path)
    assert len(signal) / ANALYSIS_RATE_HZ == pytest.approx(4.0, rel=0.02)
