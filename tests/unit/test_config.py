from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO
from support.processes import daemon_env
from tunescout.config import default_store_path, load_config, parse_config
from tunescout.errors import ConfigError


def test_example_config_loads_with_documented_values() -> None:
    config = load_config(REPO / "config" / "tunescout.toml", env={})
    assert config.library.paths == (Path("/srv/music"),)
    assert config.intake.settle_s == 5.0
    assert config.intake.rescan_interval_s == 6 * 3600
    assert config.workers.child_budget_bytes == 768 * 2**20
    assert config.memory.min_available_bytes == 300 * 10**6
    assert config.memory.pause_above_percent == 75
    assert config.store.keep_deleted_s == 30 * 86400


def test_defaults_without_any_file(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    config = load_config(None, env)
    assert config.source == "built-in defaults"
    assert config.library.paths == (tmp_path / "Music",)
    assert config.store.path == tmp_path / ".local" / "state" / "tunescout" / "tunescout.db"


def test_state_directory_under_systemd() -> None:
    assert default_store_path({"STATE_DIRECTORY": "/var/lib/tunescout"}) == Path(
        "/var/lib/tunescout/tunescout.db")


def test_env_variable_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[library]\npaths = ["music"]\n[store]\npath = "db/x.db"\n')
    config = load_config(None, {"TUNESCOUT_CONFIG": str(path), "HOME": str(tmp_path)})
    assert config.library.paths == (tmp_path / "music",)  # relative to the config file
    assert config.store.path == tmp_path / "db" / "x.db"


def test_every_problem_is_listed_with_did_you_mean() -> None:
    raw = {
        "library": {"pathz": ["/x"]},
        "workers": {"max_workers": "four", "child_budget": "5 zb", "batch_size": 0},
        "memroy": {"min_available": "1 GB"},
        "memory": {"pause_above_percent": 60, "resume_below_percent": 70},
        "log": {"level": "loud"},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    problems = info.value.problems
    assert "library.pathz: unknown key; did you mean 'paths'?" in problems
    assert "memroy: unknown section; did you mean 'memory'?" in problems
    assert any(p.startswith("workers.max_workers: expected a whole number") for p in problems)
    assert any(p.startswith("workers.child_budget: cannot read '5 zb' as a size") for p in problems)
    assert any(p.startswith("workers.batch_size: must be from 1") for p in problems)
    assert any(p.startswith("memory.resume_below_percent: must be below") for p in problems)
    assert any(p.startswith("log.level: must be one of") for p in problems)
    assert len(problems) == 7


def test_library_folders_inside_each_other_are_refused() -> None:
    raw = {"library": {"paths": ["/m", "/m/classical", "/x", "/x/"]}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    assert info.value.problems == ["library.paths: /m/classical is inside /m; list only /m",
                                   "library.paths: /x is listed twice"]


def test_broken_toml_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[library\npaths = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert "not valid TOML" in info.value.problems[0]


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[workers]\nmax_wrokers = 2\n[store]\npath = 5\n')
    # (doctor acts on the config; status, show and failures read the database without it)
    proc = subprocess.run([sys.executable, "-m", "tunescout", "--config", str(path), "doctor", "--quick"],
                          capture_output=True, text=True, env=daemon_env())
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "workers.max_wrokers: unknown key; did you mean 'max_workers'?" in proc.stderr
    assert "store.path: expected the path of the SQLite file" in proc.stderr


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", {})


def test_admin_without_own_database_reads_the_services(tmp_path: Path) -> None:
    system = tmp_path / "var" / "tunescout.db"
    env = {"HOME": str(tmp_path / "home")}
    assert default_store_path(env, system) == tmp_path / "home/.local/state/tunescout/tunescout.db"
    system.parent.mkdir()
    system.write_bytes(b"")
    assert default_store_path(env, system) == system


def test_playlists_are_validated_with_the_rest(tmp_path: Path) -> None:
    raw = {"playlists": [{"name": "A", "seeds": ["a.flac"], "length": 0}],
           "playlist_keeper": {"debounce": "soon", "histroy": "h.json"},
           "playlist": {}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={}, base_dir=tmp_path)
    problems = "\n".join(info.value.problems)
    assert "playlists[0].output" in problems
    assert "playlists[0].length" in problems
    assert "playlist_keeper.debounce: cannot read 'soon' as a duration" in problems
    assert "playlist_keeper.histroy: unknown key; did you mean 'history'?" in problems
    assert "playlist: unknown section; did you mean 'playlists'?" in problems


def test_a_valid_playlist_table(tmp_path: Path) -> None:
    raw = {"playlists": [{"name": "Calm", "output": "out/calm.m3u8", "query": "genre=ambient",
                          "length": 20}], "playlist_keeper": {"debounce": "30 s"}}
    config = parse_config(raw, env={}, base_dir=tmp_path)
    (spec,) = config.playlists.specs
    assert spec.name == "Calm" and spec.output == tmp_path / "out" / "calm.m3u8"
    assert config.playlists.debounce_s == 30


def _http(table: dict[str, object]):
    return parse_config({"http": table}, env={"HOME": "/nonexistent"})


def test_http_is_off_without_the_section_and_loopback_needs_no_token() -> None:
    assert parse_config({}, env={"HOME": "/nonexistent"}).http.listen is None
    assert _http({"listen": "127.0.0.1:8765"}).http.listen == ("127.0.0.1", 8765)
    assert _http({"listen": "[::1]:8765"}).http.listen == ("::1", 8765)


@pytest.mark.parametrize("table, words", [
    ({"listen": "0.0.0.0:8765"}, "http.token: required when http.listen (0.0.0.0)"),
    ({"listen": ":8765"}, "http.token: required when http.listen (every address)"),
    ({"listen": "192.168.1.5:8765", "token": "short"}, "http.token: use at least 16 characters"),
    ({"listen": "127.0.0.1"}, 'http.listen: expected "HOST:PORT"'),
    ({"listen": "127.0.0.1:99999"}, "the port must be a number from 1 to 65535"),
    ({"listn": "127.0.0.1:1"}, "http.listn: unknown key; did you mean 'listen'?"),
])
def test_http_mistakes_are_named(table: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _http(table)
    assert any(words in problem for problem in caught.value.problems), caught.value.problems


def test_a_network_address_with_a_token_is_accepted() -> None:
    config = _http({"listen": "0.0.0.0:8765", "token": "x" * 32})
    assert config.http.listen == ("0.0.0.0", 8765) and config.http.token == "x" * 32
