"""The configuration of the integrations: [radio] (MPD), [http] and [subsonic], the cluster's
scheduler address. Their dataclasses and checks; `tunescout.config` reads them with the rest."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunescout.config.sections import PlaylistKeeperConfig

from tunescout.convert import Converter, did_you_mean, int_in, resolve_path, text
from tunescout.playlists.request import RULE_KEYS, Rules, parse_rules
from tunescout.units import parse_duration


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


def _check_pushed_playlists(keeper: PlaylistKeeperConfig, subsonic: dict[str, Any],
                            problems: list[str]) -> None:
    """A playlist for the Subsonic server needs the server."""
    for position, spec in enumerate(keeper.specs):
        if spec.subsonic and "url" not in subsonic:
            problems.append(f"playlists[{position}].subsonic: needs a [subsonic] section with the "
                            "server's url, user and password")


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
