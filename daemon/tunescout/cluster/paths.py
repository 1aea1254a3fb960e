"""Where a library folder of the server is on a worker machine: `--path-map /srv/music=/mnt/music`.

Plain Python, no Dask: the worker maps each path it is sent before it opens the file, and
checks the mapped library folders before it takes any work.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "TUNESCOUT_PATH_MAP"  # how `tunescout worker` hands its map to Dask's worker processes


@dataclass(frozen=True)
class PathMap:
    """Pairs of (folder on the server, the same folder on this machine), longest prefix first."""

    pairs: tuple[tuple[Path, Path], ...] = ()

    @classmethod
    def parse(cls, specs: list[str]) -> PathMap:
        """Read `SERVER=LOCAL` pairs; raise ValueError naming the one that is not one."""
        pairs = []
        for spec in specs:
            server, sep, local = spec.partition("=")
            if not sep or not server.startswith("/") or not local.startswith("/"):
                raise ValueError(f"--path-map {spec!r}: expected SERVER_FOLDER=LOCAL_FOLDER, both "
                                 "absolute, such as /srv/music=/mnt/music")
            pairs.append((Path(os.path.normpath(server)), Path(os.path.normpath(local))))
        return cls(tuple(sorted(pairs, key=lambda p: len(p[0].parts), reverse=True)))

    def to_env(self) -> str:
        return json.dumps([[str(s), str(local)] for s, local in self.pairs])

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str]) -> PathMap:
        """Return the map `tunescout worker` set for this process (none: paths are the same)."""
        text = environ.get(ENV_VAR)
        if not text:
            return cls()
        return cls(tuple((Path(s), Path(local)) for s, local in json.loads(text)))

    def local(self, path: Path) -> Path:
        """Return where the server's `path` is on this machine."""
        for server, local in self.pairs:
            if path == server or server in path.parents:
                return local / path.relative_to(server)
        return path
