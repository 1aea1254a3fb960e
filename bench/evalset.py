"""Build the real-music evaluation set for bench/quality.py from soundtracks shipped in Debian packages.

    python3 bench/evalset.py [--dest DIR] [--codec-tracks N]

Game data packages in Debian main carry freely licensed soundtracks (GPL, CC BY-SA, Expat, ...).
Each package is fetched with `apt-get download` and unpacked with `dpkg -x` into the cache (never
installed), and a few tracks of each are picked: only audio files of 60 s to 10 min, so sound
effects and hour-long ambient loops stay out. Frets on Fire songs come as stems (song.ogg without
the guitar, guitar.ogg, sometimes rhythm.ogg); they are mixed into one FLAC, the song as heard.

Under DEST (default ~/.cache/tunescout-bench/evalset):

    tracks/ID.ogg|flac      the track as shipped (or its stems mixed)
    wav/ID.wav              44.1 kHz mono 16-bit, for Essentia (its wheel cannot decode Opus or AAC)
    codecs/ID/ID.EXT        for every Nth track: the same audio as FLAC, MP3 CBR and VBR, Vorbis,
                            Opus, AAC in M4A, WMA and WAV, for the codec-consistency figure
    manifest.json           one entry per track: id, package, version, album, style, license (and
                            where it was read), original path, duration_s, and the files above

Needs `apt-get`, `dpkg` and ffmpeg's `ffmpeg`/`ffprobe` (Debian's `ffmpeg`). Everything that exists
is kept, so a second run only prints what it found. The audio is never committed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DEST = Path.home() / ".cache" / "tunescout-bench" / "evalset"
MIN_DURATION_S = 60.0  # shorter files in these packages are jingles and sound effects
MAX_DURATION_S = 600.0  # planetblupi's 10-30 min loops would dominate the run time
WAV_RATE_HZ = 44100  # Essentia's extractors assume 44.1 kHz


@dataclass(frozen=True)
class Source:
    """One Debian package and which of its files are music, with what this bench calls its style."""

    package: str
    short: str  # prefix of the track ids
    style: str
    pattern: str  # glob under the unpacked package, one match per track
    take: int  # tracks picked, spread evenly over the sorted matches
    stems: tuple[str, ...] = ()  # files beside the match mixed into it (Frets on Fire)
    license: str = ""  # for a copyright file that is prose, not machine-readable: read by hand


SOURCES = (
    Source("fretsonfire-songs-muldjord", "muldjord", "metal",
           "usr/share/games/fretsonfire/data/songs/muldjord/*/song.ogg", 4,
           stems=("guitar.ogg", "rhythm.ogg"), license="CC-BY-SA-3.0"),
    Source("fretsonfire-songs-sectoid", "sectoid", "rock",
           "usr/share/games/fretsonfire/data/songs/sectoid/*/song.ogg", 4,
           stems=("guitar.ogg", "rhythm.ogg"), license="Expat"),
    Source("hedgewars-data", "hedgewars", "game themes (pop, orchestral, world)",
           "usr/share/games/hedgewars/Data/Music/*.ogg", 8),
    Source("supertux-data", "supertux", "platformer (chiptune, electronic, orchestral)",
           "usr/share/games/supertux2/music/*/*.ogg", 8),
    Source("singularity-music", "singularity", "ambient electronic",
           "usr/share/games/singularity/music/*.ogg", 6, license="CC-BY-SA-3.0"),
    Source("drascula-music", "drascula", "adventure-game score",
           "usr/share/scummvm/drascula/audio/*.ogg", 6),
    Source("pushover-data", "pushover", "puzzle-game themes (electronic, world)",
           "usr/share/pushover/themes/*.ogg", 6),
    Source("hyperrogue-music", "hyperrogue", "ambient, orchestral",
           "usr/share/hyperrogue/music/*.ogg", 5),
    Source("frozen-bubble-data", "frozenbubble", "arcade pop",
           "usr/share/games/frozen-bubble/snd/*.ogg", 3),
    Source("lincity-ng-data", "lincity", "blues, ambient",
           "usr/share/games/lincity-ng/music/default/*.ogg", 3),
    Source("neverball-common", "neverball", "arcade electronic",
           "usr/share/games/neverball/bgm/track*.ogg", 4),
)


@dataclass(frozen=True)
class Codec:
    """One encoding of the codec-consistency set: file suffix and ffmpeg's audio options."""

    name: str
    suffix: str
    options: tuple[str, ...]


CODECS = (
    Codec("flac", ".flac", ("-c:a", "flac")),
    Codec("mp3-cbr", ".cbr.mp3", ("-c:a", "libmp3lame", "-b:a", "192k")),
    Codec("mp3-vbr", ".vbr.mp3", ("-c:a", "libmp3lame", "-q:a", "2")),
    Codec("vorbis", ".ogg", ("-c:a", "libvorbis", "-q:a", "5")),
    Codec("opus", ".opus", ("-c:a", "libopus", "-b:a", "128k", "-ar", "48000")),  # Opus is 48 kHz only
    Codec("aac", ".m4a", ("-c:a", "aac", "-b:a", "192k")),
    Codec("wma", ".wma", ("-c:a", "wmav2", "-b:a", "192k")),
    Codec("wav", ".wav", ("-c:a", "pcm_s16le")),
)


class Tally:
    """Counts of what a run did, so that it can say so in one line per kind of work."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def summary(self) -> str:
        return ", ".join(f"{what} {n}" for what, n in sorted(self.counts.items())) or "nothing"


# --- packages ---------------------------------------------------------------------------------


def fetch_package(package: str, debs: Path, tally: Tally) -> Path:
    """Return the package's .deb in `debs`, downloading it with apt-get (once an `apt-get update`)."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    debs.mkdir(parents=True, exist_ok=True)
    debs.chmod(0o777)  # apt-get download drops to user _apt where it can write
    for attempt in (1, 2):
        result = subprocess.run(["apt-get", "download", package], cwd=debs,
                                capture_output=True, text=True)
        if result.returncode == 0:
            break
        if attempt == 2 or "Unable to locate" not in result.stderr + result.stdout:
            sys.exit(f"apt-get download {package} failed: {result.stderr.strip()}")
        print("apt-get download found no package: running apt-get update once")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    tally.add("packages downloaded")
    print(f"downloaded {package}")
    return sorted(debs.glob(f"{package}_*.deb"))[-1]


def unpack(deb: Path, root: Path, tally: Tally) -> Path:
    """Unpack a .deb with dpkg -x (no maintainer scripts, nothing installed) unless done before."""
    done = root / ".unpacked"
    if done.exists() and done.read_text() == deb.name:
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    done.write_text(deb.name)
    tally.add("packages unpacked")
    print(f"unpacked {deb.name}")
    return root


def package_version(deb: Path) -> str:
    """Return the version from a .deb's file name (apt-get download names it package_version_arch)."""
    return deb.name.split("_")[1].replace("%3a", ":")


# --- licenses ---------------------------------------------------------------------------------


def read_license(root: Path, source: Source, installed: str) -> tuple[str, str]:
    """Return (license, where it was read) for an installed path, from the package's copyright file.

    A machine-readable (DEP-5) file is matched stanza by stanza, the last matching one winning as
    the format says. Its patterns name paths in the upstream tree, not where the package installs
    them, so a pattern matches when a tail of it ("music/*" of "data/music/*") matches a tail of the
    installed path. A prose copyright file gives the license written by hand in SOURCES.
    """
    copyright_file = root / "usr" / "share" / "doc" / source.package / "copyright"
    text = copyright_file.read_text(errors="replace") if copyright_file.exists() else ""
    stanzas = _dep5_stanzas(text) if text.startswith("Format:") else []
    match = None
    for patterns, license_name in stanzas:
        hit = next((p for p in patterns if _pattern_matches(p, installed)), None)
        if hit is not None:
            match = (license_name, f"debian copyright, Files: {hit}")
    if match is not None:
        return match
    if source.license:
        return source.license, "debian copyright (prose), read by hand"
    return "unknown", "no matching stanza"


def _dep5_stanzas(text: str) -> list[tuple[list[str], str]]:
    """Return (file patterns, short license name) for each Files stanza of a DEP-5 file."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        name = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and name:
                fields[name] += "\n" + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
        if "Files" in fields and "License" in fields:
            stanzas.append((fields["Files"].split(), fields["License"].splitlines()[0]))
    return stanzas


def _pattern_matches(pattern: str, installed: str) -> bool:
    """Tell whether a DEP-5 pattern, or a tail of it keeping one directory, matches the path's tail.

    The path's tail is at most its last three names (grandparent/parent/file): further up, the
    upstream tree and the installed one part ways, and "hedgewars/*" (the game's code) would match
    /usr/share/games/hedgewars/Data/Music/*.ogg.
    """
    parts = pattern.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts) - 1)] if len(parts) > 1 else [pattern]
    names = installed.split("/")
    paths = ["/".join(names[i:]) for i in range(max(0, len(names) - 3), len(names))]
    return any(fnmatch.fnmatchcase(path, tail) for tail in tails for path in paths)


# --- audio ------------------------------------------------------------------------------------


def probe_duration(path: Path) -> float | None:
    """Return the duration ffprobe reads from the container, or None for a file it cannot read."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "format=duration",
         "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    try:
        return float(result.stdout.strip())
    except ValueError:
        return None


def ffmpeg(inputs: list[Path], output: Path, options: tuple[str, ...]) -> None:
    """Run ffmpeg into a temporary name and rename, so an interrupted run leaves no half file."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(".partial-" + output.name)
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    for path in inputs:
        command += ["-i", str(path)]
    subprocess.run([*command, "-map_metadata", "-1", *options, str(partial)], check=True)
    partial.rename(output)


def pick(source: Source, root: Path) -> list[Path]:
    """Return `take` music files of a package, spread evenly over its sorted files of 60 s to 10 min."""
    music = []
    for path in sorted(root.glob(source.pattern)):
        duration_s = probe_duration(path)
        if duration_s is None:
            print(f"  skipped {path.relative_to(root)}: ffprobe cannot read it")
        elif MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
            music.append(path)
    if len(music) < source.take:
        print(f"  {source.package}: only {len(music)} music files, wanted {source.take}")
    return [music[i * len(music) // source.take] for i in range(min(source.take, len(music)))]


def track_id(source: Source, path: Path) -> str:
    """Return a stable id: the package's short name and the file (or song folder) as a slug."""
    name = path.parent.name if source.stems else path.stem
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{source.short}-{slug}"


def make_track(source: Source, path: Path, dest: Path, tid: str, tally: Tally) -> Path:
    """Copy the shipped file into tracks/, or mix the song's stems into one FLAC."""
    stems = [path] + [path.parent / s for s in source.stems if (path.parent / s).exists()]
    out = dest / "tracks" / (f"{tid}.flac" if len(stems) > 1 else f"{tid}{path.suffix}")
    if out.exists():
        return out
    if len(stems) > 1:
        mix = f"amix=inputs={len(stems)}:duration=longest"  # divided by the count: no clipping
        ffmpeg(stems, out, ("-filter_complex", mix, "-c:a", "flac"))
        tally.add("stems mixed")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        tally.add("tracks copied")
    return out


def make_wav(track: Path, dest: Path, tid: str, tally: Tally) -> Path:
    """Write the 44.1 kHz mono WAV that Essentia reads (its MonoLoader would average the channels too)."""
    out = dest / "wav" / f"{tid}.wav"
    if not out.exists():
        ffmpeg([track], out, ("-ac", "1", "-ar", str(WAV_RATE_HZ), "-c:a", "pcm_s16le"))
        tally.add("wavs made")
    return out


def make_codecs(track: Path, dest: Path, tid: str, tally: Tally) -> dict[str, str]:
    """Encode the track in every codec of CODECS, stereo at 44.1 kHz (Opus: 48); return name -> path."""
    files = {}
    for codec in CODECS:
        out = dest / "codecs" / tid / f"{tid}{codec.suffix}"
        if not out.exists():
            ffmpeg([track], out, ("-ac", "2", "-ar", str(WAV_RATE_HZ), *codec.options))
            tally.add("codec files made")
        files[codec.name] = str(out.relative_to(dest))
    return files


# --- the set ----------------------------------------------------------------------------------


def build(dest: Path, codec_tracks: int) -> list[dict[str, object]]:
    """Fetch, unpack, pick and convert every source; return the manifest's entries."""
    tally = Tally()
    entries: list[dict[str, object]] = []
    for source in SOURCES:
        deb = fetch_package(source.package, dest / "debs", tally)
        root = unpack(deb, dest / "unpacked" / source.package, tally)
        for path in pick(source, root):
            installed = "/" + str(path.relative_to(root))
            tid = track_id(source, path)
            track = make_track(source, path, dest, tid, tally)
            license_name, license_source = read_license(root, source, installed[1:])
            entries.append({
                "id": tid, "package": source.package, "version": package_version(deb),
                "album": source.package, "style": source.style, "license": license_name,
                "license_source": license_source, "original_path": installed,
                "stems": [installed[1:].rsplit("/", 1)[0] + "/" + s for s in source.stems
                          if (path.parent / s).exists()],
                "duration_s": round(probe_duration(track) or 0.0, 2),
                "file": str(track.relative_to(dest)),
                "wav": str(make_wav(track, dest, tid, tally).relative_to(dest)),
            })
    for entry in _spread(entries, codec_tracks):
        entry["codecs"] = make_codecs(dest / str(entry["file"]), dest, str(entry["id"]), tally)
    print(f"done: {tally.summary()}")
    return entries


def _spread(items: list[dict[str, object]], count: int) -> list[dict[str, object]]:
    """Return `count` items spread evenly over the list, so every kind of music is in the codec set."""
    count = min(count, len(items))
    return [items[i * len(items) // count] for i in range(count)]


def write_manifest(dest: Path, entries: list[dict[str, object]]) -> Path:
    """Write manifest.json beside the audio, rewriting it only when its content changed."""
    path = dest / "manifest.json"
    text = json.dumps({"tracks": entries}, indent=1, ensure_ascii=False) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        print(f"wrote {path}")
    return path


def _describe(entries: list[dict[str, object]]) -> None:
    """Print the set: tracks per package with style and license, codec tracks, total duration."""
    for package in dict.fromkeys(str(e["package"]) for e in entries):
        mine = [e for e in entries if e["package"] == package]
        licenses = ", ".join(sorted({str(e["license"]) for e in mine}))
        print(f"  {package:28} {len(mine):2} tracks  {mine[0]['style']}  [{licenses}]")
    hours = sum(float(e["duration_s"]) for e in entries) / 3600  # type: ignore[arg-type]
    coded = sum(1 for e in entries if "codecs" in e)
    print(f"  {len(entries)} tracks, {hours:.1f} h; {coded} of them in {len(CODECS)} codecs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"default {DEFAULT_DEST}")
    parser.add_argument("--codec-tracks", type=int, default=10,
                        help="how many tracks (spread over the set) get the codec variants")
    args = parser.parse_args()
    for tool in ("apt-get", "dpkg", "ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (ffmpeg and ffprobe: apt-get install ffmpeg)")
    dest = args.dest.expanduser().resolve()
    entries = build(dest, max(1, args.codec_tracks))
    write_manifest(dest, entries)
    _describe(entries)


if __name__ == "__main__":
    main()
