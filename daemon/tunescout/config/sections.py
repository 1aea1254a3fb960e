"""The configuration's values: one frozen dataclass per section, and the whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunescout.config.integrations import HttpConfig, RadioConfig, SubsonicConfig
from tunescout.models import AUDIO_EXTENSIONS
from tunescout.playlists.request import PlaylistSpec

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
