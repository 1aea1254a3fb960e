from __future__ import annotations

import json
import shutil
from pathlib import Path

from support.daemon import Library


def test_healthy_setup_passes_including_the_analysis_stack(tmp_path: Path) -> None:
    library = Library(tmp_path, workers={"analyser": "tunescout.analysis:analyse_file"})
    proc = library.cli("doctor")
    out = proc.stdout.decode()
    assert "OK    library" in out and "inotify" in out
    assert "OK    analysis: PyAV" in out
    assert "does not exist yet; the daemon creates it" in out


def test_problems_are_explained_with_a_fix(tmp_path: Path) -> None:
    library = Library(tmp_path, workers={"child_budget": "100 GiB"})
    shutil.rmtree(library.music)
    library.db.parent.mkdir(parents=True)
    library.db.write_bytes(b"not a database" * 100)
    proc = library.cli("doctor", "--quick", "--json", check=False)
    assert proc.returncode == 1
    checks = {c["name"].split()[0]: c for c in json.loads(proc.stdout)}
    assert checks["library"]["level"] == "fail" and "mount it" in checks["library"]["fix"]
    assert checks["database"]["level"] == "fail" and "damaged" in checks["database"]["message"]
    assert checks["memory"]["level"] == "fail" and "child_budget" in checks["memory"]["fix"]
    assert "analysis" not in checks  # --quick


def test_broken_analyser_is_reported(tmp_path: Path) -> None:
    library = Library(tmp_path, workers={"analyser": "no_such_module:analyse"})
    proc = library.cli("doctor", check=False)
    assert proc.returncode == 1
    assert b"FAIL  analysis: the analysis stack cannot start" in proc.stdout
    assert b"No module named 'no_such_module'" in proc.stdout


def test_a_network_mount_inside_the_library_is_said_to_be_polled(tmp_path: Path) -> None:
    import os

    from tunescout.cli.doctor import _check_root

    music = tmp_path / "music"
    (music / "nas").mkdir(parents=True)
    info = tmp_path / "mountinfo"
    info.write_text(f"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                    f"45 22 0:40 / {os.path.realpath(music)}/nas rw - nfs4 nas:/m rw\n")
    [check] = _check_root(music, "auto", info)
    assert check.level == "ok" and check.message.endswith(f"; {music / 'nas'} (nfs4) also polled")
    [check] = _check_root(music, "inotify", info)
    assert "polled" not in check.message
