"""The typed messages keep the wire format: each one's JSON, and a round trip through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunescout import protocol
from tunescout.errors import ProtocolError
from tunescout.models import FailureKind, FeatureGroup, TrackAnalysis

ANALYSIS = TrackAnalysis(digest="ab", duration_s=1.5, tags={"title": "x"},
                         features=(FeatureGroup("rhythm", 1, {"tempo_bpm": 120.0}),))
ODD = Path(b"/music/caf\xe9.mp3".decode("utf-8", "surrogateescape"))  # not UTF-8 on disk


@pytest.mark.parametrize(("message", "wire", "decoder"), [
    (protocol.Spawn("b-1", (ODD,), 768, 40, Path("/db")),
     {"op": "spawn", "batch": "b-1", "budget": 768, "cpu_s": 40, "store": "/db", "paths": [str(ODD)]},
     protocol.control_from_wire),
    (protocol.Kill("b-1", 15), {"op": "kill", "batch": "b-1", "signal": 15}, protocol.control_from_wire),
    (protocol.Exit(), {"op": "exit"}, protocol.control_from_wire),
    (protocol.Ready(7, 2500), {"op": "ready", "pid": 7, "warmup_ms": 2500}, protocol.report_from_wire),
    (protocol.StartFailed("ImportError: x"), {"op": "error", "message": "ImportError: x"},
     protocol.report_from_wire),
    (protocol.Spawned("b-1", 8), {"op": "spawned", "batch": "b-1", "pid": 8}, protocol.report_from_wire),
    (protocol.Exited("b-1", 8, 11, 2048),
     {"op": "exited", "batch": "b-1", "pid": 8, "status": 11, "maxrss_kb": 2048},
     protocol.report_from_wire),
    (protocol.FileStarted(0, ODD), {"t": "start", "i": 0, "path": str(ODD)}, protocol.result_from_wire),
    (protocol.FileAnalysed(1, ODD, ANALYSIS, 30, 4096),
     {"t": "ok", "analysis": json.loads(json.dumps(protocol.analysis_to_dict(ANALYSIS))), "i": 1,
      "path": str(ODD),
      "duration_ms": 30, "peak_rss_kb": 4096}, protocol.result_from_wire),
    (protocol.FileFailed(2, ODD, FailureKind.DECODE, "bad", 5, 100),
     {"t": "fail", "kind": "decode", "reason": "bad", "i": 2, "path": str(ODD), "duration_ms": 5,
      "peak_rss_kb": 100}, protocol.result_from_wire),
])
def test_wire_format_and_round_trip(message: protocol.Message, wire: dict[str, object],
                                    decoder: object) -> None:
    line = protocol.encode_message(message)
    assert json.loads(line) == {"v": protocol.VERSION, **wire}
    assert decoder(line) == message  # type: ignore[operator]


def test_a_malformed_analysis_is_that_files_protocol_failure() -> None:
    line = protocol.encode({"t": "ok", "analysis": {"digest": "ab"}, "i": 0, "path": "/a.mp3"})
    failed = protocol.result_from_wire(line)
    assert isinstance(failed, protocol.FileFailed) and failed.kind is FailureKind.PROTOCOL


@pytest.mark.parametrize("line", [
    b"\x00\xffthis is not json\n",
    b'{"v": 1, "t": "start", "path": "/a.mp3"}\n',  # no index
    b'{"v": 1, "t": "start", "i": true, "path": "/a.mp3"}\n',
    b'{"v": 1, "t": "done", "i": 0, "path": "/a.mp3"}\n',
    b'{"v": 1, "t": "fail", "i": 0, "path": "/a.mp3", "kind": "gremlins"}\n',
])
def test_what_is_not_a_result_line_is_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.result_from_wire(line)
