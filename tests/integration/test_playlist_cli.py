"""`tunescout playlist` as a user runs it: a real database, a real process, real output files."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.config import write_config
from support.playlists import fill_store, positions_apart, synthetic_tracks
from support.processes import daemon_env
from tunescout.playlists.camelot import camelot_compatible
from tunescout.playlists.catalogue import Track
from tunescout.playlists.render import read_m3u8

ENTRY = ("-m", "tunescout")  # as the installed `tunescout` script runs


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.music = root / "music"
        self.db = root / "state" / "tunescout.db"
        self.config = write_config(root / "tunescout.toml", {
            "library": {"paths": [str(self.music)]}, "store": {"path": str(self.db)}})
        self.tracks: list[Track] = fill_store(self.db, self.music, synthetic_tracks(per_cluster=24))

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
        env = daemon_env(XDG_STATE_HOME=str(self.root / "xdg-state"))
        return subprocess.run(
            [sys.executable, *ENTRY, "--config", str(self.config), "playlist", *map(str, args)],
            capture_output=True, env=env, timeout=60, check=False)

    def track(self, cluster: str, number: int) -> Path:
        return self.music / cluster / f"{number:03d}.flac"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("cli"))


def m3u8_paths(stdout: bytes) -> list[Path]:
    return [Path(line.decode()) for line in stdout.splitlines() if line and not line.startswith(b"#")]


def test_similar_to_stdout(setup: Setup) -> None:
    seed = setup.track("mid", 0)
    result = setup.run("--seed", seed, "--length", "12", "--artist-spacing", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"#EXTM3U\n")
    paths = m3u8_paths(result.stdout)
    assert len(paths) == 12 and seed not in paths
    assert {p.parent.name for p in paths} == {"mid"}
    by_path = {t.path: t for t in setup.tracks}
    assert positions_apart([by_path[seed].artist] + [by_path[p].artist for p in paths], 4)
    assert result.stdout.count(b"#EXTINF:") == 12


def test_json_with_explanations_and_filters(setup: Setup) -> None:
    result = setup.run("--seed", setup.track("fast", 1), "--length", "10", "--json", "--explain",
                       "--key-compatible", "--bpm", "130-150", "--where", "genre=techno",
                       "--duration", "2:00-8:00", "--loudness=-10..-6", "--weights", "timbre=2,tonal=0")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["mode"] == "similar" and len(data["tracks"]) == 10
    keys = [t["camelot"] for t in data["tracks"]]
    assert all(camelot_compatible(a, b) for a, b in itertools.pairwise(keys))
    for track in data["tracks"]:
        assert 130 <= track["tempo_bpm"] <= 150
        assert set(track["why"]["by_group"]) == {"timbre", "rhythm", "tonal", "loudness"}
        assert "BPM" in track["why"]["text"]


def test_path_to_a_relative_m3u8_file(setup: Setup) -> None:
    out = setup.root / "playlists" / "journey.m3u8"
    start, end = setup.track("slow", 2), setup.track("rave", 3)
    result = setup.run("--from", start, "--to", end, "--length", "8", "--output", out, "--relative",
                       "--explain")
    assert result.returncode == 0, result.stderr
    assert b"wrote 8 tracks" in result.stderr
    assert result.stdout == b""
    text = out.read_bytes()
    assert b"\n../music/slow/002.flac\n" in text and text.rstrip().endswith(b"../music/rave/003.flac")
    items = read_m3u8(out)
    assert items[0].path == start and items[-1].path == end and len(items) == 8
    history = json.loads((setup.root / "xdg-state" / "tunescout" / "playlist-history.json").read_text())
    assert history["playlists"][-1]["name"] == "journey"


def test_exclude_recent(setup: Setup) -> None:
    out = setup.root / "fresh.m3u8"
    seed = setup.track("slow", 5)
    first = setup.run("--seed", seed, "--length", "5", "--output", out, "--name", "fresh")
    assert first.returncode == 0, first.stderr
    before = {i.path for i in read_m3u8(out)}
    second = setup.run("--seed", seed, "--length", "5", "--exclude-recent", "1")
    assert second.returncode == 0, second.stderr
    assert not before & set(m3u8_paths(second.stdout))


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--seed", "/nowhere.flac"], 3, b"not in the analysed library"),
    (["--seed", "X", "--where", "genre="], 2, b"--where"),
    (["--length", "5"], 2, b"give --seed"),
    (["--from", "/a.flac"], 2, b"both --from and --to"),
    (["--seed", "X", "--bpm", "fast"], 2, b"--bpm"),
    (["--seed", "X", "--weights", "timbur=1"], 2, b"unknown group"),
    (["--seed", "X", "--relative"], 2, b"--relative needs --output"),
])
def test_user_mistakes_are_one_line(setup: Setup, args: list[str], code: int, message: bytes) -> None:
    args = [str(setup.track("mid", 1)) if a == "X" else a for a in args]
    result = setup.run(*args)
    assert result.returncode == code
    assert message in result.stderr and b"Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_database(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", {"store": {"path": str(tmp_path / "none.db")}})
    result = subprocess.run([sys.executable, *ENTRY, "--config", str(config), "playlist", "--seed", "x"],
                            capture_output=True, env=daemon_env(), timeout=60, check=False)
    assert result.returncode == 4 and b"no database" in result.stderr


def test_a_query_with_no_match_exits_1(setup: Setup) -> None:
    result = setup.run("--query", "genre=polka")
    assert result.returncode == 1
    assert b"no analysed track matches" in result.stderr and b"Traceback" not in result.stderr


def test_a_query_of_one_artist_fills_by_relaxing_spacing(setup: Setup) -> None:
    result = setup.run("--query", "artist='mid artist 2'", "--length", "8", "--explain")
    assert result.returncode == 0, result.stderr
    assert len(m3u8_paths(result.stdout)) == 3  # every match, not 1 of 3
    assert b"spacing relaxed" in result.stdout and b"spacing relaxed" in result.stderr


def test_a_path_that_cannot_keep_the_tempo_rule_stops_short_and_exits_1(setup: Setup) -> None:
    result = setup.run("--from", setup.track("slow", 0), "--to", setup.track("fast", 0), "--length", "8",
                       "--bpm-tolerance", "15", "--key-compatible", "--explain")
    assert result.returncode == 1
    assert b"stopped after" in result.stderr and b"into B" in result.stderr
    assert setup.track("fast", 0) not in m3u8_paths(result.stdout)


@pytest.mark.parametrize("args", [["--prefer", "smallest"], ["--min-duration", "-3"]])
def test_new_options_are_checked(setup: Setup, args: list[str]) -> None:
    result = setup.run("--seed", setup.track("mid", 1), *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
