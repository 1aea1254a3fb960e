"""A month unattended, compressed: a running daemon under thousands of library changes.

    python bench/soak.py [--minutes 30] [--rate 1.5] [--analyser real|fake] [--seed 1]

Starts `tunescout run` on a temporary library (real audio written by tests/support/audio.py, the
real analyser by default) with two `[[playlists]]` and a short keeper debounce, then for
`--minutes` makes library changes at `--rate` per second, chosen at random (seeded): copies in
(written elsewhere and moved in, or written in place), re-tags, moves of files and folders,
deletes, re-adds of deleted files, garbage, truncated and damaged files, odd names; a SIGHUP
that changes the config every minute; `status`, `show` and `playlist` from the CLI; a quiet spell
every few minutes so the playlists get rebuilt. Every `--sample` seconds it records the daemon's
RSS, open descriptors, threads and children (the zygote's RSS and descriptors too), and the
zombies among the children.

At the end it waits for the daemon to catch up and checks the database against the truth on
disk: the same set of files, each row's size and mtime those of the file, every good file
analysed, every garbage file failed, and `PRAGMA integrity_check` ok; then stops the daemon
(SIGTERM: exit 0, no child left). It prints the samples over time and one verdict per promise:
RSS after warm-up within 5 MB, descriptors and threads without growth, no zombie, integrity ok,
database equal to the truth, no traceback in the daemon's output.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.audio import write_damaged, write_garbage, write_tags, write_track, write_truncated
from support.config import toml_text
from support.daemon import Daemon, Library, parse_line

ANALYSERS = {"real": "tunescout.analysis:analyse_file", "fake": "support.analysers:fake_analysis"}
GOOD, GARBAGE, TRUNCATED, DAMAGED = "good", "garbage", "truncated", "damaged"
ODD_NAMES = ("Ünïcødé — ‘quoted’ %s", "  spaced  %s", "tab\tin %s", "#hash & amp %s", "日本語 %s",
             "percent %%20 %s", "dash -- %s", "brackets [x] (y) {z} %s")
RSS_GROWTH_LIMIT = 5 * 1024 * 1024


@dataclass
class Sample:
    at_s: float
    rss: int
    fds: int
    threads: int
    children: int
    zombies: frozenset[int]
    zygote_rss: int | None
    zygote_fds: int | None


@dataclass
class World:
    """What is on disk, as the soak made it: the truth the database must equal at the end."""

    music: Path
    staging: Path
    templates: list[Path]
    rng: random.Random
    truth: dict[Path, str] = field(default_factory=dict)
    deleted: dict[Path, tuple[bytes, str]] = field(default_factory=dict)
    counter: int = 0
    done: dict[str, int] = field(default_factory=dict)

    def _name(self, suffix: str) -> str:
        self.counter += 1
        stem = f"track {self.counter:05d}"
        if self.rng.random() < 0.15:
            stem = self.rng.choice(ODD_NAMES) % stem
        return stem + suffix

    def _folder(self) -> Path:
        folder = self.music / f"artist {self.rng.randrange(12):02d}" / f"album {self.rng.randrange(6)}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _pick(self, kind: str | None = GOOD) -> Path | None:
        paths = [p for p, k in self.truth.items() if kind is None or k == kind]
        return self.rng.choice(paths) if paths else None

    def act(self, target: int) -> str:
        """Make one change; additions and removals balance around `target` files, so that after
        the warm-up the library's size (and the daemon's fair share of memory for it) stays put."""
        grow = min(4.0, (target / max(1, len(self.truth))) ** 2)
        actions = [("copy", 30 * grow), ("write_in_place", 5 * grow), ("retag", 15), ("move", 12),
                   ("move_folder", 2), ("delete", 12 / grow), ("delete_folder", 1 / grow),
                   ("readd", 8 * grow), ("garbage", 4 * grow), ("truncated", 3 * grow),
                   ("damaged", 3 * grow)]
        name = self.rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
        getattr(self, name)()
        self.done[name] = self.done.get(name, 0) + 1
        self._prune()
        return name

    def _prune(self) -> None:
        """Remove the folders a move or delete left empty, as a tagger or file manager does."""
        for folder in sorted((p for p in self.music.rglob("*") if p.is_dir()), reverse=True):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty

    def _bring_in(self, data: bytes, suffix: str, kind: str, *, in_place: bool = False) -> None:
        path = self._folder() / self._name(suffix)
        if in_place:  # a slow copier writing the final name directly, in pieces
            with path.open("wb") as out:
                for start in range(0, len(data), 64 * 1024):
                    out.write(data[start:start + 64 * 1024])
                    out.flush()
        else:
            staged = self.staging / path.name
            staged.write_bytes(data)
            staged.rename(path)
        self.truth[path] = kind

    def copy(self) -> None:
        template = self.rng.choice(self.templates)
        self._bring_in(template.read_bytes(), template.suffix, GOOD)

    def write_in_place(self) -> None:
        template = self.rng.choice(self.templates)
        self._bring_in(template.read_bytes(), template.suffix, GOOD, in_place=True)

    def retag(self) -> None:
        path = self._pick()
        if path is not None:
            write_tags(path, {"title": f"retagged {self.counter}", "artist": f"artist {self.counter % 7}"})
            self.counter += 1

    def move(self) -> None:
        path = self._pick(None)
        if path is not None:
            target = self._folder() / self._name(path.suffix)
            path.rename(target)
            self.truth[target] = self.truth.pop(path)

    def move_folder(self) -> None:
        folders = [p for p in self.music.glob("*/*") if p.is_dir()]
        if not folders:
            return
        folder = self.rng.choice(folders)
        target = self.music / f"moved {self.counter:05d}"
        self.counter += 1
        folder.rename(target)
        for path in [p for p in self.truth if folder in p.parents]:
            self.truth[target / path.relative_to(folder)] = self.truth.pop(path)

    def delete(self) -> None:
        path = self._pick(None)
        if path is not None:
            self.deleted[path] = (path.read_bytes(), self.truth.pop(path))
            path.unlink()

    def delete_folder(self) -> None:
        folders = [p for p in self.music.glob("*/*") if p.is_dir()]
        if folders:
            folder = self.rng.choice(folders)
            for path in [p for p in self.truth if folder in p.parents]:
                del self.truth[path]
            shutil.rmtree(folder)

    def readd(self) -> None:
        if not self.deleted:
            return
        path = self.rng.choice(list(self.deleted))
        data, kind = self.deleted.pop(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = self.staging / f"readd-{self.counter}"
        self.counter += 1
        staged.write_bytes(data)
        staged.rename(path)
        self.truth[path] = kind

    def garbage(self) -> None:
        path = self._folder() / self._name(self.rng.choice([".mp3", ".flac", ".ogg"]))
        write_garbage(self.staging / "g", 2000 + self.rng.randrange(40000)).rename(path)
        self.truth[path] = GARBAGE

    def truncated(self) -> None:
        template = self.rng.choice(self.templates)
        path = self._folder() / self._name(template.suffix)
        write_truncated(template, self.staging / "t", 0.3 + 0.5 * self.rng.random()).rename(path)
        self.truth[path] = TRUNCATED

    def damaged(self) -> None:
        template = self.rng.choice(self.templates)
        path = self._folder() / self._name(template.suffix)
        write_damaged(template, self.staging / "d").rename(path)
        self.truth[path] = DAMAGED


def make_templates(folder: Path, seconds: float) -> list[Path]:
    folder.mkdir(parents=True)
    kinds = ("drums", "chords", "tone", "clicks")
    made = []
    for i in range(12):
        suffix = (".flac", ".mp3", ".ogg")[i % 3]
        made.append(write_track(folder / f"template{i}{suffix}", seconds=seconds, kind=kinds[i % 4],
                                bpm=80.0 + 10 * i, freq_hz=220.0 + 40 * i,
                                tags={"title": f"Song {i}", "artist": f"Band {i % 5}",
                                      "album": f"Record {i % 3}"}))
    return made


def sample(daemon: Daemon, started: float) -> Sample:
    proc = psutil.Process(daemon.pid)
    wall_started = time.time() - (time.monotonic() - started)
    children = proc.children(recursive=True)
    zombies, zygote = set(), None
    for child in children:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.add(child.pid)
            elif child.ppid() == daemon.pid and zygote is None and child.create_time() < wall_started + 60:
                zygote = child
        except psutil.NoSuchProcess:
            pass
    zygote_rss = zygote_fds = None
    if zygote is not None:
        try:
            zygote_rss, zygote_fds = zygote.memory_info().rss, zygote.num_fds()
        except psutil.NoSuchProcess:
            pass
    return Sample(time.monotonic() - started, proc.memory_info().rss, proc.num_fds(),
                  proc.num_threads(), len(children), frozenset(zombies), zygote_rss, zygote_fds)


def config_text(library: Library, root: Path, length: int) -> str:
    playlists = root / "playlists"
    playlists.mkdir(exist_ok=True)
    return toml_text(library.sections) + (
        '\n[playlist_keeper]\ndebounce = "5 s"\n'
        f'\n[[playlists]]\nname = "All"\noutput = "{playlists / "all.m3u8"}"\nlength = {length}\n'
        f'query = "title!~zzz"\nmin_duration = 0\n'
        f'\n[[playlists]]\nname = "Band"\noutput = "{playlists / "band.m3u"}"\nlength = {length}\n'
        f'format = "mpd"\nquery = "title!~qqq"\nmin_duration = 0\n')


def caught_up(db: Path, world: World, real: bool) -> list[str]:
    """Return what differs between the database and the truth on disk ([] when they agree); the
    states of damaged files only with the real analyser (the fake one "analyses" any bytes)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = {Path(os.fsdecode(r[0])): r[1:] for r in conn.execute(
            "SELECT path, size, mtime_ns, state FROM files")}
        queued = conn.execute("SELECT count(*) FROM queue").fetchone()[0]
    finally:
        conn.close()
    problems = [f"{queued} files still queued"] if queued else []
    missing = set(world.truth) - set(rows)
    extra = set(rows) - set(world.truth)
    problems += [f"not in the database: {p}" for p in sorted(missing)[:5]]
    problems += [f"in the database but not on disk: {p}" for p in sorted(extra)[:5]]
    for path, kind in world.truth.items():
        row = rows.get(path)
        if row is None:
            continue
        size, mtime_ns, state = row
        st = path.stat()
        if (size, mtime_ns) != (st.st_size, st.st_mtime_ns):
            problems.append(f"stale row (size/mtime) for {path}")
        elif kind == GOOD and state != "analysed":
            problems.append(f"good file {state}: {path}")
        elif not real:
            continue
        elif kind == GARBAGE and state not in ("failed", "quarantined"):
            problems.append(f"garbage file {state}: {path}")
        elif kind in (TRUNCATED, DAMAGED) and state not in ("analysed", "failed", "quarantined"):
            problems.append(f"{kind} file {state}: {path}")
    return problems


def run(args: argparse.Namespace, root: Path) -> int:
    rng = random.Random(args.seed)
    templates = make_templates(root / "templates", args.track_seconds)
    library = Library(root / "lib", analyser=ANALYSERS[args.analyser],
                      intake={"settle": "1 s"}, workers={"max_workers": args.workers})
    staging = root / "lib" / "staging"
    staging.mkdir()
    world = World(library.music, staging, templates, rng)
    length = 20
    library.write_config(config_text(library, root, length))
    daemon = Daemon(library)
    daemon.wait_for_event("started")
    started = time.monotonic()
    end = started + args.minutes * 60
    samples: list[Sample] = []
    next_sample = next_hup = next_cli = started
    quiet_until = 0.0
    next_quiet = started + 180
    cli_failures: list[str] = []
    changes = 0
    while (now := time.monotonic()) < end:
        if daemon.proc.poll() is not None:
            print(f"the daemon exited {daemon.proc.returncode}:\n{daemon.log()[-4000:]}")
            return 1
        if now >= next_sample:
            samples.append(sample(daemon, started))
            next_sample += args.sample
        if now >= next_hup:
            length = 45 - length  # 20 <-> 25: a real change for the reload to apply
            library.write_config(config_text(library, root, length))
            os.kill(daemon.pid, signal.SIGHUP)
            next_hup += 60
        if now >= next_cli and now - started > 60:  # once something is analysed
            for argv in (("status", "--json"),
                         ("playlist", "--query", "title!~zzz", "--length", "10", "--min-duration", "0")):
                proc = library.cli(*argv, check=False)
                if proc.returncode != 0 and (args.analyser == "real" or argv[0] == "status"):
                    cli_failures.append(f"{' '.join(argv)}: {proc.stderr.decode(errors='replace')[-300:]}")
            some = world._pick(None)
            if some is not None:
                library.cli("show", str(some), check=False)
            next_cli += 30
        if now >= next_quiet:
            quiet_until, next_quiet = now + 12, now + 180
        if now < quiet_until:
            time.sleep(0.2)
            continue
        world.act(args.files)
        changes += 1
        time.sleep(max(0.0, rng.expovariate(args.rate)))
    print(f"{changes} changes in {args.minutes:g} min: " +
          ", ".join(f"{k} {v}" for k, v in sorted(world.done.items())))
    problems: list[str] = []
    deadline = time.monotonic() + args.catch_up
    while (problems := caught_up(library.db, world, args.analyser == "real")) and time.monotonic() < deadline:
        time.sleep(2)
    caught_at = time.monotonic() - started
    samples.append(sample(daemon, started))
    conn = sqlite3.connect(f"file:{library.db}?mode=ro", uri=True)
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    zygote = None
    try:
        zygote = daemon.zygote(timeout_s=5)
    except Exception:
        pass
    code = daemon.stop()
    leftover = zygote is not None and zygote.is_running() and zygote.status() != psutil.STATUS_ZOMBIE
    return report(args, samples, problems, caught_at, integrity, code, leftover, cli_failures,
                  daemon.log(), world)


def report(args: argparse.Namespace, samples: list[Sample], problems: list[str], caught_at: float,
           integrity: str, code: int, leftover: bool, cli_failures: list[str], log: str,
           world: World) -> int:
    mb = 1024 * 1024
    print(f"\n{'t (s)':>7} {'RSS MB':>7} {'fds':>4} {'thr':>4} {'kids':>4} {'zomb':>4} "
          f"{'zyg MB':>7} {'zyg fds':>7}")
    step = max(1, len(samples) // 40)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        zrss = f"{s.zygote_rss / mb:7.1f}" if s.zygote_rss is not None else "      -"
        print(f"{s.at_s:7.0f} {s.rss / mb:7.1f} {s.fds:4d} {s.threads:4d} {s.children:4d} "
              f"{len(s.zombies):4d} {zrss} {s.zygote_fds if s.zygote_fds is not None else '-':>7}")
    warm = max(60.0, 0.2 * args.minutes * 60)
    after = [s for s in samples[:-1] if s.at_s >= warm] or samples
    window = max(1, len(after) // 10)
    first, last = after[:window], after[-window:]
    rss_growth = statistics.median(s.rss for s in last) - statistics.median(s.rss for s in first)
    fd_growth = min(s.fds for s in last) - min(s.fds for s in first)
    thread_growth = min(s.threads for s in last) - min(s.threads for s in first)
    zrss = [s.zygote_rss for s in after if s.zygote_rss is not None]
    zygote_growth = (statistics.median(zrss[-window:]) - statistics.median(zrss[:window])) if zrss else 0
    lasting = set().union(*(a.zombies & b.zombies for a, b in itertools.pairwise(samples)))
    tracebacks = log.count("Traceback (most recent call last)")
    written = sum(1 for line in log.splitlines() if "EVENT=playlist_written" in line and "PLAYLIST=" in line)
    failed = log.count("EVENT=playlist_failed")
    checks = [
        (f"daemon RSS after warm-up ({warm:.0f} s) grows {rss_growth / mb:+.1f} MB (limit 5 MB)",
         rss_growth <= RSS_GROWTH_LIMIT),
        (f"zygote RSS after warm-up grows {zygote_growth / mb:+.1f} MB (limit 5 MB)",
         zygote_growth <= RSS_GROWTH_LIMIT),
        (f"open descriptors (floor) grow {fd_growth:+d}", fd_growth <= 0),
        (f"threads (floor) grow {thread_growth:+d}", thread_growth <= 0),
        (f"zombies seen in two samples in a row: {len(lasting)}", not lasting),
        (f"integrity_check: {integrity}", integrity == "ok"),
        (f"database equal to the truth on disk ({len(world.truth)} files) "
         f"{caught_at:.0f} s after the start" + ("" if not problems else ": " + "; ".join(problems[:6])),
         not problems),
        (f"CLI commands failing: {len(cli_failures)}"
         + (f" ({'; '.join(sorted(set(cli_failures))[:3])})" if cli_failures else ""),
         not cli_failures),
        (f"tracebacks in the daemon's output: {tracebacks}", tracebacks == 0),
        (f"playlists written by the keeper: {written}, failed: {failed}",
         failed == 0 and (written > 0 or args.analyser != "real")),
        (f"SIGTERM: exit {code}, analysis zygote left running: {leftover}", code == 0 and not leftover),
    ]
    noted: dict[str, int] = {}
    for line in log.splitlines():
        parsed = parse_line(line)
        if parsed is not None and parsed.level in ("WARNING", "ERROR"):
            key = f"{parsed.level} {parsed.fields.get('EVENT', '?')}"
            noted[key] = noted.get(key, 0) + 1
            if parsed.fields.get("EVENT") == "playlist_failed":
                print(f"playlist failed: {parsed.message}")
    print("warnings and errors in the daemon's output: "
          + (", ".join(f"{k} {v}" for k, v in sorted(noted.items())) or "none"))
    print()
    for text, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    return 0 if all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1.5, help="library changes per second")
    parser.add_argument("--analyser", choices=sorted(ANALYSERS), default="real")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=300, help="the library's size after warm-up")
    parser.add_argument("--track-seconds", type=float, default=5.0)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--catch-up", type=float, default=300.0,
                        help="seconds the daemon gets to catch up at the end")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="a new folder to run in and leave behind")
    args = parser.parse_args()
    if args.keep is not None:  # the library, database and daemon log stay for a post-mortem
        args.keep.mkdir(parents=True, exist_ok=False)
        return run(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="tunescout-soak-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
