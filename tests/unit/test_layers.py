"""The package's parts and the directions their imports may take, read from the source with `ast`.

Every `import` counts, the ones inside functions too: a lazy import is still a dependency.
The parts (docs/ARCHITECTURE.md draws them):

- leaves: errors, models, units, protocol, lock, convert: imported by everything, importing only
  each other;
- config: the leaves, and the numpy-free playlist request types;
- store: the leaves; the only SQL: schema (below reader and writer), reader (read-only), writer
  (the daemon's one writer). Only the daemon's writing parts and the CLI's `retry` import the writer;
- library/ (change detection) and workers/ (analysis supervision, the zygote): the leaves, config
  and the store, never each other;
- analysis/: the leaves only: the child side, loaded by the zygote by name, imported by nothing
  else, so the daemon process never holds librosa;
- playlists/: the leaves, config and the store;
- integrations, each its own folder:
  - radio/ (the radio for MPD) and webapi/ (the HTTP API): the leaves, config, the store and
    playlists/;
  - subsonic/ (the user's Subsonic server: its song ids, playlists pushed to it): the leaves,
    config and the store (webapi/ reaches it only through the wiring's hooks);
  - cluster/ (analysis lent by other machines through Dask): the leaves, config, the store and
    workers/ (the zygote client and the verdict are the work unit it ships);
- the wiring (service, loop, health, logs, rebuilds, waiting, apis): all of the above but analysis
  (the cluster and the API only lazily, when configured);
- cli/ (and __main__) on top. Nothing imports the wiring but cli/; nothing imports cli/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "daemon" / "tunescout"

LEAVES = {"errors", "models", "units", "protocol", "lock", "tagexpr", "convert", "early", "__init__"}
WIRING = {"service", "loop", "health", "logs", "rebuilds", "waiting", "apis"}

# part -> the parts it may import (its own part is always allowed)
ALLOWED: dict[str, set[str]] = {
    "leaves": set(),
    "config": {"leaves", "playlists.request"},
    "store": {"leaves"},
    "library": {"leaves", "config", "store"},
    "workers": {"leaves", "config", "store"},
    "analysis": {"leaves"},
    "playlists.request": {"leaves"},
    "playlists": {"leaves", "config", "store", "playlists.request"},
    "radio": {"leaves", "config", "store", "playlists", "playlists.request"},
    "webapi": {"leaves", "config", "store", "playlists", "playlists.request"},
    "subsonic": {"leaves", "config", "store"},
    "cluster": {"leaves", "config", "store", "workers"},
    "wiring": {"leaves", "config", "store", "library", "workers", "playlists", "playlists.request", "radio",
               "cluster", "webapi", "subsonic"},
    "cli": {"leaves", "config", "store", "library", "workers", "playlists", "playlists.request", "wiring",
            "radio", "cluster", "webapi", "subsonic"},
}
# modules of a part that are a part of their own for the rules above
OWN_PARTS = {"playlists.request"}
MAX_LINES = 450
# being split at their seams in this change; the list must end empty
STILL_BIG: set[str] = set()
STILL_CROSSING: set[tuple[str, str]] = set()


def part_of(module: str) -> str:
    """Return the part a module ("workers.zygote", "store.reader", "errors") belongs to."""
    if module in OWN_PARTS:
        return module
    head = module.split(".")[0]
    if head in LEAVES:
        return "leaves"
    if head in WIRING:
        return "wiring"
    if head == "__main__":
        return "cli"
    return head


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" and len(rel.parts) > 1 else rel.parts
        found[".".join(parts)] = path
    return found


def imports_of(path: Path, module: str) -> set[str]:
    """Return the tunescout modules one file imports (relative to the package, "" for itself)."""
    tree = ast.parse(path.read_text(), str(path))
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join(["tunescout", *base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "tunescout" or not name.startswith("tunescout."):
                continue
            found.add(name.removeprefix("tunescout."))
    known = modules()
    # "from tunescout.workers import zygote" names a module; "from tunescout.x import func" does not
    return {name for name in found if name in known}


def _edges() -> list[tuple[str, str]]:
    edges = []
    for module, path in modules().items():
        for target in imports_of(path, module):
            edges.append((module, target))
    return edges


def _violations() -> list[str]:
    bad = []
    for source, target in _edges():
        src, dst = part_of(source), part_of(target)
        if src == dst or dst in ALLOWED[src] or (source, target) in STILL_CROSSING:
            continue
        if src in OWN_PARTS and part_of(source.split(".")[0]) == dst:
            bad.append(f"{source} -> {target}: {source} must stay a leaf of its part")
            continue
        bad.append(f"{source} ({src}) imports {target} ({dst})")
    return bad


def test_every_module_belongs_to_a_known_part() -> None:
    unknown = sorted({part_of(m) for m in modules()} - ALLOWED.keys())
    assert not unknown, f"parts without rules (add them to ALLOWED and docs/ARCHITECTURE.md): {unknown}"


def test_imports_follow_the_layers() -> None:
    assert _violations() == []


def test_own_parts_import_nothing_of_their_package() -> None:
    """The request types stay numpy-free so that config can import them typed."""
    for source, target in _edges():
        if source in OWN_PARTS:
            assert part_of(target) == "leaves", f"{source} imports {target}"


@pytest.mark.parametrize("module", ["analysis", "cli", "service", "loop"])
def test_nothing_below_imports(module: str) -> None:
    importers = {s for s, t in _edges() if part_of(t) == part_of(module) and part_of(s) != part_of(module)}
    allowed = {"service": {"cli"}, "loop": {"cli"}}.get(module, set())
    assert {part_of(s) for s in importers} <= allowed, sorted(importers)


def test_only_the_analysis_imports_the_signal_stack() -> None:
    heavy = {"librosa", "numba", "scipy", "av", "soundfile"}
    offenders = []
    for module, path in modules().items():
        if part_of(module) == "analysis":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            offenders += [f"{module}: {n}" for n in names if n.split(".")[0] in heavy]
    assert offenders == []


# who may open the daemon's writer: the loop (it owns the one connection), the library, the
# supervisor and the cluster's submitter and recorder (handed that writer), the CLI for `retry`;
# everything else reads through StoreReader
WRITER_IMPORTERS = {"loop", "waiting", "library.changes", "workers.supervisor", "cluster.submitter",
                    "cluster.results", "cli.inspect"}
# inside the store: the schema knows neither side, the reader does not know the writer
STORE_ORDER = {"store.schema": set(), "store.reader": {"store.schema"},
               "store.writer": {"store.schema", "store.reader"}, "store": set()}


def test_only_the_daemons_writing_parts_import_the_writer() -> None:
    importers = {s for s, t in _edges() if t == "store.writer" and part_of(s) != "store"}
    assert importers == WRITER_IMPORTERS, sorted(importers)


def test_the_store_is_layered_schema_reader_writer() -> None:
    inside = {(s, t) for s, t in _edges() if part_of(s) == "store" and part_of(t) == "store"}
    assert {(s, t) for s, t in inside if t not in STORE_ORDER[s]} == set()
    # `tunescout.store` re-exports nothing: a caller names the side it uses
    assert not any(t == "store" for _, t in _edges())


def test_modules_stay_small() -> None:
    big = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES
           and m not in STILL_BIG}
    assert big == {}, f"split these at their seams (over {MAX_LINES} lines): {big}"


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """A check that cannot fail is no check: a planted import is found."""
    planted = tmp_path / "x.py"
    planted.write_text("def f():\n    from tunescout.library import watcher\n")
    assert "library.watcher" in imports_of(planted, "workers.x")
    assert part_of("workers.x") == "workers" and "library" not in ALLOWED["workers"]
