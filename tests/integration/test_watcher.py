from __future__ import annotations

from pathlib import Path

from tunescout.library.watcher import (
    Watcher,
    blind_submounts,
    count_inotify_watches,
    filesystem_type,
    needs_polling,
)

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /srv/music rw,relatime shared:20 - nfs4 nas:/music rw,vers=4.2
41 40 0:36 / /srv/music/usb\\040disk rw,relatime - vfat /dev/sdb1 rw
42 22 0:37 / /mnt/cloud rw,nosuid - fuse.rclone remote: rw
43 22 0:38 / /mnt/smb rw - cifs //nas/share rw
"""


def test_filesystem_type_takes_the_longest_mount_point(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert filesystem_type(Path("/srv/music/a/b.flac"), info) == "nfs4"
    assert filesystem_type(Path("/srv/music/usb disk/x.mp3"), info) == "vfat"
    assert filesystem_type(Path("/srv/musicals"), info) == "ext4"  # a prefix is not a parent
    assert filesystem_type(Path("/mnt/cloud/x"), info) == "fuse.rclone"


def test_network_and_fuse_filesystems_are_polled() -> None:
    for fs in ("nfs4", "cifs", "smb3", "9p", "fuse.rclone", "fuse.sshfs"):
        assert needs_polling(fs), fs
    for fs in ("ext4", "xfs", "btrfs", "zfs", "vfat"):
        assert not needs_polling(fs), fs


def test_counting_inotify_watches_sees_real_watches(tmp_path: Path) -> None:
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    before = count_inotify_watches()
    fd = libc.inotify_init1(os.O_CLOEXEC)
    try:
        for i in range(3):
            (tmp_path / str(i)).mkdir()
            assert libc.inotify_add_watch(fd, os.fsencode(tmp_path / str(i)), 0x2) >= 0
        assert count_inotify_watches() == before + 3
    finally:
        os.close(fd)


def test_network_mounts_inside_a_local_library_are_found(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO + "44 22 0:39 / /srv/local rw - ext4 /dev/sdc1 rw\n"
                    "45 44 0:40 / /srv/local/nas rw - nfs4 nas:/x rw\n"
                    "46 45 0:41 / /srv/local/nas/deeper rw - cifs //nas/y rw\n")
    assert blind_submounts(Path("/srv"), info) == [(Path("/srv/local/nas"), "nfs4"),
                                                   (Path("/srv/music"), "nfs4")]
    assert blind_submounts(Path("/srv/local"), info) == [(Path("/srv/local/nas"), "nfs4")]
    assert blind_submounts(Path("/srv/musicals"), info) == []


def test_a_network_mount_inside_an_inotify_root_is_also_polled(tmp_path: Path) -> None:
    """inotify on an NFS mount sees only this machine's changes: the mount is polled too."""
    import os
    import queue
    import time

    music = tmp_path / "music"
    (music / "nas" / "Album").mkdir(parents=True)
    (music / "local").mkdir()
    info = tmp_path / "mountinfo"
    real = os.path.realpath(music)
    info.write_text(f"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                    f"45 22 0:40 / {real}/nas rw - nfs4 nas:/music rw\n")
    watcher = Watcher((music,), "auto", 0.2, lambda: None, mountinfo=info)
    watcher.start()
    try:
        assert watcher.modes == {music: "inotify"}
        assert watcher.polled_mounts == {music / "nas": "nfs4"}
        assert watcher.polled() == [music / "nas"]
        (music / "nas" / "Album" / "a.flac").write_bytes(b"x")
        deadline = time.monotonic() + 10
        seen = set()
        while time.monotonic() < deadline and music / "nas" / "Album" / "a.flac" not in seen:
            try:
                seen.add(watcher.changes.get(timeout=0.2).path)
            except queue.Empty:
                pass
        assert music / "nas" / "Album" / "a.flac" in seen
    finally:
        watcher.stop()
    forced = Watcher((music,), "inotify", 0.2, lambda: None, mountinfo=info)
    forced.start()
    try:
        assert forced.polled() == [] and forced.polled_mounts == {}  # as configured
    finally:
        forced.stop()
