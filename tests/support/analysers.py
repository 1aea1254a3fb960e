"""Test analysers for the child seam (`[workers] analyser = "support.analysers:by_name"`).

They behave by the file's name, so one batch can mix a poison file with healthy siblings:
`hang` sleeps forever, `stubborn` also ignores SIGTERM, `hog` allocates without bound, `segv`
kills itself with SIGSEGV, `garbage` writes junk on the result pipe, `slow` takes two seconds,
`fail` raises a decode error; any other name is "analysed" cheaply from its bytes.
Nothing here imports librosa.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

from tunescout.errors import AnalysisError
from tunescout.models import FEATURE_VERSIONS, FailureKind, FeatureGroup, TrackAnalysis
from tunescout.workers import zygote


def fake_analysis(path: Path) -> TrackAnalysis:
    """Return a deterministic analysis derived from the file's bytes."""
    data = path.read_bytes()
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    groups = tuple(
        FeatureGroup(name, version, {"checksum": int(digest[:8], 16) % 1000, "size_bytes": len(data)})
        for name, version in FEATURE_VERSIONS.items()
    )
    return TrackAnalysis(digest=digest, duration_s=len(data) / 1000.0,
                         tags={"title": path.stem}, features=groups)


def by_name(path: Path) -> TrackAnalysis:
    name = path.name
    if "stubborn" in name:  # hangs and ignores SIGTERM: only SIGKILL ends it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(3600)
    if "hang" in name:
        while True:
            time.sleep(3600)
    if "hog" in name:
        chunks = []
        while True:
            chunks.append(bytearray(64 * 1024 * 1024))
    if "segv" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "garbage" in name:
        fd = zygote.result_fd()
        assert fd is not None
        os.write(fd, b"\x00\xffthis is not json\n")
    if "slow" in name:
        time.sleep(2)
    if "fail" in name:
        raise AnalysisError(FailureKind.DECODE, "invalid data found when processing input")
    return fake_analysis(path)


class _BrokenSetup:
    """An analyser on which the child's own set-up fails before any file: a stand-in for a bug
    in tunescout or a broken install (inspecting its signature raises)."""

    @property
    def __signature__(self) -> None:
        raise RuntimeError("child set-up failed")

    def __call__(self, path: Path) -> TrackAnalysis:
        return fake_analysis(path)


broken_setup = _BrokenSetup()


def titled(path: Path) -> TrackAnalysis:
    """Like any healthy file of `by_name`, but says which analyser it was: for reload tests."""
    result = fake_analysis(path)
    return TrackAnalysis(digest=result.digest, duration_s=result.duration_s,
                         tags={"title": f"titled {path.stem}"}, features=result.features)
