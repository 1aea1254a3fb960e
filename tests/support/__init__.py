"""What the tests share: configs, real daemons, real audio files and the misbehaving test analysers.

Nothing here is a test. Test modules import from here, never from `conftest` or from each other;
`tests/` is on `sys.path` (pytest's `pythonpath`) and on the daemons' PYTHONPATH, so the zygote
loads the analysers by the spec "support.analysers:by_name".
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
