"""Tags from real files of every tag type, normalised, within the limits, never fatal."""

from __future__ import annotations

import base64
import struct
import tracemalloc
from pathlib import Path

import mutagen.apev2
import mutagen.flac
import mutagen.id3
import mutagen.mp4
import mutagen.oggvorbis
import pytest

from audio import write_track
from tunescout.analysis import analyse_file
from tunescout.analysis.tags import MAX_LIST_ITEMS, MAX_TAGS, MAX_VALUE_CHARS, read_tags
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
    for suffix in (".mp3", ".flac", ".m4a"):
        path = write_track(tmp_path / f"t{suffix}", seconds=1.0, tags={"comment": comment})
        tracemalloc.start()
        tags = read_tags(path).tags
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert tags["comment"] == comment[:MAX_VALUE_CHARS].strip() + "…"
        assert peak < 16 << 20, f"{suffix}: reading a 1.5 MiB comment peaked at {peak >> 20} MiB"


def large_cover(nbytes: int = 8 << 20) -> bytes:
    return PNG_600 + bytes(nbytes - len(PNG_600))


def check_cover(path: Path, mime: str = "image/png") -> None:
    tracemalloc.start()
    report = read_tags(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.cover == {"mime": mime, "width": 600, "height": 400, "bytes": 8 << 20}
    assert report.tags["title"] == "covered"
    # mutagen materialises the picture (ID3 ~4 copies, base64 in Ogg ~5.5); we add no more.
    assert peak < 6 * (8 << 20), f"{path.suffix}: peak {peak >> 20} MiB for an 8 MiB cover"


def test_large_cover_in_id3(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=1.0, tags={"title": "covered"})
    id3 = mutagen.id3.ID3(path)
    id3.add(mutagen.id3.APIC(encoding=3, mime="image/png", type=3, desc="front", data=large_cover()))
    id3.save()
    check_cover(path)


def test_large_cover_in_flac(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.flac", seconds=1.0, tags={"title": "covered"})
    flac = mutagen.flac.FLAC(path)
    picture = mutagen.flac.Picture()
    picture.data, picture.mime, picture.width, picture.height = large_cover(), "image/png", 600, 400
    flac.add_picture(picture)
    flac.save()
    check_cover(path)


def test_large_cover_in_mp4(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.m4a", seconds=1.0, tags={"title": "covered"})
    mp4 = mutagen.mp4.MP4(path)
    mp4["covr"] = [mutagen.mp4.MP4Cover(large_cover(), mutagen.mp4.MP4Cover.FORMAT_PNG)]
    mp4.save()
    check_cover(path)


def test_cover_in_ogg_is_decoded_only_from_its_header(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.ogg", seconds=1.0, tags={"title": "covered"})
    picture = mutagen.flac.Picture()
    picture.data, picture.mime, picture.type = large_cover(), "image/png", 3
    vorbis = mutagen.oggvorbis.OggVorbis(path)
    assert vorbis.tags is not None
    vorbis.tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(picture.write()).decode("ascii")]
    vorbis.save()
    check_cover(path)


# --- broken tags --------------------------------------------------------------------------------


def test_undecodable_bytes_never_crash(tmp_path: Path) -> None:
    path = write_track(tmp_path / "t.mp3", seconds=1.0)
    body = b"\x03" + b"ok \xff\xfe\xc3 bad"  # UTF-8 declared, not UTF-8 given
    frame = b"TIT2" + _syncsafe(len(body)) + b"\0\0" + body
    path.write_bytes(b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame + path.read_bytes())
    report = read_tags(path)  # mutagen drops the frame or replaces the bytes: either is fine
    assert set(report.tags) <= {"title"}


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


def test_untagged_and_unknown_files_have_no_tags(tmp_path: Path) -> None:
    assert read_tags(write_track(tmp_path / "t.flac", seconds=1.0)).tags == {}
    raw = tmp_path / "t.mka"
    raw.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(64))
    assert read_tags(raw).tags == {}


def _syncsafe(size: int) -> bytes:
    return bytes([(size >> 21) & 127, (size >> 14) & 127, (size >> 7) & 127, size & 127])
