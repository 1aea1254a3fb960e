"""Check that a speed-up kept the values: the engine now against the engine at an earlier commit.

    python bench/values.py [FILE ...] [--folder DIR] [--before REV]

The package as it was at REV (default: the commit before the decode speed-up of issue 14) is
taken from git into a temporary directory and run in its own process on the same files as the
package of this checkout; both print every feature group, and the bench compares them: tempo
within 0.5 %, key and mode the same, integrated loudness within 0.1 LU, every timbre value within
2 % (MFCC coefficients, which cross zero, within 2 % of the largest coefficient's magnitude). It
exits 1 when a file breaks a tolerance, naming the file and the value. Without files or a folder,
synthetic tracks are written as bench/analysis.py writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ONE_THREAD, audio_files, synthetic_tracks

REPO = Path(__file__).resolve().parent.parent
BEFORE = "d7c8630"  # main when issue 14 began: PyAV frames resampled one at a time
TEMPO_SHARE = 0.005
LUFS_LU = 0.1
TIMBRE_SHARE = 0.02

CHILD = """
import json, sys
from pathlib import Path
from tunescout.analysis import analyse_file, warm_up
import tunescout
warm_up()
for line in sys.stdin:
    result = analyse_file(Path(line.strip()))
    print(json.dumps({"package": tunescout.__file__, "duration_s": result.duration_s,
                      "digest": result.digest,
                      "groups": {g.name: g.values for g in result.features}}), flush=True)
"""


def package_at(rev: str, into: Path) -> Path:
    """Extract daemon/ as it was at `rev` into `into`; return the directory to put on sys.path."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "daemon/tunescout"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into)  # our own repository's archive
    return into / "daemon"


def analyse_all(daemon: Path, paths: list[Path]) -> list[dict[str, Any]]:
    """Run one engine (the package under `daemon`) on every path in a fresh process."""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(daemon)}
    out = subprocess.run([sys.executable, "-c", CHILD], input="".join(f"{p}\n" for p in paths),
                         check=True, capture_output=True, text=True, env=env)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    if rows and not rows[0]["package"].startswith(str(daemon)):
        raise SystemExit(f"the engine under {daemon} was not the one imported: {rows[0]['package']}")
    return rows


def compare(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Return what breaks a tolerance between two analyses of one file (nothing: kept)."""
    problems = []
    b, n = before["groups"], now["groups"]
    if before["digest"] != now["digest"]:
        problems.append("the audio digest changed")
    tempo_b, tempo_n = b["rhythm"]["tempo_bpm"], n["rhythm"]["tempo_bpm"]
    if (tempo_b is None) != (tempo_n is None) or (
            tempo_b and abs(tempo_n - tempo_b) > TEMPO_SHARE * tempo_b):
        problems.append(f"tempo {tempo_b} -> {tempo_n}")
    for name in ("key", "mode"):
        if b["tonal"][name] != n["tonal"][name]:
            problems.append(f"{name} {b['tonal'][name]} -> {n['tonal'][name]}")
    lufs_b, lufs_n = b["loudness"]["integrated_lufs"], n["loudness"]["integrated_lufs"]
    if (lufs_b is None) != (lufs_n is None) or (lufs_b is not None and abs(lufs_n - lufs_b) > LUFS_LU):
        problems.append(f"integrated loudness {lufs_b} -> {lufs_n}")
    for name, value in b["timbre"].items():
        if isinstance(value, list):
            scale = max(abs(v) for v in value if v is not None) or 1.0
            pairs = list(zip(value, n["timbre"][name], strict=True))
        else:
            scale, pairs = abs(value or 0.0) or 1.0, [(value, n["timbre"][name])]
        worst = max(abs((v_n or 0.0) - (v_b or 0.0)) / scale for v_b, v_n in pairs)
        if worst > TIMBRE_SHARE:
            problems.append(f"timbre {name} off by {100 * worst:.1f} %")
    return problems


def worst_drift(before: list[dict[str, Any]], now: list[dict[str, Any]]) -> dict[str, float]:
    """Return the largest tempo (%), loudness (LU) and timbre (%) drift over all files."""
    drift = {"tempo %": 0.0, "LUFS LU": 0.0, "timbre %": 0.0}
    for b, n in zip(before, now, strict=True):
        gb, gn = b["groups"], n["groups"]
        if gb["rhythm"]["tempo_bpm"] and gn["rhythm"]["tempo_bpm"]:
            drift["tempo %"] = max(drift["tempo %"], 100 * abs(
                gn["rhythm"]["tempo_bpm"] / gb["rhythm"]["tempo_bpm"] - 1))
        if gb["loudness"]["integrated_lufs"] is not None and gn["loudness"]["integrated_lufs"] is not None:
            drift["LUFS LU"] = max(drift["LUFS LU"], abs(
                gn["loudness"]["integrated_lufs"] - gb["loudness"]["integrated_lufs"]))
        for name, value in gb["timbre"].items():
            values = value if isinstance(value, list) else [value]
            scale = max(abs(v) for v in values if v is not None) or 1.0
            other = gn["timbre"][name] if isinstance(value, list) else [gn["timbre"][name]]
            for v_b, v_n in zip(values, other, strict=True):
                drift["timbre %"] = max(drift["timbre %"], 100 * abs((v_n or 0) - (v_b or 0)) / scale)
    return drift


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--folder", type=Path, help="analyse the audio files under this folder")
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tunescout-values-") as tmp:
        paths = audio_files(args.files, args.folder) or synthetic_tracks(Path(tmp))
        before = analyse_all(package_at(args.before, Path(tmp) / "before"), paths)
        now = analyse_all(REPO / "daemon", paths)
        failed = 0
        for path, b, n in zip(paths, before, now, strict=True):
            problems = compare(b, n)
            failed += bool(problems)
            status = "; ".join(problems) if problems else "kept"
            tempo = [_number(r["groups"]["rhythm"]["tempo_bpm"]) for r in (b, n)]
            print(f"{path.name[:44]:<44} tempo {tempo[0]} -> {tempo[1]}  key "
                  f"{n['groups']['tonal']['key']} {n['groups']['tonal']['mode']}  {status}")
        drift = worst_drift(before, now)
        print(f"worst drift over {len(paths)} files against {args.before}: "
              + ", ".join(f"{name} {value:.3f}" for name, value in drift.items())
              + f" (tolerances: tempo 0.5 %, LUFS 0.1 LU, timbre 2 %); {failed} file(s) out of tolerance")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
