"""Tags from real files of every tag type, normalised, within the limits, never fatal."""

from __future__ import annotations

import base64
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import mutagen.aiff
import mutagen.apev2
import mutagen.asf
import mutagen.flac
import mutagen.id3
import mutagen.mp4
import mutagen.oggopus
import mutagen.oggvorbis
import mutagen.wave
import numpy as np
import pytest

from support.audio import write_track
from tunescout.analysis import analyse_file
from tunescout.analysis.tags import MAX_LIST_ITEMS, MAX_TAGS, MAX_VALUE_CHARS, TagReport, read_tags
from tunescout.errors import AnalysisError

TAGS = {
    "title": "Blåbærsyltetøy – “live”",
    "artist": "Ærøskøbing Ensemble",
    "album": "Songs",
    "albumartist": "Various",
    "genre": "Folk",
    "date": "2021-03-04",
    "tracknumber": "3/12",
    "discnumber": "1/2",
    "composer": "Grieg",
    "comment": "recorded at home",
    "musicbrainz_trackid": "7f0f5a3c-9f6c-4d2b-9a4e-0d7c3f1f0a11",
    "musicbrainz_albumid": "0a1b2c3d-0000-4000-8000-000000000001",
    "replaygain_track_gain": "-6.50 dB",
}
EXPECTED = {
    **TAGS, "tracknumber": 3, "tracktotal": 12, "discnumber": 1, "disctotal": 2,
}
FORMATS = [".mp3", ".wav", ".aiff", ".flac", ".ogg", ".opus", ".m4a", ".alac.m4a", ".wma", ".wv"]
PNG_600 = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", 600, 400) + b"\x08\x02\0\0\0"


@pytest.mark.parametrize("suffix", FORMATS)
def test_native_tags_come_back_normalised(tmp_path: Path, suffix: str) -> None:
    path = write_track(tmp_path / f"t{suffix}", seconds=1.0, tags=TAGS)
    tags = read_tags(path).tags
    tags.pop("encoder", None)  # the MP4 muxer adds one
    assert tags == EXPECTED


def test_id3v23(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=1.0, tags=TAGS)
    id3 = mutagen.id3.ID3(path)
    id3.save(v2_version=3)
    assert mutagen.id3.ID3(path).version[:2] == (2, 3)
    assert read_tags(path).tags["date"] == "2021-03-04"
    assert read_tags(path).tags["title"] == TAGS["title"]


def test_id3v22(tmp_path: Path) -> None:
    """mutagen cannot write v2.2 (iTunes used it until 2005), so write its frames by hand."""
    path = write_track(tmp_path / "t.mp3", seconds=1.0)

    def frame(frame_id: bytes, text: str) -> bytes:
        body = b"\x00" + text.encode("latin-1")
        return frame_id + len(body).to_bytes(3, "big") + body

    frames = frame(b"TT2", "Old Song") + frame(b"TP1", "Old Band") + frame(b"TRK", "7/9")
    size = len(frames)
    syncsafe = bytes([(size >> 21) & 127, (size >> 14) & 127, (size >> 7) & 127, size & 127])
    path.write_bytes(b"ID3\x02\x00\x00" + syncsafe + frames + path.read_bytes())
    assert read_tags(path).tags == {
        "title": "Old Song", "artist": "Old Band", "tracknumber": 7, "tracktotal": 9,
    }


def test_id3v1_only(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=1.0)
    v1 = (
        b"TAG" + b"Tiny Title".ljust(30, b"\0") + b"Tiny Artist".ljust(30, b"\0")
        + b"Tiny Album".ljust(30, b"\0") + b"1999" + b"a comment".ljust(28, b"\0")
        + b"\0" + bytes([5]) + bytes([17])
    )
    with open(path, "ab") as handle:
        handle.write(v1)
    tags = read_tags(path).tags
    assert tags["title"] == "Tiny Title"
    assert tags["artist"] == "Tiny Artist"
    assert tags["date"] == "1999"
    assert tags["tracknumber"] == 5
    assert tags["genre"] == "Rock"


def test_apev2_on_mp3(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=1.0)
    ape = mutagen.apev2.APEv2()
    ape["Title"] = "From APE"
    ape["Artist"] = "A\0B"  # APEv2 separates multiple values with NUL
    ape["Track"] = "2"
    ape.save(path)
    assert read_tags(path).tags == {"title": "From APE", "artist": ["A", "B"], "tracknumber": 2}


def test_riff_info_in_wav(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.wav", seconds=1.0)
    entries = b""
    for chunk_id, value in ((b"INAM", b"Info Title\0"), (b"IART", b"Caf\xe9\0"), (b"ITRK", b"4\0")):
        entries += chunk_id + struct.pack("<I", len(value)) + value + b"\0" * (len(value) & 1)
    body = b"INFO" + entries
    data = path.read_bytes() + b"LIST" + struct.pack("<I", len(body)) + body
    path.write_bytes(data[:4] + struct.pack("<I", len(data) - 8) + data[8:])
    tags = read_tags(path).tags
    assert tags == {"title": "Info Title", "artist": "Caf\ufffd", "tracknumber": 4}
    assert analyse_file(path).duration_s == pytest.approx(1.0, rel=0.02)


def test_multiple_values_become_lists(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.flac", seconds=1.0)
    flac = mutagen.flac.FLAC(path)
    flac["ARTIST"] = ["One", "Two", "Two", "Three"]
    flac["GENRE"] = [f"g{i}" for i in range(25)]
    flac["TRACKNUMBER"] = ["5"]
    flac["TRACKTOTAL"] = ["10"]
    flac.save()
    tags = read_tags(path).tags
    assert tags["artist"] == ["One", "Two", "Three"]
    assert tags["genre"] == [f"g{i}" for i in range(MAX_LIST_ITEMS)]
    assert (tags["tracknumber"], tags["tracktotal"]) == (5, 10)


def test_unparseable_numbers_are_dropped(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.ogg", seconds=1.0, tags={"tracknumber": "A1", "discnumber": "x"})
    assert read_tags(path).tags == {}


# --- limits -------------------------------------------------------------------------------------


def test_at_most_100_tags_are_read(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=1.0)
    id3 = mutagen.id3.ID3()
    for i in range(300):
        id3.add(mutagen.id3.TXXX(encoding=3, desc=f"custom {i:03d}", text=[f"value {i}"]))
    id3.save(path)
    tags = read_tags(path).tags
    assert len(tags) == MAX_TAGS
    assert tags["custom_099"] == "value 99"
    assert "custom_100" not in tags


def test_a_1_mib_comment_is_cut(tmp_path: Path) -> None:
    comment = "la " * (1 << 19)
    for suffix in (".mp3", ".flac", ".m4a", ".ogg", ".opus"):
        path = write_track(tmp_path / f"t{suffix}", seconds=1.0, tags={"comment": comment})
        tracemalloc.start()
        tags = read_tags(path).tags
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert tags["comment"] == comment[:MAX_VALUE_CHARS].strip() + "…"
        assert peak < 2 << 20, f"{suffix}: reading a 1.5 MiB comment peaked at {peak >> 10} KiB"


def large_cover(nbytes: int = 8 << 20, header: bytes = PNG_600) -> bytes:
    """An image of `nbytes`: a real PNG/JPEG header, then seeded noise (never compressible)."""
    return header + np.random.default_rng(nbytes).bytes(nbytes - len(header))


# A JPEG whose SOF0 (600×400) comes after a 40 KiB APP1 (EXIF) segment, as cameras write them.
JPEG_600 = (
    b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", 40 << 10) + bytes((40 << 10) - 2)
    + b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 400, 600, 3) + bytes(9)
)


def add_cover(path: Path, image: bytes, mime: str = "image/png", id3_version: int = 4) -> None:
    """Add `image` as the front cover, in the way each format's taggers store it."""
    suffix = path.suffix.lower()
    if suffix in (".mp3", ".wav", ".aiff"):
        holder: Any = None
        if suffix == ".mp3":
            id3: Any = mutagen.id3.ID3(path)
        else:
            holder = mutagen.wave.WAVE(path) if suffix == ".wav" else mutagen.aiff.AIFF(path)
            id3 = holder.tags
        id3.add(mutagen.id3.APIC(encoding=3, mime=mime, type=3, desc="front", data=image))
        if holder is None:
            id3.save(path, v2_version=id3_version)
        else:
            holder.save(v2_version=id3_version)
    elif suffix == ".flac":
        flac = mutagen.flac.FLAC(path)
        flac.add_picture(_flac_picture(image, mime))
        flac.save()
    elif suffix in (".ogg", ".opus"):
        ogg: Any = (mutagen.oggvorbis.OggVorbis if suffix == ".ogg" else mutagen.oggopus.OggOpus)(path)
        encoded = base64.b64encode(_flac_picture(image, mime).write()).decode("ascii")
        ogg.tags["METADATA_BLOCK_PICTURE"] = [encoded]
        ogg.save()
    elif suffix == ".m4a":
        mp4 = mutagen.mp4.MP4(path)
        kind = mutagen.mp4.MP4Cover.FORMAT_PNG if mime == "image/png" else mutagen.mp4.MP4Cover.FORMAT_JPEG
        mp4["covr"] = [mutagen.mp4.MP4Cover(image, kind)]
        mp4.save()
    elif suffix == ".wma":
        asf = mutagen.asf.ASF(path)
        packed = (
            b"\x03" + struct.pack("<I", len(image)) + mime.encode("utf-16-le") + b"\0\0"
            + "front".encode("utf-16-le") + b"\0\0" + image
        )
        asf["WM/Picture"] = [mutagen.asf.ASFByteArrayAttribute(packed)]  # type: ignore[attr-defined]
        asf.save()
    else:
        raise ValueError(suffix)


def _flac_picture(image: bytes, mime: str) -> mutagen.flac.Picture:
    picture = mutagen.flac.Picture()
    picture.data, picture.mime, picture.type = image, mime, 3
    return picture


def traced_read(path: Path) -> tuple[TagReport, int]:
    """Return read_tags(path) and the peak of Python allocations while reading."""
    tracemalloc.start()
    try:
        report = read_tags(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return report, peak


COVER_CASES = [
    (".mp3", 4), (".mp3", 3), (".wav", 4), (".aiff", 3), (".flac", 4), (".ogg", 4), (".opus", 4),
    (".m4a", 4), (".wma", 4),
]


@pytest.mark.parametrize(("suffix", "id3_version"), COVER_CASES)
def test_an_8_mib_cover_is_described_never_read(tmp_path: Path, suffix: str, id3_version: int) -> None:
    plain = write_track(tmp_path / f"plain{suffix}", seconds=1.0, tags=TAGS)
    covered = write_track(tmp_path / f"covered{suffix}", seconds=1.0, tags=TAGS)
    add_cover(covered, large_cover(), id3_version=id3_version)
    assert covered.stat().st_size > 8 << 20
    plain_report, plain_peak = traced_read(plain)
    report, peak = traced_read(covered)
    assert report.tags == plain_report.tags
    assert report.tags["title"] == TAGS["title"]
    assert report.cover == {"mime": "image/png", "width": 600, "height": 400, "bytes": 8 << 20}
    assert report.note is None
    assert peak < 2 << 20, f"{suffix}: peak {peak >> 10} KiB for an 8 MiB cover"
    assert peak < 4 * plain_peak + (512 << 10), f"{suffix}: {peak >> 10} KiB vs {plain_peak >> 10} KiB"


@pytest.mark.parametrize("suffix", [".mp3", ".flac", ".ogg", ".m4a", ".wma"])
def test_a_jpeg_cover_has_its_size_from_a_sof_past_the_exif(tmp_path: Path, suffix: str) -> None:
    path = write_track(tmp_path / f"t{suffix}", seconds=1.0, tags={"title": "covered"})
    add_cover(path, large_cover(3 << 20, JPEG_600), mime="image/jpeg")
    report, peak = traced_read(path)
    assert report.cover == {"mime": "image/jpeg", "width": 600, "height": 400, "bytes": 3 << 20}
    assert report.tags["title"] == "covered"
    assert peak < 2 << 20


def test_an_unsynchronised_id3v23_tag_is_read_through(tmp_path: Path) -> None:
    """Whole-tag unsynchronisation (ID3v2.3 flag 0x80) is undone while streaming, not in memory."""
    path = write_track(tmp_path / "t.mp3", seconds=1.0)
    image = PNG_600 + b"\xff\xe0" * (1 << 20)  # every 0xFF followed by a byte >= 0xE0: stuffed
    apic = b"\x00image/png\x00\x03\x00" + image
    title = b"\x00Unsynced \xff\xfe title"
    frames = (
        b"TIT2" + struct.pack(">I", len(title)) + b"\0\0" + title
        + b"APIC" + struct.pack(">I", len(apic)) + b"\0\0" + apic
        + b"TPE1" + struct.pack(">I", 7) + b"\0\0" + b"\x00Artist"
    )
    stuffed = frames.replace(b"\xff", b"\xff\x00")
    path.write_bytes(b"ID3\x03\x00\x80" + _syncsafe(len(stuffed)) + stuffed + path.read_bytes())
    report, peak = traced_read(path)
    assert report.tags == {"title": "Unsynced \xff\xfe title", "artist": "Artist"}
    assert report.cover == {"mime": "image/png", "width": 600, "height": 400, "bytes": len(image)}
    assert peak < 2 << 20


def test_itunes_plain_sizes_in_id3v24_are_understood(tmp_path: Path) -> None:
    """iTunes wrote v2.4 frame sizes as plain integers; mutagen guesses, and so do we."""
    path = write_track(tmp_path / "t.mp3", seconds=1.0)
    apic = b"\x00image/png\x00\x03\x00" + large_cover(1 << 20)
    title = b"\x00iTunes"
    frames = (
        b"APIC" + struct.pack(">I", len(apic)) + b"\0\0" + apic
        + b"TIT2" + struct.pack(">I", len(title)) + b"\0\0" + title
    )
    path.write_bytes(b"ID3\x04\x00\x00" + _syncsafe(len(frames)) + frames + path.read_bytes())
    report, _ = traced_read(path)
    assert report.tags == {"title": "iTunes"}
    assert report.cover is not None and report.cover["bytes"] == 1 << 20


def test_hundreds_of_entries_cost_little(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.flac", seconds=1.0)
    flac = mutagen.flac.FLAC(path)
    for i in range(5000):
        flac[f"CUSTOM{i:04d}"] = [f"value {i}"]
    flac.save()
    report, peak = traced_read(path)
    assert len(report.tags) == MAX_TAGS
    assert peak < 2 << 20


# --- broken tags --------------------------------------------------------------------------------


def test_undecodable_bytes_never_crash(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=1.0)
    body = b"\x03" + b"ok \xff\xfe\xc3 bad"  # UTF-8 declared, not UTF-8 given
    frame = b"TIT2" + _syncsafe(len(body)) + b"\0\0" + body
    path.write_bytes(b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame + path.read_bytes())
    report = read_tags(path)
    assert set(report.tags) <= {"title"}
    assert report.tags == {}, "mutagen drops a text frame that does not decode as it declares"


def corrupt_vorbis_comment(path: Path) -> None:
    """Make the FLAC comment block claim 1000 comments: mutagen reads garbage lengths."""
    data = bytearray(path.read_bytes())
    pos = 4
    while data[pos] & 0x7F != 4:
        pos += 4 + int.from_bytes(data[pos + 1 : pos + 4], "big")
    body = pos + 4
    vendor = struct.unpack("<I", data[body : body + 4])[0]
    data[body + 4 + vendor : body + 8 + vendor] = struct.pack("<I", 1000)
    path.write_bytes(bytes(data))


def test_malformed_tags_are_an_error_of_kind_tags(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.flac", seconds=1.0, tags={"title": "x"})
    corrupt_vorbis_comment(path)
    with pytest.raises(AnalysisError) as info:
        read_tags(path)
    assert info.value.kind == "tags"


def test_malformed_tags_do_not_stop_the_analysis(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.flac", seconds=3.0, kind="chords", tags={"title": "x"})
    corrupt_vorbis_comment(path)
    result = analyse_file(path)
    assert result.tags == {}
    assert result.tags_error is not None and result.tags_error.startswith("tags: ")
    assert result.duration_s == pytest.approx(3.0, rel=0.01)
    assert {group.name for group in result.features} == {"rhythm", "tonal", "loudness", "timbre"}


def _covered(tmp_path: Path, suffix: str) -> tuple[Path, bytearray]:
    path = write_track(tmp_path / f"t{suffix}", seconds=1.0, tags={"title": "x"})
    add_cover(path, large_cover(2 << 20))
    return path, bytearray(path.read_bytes())


def _break_id3_size(tmp_path: Path) -> Path:
    path, data = _covered(tmp_path, ".mp3")
    data[6:10] = _syncsafe(len(data) + 1000)  # the tag claims more bytes than the file has
    path.write_bytes(data)
    return path


def _break_flac_block(tmp_path: Path) -> Path:
    path, data = _covered(tmp_path, ".flac")
    pos = 4
    while data[pos] & 0x7F != 6:
        pos += 4 + int.from_bytes(data[pos + 1 : pos + 4], "big")
    data[pos + 1 : pos + 4] = b"\xff\xff\xff"  # the picture block now ends past the file
    path.write_bytes(data[: pos + (3 << 20)] if len(data) > pos + (3 << 20) else data[: pos + 1000])
    return path


def _break_mp4_atom(tmp_path: Path) -> Path:
    path, data = _covered(tmp_path, ".m4a")
    pos = data.index(b"covr") - 4
    data[pos : pos + 4] = struct.pack(">I", 0x7FFFFFF0)  # the covr atom runs past its parent
    path.write_bytes(data)
    return path


def _cut_ogg_comment(tmp_path: Path) -> Path:
    path, data = _covered(tmp_path, ".ogg")
    path.write_bytes(data[: 1 << 20])  # a download cut inside the 2.7 MiB comment packet
    return path


def _break_asf_attribute(tmp_path: Path) -> Path:
    path, data = _covered(tmp_path, ".wma")
    name = "WM/Picture".encode("utf-16-le") + b"\0\0"
    pos = data.index(name) + len(name)  # in the Metadata Library record: name, then value
    data[pos - len(name) - 4 : pos - len(name)] = struct.pack("<I", 0x7FFFFFFF)
    path.write_bytes(data)
    return path


BREAKERS = [_break_id3_size, _break_flac_block, _break_mp4_atom, _cut_ogg_comment, _break_asf_attribute]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda breaker: breaker.__name__)
def test_a_length_past_its_end_is_a_clean_tags_error(tmp_path: Path, breaker: Any) -> None:
    path = breaker(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(AnalysisError) as info:
            read_tags(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.kind == "tags"
    assert peak < 2 << 20, f"{breaker.__name__}: peak {peak >> 10} KiB"


def test_a_broken_mp4_atom_does_not_stop_the_analysis(tmp_path: Path) -> None:
    result = analyse_file(_break_mp4_atom(tmp_path))
    assert result.tags == {}
    assert result.tags_error is not None and result.tags_error.startswith("tags: MP4 atom")
    assert result.duration_s == pytest.approx(1.0, rel=0.05)


def test_an_id3_frame_past_the_tag_ends_the_frames_as_in_mutagen(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=1.0)
    title = b"\x00Kept"
    frames = (
        b"TIT2" + _syncsafe(len(title)) + b"\0\0" + title
        + b"APIC" + _syncsafe(100 << 20) + b"\0\0" + b"\x00image/png\x00\x03\x00" + PNG_600
    )
    path.write_bytes(b"ID3\x04\x00\x00" + _syncsafe(len(frames)) + frames + path.read_bytes())
    report, peak = traced_read(path)
    assert report.tags == {"title": "Kept"}
    assert report.cover is None
    assert peak < 1 << 20


def test_a_tag_block_past_the_byte_cap_is_cut_and_noted(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.flac", seconds=1.0)
    flac = mutagen.flac.FLAC(path)
    flac["TITLE"] = ["first"]
    for i in range(80):
        flac[f"BLOB{i:02d}"] = ["x" * (60 << 10)]  # 80 × 60 KiB: past the 4 MiB cap
    flac.save()
    report, peak = traced_read(path)
    assert report.tags["title"] == "first"
    assert "blob00" in report.tags and "blob79" not in report.tags
    assert report.note is not None and "skipped" in report.note
    assert peak < 12 << 20
    # the whole analysis keeps the tags read, says what was skipped, and analyses the audio
    from tunescout.analysis import analyse_file

    result = analyse_file(path)
    assert result.tags["title"] == "first"
    assert result.tags_error == f"tags: {report.note}"
    assert result.features


def test_untagged_and_unknown_files_have_no_tags(tmp_path: Path) -> None:
    assert read_tags(write_track(tmp_path / "t.flac", seconds=1.0)).tags == {}
    raw = tmp_path / "t.mka"
    raw.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(64))
    assert read_tags(raw).tags == {}


def _syncsafe(size: int) -> bytes:
    return bytes([(size >> 21) & 127, (size >> 14) & 127, (size >> 7) & 127, size & 127])
