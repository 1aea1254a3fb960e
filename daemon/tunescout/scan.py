"""The stat-only library walk and its comparison with the database (the reconcile)."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tunescout.models import FileIdentity

log = logging.getLogger(__name__)


@dataclass
class Walk:
    """What one walk of the library found."""

    files: dict[bytes, FileIdentity] = field(default_factory=dict)
    dirs: int = 0  # folders walked, to compare with the inotify watches placed
    complete_roots: list[Path] = field(default_factory=list)  # roots walked without a gap
    skipped_dirs: list[tuple[Path, str]] = field(default_factory=list)


def _is_audio_name(name: bytes, extensions: frozenset[bytes]) -> bool:
    """is_candidate_name on the raw bytes of a name: the walk's hot path decodes nothing."""
    dot = name.rfind(b".")
    return dot > 0 and name[dot:].lower() in extensions and not name.startswith((b".~", b"~$", b"._"))


def _walk_dir(top: bytes, extensions: frozenset[str], walk: Walk,
              seen_dirs: set[tuple[int, int]]) -> None:
    """Add every audio file under `top` to walk.files: the reconcile's hot loop, kept flat.

    Folders are recognised from the directory entry's type (no stat unless it is a symlink
    or a folder); names are checked as bytes; one stat per audio file, as `find` does.
    """
    bext = frozenset(os.fsencode(e) for e in extensions)
    files = walk.files
    make = FileIdentity
    is_reg = stat.S_ISREG
    temp_prefixes = (b".~", b"~$", b"._")
    stack = [top]
    while stack:
        folder = stack.pop()
        walk.dirs += 1
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            walk.skipped_dirs.append((Path(os.fsdecode(folder)), exc.strerror or str(exc)))
            continue
        for entry in entries:
            name = entry.name
            dot = name.rfind(b".")
            if dot > 0 and name[dot:].lower() in bext and not name.startswith(temp_prefixes):
                try:
                    st = entry.stat()
                except OSError:
                    continue  # a dangling symlink or a file that just vanished
                if is_reg(st.st_mode):
                    files[entry.path] = make(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                    continue
            try:
                if not entry.is_dir():
                    continue
                st = entry.stat()
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen_dirs:  # a symlink loop or a second link to a folder: once
                seen_dirs.add(key)
                stack.append(entry.path)


def walk_library(roots: tuple[Path, ...], extensions: frozenset[str]) -> Walk:
    """Stat every audio file under the roots; note which roots were walked completely."""
    walk = Walk()
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            log.warning("library folder %s is not reachable (%s); keeping its files in the database",
                        root, exc.strerror, extra={"EVENT": "root_missing", "TRACK_PATH": str(root)})
            continue
        if not stat.S_ISDIR(st.st_mode):
            log.warning("library path %s is not a folder", root, extra={"EVENT": "root_missing"})
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        skipped_before = len(walk.skipped_dirs)
        _walk_dir(os.fsencode(root), extensions, walk, seen_dirs)
        walk.complete_roots.append(root)
        for folder, why in walk.skipped_dirs[skipped_before:]:
            log.warning("skipping folder %s: %s", folder, why,
                        extra={"EVENT": "folder_skipped", "TRACK_PATH": str(folder)})
    return walk


@dataclass(frozen=True)
class Plan:
    """What a reconcile decided: files to analyse, to forget, and how many were unchanged."""

    new: list[Path]
    changed: list[Path]
    removed: list[Path]
    unchanged: int
    moved: list[tuple[Path, Path]]  # (old, new): same inode, size and mtime under a new name


def plan_reconcile(walk: Walk, known: dict[bytes, tuple[FileIdentity, str]],
                   queued: set[bytes]) -> Plan:
    """Compare a walk with the database: identical identities cost nothing."""
    new: list[Path] = []
    changed: list[Path] = []
    unchanged = 0
    for path, identity in walk.files.items():
        entry = known.get(path)
        if entry is None:
            if path not in queued:
                new.append(Path(os.fsdecode(path)))
            continue
        old_identity, state = entry
        if old_identity != identity or (state == "pending" and path not in queued):
            changed.append(Path(os.fsdecode(path)))
        else:
            unchanged += 1
    roots = [os.fsencode(r) for r in walk.complete_roots]
    skipped = [os.fsencode(d) for d, _ in walk.skipped_dirs]
    removed = [
        path for path in known
        if path not in walk.files and _under_any(path, roots) and not _under_any(path, skipped)
    ]
    new, moved, removed = _pair_moves(new, removed, walk, known)
    return Plan(new, changed, [Path(os.fsdecode(p)) for p in removed], unchanged, moved)


def _pair_moves(new: list[Path], removed: list[bytes], walk: Walk,
                known: dict[bytes, tuple[FileIdentity, str]],
                ) -> tuple[list[Path], list[tuple[Path, Path]], list[bytes]]:
    """Pair a vanished file with a new one that has its inode, size and mtime: it was moved."""
    vanished = {known[path][0]: path for path in removed}
    still_new: list[Path] = []
    moved: list[tuple[Path, Path]] = []
    for path in new:
        old = vanished.pop(walk.files[os.fsencode(path)], None)
        if old is None:
            still_new.append(path)
        else:
            moved.append((Path(os.fsdecode(old)), path))
    gone = set(vanished.values())
    return still_new, moved, [p for p in removed if p in gone]


def _under_any(path: bytes, folders: list[bytes]) -> bool:
    return any(path.startswith(f.rstrip(b"/") + b"/") for f in folders)
