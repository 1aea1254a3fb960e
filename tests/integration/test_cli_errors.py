"""What the CLI says when things are wrong: an invalid config beside a running daemon, --json errors."""

from __future__ import annotations

import json
import os
from typing import Any


def _analysed(library: Any) -> None:
    (library.music / "a.flac").write_bytes(os.urandom(3000))
    library.cli("scan", str(library.music))


def test_status_works_from_the_database_when_the_config_is_invalid(library: Any) -> None:
    _analysed(library)
    library.config.write_text(library.config.read_text().replace("[workers]", "[workers]\nbatch_sise = 3"))
    proc = library.cli("status", check=False)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.decode().splitlines()  # one line says so
    assert line.startswith(f"tunescout: configuration {library.config} is invalid (")
    assert "batch_sise" in line and f"reading the database {library.db}" in line
    assert b"files 1  analysed 1" in proc.stdout
    shown = library.cli("show", str(library.music / "a.flac"), "--json", check=False)
    assert shown.returncode == 0 and json.loads(shown.stdout)["state"] == "analysed"
    assert library.cli("failures", check=False).returncode == 0
    # a command that acts on the config still refuses it, listing every problem
    scan = library.cli("scan", str(library.music), check=False)
    assert scan.returncode == 2 and b"batch_sise" in scan.stderr and b"Traceback" not in scan.stderr


def test_a_config_that_is_not_even_toml_still_lets_status_read(library: Any) -> None:
    _analysed(library)
    text = library.config.read_text()
    library.config.write_text(text + "\n[[[ not toml\n")
    proc = library.cli("status", "--json", check=False)
    # the database path cannot be read from the file: the default one is tried, and said
    assert b"not valid TOML" in proc.stderr and b"reading the database" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_json_commands_print_a_json_error(library: Any) -> None:
    _analysed(library)
    proc = library.cli("show", str(library.music / "nope.flac"), "--json", check=False)
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["error"]["kind"] == "not_found"
    assert "is not in the database" in json.loads(proc.stdout)["error"]["message"]
    library.db.unlink()
    for command in ("status", "failures"):
        proc = library.cli(command, "--json", check=False)
        assert proc.returncode == 4, command
        error = json.loads(proc.stdout)["error"]
        assert error["kind"] == "unavailable" and "no database at" in error["message"]
    proc = library.cli("scan", "/nonexistent/x.flac", "--json", check=False)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["kind"] == "usage"
    assert "no such file or folder" in json.loads(proc.stdout)["error"]["details"][0]
