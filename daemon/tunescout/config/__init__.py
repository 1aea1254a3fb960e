"""Read the TOML configuration into frozen dataclasses, listing every problem at once.

The values are in `sections` (one dataclass per section), the integrations' sections and checks in
`integrations`; this module finds, reads and checks the file, and is what the rest imports.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunescout.config.integrations import (
    HttpConfig,
    RadioConfig,
    SubsonicConfig,
    _check_http,
    _check_pushed_playlists,
    _check_subsonic,
    _mpd_playlists,
    _radio,
    _url,
    listen_address,
    scheduler_address,
)
from tunescout.config.sections import (
    DEFAULT_ANALYSER,
    Config,
    IntakeConfig,
    LibraryConfig,
    LogConfig,
    MemoryConfig,
    PlaylistKeeperConfig,
    StoreConfig,
    WorkersConfig,
)
from tunescout.convert import Converter, choice, did_you_mean, int_in, percent, resolve_path, text
from tunescout.errors import ConfigError
from tunescout.playlists.request import parse_playlist_specs
from tunescout.units import parse_duration, parse_size

__all__ = ["DEFAULT_ANALYSER", "Config", "HttpConfig", "RadioConfig", "SubsonicConfig", "load_config",
           "parse_config", "salvage_store_path", "scheduler_address"]


def default_library_paths(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Return the music folder a user would expect: $XDG_MUSIC_DIR, else ~/Music."""
    music = env.get("XDG_MUSIC_DIR")
    return (Path(music) if music else Path(env.get("HOME", "~")).expanduser() / "Music",)


SYSTEM_STORE = Path("/var/lib/tunescout/tunescout.db")  # where the systemd unit keeps it


def default_store_path(env: Mapping[str, str], system_store: Path = SYSTEM_STORE) -> Path:
    """Return the database path: systemd's StateDirectory, else the XDG state directory.

    An admin's `tunescout status` on a host where the service runs finds the service's database
    when they have none of their own.
    """
    state_dir = env.get("STATE_DIRECTORY")
    if state_dir:
        return Path(state_dir.split(":")[0]) / "tunescout.db"
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", "~")).expanduser() / ".local" / "state"
    user_store = base / "tunescout" / "tunescout.db"
    if not user_store.exists() and system_store.exists():
        return system_store
    return user_store


def config_candidates(env: Mapping[str, str]) -> list[Path]:
    """Return the default config locations, most specific first."""
    xdg = env.get("XDG_CONFIG_HOME")
    user = Path(xdg) if xdg else Path(env.get("HOME", "~")).expanduser() / ".config"
    return [user / "tunescout" / "tunescout.toml", Path("/etc/tunescout/tunescout.toml")]


def find_config(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """Return the config file to read: --config, $TUNESCOUT_CONFIG, then the defaults."""
    if explicit is not None:
        return explicit
    if env.get("TUNESCOUT_CONFIG"):
        return Path(env["TUNESCOUT_CONFIG"])
    return next((p for p in config_candidates(env) if p.is_file()), None)


def load_config(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Find, read and validate the configuration; raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    path = find_config(explicit, env)
    if path is None:
        return parse_config({}, env=env)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(str(path), ["file not found"]) from exc
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    return parse_config(raw, env=env, source=str(path), base_dir=path.absolute().parent)


def salvage_store_path(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Return the database an invalid configuration points at, as far as it can be read.

    For the commands that only read the database (status, show, failures): when a config was
    edited into an invalid state, the daemon still runs on its old one, and that is exactly when
    its user needs `status`. Falls back to the default database path.
    """
    env = os.environ if env is None else env
    path = find_config(explicit, env)
    if path is None:
        return default_store_path(env)
    try:
        with path.open("rb") as fh:
            value = tomllib.load(fh)["store"]["path"]
        return resolve_path(value, path.absolute().parent)
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
        return default_store_path(env)


# --- validation ------------------------------------------------------------------------------

def _extensions(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError('expected a list of extensions such as [".mp3", ".flac"]')
    return frozenset(v.lower() if v.startswith(".") else "." + v.lower() for v in value)


def _analyser(value: Any) -> str:
    if not isinstance(value, str) or value.count(":") != 1:
        raise ValueError('expected "module:function"')
    return value


_SECTIONS: dict[str, dict[str, tuple[str, Converter]]] = {
    "library": {
        "paths": ("paths", lambda v: v),  # checked and resolved in parse_config, with _nested
        "extensions": ("extensions", _extensions),
        "watch": ("watch", choice("auto", "inotify", "poll")),
        "poll_interval": ("poll_interval_s", parse_duration),
    },
    "store": {"path": ("path", lambda v: v),
              "keep_deleted": ("keep_deleted_s", parse_duration)},
    "intake": {
        "settle": ("settle_s", parse_duration),
        "rescan_interval": ("rescan_interval_s", parse_duration),
    },
    "workers": {
        "max_workers": ("max_workers", int_in(0, 256)),
        "child_budget": ("child_budget_bytes", parse_size),
        "batch_size": ("batch_size", int_in(1, 100)),
        "large_file": ("large_file_bytes", parse_size),
        "timeout": ("timeout_s", parse_duration),
        "timeout_per_mb": ("timeout_per_mb_s", parse_duration),
        "analyser": ("analyser", _analyser),
        "scheduler": ("scheduler", scheduler_address),
    },
    "memory": {
        "min_available": ("min_available_bytes", parse_size),
        "pause_above_percent": ("pause_above_percent", percent),
        "resume_below_percent": ("resume_below_percent", percent),
        "reserve": ("reserve_bytes", parse_size),
    },
    "log": {
        "level": ("level", choice("debug", "info", "warning", "error")),
        "target": ("target", choice("auto", "journal", "stderr")),
    },
    "http": {
        "listen": ("listen", listen_address),
        "token": ("token", text),
        "max_clients": ("max_clients", int_in(1, 4096)),
    },
    "subsonic": {
        "url": ("url", _url),
        "user": ("user", text),
        "password": ("password", text),
        "token": ("token", text),
        "salt": ("salt", text),
        "music_folder": ("music_folder", lambda v: v),  # resolved below
    },
}


def _nested(paths: tuple[Path, ...]) -> list[str]:
    """A folder listed twice, or inside another listed folder, would be walked and watched twice."""
    problems = []
    for i, path in enumerate(paths):
        for other in paths[:i]:
            if path == other:
                problems.append(f"library.paths: {path} is listed twice")
            elif other in path.parents or path in other.parents:
                inner, outer = (path, other) if other in path.parents else (other, path)
                problems.append(f"library.paths: {inner} is inside {outer}; list only {outer}")
    return problems


def parse_config(
    raw: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    source: str = "built-in defaults",
    base_dir: Path | None = None,
) -> Config:
    """Turn a parsed TOML document into a Config; raise ConfigError with every problem."""
    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    raw = dict(raw)
    keeper = _playlists(raw.pop("playlists", None), raw.pop("playlist_keeper", None), base_dir,
                        problems)
    radio_table = raw.pop("radio", None)
    for section, table in raw.items():
        if section not in _SECTIONS:
            known = [*_SECTIONS, "playlists", "playlist_keeper", "radio"]
            problems.append(f"{section}: unknown section{did_you_mean(section, known)}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{section}: expected a table ([{section}])")
            continue
        keys = _SECTIONS[section]
        for key, value in table.items():
            if key not in keys:
                problems.append(f"{section}.{key}: unknown key{did_you_mean(key, list(keys))}")
                continue
            attr, convert = keys[key]
            try:
                values[section][attr] = convert(value)
            except ValueError as exc:
                problems.append(f"{section}.{key}: {exc}")
    library = values["library"]
    if "paths" in library:
        paths = library["paths"]
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list) or not paths:
            problems.append('library.paths: expected a list of folders such as ["/srv/music"]')
        else:
            try:
                library["paths"] = tuple(resolve_path(p, base_dir) for p in paths)
            except ValueError:
                problems.append("library.paths: every entry must be a non-empty string")
            else:
                problems.extend(_nested(library["paths"]))
    else:
        library["paths"] = default_library_paths(env)
    store = values["store"]
    try:
        store["path"] = resolve_path(store["path"], base_dir) if "path" in store else None
    except ValueError:
        problems.append("store.path: expected the path of the SQLite file")
    memory = values["memory"]
    pause = memory.get("pause_above_percent", MemoryConfig.pause_above_percent)
    resume = memory.get("resume_below_percent", min(MemoryConfig.resume_below_percent, pause - 5))
    if resume >= pause:
        problems.append(
            f"memory.resume_below_percent: must be below pause_above_percent ({pause:g}) "
            "so that intake does not flap"
        )
    memory["resume_below_percent"] = resume
    radio = None if radio_table is None else _radio(radio_table, env, base_dir, library["paths"], problems)
    keeper = _mpd_playlists(keeper, radio, library["paths"], problems)
    _check_http(values["http"], problems)
    _check_subsonic(values["subsonic"], base_dir, problems)
    _check_pushed_playlists(keeper, values["subsonic"], problems)
    if problems:
        raise ConfigError(source, problems)
    return Config(
        library=LibraryConfig(**library),
        store=StoreConfig(**{**store, "path": store["path"] or default_store_path(env)}),
        intake=IntakeConfig(**values["intake"]),
        workers=WorkersConfig(**values["workers"]),
        memory=MemoryConfig(**memory),
        log=LogConfig(**values["log"]),
        playlists=keeper,
        radio=radio,
        http=HttpConfig(**values["http"]),
        subsonic=SubsonicConfig(**values["subsonic"]),
        source=source,
    )


def _playlists(tables: Any, keeper: Any, base_dir: Path | None,
               problems: list[str]) -> PlaylistKeeperConfig:
    """Read `[[playlists]]` and `[playlist_keeper]`; the specs are checked by playlists.request."""
    values: dict[str, Any] = {}
    if keeper is not None:
        if not isinstance(keeper, dict):
            problems.append("playlist_keeper: expected a table ([playlist_keeper])")
            keeper = {}
        for key, value in keeper.items():
            try:
                if key == "debounce":
                    values["debounce_s"] = parse_duration(value)
                elif key == "history":
                    values["history"] = resolve_path(value, base_dir)
                else:
                    problems.append(f"playlist_keeper.{key}: unknown key"
                                    f"{did_you_mean(key, ['debounce', 'history'])}")
            except ValueError as exc:
                problems.append(f"playlist_keeper.{key}: {exc}")
    if tables is not None:
        specs, found = parse_playlist_specs(tables, base_dir)
        problems.extend(found)
        values["specs"] = tuple(specs)
    return PlaylistKeeperConfig(**values)


