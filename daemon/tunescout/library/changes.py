"""What a change in the library means for the database: settle, queue, follow moves, forget."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from tunescout.config import Config
from tunescout.library.intake import Settler, is_candidate
from tunescout.library.walk import Walk, look_again, plan_reconcile, walk_library
from tunescout.library.watcher import Change, ChangeKind
from tunescout.models import FileIdentity
from tunescout.store.writer import PRIORITY_BACKFILL, PRIORITY_NEW, StoreWriter
from tunescout.units import folder_of, format_duration, is_within

log = logging.getLogger(__name__)

DELETE_GRACE_S = 2.0  # beyond the settle time, before a deleted file is forgotten
FOLDER_QUERIES = 1000  # more folders to compare file by file than this: load every row at once


class Library:
    """Turn watcher changes and reconcile walks into queued jobs, moved rows and forgotten files.

    `changes` counts files moved or forgotten, so that the playlist keeper knows the library
    changed; analyses are counted by the supervisor.
    """

    def __init__(self, config: Config, store: StoreWriter) -> None:
        self.config = config
        self.store = store
        self.settler = Settler(config.intake.settle_s)
        self.changes = 0
        self._doomed: dict[Path, float] = {}  # deleted paths -> when to forget them (monotonic)

    def unknown_roots(self) -> list[Path]:
        """Return the library folders that do not exist and never held an analysed file: a
        mistake in the config (a typo, a default ~/Music that is not there), said at start. One
        that held files and went away (a USB disk) is waited for instead."""
        return [root for root in self.config.library.paths
                if not root.exists() and self.store.files_under(os.fsencode(root)) == 0]

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.settler.settle_s = config.intake.settle_s

    # --- watcher changes ----------------------------------------------------------------------

    def apply(self, change: Change, wall: float) -> Path | None:
        """Apply one change; return the library root when it is the root that went away."""
        exts = self.config.library.extensions
        if change.kind == ChangeKind.WRITTEN and is_candidate(change.path, exts):
            self.settler.touch(change.path, wall)
        elif change.kind == ChangeKind.DELETED:
            # not at once: a move into a folder inotify does not watch yet looks like a delete,
            # and the file turns up under its new name a moment later (see `_moved_here`)
            self.settler.forget(change.path)
            self._doomed[change.path] = (time.monotonic() + self.config.intake.settle_s
                                         + DELETE_GRACE_S)
        elif change.kind == ChangeKind.MOVED and change.dest is not None:
            self._moved(change.path, change.dest, wall)
        elif change.kind == ChangeKind.DIR_MOVED and change.dest is not None:
            self.settler.forget_under(change.path)
            # files deleted in that folder a moment ago are still to be forgotten: at their new
            # paths, where the rows now are (else the rows outlive the files)
            for path in [p for p in self._doomed if p.is_relative_to(change.path)]:
                self._doomed[change.dest / path.relative_to(change.path)] = self._doomed.pop(path)
            moved = self.store.rename(change.path, change.dest, tree=True)
            self.changes += moved
            if moved:
                log.info("moved folder %s to %s (%d files keep their analysis)", change.path,
                         change.dest, moved, extra={"EVENT": "moved", "TRACK_PATH": str(change.dest)})
            self._touch_tree(change.dest, wall)
        elif change.kind == ChangeKind.DIR_ADDED:
            self._touch_tree(change.path, wall)
        elif change.kind == ChangeKind.DIR_DELETED:
            self.settler.forget_under(change.path)
            if change.path in self.config.library.paths:
                return change.path  # an unmounted disk: keep every file, wait for its return
            gone = self.store.remove_tree(change.path)
            self.changes += gone
            if gone:
                log.info("removed folder %s", change.path, extra={"EVENT": "removed"})
        return None

    def _moved(self, src: Path, dest: Path, wall: float) -> None:
        self.settler.forget(src)
        if not is_candidate(dest, self.config.library.extensions):
            self.changes += self.store.remove_files([src])
        elif self.store.rename(src, dest, tree=False):
            self.changes += 1
            log.info("moved %s to %s", src, dest, extra={"EVENT": "moved", "TRACK_PATH": str(dest)})
            # a file re-tagged and then moved before it settled: its row follows the move with
            # the old size and mtime; settling the new name compares them (and drops it if same)
            self.settler.touch(dest, wall)
        else:
            self.settler.touch(dest, wall)

    def _touch_tree(self, folder: Path, wall: float) -> None:
        """Settle the files of a folder that appeared; `_changed_only` drops the known ones.

        Costs one walk of that folder, not a load of the whole library's rows.
        """
        walk = walk_library((folder,), self.config.library.extensions)
        for raw in walk.files:
            self.settler.touch(Path(os.fsdecode(raw)), wall)

    # --- settled files ------------------------------------------------------------------------

    def queue_settled(self, wall: float) -> int:
        """Queue the files that are complete now and really changed; return how many."""
        ready = self._changed_only(self.settler.ready(wall))
        if ready:
            self.store.enqueue(ready, PRIORITY_NEW)
        return len(ready)

    def _changed_only(self, paths: list[Path]) -> list[Path]:
        """Drop files whose recorded identity still holds: an event is not a change.

        Editors and players open files for writing without changing them; a failed or
        quarantined file is retried only when it really changed. A new name for a known inode
        whose old name is gone is a move: the rows follow it.
        """
        changed = []
        for path in paths:
            known = self.store.file_identity(path)
            try:
                identity = FileIdentity.from_stat(os.stat(path))
            except OSError:
                continue
            if known is None and self._moved_here(path, identity):
                continue
            if known is None or known[1] == "pending" or known[0] != identity:
                changed.append(path)
        return changed

    def _moved_here(self, path: Path, identity: FileIdentity) -> bool:
        old = self.store.path_with_identity(identity)
        if old is None or old == path or old.exists():
            return False
        self._doomed.pop(old, None)
        self.store.rename(old, path, tree=False)
        self.changes += 1
        log.info("moved %s to %s", old, path, extra={"EVENT": "moved", "TRACK_PATH": str(path)})
        return True

    # --- deletions ----------------------------------------------------------------------------

    def next_removal(self) -> float | None:
        """Return when the next deleted file is due to be forgotten (monotonic)."""
        return min(self._doomed.values()) if self._doomed else None

    def forget_deleted(self, now: float) -> None:
        """Forget files deleted a grace period ago that did not turn up elsewhere."""
        for path, due in list(self._doomed.items()):
            if now < due:
                continue
            del self._doomed[path]
            if not path.exists() and self.store.remove_files([path]):
                self.changes += 1
                log.info("removed %s", path, extra={"EVENT": "removed", "TRACK_PATH": str(path)})

    # --- reconcile ----------------------------------------------------------------------------

    def reconcile(self, walk: Walk, wall: float) -> None:
        """Compare a walk with the database: queue new and changed files, follow moves, forget.

        `walk` was made with the stored folder fingerprints (`StoreWriter.folder_fingerprints`).
        """
        known, gone, vouched = self._rows_to_compare(walk)
        asked = [p for p in walk.files if p not in known or known[p][1] == "pending"]
        plan = plan_reconcile(walk, known, self.store.queued_among(asked))
        ready = []
        for path in plan.new + plan.changed:
            identity = walk.files[os.fsencode(path)]
            if wall - identity.mtime_ns / 1e9 < self.config.intake.settle_s:
                self.settler.touch(path, wall)  # still being written, perhaps
            else:
                ready.append(path)
        self.store.enqueue(ready, PRIORITY_BACKFILL)
        for old, new in plan.moved:
            self.store.rename(old, new, tree=False)
            log.info("moved %s to %s", old, new, extra={"EVENT": "moved", "TRACK_PATH": str(new)})
        removed = self.store.remove_files(plan.removed) if plan.removed else 0
        self.changes += removed + len(plan.moved)
        self.store.settle_folders(plan.agreed, plan.emptied + gone, plan.unsettled)
        pruned = self.store.prune_orphans(self.config.store.keep_deleted_s)
        if pruned:
            log.info("forgot the features of %d recordings no file has referred to for %s",
                     pruned, format_duration(self.config.store.keep_deleted_s),
                     extra={"EVENT": "pruned", "RECORDINGS": pruned})
        unchanged = plan.unchanged + vouched
        files = len(plan.new) + len(plan.changed) + len(plan.moved) + unchanged
        log.info("reconciled %d files: %d new, %d changed, %d moved, %d removed, %d unchanged",
                 files, len(plan.new), len(plan.changed), len(plan.moved), removed,
                 unchanged, extra={"EVENT": "reconciled", "FILES": files,
                                        "NEW": len(plan.new), "CHANGED": len(plan.changed),
                                        "MOVED": len(plan.moved), "REMOVED": removed})

    def queue_stale_features(self) -> int:
        """Queue one file of every recording whose features are older than this tunescout's
        (a group's version was raised): only those groups are recomputed. Return how many."""
        paths, per_group = self.store.stale_recordings()
        if paths:
            self.store.enqueue(paths, PRIORITY_BACKFILL)
            groups = ", ".join(f"{group} ({count})" for group, count in sorted(per_group.items()))
            log.info("%d recordings have features from an older version of tunescout: %s; "
                     "recomputing those groups in the background", len(paths), groups,
                     extra={"EVENT": "stale_features", "RECORDINGS": len(paths)})
        return len(paths)

    def _rows_to_compare(
        self, walk: Walk,
    ) -> tuple[dict[bytes, tuple[FileIdentity, str]], list[bytes], int]:
        """Load the rows of every folder the walk did not find unchanged; count the others.

        Returns those rows, the folders with rows that the walk did not meet (gone), and how
        many files the unchanged folders hold. The rows counted plus the rows loaded must make
        every row under the walked roots; if not (a folder row is missing, or the table was
        edited by hand), all rows are loaded.
        """
        folders = self.store.folders()
        for folder, print_ in list(walk.matched.items()):
            if folders.get(folder, (0, None))[1] != print_:  # a row changed during the walk
                look_again(walk, folder, self.config.library.extensions)
        roots = [os.fsencode(r) for r in walk.complete_roots]
        skipped = [os.fsencode(d) for d, _ in walk.skipped_dirs]

        def walked_over(folder: bytes) -> bool:
            return (any(is_within(folder, r) for r in roots)
                    and not any(is_within(folder, s) for s in skipped))

        gone = [f for f in folders if f not in walk.matched and f not in walk.dirty and walked_over(f)]
        expected = (sum(self.store.files_under(r) for r in roots)
                    - sum(self.store.files_under(s) for s in skipped))
        counted = sum(folders[f][0] for f in walk.matched)
        look = list(walk.dirty) + gone
        if len(look) <= FOLDER_QUERIES:
            known = self.store.identities_in(look)
            if counted + len(known) == expected:
                return known, gone, counted
        known = {path: row for path, row in self.store.identities().items()
                 if folder_of(path) not in walk.matched}
        if counted + sum(walked_over(folder_of(p)) for p in known) != expected:
            log.warning("folder fingerprints disagree with the files table; the next reconcile "
                        "compares every file", extra={"EVENT": "fingerprints_reset"})
            self.store.unsettle_all()
        return known, gone, counted
