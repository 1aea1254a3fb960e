from __future__ import annotations

from pathlib import Path

from tunescout.watcher import count_inotify_watches, filesystem_type, needs_polling

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
