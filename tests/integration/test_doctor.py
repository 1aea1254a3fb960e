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


def _doctor(library: Library, **env: str) -> tuple[int, dict[str, dict[str, str]]]:
    from support.processes import daemon_env

    proc = library.cli("doctor", "--quick", "--json", check=False, env=daemon_env(**env))
    assert b"Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, {c["name"]: c for c in json.loads(proc.stdout)}


def test_the_radio_is_checked_against_a_real_mpd(tmp_path: Path) -> None:
    from support.mpd import MPD, analysed_library, need_mpd
    from support.playlists import synthetic_tracks

    need_mpd()
    library = Library(tmp_path / "lib")
    analysed_library(library.db, library.music, synthetic_tracks(per_cluster=2, artists=2), seconds=2.0)
    mpd = MPD(tmp_path / "mpd", library.music).start()
    try:
        library.sections["radio"] = {"mpd": mpd.address}
        library.write_config()
        code, checks = _doctor(library)
        assert code == 0, checks
        assert checks["radio mpd"]["level"] == "ok" and mpd.address in checks["radio mpd"]["message"]
        music = checks["radio music_directory"]
        assert music["level"] == "ok" and "MPD knows " in music["message"], music
        assert checks["radio modes"]["level"] == "ok"
        mpd.mpc("random", "on")
        mpd.mpc("repeat", "on")
        code, checks = _doctor(library)
        assert code == 0 and checks["radio modes"]["level"] == "warn"
        assert checks["radio modes"]["fix"] == "mpc random off; mpc repeat off"
        # a music directory that does not hold the library
        library.sections["radio"]["music_directory"] = str(tmp_path / "elsewhere")
        library.write_config()
        code, checks = _doctor(library)
        assert code == 1 and "is not under" in checks["radio music_directory"]["message"]
    finally:
        mpd.stop()
    # an MPD on another folder: the probe finds none of the analysed files
    other = tmp_path / "other-music"
    other.mkdir()
    mpd = MPD(tmp_path / "mpd2", other).start()
    try:
        library.sections["radio"] = {"mpd": mpd.address}
        library.write_config()
        code, checks = _doctor(library)
        assert code == 1 and checks["radio music_directory"]["message"].startswith("MPD does not know ")
        assert "mpc update" in checks["radio music_directory"]["fix"]
    finally:
        mpd.stop()
    # nobody listening
    code, checks = _doctor(library)
    assert code == 1 and "cannot connect to MPD" in checks["radio mpd"]["message"]
    assert "radio modes" not in checks


def test_the_radio_password_is_checked(tmp_path: Path) -> None:
    from support.mpd import MPD, need_mpd

    need_mpd()
    library = Library(tmp_path / "lib")
    mpd = MPD(tmp_path / "mpd", library.music, password="right").start()
    try:
        library.sections["radio"] = {"mpd": mpd.address}
        library.write_config()
        code, checks = _doctor(library)
        assert code == 1 and "not without a password" in checks["radio mpd"]["message"]
        code, checks = _doctor(library, MPD_PASSWORD="wrong")
        assert code == 1 and "refused the password" in checks["radio mpd"]["message"]
        code, checks = _doctor(library, MPD_PASSWORD="right")
        assert checks["radio mpd"]["level"] == "ok"
        assert checks["radio music_directory"]["level"] == "warn"  # nothing analysed to probe yet
    finally:
        mpd.stop()


def test_the_scheduler_is_checked_against_the_real_cluster(library: Library, cluster: object,
                                                           tmp_path: Path) -> None:
    from support.cluster import Cluster

    assert isinstance(cluster, Cluster)
    library.drop("a.mp3")
    library.sections["workers"]["scheduler"] = cluster.address
    library.write_config()
    code, checks = _doctor(library)
    name = f"cluster {cluster.address}"
    assert code == 0 and checks[name]["level"] == "warn" and "no workers" in checks[name]["message"]
    cluster.add_worker(nworkers=1)
    empty = tmp_path / "not-mounted"
    empty.mkdir()
    cluster.add_worker("--path-map", f"{library.music}={empty}")
    code, checks = _doctor(library)
    assert checks[name]["message"] == "2 workers (2 threads), 1 see the library", checks
    assert checks[name]["level"] == "warn" and "--path-map" in checks[name]["fix"]
    [refused] = [c for n, c in checks.items() if n.startswith("cluster worker ")]
    assert "empty here (not mounted?)" in refused["message"]
    library.sections["workers"]["scheduler"] = "tcp://127.0.0.1:9"
    library.write_config()
    code, checks = _doctor(library)
    assert code == 1 and "cannot reach the scheduler" in checks["cluster tcp://127.0.0.1:9"]["message"]
