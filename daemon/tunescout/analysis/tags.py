"""Read a file's tags with mutagen and normalise them to one vocabulary, within hard limits.

The limits come from the seed note, where tag reading ran out of memory: at most `MAX_TAGS`
entries are read, values are cut at `MAX_VALUE_CHARS` and lists at `MAX_LIST_ITEMS`. A cover is
described (mime, size, dimensions from its header) but its data is never read: `tagscan` walks the
container first and hands mutagen a copy of the tag without picture payloads and with huge values
cut (ID3 in MP3/WAV/AIFF, FLAC, Ogg Vorbis, Opus, MP4, ASF). Other formats go to mutagen as they
are. The mutagen object is dropped as soon as the values are copied out.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mutagen
import mutagen.apev2
import mutagen.asf
import mutagen.flac
import mutagen.id3
import mutagen.mp4
import mutagen.wave
from mutagen._vorbis import VComment

from tunescout.analysis import tagscan
from tunescout.analysis.tagscan.riff import riff_info
from tunescout.errors import AnalysisError
from tunescout.models import FailureKind

MAX_TAGS = 100
MAX_VALUE_CHARS = 1000
MAX_LIST_ITEMS = 10
ELLIPSIS = "…"
NUMBER_PAIRS = {"tracknumber": "tracktotal", "discnumber": "disctotal"}
NUMBER_NAMES = frozenset({*NUMBER_PAIRS, *NUMBER_PAIRS.values()})

TagValue = str | list[str] | int

# Generic spellings (after lower-casing) -> our names; applied to every format's free-form keys.
_ALIASES = {
    "album artist": "albumartist", "album_artist": "albumartist", "year": "date",
    "track": "tracknumber", "disc": "discnumber", "totaltracks": "tracktotal",
    "totaldiscs": "disctotal", "description": "comment", "publisher": "label",
    "organization": "label", "musicbrainz track id": "musicbrainz_trackid",
    "musicbrainz release track id": "musicbrainz_releasetrackid",
    "musicbrainz album id": "musicbrainz_albumid",
    "musicbrainz artist id": "musicbrainz_artistid",
    "musicbrainz album artist id": "musicbrainz_albumartistid",
    "musicbrainz release group id": "musicbrainz_releasegroupid",
    "musicbrainz/track id": "musicbrainz_trackid", "musicbrainz/album id": "musicbrainz_albumid",
    "musicbrainz/artist id": "musicbrainz_artistid",
    "musicbrainz/album artist id": "musicbrainz_albumartistid",
    "musicbrainz/release group id": "musicbrainz_releasegroupid",
    "initialkey": "key", "beatsperminute": "bpm", "tempo": "bpm",
}
_ID3_FRAMES = {
    "TIT2": "title", "TPE1": "artist", "TALB": "album", "TPE2": "albumartist", "TCON": "genre",
    "TDRC": "date", "TDOR": "originaldate", "TRCK": "tracknumber", "TPOS": "discnumber",
    "TCOM": "composer", "TEXT": "lyricist", "TPE3": "conductor", "TBPM": "bpm", "TKEY": "key",
    "TSRC": "isrc", "TPUB": "label", "TIT1": "grouping", "TIT3": "subtitle", "TLAN": "language",
    "TMOO": "mood", "TCMP": "compilation", "TSOP": "artistsort", "TSOA": "albumsort",
    "TSOT": "titlesort", "TSO2": "albumartistsort", "TCOP": "copyright", "TENC": "encodedby",
    "TSSE": "encoder", "TMED": "media",
}
_MP4_ATOMS = {
    "\xa9nam": "title", "\xa9ART": "artist", "\xa9alb": "album", "aART": "albumartist",
    "\xa9gen": "genre", "\xa9day": "date", "\xa9wrt": "composer", "\xa9cmt": "comment",
    "\xa9grp": "grouping", "\xa9lyr": "lyrics", "\xa9too": "encoder", "cprt": "copyright",
    "tmpo": "bpm", "cpil": "compilation", "soar": "artistsort", "soal": "albumsort",
    "sonm": "titlesort", "soaa": "albumartistsort",
}
_ASF_NAMES = {
    "title": "title", "author": "artist", "wm/albumtitle": "album",
    "wm/albumartist": "albumartist", "wm/genre": "genre", "wm/year": "date",
    "wm/tracknumber": "tracknumber", "wm/partofset": "discnumber", "wm/composer": "composer",
    "description": "comment", "wm/beatsperminute": "bpm", "wm/isrc": "isrc",
    "wm/publisher": "label",
}
_ASF_SKIP = frozenset({"wm/track", "wm/encodingsettings", "wm/mediaprimaryclassid"})
@dataclass
class TagReport:
    """Normalised tags and a description of the cover, never the cover itself."""

    tags: dict[str, TagValue] = field(default_factory=dict)
    cover: dict[str, Any] | None = None
    note: str | None = None  # part of a huge tag block was skipped; `tags` has the rest


def read_tags(path: Path) -> TagReport:
    """Return the normalised tags of `path`; unreadable tags raise AnalysisError(TAGS, …).

    A MemoryError here is a tags failure too: it usually comes from one absurd length field, and
    the audio is analysed all the same (a process truly out of memory fails again at decoding).

    A format mutagen does not know, or a file without tags, gives an empty report: that is not
    an error. The mutagen object lives only inside this call.
    """
    try:
        return _read(path)
    except tagscan.TagScanError as exc:
        raise AnalysisError(FailureKind.TAGS, str(exc)) from exc
    except MemoryError as exc:
        # A corrupt length field can ask for gigabytes; the audio may still be fine.
        raise AnalysisError(FailureKind.TAGS, "out of memory reading tags") from exc
    except OSError as exc:
        raise AnalysisError(FailureKind.IO, f"cannot read tags: {exc.strerror or exc}") from exc
    except mutagen.MutagenError as exc:
        raise AnalysisError(FailureKind.TAGS, _reason(exc)) from exc
    except Exception as exc:  # mutagen can fail on malformed data with any exception
        raise AnalysisError(FailureKind.TAGS, f"{type(exc).__name__}: {_reason(exc)}") from exc


def _read(path: Path) -> TagReport:
    """Dispatch on the tag type mutagen found; add APEv2 and RIFF INFO where mutagen skips them."""
    report = TagReport()
    suffix = path.suffix.lower()
    with open(path, "rb") as handle:
        scanned = tagscan.scan(handle)
    if scanned is None:
        entries = list(_limited(_file_entries(path, report)))
    else:
        entries = list(_limited(_scanned_entries(scanned, report)))
    if not entries and suffix == ".mp3":
        entries = list(_limited(_ape_entries(path, report)))  # APEv2-only MP3s exist
    if suffix in (".wav", ".wave"):
        known = {name for name, _ in entries}  # ID3 wins over RIFF INFO for the same name
        riff = _limited(riff_info(path, 4 * MAX_VALUE_CHARS), MAX_TAGS - len(entries))
        entries.extend((name, raw) for name, raw in riff if name not in known)
    _collect(report, entries)
    return report


def _scanned_entries(scanned: tagscan.Scan, report: TagReport) -> Iterator[tuple[str, Any]]:
    """Yield the entries of a scanned tag: mutagen parses the small rebuilt copy, not the file."""
    report.note = scanned.note
    if scanned.picture is not None:
        report.cover = _picture_cover(scanned.picture)
    fileobj = io.BytesIO(scanned.data + scanned.id3v1)
    if scanned.kind == "vorbis":
        yield from _vorbis_entries(scanned.comments, report)
    elif scanned.kind == "id3":
        id3_class: Any = mutagen.id3.ID3  # untyped in mutagen
        yield from _id3_entries(id3_class(fileobj, load_v1=bool(scanned.id3v1)), report)
    elif scanned.kind == "mp4":
        mp4: Any = mutagen.mp4  # untyped in mutagen
        yield from _mp4_entries(mp4.MP4Tags(mp4.Atoms(fileobj), fileobj), report)
    elif scanned.kind == "asf":
        asf_class: Any = mutagen.asf.ASF  # untyped in mutagen
        yield from _asf_entries(asf_class(fileobj).tags, report)


def _file_entries(path: Path, report: TagReport) -> Iterator[tuple[str, Any]]:
    """Yield the entries of the tags mutagen finds; the mutagen object dies with the generator."""
    try:
        audio = mutagen.File(path)
    except mutagen.MutagenError:
        if path.suffix.lower() != ".mp3":
            raise
        # mutagen also parses the MPEG stream and gives up on junk before the first frame;
        # the ID3 tag at the start is still readable on its own.
        try:
            id3_class: Any = mutagen.id3.ID3  # untyped in mutagen
            yield from _id3_entries(id3_class(path), report)
        except mutagen.id3.ID3NoHeaderError:
            return
        return
    if audio is not None and audio.tags is not None:
        yield from _entries(audio, report)


def _entries(audio: Any, report: TagReport) -> Iterator[tuple[str, Any]]:
    """Yield (our name, raw value) from whichever tag type the file carries."""
    tags = audio.tags
    if isinstance(tags, mutagen.id3.ID3):
        yield from _id3_entries(tags, report)
    elif isinstance(tags, VComment):
        if isinstance(audio, mutagen.flac.FLAC):
            for picture in audio.pictures[:1]:
                report.cover = _cover(picture.mime, len(picture.data), picture.data,
                                      picture.width, picture.height)
        yield from _vorbis_entries(tags, report)
    elif isinstance(tags, mutagen.mp4.MP4Tags):
        yield from _mp4_entries(tags, report)
    elif isinstance(tags, mutagen.asf.ASFTags):
        yield from _asf_entries(tags, report)
    elif isinstance(tags, mutagen.apev2.APEv2):
        yield from _ape_items(tags, report)


def _limited(entries: Iterable[tuple[str, Any]], limit: int = MAX_TAGS) -> Iterator[tuple[str, Any]]:
    """Stop after `limit` entries: a file with 10,000 tags costs no more than one with 100."""
    for count, entry in enumerate(entries):
        if count >= limit:
            return
        yield entry


def _id3_entries(tags: Any, report: TagReport) -> Iterator[tuple[str, Any]]:
    """Map ID3v2.2/2.3/2.4 (and ID3v1, which mutagen folds in) frames to our names."""
    for frame in tags.values():
        frame_id = frame.FrameID
        if frame_id == "APIC":
            if report.cover is None:
                report.cover = _cover(frame.mime, len(frame.data), frame.data)
        elif frame_id == "TCON":
            yield "genre", frame.genres
        elif frame_id in _ID3_FRAMES:
            yield _ID3_FRAMES[frame_id], [str(text) for text in frame.text]
        elif frame_id == "TXXX":
            yield _name(frame.desc), frame.text
        elif frame_id == "COMM" and frame.desc.lower() in ("", "comment", "description"):
            yield "comment", frame.text
        elif frame_id == "USLT":
            yield "lyrics", frame.text
        elif frame_id == "UFID" and frame.owner == "http://musicbrainz.org":
            yield "musicbrainz_trackid", frame.data
        else:
            yield "", None  # counted against the limit, then ignored


def _vorbis_entries(tags: Iterable[tuple[str, str]], report: TagReport) -> Iterator[tuple[str, Any]]:
    """Map Vorbis comments (FLAC, Ogg Vorbis, Opus); pictures there are base64 FLAC blocks."""
    for key, value in tags:
        name = _name(key)
        if name == "metadata_block_picture":
            if report.cover is None:
                report.cover = _vorbis_picture(value)
        elif name in ("coverart", "coverartmime"):
            continue
        else:
            yield name, value


def _mp4_entries(tags: Any, report: TagReport) -> Iterator[tuple[str, Any]]:
    """Map MP4 atoms; `trkn`/`disk` hold (number, total) pairs, free-form atoms hold bytes."""
    for atom, values in tags.items():
        if atom == "covr":
            if report.cover is None and values:
                cover = values[0]
                mime = "image/png" if cover.imageformat == mutagen.mp4.MP4Cover.FORMAT_PNG \
                    else "image/jpeg"
                report.cover = _cover(mime, len(cover), bytes(cover[:4096]))
        elif atom in ("trkn", "disk"):
            number, total = values[0] if values else (0, 0)
            base = "tracknumber" if atom == "trkn" else "discnumber"
            yield base, str(number) if number else None
            yield NUMBER_PAIRS[base], str(total) if total else None
        elif atom.startswith("----:"):
            yield _name(atom.rpartition(":")[2]), values
        elif atom in _MP4_ATOMS:
            yield _MP4_ATOMS[atom], values
        else:
            yield "", None


def _asf_entries(tags: mutagen.asf.ASFTags, report: TagReport) -> Iterator[tuple[str, Any]]:
    """Map ASF (WMA) attributes; WM/Picture is a packed struct with the image at its end."""
    for key, attribute in tags:
        lowered = key.lower()
        if lowered == "wm/picture":
            if report.cover is None:
                report.cover = _asf_picture(attribute.value)
        elif lowered in _ASF_SKIP:
            yield "", None
        elif lowered in _ASF_NAMES:
            yield _ASF_NAMES[lowered], attribute.value
        else:
            yield _name(lowered.removeprefix("wm/")), attribute.value


def _ape_entries(path: Path, report: TagReport) -> Iterator[tuple[str, Any]]:
    """Read an APEv2 tag that mutagen's MP3 class does not look for."""
    ape_class: Any = mutagen.apev2.APEv2  # untyped in mutagen
    try:
        tags = ape_class(path)
    except mutagen.apev2.APENoHeaderError:
        return
    yield from _ape_items(tags, report)


def _ape_items(tags: Any, report: TagReport) -> Iterator[tuple[str, Any]]:
    """Map APEv2 items; text items may hold several values separated by NUL."""
    for key, value in tags.items():
        if value.kind == mutagen.apev2.BINARY:
            if key.lower().startswith("cover art") and report.cover is None:
                data = bytes(value.value)
                image = data.partition(b"\0")[2]
                report.cover = _cover(_sniff_mime(image), len(image), image[:4096])
            continue
        yield _name(key), list(value) if value.kind == mutagen.apev2.TEXT else None


# --- values -----------------------------------------------------------------------------------


def _collect(report: TagReport, entries: Iterable[tuple[str, Any]]) -> None:
    """Merge entries into `report.tags`: lists capped, numbers split and parsed."""
    merged: dict[str, list[str]] = {}
    for name, raw in entries:
        if not name or raw is None:
            continue
        values = merged.setdefault(name, [])
        for text in _texts(raw):
            if len(values) < MAX_LIST_ITEMS and text not in values:
                values.append(text)
    for name, values in merged.items():
        if name in NUMBER_NAMES:
            _set_numbers(report.tags, name, values[0] if values else "")
        elif values:
            report.tags[name] = values[0] if len(values) == 1 else values


def _texts(raw: Any) -> Iterator[str]:
    """Yield clean, capped strings from a str, bytes, number or list of them."""
    items = raw if isinstance(raw, list | tuple) else [raw]
    for item in items[:MAX_LIST_ITEMS]:
        if isinstance(item, bytes | bytearray):
            text = bytes(item[: 4 * MAX_VALUE_CHARS]).decode("utf-8", errors="replace")
        else:
            text = str(item)
        text = text.replace("\0", "").strip()
        if len(text) > MAX_VALUE_CHARS:
            text = text[:MAX_VALUE_CHARS] + ELLIPSIS
        if text:
            yield text


_NUMBER = re.compile(r"\s*0*(\d{1,6})\s*(?:/\s*0*(\d{1,6}))?")


def _set_numbers(tags: dict[str, TagValue], name: str, text: str) -> None:
    """Set "3/12" as tracknumber=3, tracktotal=12; a value with no leading number is dropped."""
    match = _NUMBER.match(text)
    if match is None:
        return
    number = int(match.group(1))
    if name in NUMBER_PAIRS:
        if number:
            tags[name] = number
        if match.group(2) and int(match.group(2)):
            tags.setdefault(NUMBER_PAIRS[name], int(match.group(2)))
    elif number:
        tags[name] = number  # an explicit TRACKTOTAL wins over the "/12" of "3/12"


def _name(key: str) -> str:
    """Return our name for a free-form key: lower case, known aliases resolved."""
    lowered = " ".join(key.lower().split())
    return _ALIASES.get(lowered, lowered.replace(" ", "_"))


def _reason(exc: BaseException) -> str:
    """Return an exception's message, or its type when it has none."""
    return str(exc) or type(exc).__name__


# --- covers -----------------------------------------------------------------------------------


def _cover(
    mime: str, nbytes: int, head: bytes, width: int = 0, height: int = 0
) -> dict[str, Any]:
    """Describe a picture from its first bytes; the dimensions come from the image header."""
    if not (width and height):
        width, height = _image_size(head)
    return {
        "mime": mime or _sniff_mime(head),
        "width": width or None,
        "height": height or None,
        "bytes": nbytes,
    }


def _picture_cover(picture: tagscan.Picture | None, head_bytes: int | None = None
                   ) -> dict[str, Any] | None:
    """Describe a picture the scanner's parsers found, from at most `head_bytes` of its start."""
    if picture is None:
        return None
    return _cover(picture.mime, picture.nbytes, picture.head[:head_bytes], picture.width,
                  picture.height)


def _vorbis_picture(value: str) -> dict[str, Any] | None:
    """Describe a base64 METADATA_BLOCK_PICTURE from its header, decoding only ~3 KiB of it."""
    return _picture_cover(tagscan.vorbis_picture(value[:4096].encode("ascii", "ignore")))


def _asf_picture(value: bytes) -> dict[str, Any] | None:
    """Describe a WM/Picture that mutagen read (the scanner's parser, one copy of it)."""
    return _picture_cover(tagscan.asf_picture(value), 4096)


def _sniff_mime(head: bytes) -> str:
    """Guess the image type from its magic bytes."""
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


def _image_size(head: bytes) -> tuple[int, int]:
    """Return (width, height) from a PNG or JPEG header, or (0, 0) if it is not in `head`."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 9 <= len(head) and head[pos] == 0xFF:
            marker = head[pos + 1]
            (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
                return int(width), int(height)
            pos += 2 + length
    return 0, 0
