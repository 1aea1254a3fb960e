"""The stat-only library walk and its comparison with the database (the reconcile).

A folder's audio files (name, device, inode, size, mtime) hash to a fingerprint. The database
keeps, per folder, the fingerprint of the last walk that agreed with its rows, and forgets it as
soon as it writes a row of that folder. A folder whose walk gives the stored fingerprint is
unchanged without loading one of its rows; only the others are compared file by file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import stat
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tunescout.library.intake import TEMP_PREFIXES
from tunescout.models import UNANALYSED_AUDIO, FileIdentity
from tunescout.units import folder_of, is_within

log = logging.getLogger(__name__)

# (name, dev, ino, size, mtime_ns) per audio file; the name as os.fsdecode gives it
Listing = list[tuple[str, int, int, int, int]]


def fingerprint(listing: Listing) -> bytes:
    """Return the fingerprint of one folder's audio files (in any order).

    pickle and blake2b run at C speed; a new Python whose pickle differs only costs one
    file-by-file reconcile, after which the new fingerprints are stored.
    """
    return hashlib.blake2b(pickle.dumps(sorted(listing), 5), digest_size=16).digest()


@dataclass
class Walk:
    """What one walk of the library found.

    Without stored fingerprints every audio file is in `files`. With them, `files` holds only
    the files of the folders in `dirty`; the folders in `matched` are known to be unchanged.
    """

    files: dict[bytes, FileIdentity] = field(default_factory=dict)
    dirty: dict[bytes, bytes] = field(default_factory=dict)  # folder -> its new fingerprint
    matched: dict[bytes, bytes] = field(default_factory=dict)  # folder -> its (stored) fingerprint
    dirs: int = 0  # folders walked, to compare with the inotify watches placed
    complete_roots: list[Path] = field(default_factory=list)  # roots walked without a gap
    skipped_dirs: list[tuple[Path, str]] = field(default_factory=list)
    links: list[Path] = field(default_factory=list)  # symlinked folders followed: to be watched
    unanalysed: Counter[str] = field(default_factory=Counter)  # other audio formats, by extension


_EMPTY = fingerprint([])
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _list_folder(folder: bytes, extensions: frozenset[str], listing: Listing,
                 subdirs: list[bytes], links: list[bytes], unanalysed: Counter[str] | None = None) -> None:
    """Stat the audio files of one folder into `listing`; collect its sub-folders.

    The reconcile's hot loop, kept flat, as `find` does it: the folder is read through a file
    descriptor so that each stat is an fstatat of one name (no path built, no path walked),
    folders are recognised from the directory entry's type (no stat unless it is a symlink),
    and there is one stat per audio file. Raises OSError when the folder cannot be read.
    """
    fd = os.open(folder, _OPEN_DIR)
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        is_reg = stat.S_ISREG
        for entry in entries:
            name = entry.name
            dot = name.rfind(".")
            if dot > 0:
                ext = name[dot:].lower()
                if ext in extensions and not name.startswith(TEMP_PREFIXES):
                    try:
                        st = entry.stat()
                    except OSError:
                        continue  # a dangling symlink or a file that just vanished
                    if is_reg(st.st_mode):
                        listing.append((name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
                        continue
                elif ext in UNANALYSED_AUDIO and unanalysed is not None and entry.is_file():
                    unanalysed[ext] += 1
                    continue
            try:
                if entry.is_dir():
                    path = os.path.join(folder, os.fsencode(name))
                    (links if entry.is_symlink() else subdirs).append(path)
            except OSError:
                continue
    finally:
        os.close(fd)


def walk_library(roots: tuple[Path, ...], extensions: frozenset[str],
                 known: Mapping[bytes, bytes] | None = None,
                 told: set[Path] | None = None) -> Walk:
    """Stat every audio file under the roots; note which roots were walked completely.

    `known` maps folders to their stored fingerprints; without it no fingerprint is computed
    and every file found is in `walk.files`. A symlinked folder is followed once, unless it
    leads into a tree already walked or to an ancestor of one (a loop). A folder that cannot
    be read gets a warning, once per folder in `told` (a daemon's periodic walks), then debug.
    """
    walk = Walk()
    lowered = frozenset(e.lower() for e in extensions)
    trees: list[bytes] = []  # real paths of the trees walked: roots and followed symlinks
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
        real = os.fsencode(os.path.realpath(root))
        if any(is_within(real, tree) for tree in trees):
            continue  # inside a root already walked
        trees.append(real)
        skipped_before = len(walk.skipped_dirs)
        _walk_tree(os.fsencode(root), lowered, known, walk, trees)
        walk.complete_roots.append(root)
        for folder, why in walk.skipped_dirs[skipped_before:]:
            level = logging.DEBUG if told is not None and folder in told else logging.WARNING
            log.log(level, "skipping folder %s: %s", folder, why,
                    extra={"EVENT": "folder_skipped", "TRACK_PATH": str(folder)})
            if told is not None:
                told.add(folder)
    return walk


def look_again(walk: Walk, folder: bytes, extensions: frozenset[str]) -> None:
    """List one folder (not its sub-folders) again and mark it for a file-by-file compare.

    For a folder the walk found unchanged whose stored fingerprint was forgotten meanwhile.
    """
    listing: Listing = []
    walk.matched.pop(folder, None)
    try:
        _list_folder(folder, frozenset(e.lower() for e in extensions), listing, [], [])
    except (FileNotFoundError, NotADirectoryError):
        pass  # gone since: its rows are compared with nothing, and forgotten
    except OSError as exc:
        walk.skipped_dirs.append((Path(os.fsdecode(folder)), exc.strerror or str(exc)))
        return
    walk.dirty[folder] = fingerprint(listing) if listing else _EMPTY
    _add_files(walk, folder, listing)


def _add_files(walk: Walk, folder: bytes, listing: Listing) -> None:
    prefix = folder if folder.endswith(b"/") else folder + b"/"
    files, make, encode = walk.files, FileIdentity, os.fsencode
    for name, dev, ino, size, mtime_ns in listing:
        files[prefix + encode(name)] = make(dev, ino, size, mtime_ns)


def _walk_tree(top: bytes, extensions: frozenset[str], known: Mapping[bytes, bytes] | None,
               walk: Walk, trees: list[bytes]) -> None:
    stack = [top]
    while stack:
        folder = stack.pop()
        walk.dirs += 1
        listing: Listing = []
        links: list[bytes] = []
        try:
            _list_folder(folder, extensions, listing, stack, links, walk.unanalysed)
        except OSError as exc:
            walk.skipped_dirs.append((Path(os.fsdecode(folder)), exc.strerror or str(exc)))
            continue
        for link in links:
            real = os.fsencode(os.path.realpath(link))
            if not any(is_within(real, tree) or is_within(tree, real) for tree in trees):
                trees.append(real)
                stack.append(link)
                walk.links.append(Path(os.fsdecode(link)))
        if known is not None:
            if not listing and folder not in known:
                continue
            print_ = fingerprint(listing) if listing else _EMPTY
            if known.get(folder) == print_:
                walk.matched[folder] = print_
                continue
            walk.dirty[folder] = print_
        _add_files(walk, folder, listing)


@dataclass(frozen=True)
class Plan:
    """What a reconcile decided: files to analyse, to forget, and how many were unchanged.

    `agreed` lists the folders whose files now match their rows exactly, with the row count
    and the fingerprint to store; `emptied` the folders left with neither files nor rows;
    `unsettled` the folders still to be analysed, whose stored fingerprint no longer holds.
    """

    new: list[Path]
    changed: list[Path]
    removed: list[Path]
    unchanged: int
    moved: list[tuple[Path, Path]]  # (old, new): same inode, size and mtime under a new name
    agreed: list[tuple[bytes, int, bytes]] = field(default_factory=list)
    emptied: list[bytes] = field(default_factory=list)
    unsettled: list[bytes] = field(default_factory=list)  # folders whose stored print is stale


def plan_reconcile(walk: Walk, known: dict[bytes, tuple[FileIdentity, str]],
                   queued: set[bytes]) -> Plan:
    """Compare a walk with the database rows of the folders it could not vouch for.

    `known` holds the rows of every folder that is not in `walk.matched`; identical identities
    cost nothing. Rows under a folder that could not be read are kept. A folder whose files
    will all have rows with their identities once the plan is applied (nothing new, changed
    or pending in it) agrees with the database and gets its fingerprint stored.
    """
    new: list[Path] = []
    changed: list[Path] = []
    unchanged = 0
    unsettled: set[bytes] = set()  # folders with files that have no row, or a stale one
    for path, identity in walk.files.items():
        entry = known.get(path)
        if entry is None:
            if path not in queued:
                new.append(Path(os.fsdecode(path)))
            else:
                unsettled.add(folder_of(path))
            continue
        old_identity, state = entry
        if old_identity != identity or (state == "pending" and path not in queued):
            changed.append(Path(os.fsdecode(path)))
        else:
            unchanged += 1
        if old_identity != identity or state == "pending":
            unsettled.add(folder_of(path))
    roots = [os.fsencode(r) for r in walk.complete_roots]
    skipped = [os.fsencode(d) for d, _ in walk.skipped_dirs]
    removed = [
        path for path in known
        if path not in walk.files and _under_any(path, roots) and not _under_any(path, skipped)
    ]
    new, moved, removed = _pair_moves(new, removed, walk, known)
    unsettled.update(folder_of(os.fsencode(p)) for p in new)
    files_in: dict[bytes, int] = {}
    for path in walk.files:
        folder = folder_of(path)
        files_in[folder] = files_in.get(folder, 0) + 1
    agreed, emptied, stale = [], [], []
    for folder, print_ in walk.dirty.items():
        if folder in unsettled:
            stale.append(folder)
        elif folder in files_in:
            agreed.append((folder, files_in[folder], print_))
        else:
            emptied.append(folder)
    return Plan(new, changed, [Path(os.fsdecode(p)) for p in removed], unchanged, moved,
                agreed, emptied, stale)


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
    return any(is_within(path, f) for f in folders)
