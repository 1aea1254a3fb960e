"""Read the TOML configuration into frozen dataclasses, listing every problem at once."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunescout.convert import Converter, choice, did_you_mean, int_in, percent, resolve_path, text
from tunescout.errors import ConfigError
from tunescout.models import AUDIO_EXTENSIONS
from tunescout.playlists.request import RULE_KEYS, PlaylistSpec, Rules, parse_playlist_specs, parse_rules
from tunescout.units import parse_duration, parse_size

DEFAULT_ANALYSER = "tunescout.analysis:analyse_file"


@dataclass(frozen=True)
class LibraryConfig:
    paths: tuple[Path, ...]
    extensions: frozenset[str] = AUDIO_EXTENSIONS
    watch: str = "auto"  # auto: inotify on local filesystems, polling on network mounts
    poll_interval_s: float = 30.0


@dataclass(frozen=True)
class StoreConfig:
    path: Path
    keep_deleted_s: float = 30 * 86400.0  # features of a recording no file refers to


@dataclass(frozen=True)
class IntakeConfig:
    settle_s: float = 5.0
    rescan_interval_s: float = 6 * 3600.0


@dataclass(frozen=True)
class WorkersConfig:
    max_workers: int = 0  # 0: one per core
    child_budget_bytes: int = 768 * 1024**2
    batch_size: int = 5
    large_file_bytes: int = 100 * 1000**2
    timeout_s: float = 120.0  # per file, before the size allowance
    timeout_per_mb_s: float = 2.0
    analyser: str = DEFAULT_ANALYSER  # test seam: "module:function" run by the children
    scheduler: str | None = None  # a Dask scheduler ("tcp://host:8786") that takes the backfill


@dataclass(frozen=True)
class MemoryConfig:
    min_available_bytes: int = 300 * 1000**2
    pause_above_percent: float = 75.0
    resume_below_percent: float = 70.0
    reserve_bytes: int = 256 * 1024**2


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    target: str = "auto"  # auto: journald under systemd, stderr otherwise


@dataclass(frozen=True)
class PlaylistKeeperConfig:
    debounce_s: float = 120.0
    history: Path | None = None  # default: playlist-history.json beside the database
    specs: tuple[PlaylistSpec, ...] = ()


@dataclass(frozen=True)
class RadioConfig:
    """`[radio]`: keep MPD's queue `ahead` tracks ahead of the current song."""

    mpd: str = "127.0.0.1:6600"  # host:port, or a Unix socket path (checked by radio.mpd)
    password: str | None = None  # MPD_PASSWORD outranks the file
    music_directory: Path | None = None  # MPD's; default: the only library path
    ahead: int = 10
    seeds: int = 3  # the current song and the last few played seed each addition
    no_repeat_tracks: int = 200  # nothing played among the last this many tracks ...
    no_repeat_for_s: float = 8 * 3600.0  # ... or within this long comes back
    history: Path | None = None  # default: radio-history.json beside the database
    rules: Rules = field(default_factory=Rules)


RADIO_KEYS = ("mpd", "password", "music_directory", "ahead", "seeds", "no_repeat_tracks",
              "no_repeat_for", "history", *(k for k in RULE_KEYS if k != "length"))


@dataclass(frozen=True)
class HttpConfig:
    """`[http]`: the sound-alike API for Navidrome, Jellyfin and LMS plugins; off without `listen`."""

    listen: tuple[str, int] | None = None  # (host, port)
    token: str | None = None  # required when the address is not a loopback one
    max_clients: int = 256  # requests served at once; more get 503 at once, not a queue


@dataclass(frozen=True)
class SubsonicConfig:
    """`[subsonic]`: the user's Navidrome / gonic / Airsonic / LMS, for its song ids and playlists."""

    url: str | None = None  # None: no server
    user: str = ""
    password: str | None = None
    token: str | None = None  # with salt: the API's token auth, for a password kept off disk
    salt: str | None = None
    music_folder: Path | None = None  # where the server sees the library; None: the only library path


@dataclass(frozen=True)
class Config:
    library: LibraryConfig
    store: StoreConfig
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    log: LogConfig = field(default_factory=LogConfig)
    playlists: PlaylistKeeperConfig = field(default_factory=PlaylistKeeperConfig)
    radio: RadioConfig | None = None  # None: no [radio] section, no radio in the daemon
    http: HttpConfig = field(default_factory=HttpConfig)
    subsonic: SubsonicConfig = field(default_factory=SubsonicConfig)
    source: str = "built-in defaults"


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


def scheduler_address(value: Any) -> str:
    """Accept a Dask scheduler address: "tcp://host:8786" (tls://, ws://, wss:// too) or "host:port"."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError('expected a Dask scheduler address such as "tcp://192.0.2.7:8786"')
    value = value.strip()
    scheme, sep, rest = value.rpartition("://")
    if sep and scheme not in ("tcp", "tls", "ws", "wss"):
        raise ValueError(f"unknown protocol {scheme}://; expected tcp://, tls://, ws:// or wss://")
    host, colon, port = (rest if sep else value).rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: expected HOST:PORT, such as tcp://192.0.2.7:8786")
    return value if sep else f"tcp://{value}"


def listen_address(value: Any) -> tuple[str, int]:
    """Return (host, port) of "127.0.0.1:8765", "[::1]:8765" or ":8765" (every address)."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError('expected "HOST:PORT" such as "127.0.0.1:8765"')
    host, _, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Return whether an address only this machine reaches: 127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, "" (every address): reachable from elsewhere


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError('expected the server\'s address such as "http://127.0.0.1:4533"')
    return value.rstrip("/")


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


def _check_http(http: dict[str, Any], problems: list[str]) -> None:
    """An API anyone on the network can ask must ask them for the token."""
    listen = http.get("listen")
    if listen is not None and not is_loopback(listen[0]) and not http.get("token"):
        problems.append(f"http.token: required when http.listen ({listen[0] or 'every address'}) "
                        "is not a loopback address; set a long random one (openssl rand -hex 24)")
    if "token" in http and len(http["token"]) < 16:
        problems.append("http.token: use at least 16 characters (openssl rand -hex 24)")


def _check_subsonic(subsonic: dict[str, Any], base_dir: Path | None, problems: list[str]) -> None:
    if not subsonic:
        return
    if "url" not in subsonic:
        problems.append("subsonic.url: required in [subsonic], such as \"http://127.0.0.1:4533\"")
    if "user" not in subsonic:
        problems.append("subsonic.user: required in [subsonic]")
    if "password" not in subsonic and ("token" not in subsonic or "salt" not in subsonic):
        problems.append("subsonic.password: required (or token and salt) in [subsonic]")
    if "music_folder" in subsonic:
        try:
            subsonic["music_folder"] = resolve_path(subsonic["music_folder"], base_dir)
        except ValueError:
            problems.append("subsonic.music_folder: expected the folder the server sees the library as")


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


def _only_library_path(paths: Any) -> Path | None:
    return paths[0] if isinstance(paths, tuple) and len(paths) == 1 else None


def _radio(table: Any, env: Mapping[str, str], base_dir: Path | None, paths: Any,
           problems: list[str]) -> RadioConfig:
    """Read `[radio]`: the MPD connection, how far ahead, the repeat window and the rules."""
    if not isinstance(table, dict):
        problems.append("radio: expected a table ([radio])")
        return RadioConfig()
    problems.extend(f"radio.{key}: unknown key{did_you_mean(key, RADIO_KEYS)}"
                    for key in table if key not in RADIO_KEYS)
    converters: dict[str, tuple[str, Converter]] = {
        "mpd": ("mpd", _mpd_address), "password": ("password", text),
        "music_directory": ("music_directory", lambda v: resolve_path(v, base_dir)),
        "ahead": ("ahead", int_in(1, 100)), "seeds": ("seeds", int_in(1, 20)),
        "no_repeat_tracks": ("no_repeat_tracks", int_in(0, 100_000)),
        "no_repeat_for": ("no_repeat_for_s", parse_duration),
        "history": ("history", lambda v: resolve_path(v, base_dir)),
    }
    values: dict[str, Any] = {}
    for key, (attr, convert) in converters.items():
        if key in table:
            try:
                values[attr] = convert(table[key])
            except ValueError as exc:
                problems.append(f"radio.{key}: {exc}")
    rules, found = parse_rules(table, RULE_KEYS, Rules(), base_dir)
    problems.extend(f"radio.{p}" for p in found)
    if env.get("MPD_PASSWORD"):
        values["password"] = env["MPD_PASSWORD"]
    if "music_directory" not in values:
        only = _only_library_path(paths)
        if only is None and isinstance(paths, tuple):
            problems.append("radio.music_directory: required with several library paths: "
                            "MPD's music_directory")
        values["music_directory"] = only
    return RadioConfig(**values, rules=rules)


def _mpd_address(value: Any) -> str:
    """Check "host", "host:port", "[::1]:6600" or a socket path (radio.mpd parses it)."""
    address = text(value).strip()
    if not address.startswith(("/", "@", "~")) and not re.match(
            r"^(?:\[[^\]]+\]|[^:\s]+)(?::(?:[1-9]\d{0,4}))?$", address):
        raise ValueError(f"cannot read {address!r}; write host:port or a socket path")
    return address


def _mpd_playlists(keeper: PlaylistKeeperConfig, radio: RadioConfig | None, paths: Any,
                   problems: list[str]) -> PlaylistKeeperConfig:
    """Give each `format = "mpd"` playlist its music directory: its own, the radio's, the library's."""
    fallback = (radio.music_directory if radio else None) or _only_library_path(paths)
    specs = []
    for position, spec in enumerate(keeper.specs):
        if spec.format == "mpd" and spec.music_directory is None:
            if fallback is None:
                problems.append(f"playlists[{position}].music_directory: required for format \"mpd\" "
                                "with several library paths: MPD's music_directory")
            spec = replace(spec, music_directory=fallback)
        specs.append(spec)
    return replace(keeper, specs=tuple(specs))
