from __future__ import annotations

import os
from pathlib import Path

from support.processes import run_as_nobody
from tunescout.library.walk import plan_reconcile, walk_library
from tunescout.models import AUDIO_EXTENSIONS, FileIdentity


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_walk_finds_audio_only_and_follows_symlink_loops_once(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "1.mp3")
    _touch(tmp_path / "a" / "cover.jpg")
    _touch(tmp_path / "a" / "b" / "2.flac")
    _touch(tmp_path / "a" / "b" / "2.flac.part")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")  # a loop back to its parent
    raw = os.fsencode(tmp_path) + b"/caf\xe9.ogg"
    with open(raw, "wb") as fh:
        fh.write(b"x")
    walk = walk_library((tmp_path,), AUDIO_EXTENSIONS)
    names = sorted(os.path.relpath(p, os.fsencode(tmp_path)) for p in walk.files)
    assert names == [b"a/1.mp3", b"a/b/2.flac", b"caf\xe9.ogg"]
    assert walk.complete_roots == [tmp_path]


def test_plan_new_changed_removed_unchanged(tmp_path: Path) -> None:
    same = _touch(tmp_path / "same.mp3")
    changed = _touch(tmp_path / "changed.mp3")
    new = _touch(tmp_path / "new.mp3")
    walk = walk_library((tmp_path,), AUDIO_EXTENSIONS)
    known = {
        os.fsencode(same): (walk.files[os.fsencode(same)], "analysed"),
        os.fsencode(changed): (FileIdentity(0, 0, 99, 0), "analysed"),
        os.fsencode(tmp_path / "deleted.mp3"): (FileIdentity(0, 0, 1, 0), "analysed"),
    }
    plan = plan_reconcile(walk, known, queued=set())
    assert plan.new == [new]
    assert plan.changed == [changed]
    assert plan.removed == [tmp_path / "deleted.mp3"]
    assert plan.unchanged == 1


def test_missing_root_removes_nothing(tmp_path: Path) -> None:
    """An unmounted disk must not empty the database."""
    root = tmp_path / "usb"
    walk = walk_library((root,), AUDIO_EXTENSIONS)
    known = {os.fsencode(root / "a.mp3"): (FileIdentity(0, 0, 1, 0), "analysed")}
    plan = plan_reconcile(walk, known, queued=set())
    assert walk.complete_roots == []
    assert plan.removed == []


def test_failed_files_are_not_retried_until_they_change(tmp_path: Path) -> None:
    bad = _touch(tmp_path / "bad.mp3")
    walk = walk_library((tmp_path,), AUDIO_EXTENSIONS)
    identity = walk.files[os.fsencode(bad)]
    assert plan_reconcile(walk, {os.fsencode(bad): (identity, "failed")}, set()).changed == []
    _touch(bad, b"fixed")
    walk = walk_library((tmp_path,), AUDIO_EXTENSIONS)
    assert plan_reconcile(walk, {os.fsencode(bad): (identity, "failed")}, set()).changed == [bad]


def test_a_file_moved_while_the_daemon_was_down_is_paired(tmp_path: Path) -> None:
    moved = _touch(tmp_path / "new home" / "a.mp3")
    identity = FileIdentity.from_stat(os.stat(moved))
    walk = walk_library((tmp_path,), AUDIO_EXTENSIONS)
    old = tmp_path / "old home" / "a.mp3"
    plan = plan_reconcile(walk, {os.fsencode(old): (identity, "analysed")}, set())
    assert plan.moved == [(old, moved)]
    assert plan.new == [] and plan.removed == []


def test_unreadable_folder_is_skipped_with_one_line_and_its_files_kept(tmp_path: Path) -> None:
    """As an unprivileged user (root reads everything): lost+found and the like."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="tunescout-perm-"))
    try:
        _touch(root / "ok" / "a.flac")
        _touch(root / "lost+found" / "b.flac")
        for path in (root, root / "ok", root / "ok" / "a.flac"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / "lost+found").chmod(0o700)
        code = (
            "import os, sys, logging\n"
            "from pathlib import Path\n"
            "from tunescout.models import AUDIO_EXTENSIONS, FileIdentity\n"
            "from tunescout.library.walk import walk_library, plan_reconcile\n"
            "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
            "root = Path(sys.argv[1])\n"
            "walk = walk_library((root,), AUDIO_EXTENSIONS)\n"
            "known = {os.fsencode(root / 'lost+found' / 'b.flac'): (FileIdentity(0, 0, 1, 0), 'analysed')}\n"
            "plan = plan_reconcile(walk, known, set())\n"
            "print(sorted(os.fsdecode(p) for p in walk.files), plan.removed)\n"
        )
        proc = run_as_nobody(code, str(root), home=root)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"[{str(root / 'ok' / 'a.flac')!r}] []"
        lines = [line for line in proc.stderr.splitlines() if "lost+found" in line]
        assert lines == [f"skipping folder {root / 'lost+found'}: Permission denied"]
    finally:
        (root / "lost+found").chmod(0o755)
        shutil.rmtree(root)
