"""Write real, tagged audio files for tests: synthetic signals in every format tunescout reads.

Every test that needs audio imports this module (`from audio import write_track`), so the files
are made the same way everywhere. Signals are deterministic (noise is seeded); the format is chosen
by the file name's suffix and tags are written with mutagen in the format's native tag type.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
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
import soundfile

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}

# suffix -> (writer, codec) for the formats written with PyAV; the rest go through libsndfile.
_PYAV_FORMATS = {
    ".opus": ("ogg", "libopus"),
    ".m4a": ("ipod", "aac"),
    ".wma": ("asf", "wmav2"),
    ".wv": ("wv", "wavpack"),
}
_SNDFILE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".aiff": ("AIFF", "PCM_16"),
    ".aif": ("AIFF", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


def write_track(
    path: Path,
    *,
    seconds: float = 6.0,
    kind: str = "tone",
    freq_hz: float = 440.0,
    bpm: float = 120.0,
    key: str = "C",
    mode: str = "major",
    sample_rate: int = 44100,
    channels: int = 2,
    tags: dict[str, str] | None = None,
    level_dbfs: float = -12.0,
    codec: str | None = None,
    subtype: str | None = None,
) -> Path:
    """Write a synthetic track to `path` in the format its suffix names, tagged, and return it.

    `level_dbfs` is the sample peak of the signal. Every channel carries the same signal.
    `codec="alac"` (or a name ending in `.alac.m4a`) writes ALAC instead of AAC; `subtype` picks
    the libsndfile sample type for WAV/AIFF/FLAC ("PCM_16", "PCM_24", "PCM_32", "FLOAT").
    """
    path = Path(path)
    mono = make_signal(
        kind, seconds=seconds, sample_rate=sample_rate, freq_hz=freq_hz, bpm=bpm, key=key,
        mode=mode, level_dbfs=level_dbfs,
    )
    data = np.repeat(mono[:, None], channels, axis=1)
    suffix = path.suffix.lower()
    if path.name.lower().endswith(".alac.m4a") or codec == "alac":
        _write_pyav(path, data, sample_rate, "ipod", "alac")
    elif suffix in _PYAV_FORMATS:
        container, default_codec = _PYAV_FORMATS[suffix]
        _write_pyav(path, data, sample_rate, container, codec or default_codec)
    elif suffix in _SNDFILE_FORMATS:
        major, default_subtype = _SNDFILE_FORMATS[suffix]
        soundfile.write(path, data, sample_rate, format=major, subtype=subtype or default_subtype)
    else:
        raise ValueError(f"no writer for {path.name}")
    if tags:
        write_tags(path, tags)
    return path


def make_signal(
    kind: str,
    *,
    seconds: float,
    sample_rate: int,
    freq_hz: float = 440.0,
    bpm: float = 120.0,
    key: str = "C",
    mode: str = "major",
    level_dbfs: float = -12.0,
) -> np.ndarray:
    """Return one channel of `kind` as float64, scaled to a sample peak of `level_dbfs`."""
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    if kind == "tone":
        signal = np.sin(2 * np.pi * freq_hz * t)
    elif kind == "clicks":
        signal = _clicks(n, sample_rate, bpm)
    elif kind == "drums":
        signal = _drums(n, sample_rate, bpm)
    elif kind == "chords":
        signal = _chords(n, sample_rate, key, mode)
    elif kind == "song":  # a rock beat over a chord progression: tempo and key at once
        drums, chords = _drums(n, sample_rate, bpm), _chords(n, sample_rate, key, mode)
        signal = drums / np.max(np.abs(drums)) + 0.7 * chords / np.max(np.abs(chords))
    elif kind == "noise":
        signal = _pink_noise(n)
    elif kind == "silence":
        return np.zeros(n)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    peak = float(np.max(np.abs(signal))) or 1.0
    return signal * (10.0 ** (level_dbfs / 20.0) / peak)


def _place(signal: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Add `sound` into `signal` at sample `start`, cut at the end."""
    end = min(len(signal), start + len(sound))
    if start < end:
        signal[start:end] += sound[: end - start]


def _beat_starts(n: int, sample_rate: int, bpm: float) -> list[int]:
    """Return the sample index of every beat, at exact (fractional) positions rounded once."""
    period = 60.0 * sample_rate / bpm
    return [round(i * period) for i in range(int(n / period) + 1)]


def _clicks(n: int, sample_rate: int, bpm: float) -> np.ndarray:
    """Return a metronome: a 20 ms decaying 1.5 kHz ping on every beat."""
    t = np.arange(int(0.02 * sample_rate)) / sample_rate
    click = np.sin(2 * np.pi * 1500.0 * t) * np.exp(-t / 0.004)
    signal = np.zeros(n)
    for start in _beat_starts(n, sample_rate, bpm):
        _place(signal, click, start)
    return signal


def _drums(n: int, sample_rate: int, bpm: float) -> np.ndarray:
    """Return a rock beat: kick on beats 1 and 3, snare on 2 and 4."""
    rng = np.random.default_rng(7)
    t = np.arange(int(0.18 * sample_rate)) / sample_rate
    kick_phase = 2 * np.pi * (50.0 * t + (100.0 * 0.03) * (1 - np.exp(-t / 0.03)))
    kick = np.sin(kick_phase) * np.exp(-t / 0.06)
    ts = t[: int(0.12 * sample_rate)]
    snare = (0.6 * rng.standard_normal(len(ts)) + 0.5 * np.sin(2 * np.pi * 190.0 * ts))
    snare *= np.exp(-ts / 0.03)
    signal = np.zeros(n)
    for beat, start in enumerate(_beat_starts(n, sample_rate, bpm)):
        _place(signal, kick if beat % 2 == 0 else snare, start)
    return signal


def chord_notes(key: str, mode: str) -> list[list[int]]:
    """Return the MIDI notes of I–IV–V–I (minor: i–iv–V–i, harmonic minor) in `key`."""
    tonic = PITCH_CLASSES.index(_FLATS.get(key, key))
    third = 3 if mode == "minor" else 4
    triads = [(0, third), (5, third), (7, 4), (0, third)]  # the V is major in both modes
    return [
        [36 + tonic + degree, 48 + tonic + degree, 48 + tonic + degree + third_, 55 + tonic + degree]
        for degree, third_ in triads
    ]


def _chords(n: int, sample_rate: int, key: str, mode: str) -> np.ndarray:
    """Return the progression, one chord per second, looped, with harmonic-rich tones."""
    chord_len = sample_rate
    t = np.arange(chord_len) / sample_rate
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / 1.5)
    chords = []
    for notes in chord_notes(key, mode):
        chord = np.zeros(chord_len)
        for note in notes:
            f0 = 440.0 * 2.0 ** ((note - 69) / 12.0)
            for harmonic in range(1, 7):
                if f0 * harmonic < sample_rate / 2:
                    chord += np.sin(2 * np.pi * f0 * harmonic * t) / harmonic
        chords.append(chord * envelope)
    signal = np.zeros(n)
    for i, start in enumerate(range(0, n, chord_len)):
        _place(signal, chords[i % len(chords)], start)
    return signal


def _pink_noise(n: int) -> np.ndarray:
    """Return seeded pink (1/f power) noise, shaped in the frequency domain."""
    rng = np.random.default_rng(1234)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    scale = np.ones(len(spectrum))
    scale[1:] = 1.0 / np.sqrt(np.arange(1, len(spectrum)))
    scale[0] = 0.0
    return np.fft.irfft(spectrum * scale, n)


def _write_pyav(path: Path, data: np.ndarray, sample_rate: int, container: str, codec: str) -> None:
    """Encode `data` (samples x channels) with PyAV; the encoder resamples as its codec needs."""
    channels = data.shape[1]
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    rate = 48000 if codec == "libopus" else sample_rate
    with av.open(str(path), "w", format=container) as out:
        stream: av.AudioStream = out.add_stream(codec, rate=rate, layout=layout)  # type: ignore[assignment]
        if codec == "wmav2":
            stream.bit_rate = 128_000  # the encoder refuses to open without one
        planar = np.ascontiguousarray(data.T.astype(np.float32))
        step = 4096
        for start in range(0, planar.shape[1], step):
            frame = av.AudioFrame.from_ndarray(planar[:, start : start + step], "fltp", layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


# --- tags -------------------------------------------------------------------------------------

_ID3_TEXT = {
    "title": "TIT2", "artist": "TPE1", "album": "TALB", "albumartist": "TPE2", "genre": "TCON",
    "date": "TDRC", "tracknumber": "TRCK", "discnumber": "TPOS", "composer": "TCOM",
    "bpm": "TBPM", "isrc": "TSRC",
}
_ID3_TXXX = {
    "musicbrainz_albumid": "MusicBrainz Album Id",
    "musicbrainz_artistid": "MusicBrainz Artist Id",
    "musicbrainz_albumartistid": "MusicBrainz Album Artist Id",
}
_MP4_TEXT = {
    "title": "\xa9nam", "artist": "\xa9ART", "album": "\xa9alb", "albumartist": "aART",
    "genre": "\xa9gen", "date": "\xa9day", "composer": "\xa9wrt", "comment": "\xa9cmt",
}
_MP4_FREEFORM = {
    "musicbrainz_trackid": "MusicBrainz Track Id",
    "musicbrainz_albumid": "MusicBrainz Album Id",
    "musicbrainz_artistid": "MusicBrainz Artist Id",
}
_ASF = {
    "title": "Title", "artist": "Author", "album": "WM/AlbumTitle",
    "albumartist": "WM/AlbumArtist", "genre": "WM/Genre", "date": "WM/Year",
    "tracknumber": "WM/TrackNumber", "discnumber": "WM/PartOfSet", "composer": "WM/Composer",
    "comment": "Description", "musicbrainz_trackid": "MusicBrainz/Track Id",
    "musicbrainz_albumid": "MusicBrainz/Album Id", "musicbrainz_artistid": "MusicBrainz/Artist Id",
}
_APE = {
    "title": "Title", "artist": "Artist", "album": "Album", "albumartist": "Album Artist",
    "genre": "Genre", "date": "Year", "tracknumber": "Track", "discnumber": "Disc",
    "composer": "Composer", "comment": "Comment",
}


def write_tags(path: Path, tags: dict[str, str]) -> None:
    """Replace the tags of `path` with `tags` (normalised names) in the format's native tag type."""
    suffix = path.suffix.lower()
    if suffix in (".mp3", ".wav", ".aiff", ".aif"):
        _write_id3(path, tags)
    elif suffix in (".flac", ".ogg", ".opus"):
        cls = {
            ".flac": mutagen.flac.FLAC,
            ".ogg": mutagen.oggvorbis.OggVorbis,
            ".opus": mutagen.oggopus.OggOpus,
        }[suffix]
        audio = cls(path)
        if audio.tags is None:
            audio.add_tags()
        assert audio.tags is not None
        audio.tags.clear()
        for name, value in tags.items():
            audio.tags[name.upper()] = [value]
        audio.save()
    elif suffix == ".m4a":
        _write_mp4(path, tags)
    elif suffix == ".wma":
        asf = mutagen.asf.ASF(path)
        for name, value in tags.items():
            asf[_ASF.get(name, name)] = [value]
        asf.save()
    elif suffix == ".wv":
        ape = mutagen.apev2.APEv2()
        for name, value in tags.items():
            ape[_APE.get(name, name.upper())] = value
        ape.save(path)
    else:
        raise ValueError(f"no tag writer for {path.name}")


def _write_id3(path: Path, tags: dict[str, str]) -> None:
    """Write ID3v2.4 tags: directly for MP3, in the `id3 ` chunk for WAV and AIFF."""
    suffix = path.suffix.lower()
    id3: mutagen.id3.ID3
    holder: mutagen.wave.WAVE | mutagen.aiff.AIFF | None = None
    if suffix == ".mp3":
        try:
            id3 = mutagen.id3.ID3(path)
        except mutagen.id3.ID3NoHeaderError:
            id3 = mutagen.id3.ID3()
    else:
        holder = mutagen.wave.WAVE(path) if suffix == ".wav" else mutagen.aiff.AIFF(path)
        if holder.tags is None:
            holder.add_tags()
        id3 = holder.tags  # type: ignore[assignment]
    id3.clear()
    for name, value in tags.items():
        if name in _ID3_TEXT:
            id3.add(getattr(mutagen.id3, _ID3_TEXT[name])(encoding=3, text=[value]))
        elif name == "comment":
            id3.add(mutagen.id3.COMM(encoding=3, lang="eng", desc="", text=[value]))
        elif name == "musicbrainz_trackid":
            id3.add(mutagen.id3.UFID(owner="http://musicbrainz.org", data=value.encode()))
        else:
            desc = _ID3_TXXX.get(name, name.upper())
            id3.add(mutagen.id3.TXXX(encoding=3, desc=desc, text=[value]))
    if holder is None:
        id3.save(path)
    else:
        holder.save()


def _write_mp4(path: Path, tags: dict[str, str]) -> None:
    """Write MP4 atoms; track and disc numbers go in `trkn`/`disk` as (number, total)."""
    mp4 = mutagen.mp4.MP4(path)
    if mp4.tags is None:
        mp4.add_tags()
    for name, value in tags.items():
        if name in ("tracknumber", "discnumber"):
            number, _, total = value.partition("/")
            atom = "trkn" if name == "tracknumber" else "disk"
            mp4[atom] = [(int(number), int(total or 0))]
        elif name in _MP4_TEXT:
            mp4[_MP4_TEXT[name]] = [value]
        else:
            mean = _MP4_FREEFORM.get(name, name)
            mp4[f"----:com.apple.iTunes:{mean}"] = [mutagen.mp4.MP4FreeForm(value.encode())]
    mp4.save()


# --- broken files -----------------------------------------------------------------------------


def write_garbage(path: Path, nbytes: int) -> Path:
    """Write `nbytes` of seeded random bytes: a file with a music suffix that is not audio."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(nbytes).integers(0, 256, nbytes, np.uint8).tobytes())
    return path


def write_truncated(src: Path, dst: Path, fraction: float) -> Path:
    """Copy the first `fraction` of `src`'s bytes to `dst`: a download cut off mid-file."""
    dst = Path(dst)
    data = Path(src).read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def write_damaged(src: Path, dst: Path, spots: int = 3, nbytes: int = 400) -> Path:
    """Copy `src` to `dst` with `spots` runs of seeded random bytes written over its middle:
    frames damaged on a disk or in a transfer, the file's length and header intact."""
    data = bytearray(Path(src).read_bytes())
    noise = np.random.default_rng(nbytes).integers(0, 256, spots * nbytes, np.uint8).tobytes()
    for spot in range(spots):
        start = len(data) * (spot + 1) // (spots + 2)
        data[start : start + nbytes] = noise[spot * nbytes : (spot + 1) * nbytes]
    Path(dst).write_bytes(bytes(data))
    return Path(dst)
