"""The command line: run the daemon, scan once, and read what it stored."""

from __future__ import annotations

import argparse
import enum
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tunescout import __version__
from tunescout.config import Config, load_config, scheduler_address
from tunescout.errors import ConfigError, StoreError
from tunescout.library.intake import is_candidate
from tunescout.lock import DatabaseBusy
from tunescout.logs import setup_logging
from tunescout.store.reader import DaemonState, FileDetail, StoreReader
from tunescout.store.writer import StoreWriter
from tunescout.units import format_duration, format_size, is_within, path_json


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1  # something did not work: failed files, a daemon that is not running
    USAGE = 2  # the user's command or configuration is wrong
    NOT_FOUND = 3  # the file is not in the database
    UNAVAILABLE = 4  # the database cannot be opened


# --- output helpers ----------------------------------------------------------------------------


def _out(text: str) -> None:
    """Write a line to stdout; names that are not UTF-8 go out as the bytes they are."""
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape") + b"\n")


def _err(text: str) -> None:
    sys.stderr.buffer.write(f"tunescout: {text}".encode("utf-8", "surrogateescape") + b"\n")
    sys.stderr.flush()


def _dump(data: Any) -> None:
    """Print JSON as valid UTF-8: a stray surrogate (a non-UTF-8 byte) becomes a \\udcXX escape."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace") + b"\n")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _config_problems(exc: ConfigError) -> None:
    _err(f"configuration {exc.source} is invalid:")
    for problem in exc.problems:
        sys.stderr.write(f"  {problem}\n")


# --- commands ----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from tunescout.service import run_daemon  # the wiring is imported by nothing else

    setup_logging(config.log.level, args.log_target or config.log.target)
    try:
        return run_daemon(config, args.config, os.environ, log_target=args.log_target)
    except ConfigError as exc:
        _config_problems(exc)
        return Exit.USAGE
    except DatabaseBusy as exc:
        pid = exc.holder.pid if exc.holder else "PID"
        _err(f"{exc}; stop it first (systemctl stop tunescout, or kill {pid}), or give this one "
             "another store.path")
        return Exit.UNAVAILABLE


def _expand_targets(paths: list[Path], config: Config) -> tuple[list[Path], list[str]]:
    from tunescout.library.walk import walk_library

    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(os.path.abspath(raw))
        if not path.exists():
            problems.append(f"{path}: no such file or folder")
        elif not any(is_within(os.fsencode(path), os.fsencode(root)) for root in config.library.paths):
            problems.append(f"{path}: outside the library ({', '.join(map(str, config.library.paths))}); "
                            "add its folder to library.paths to analyse it")
        elif path.is_dir():
            walk = walk_library((path,), config.library.extensions)
            files.extend(sorted(Path(os.fsdecode(p)) for p in walk.files))
        elif is_candidate(path, config.library.extensions):
            files.append(path)
        else:
            problems.append(f"{path}: not an audio file (by its extension); skipped")
    return list(dict.fromkeys(files)), problems


class _Bar:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int, failed: int) -> None:
        now = time.monotonic()
        if not self.tty or (now - self._last < 0.2 and done < total):
            return
        self._last = now
        width = 30
        filled = int(width * done / total) if total else width
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files"
                         f"{f', {failed} failed' if failed else ''} ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def cmd_scan(args: argparse.Namespace, config: Config) -> int:
    from tunescout.loop import run_scan

    setup_logging("debug" if args.verbose else "error", "stderr")
    if args.scheduler:
        try:
            scheduler = scheduler_address(args.scheduler)
        except ValueError as exc:
            _err(f"--scheduler: {exc}")
            return Exit.USAGE
        config = replace(config, workers=replace(config.workers, scheduler=scheduler))
    if config.workers.scheduler and importlib.util.find_spec("distributed") is None:
        _err("a Dask scheduler is configured, but Dask is not installed: pip install 'tunescout[cluster]'")
        return Exit.USAGE
    targets, problems = _expand_targets(args.paths, config)
    for problem in problems:
        _err(problem)
    if not targets:
        _err("nothing to analyse")
        return Exit.USAGE if problems else Exit.OK
    bar = _Bar()
    try:
        analysed, failed, missed = run_scan(config, targets, os.environ, bar)
    except DatabaseBusy as exc:
        _err(f"{exc}: the daemon analyses the library itself (tunescout status shows how far it "
             "is; tunescout retry PATH analyses a file again)")
        return Exit.UNAVAILABLE
    finally:
        bar.close()
    summary = f"{analysed} analysed, {failed} failed, {len(missed)} not recorded"
    if args.json:
        _dump({"analysed": analysed, "failed": failed,
               "not_recorded": [path_json(p) for p in missed]})
    else:
        _out(summary)
        if failed:
            _out("see: tunescout failures")
    return Exit.OK if not missed else Exit.FAILED


def cmd_worker(args: argparse.Namespace, config: Config) -> int:
    from tunescout.cluster.worker import run_worker

    why = run_worker(args.scheduler, args.path_map, args.nworkers, args.name)  # returns on failure
    _err(why)
    return Exit.USAGE


def _daemon_view(state: DaemonState | None) -> dict[str, Any]:
    if not state:
        return {"state": "stopped", "pid": None, "detail": "the daemon has never run on this database"}
    pid = state.get("pid")
    alive = False
    if state.get("state") not in ("stopped", None) and isinstance(pid, int):
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True  # running as another user (systemd's DynamicUser)
    stale = time.time() - float(state.get("updated_at", 0)) > 180
    view = dict(state)
    if not alive or stale:
        was = state.get("state")
        view["state"] = "stopped"
        view["detail"] = ("stopped cleanly" if was == "stopped"
                          else f"not running (last seen {_when(state.get('updated_at'))})")
    return view


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    store = StoreReader.open(config.store.path)
    counts = store.counts()
    daemon = _daemon_view(store.daemon_state())
    if args.json:
        _dump({**asdict(counts), "daemon": daemon, "database": str(config.store.path)})
        return Exit.OK
    state = daemon["state"]
    line = f"tunescout: {state}"
    if state != "stopped" and daemon.get("started_at"):
        line += f" (pid {daemon['pid']}, up {format_duration(time.time() - daemon['started_at'])})"
    elif daemon.get("detail"):
        line += f" ({daemon['detail']})"
    _out(line)
    if state != "stopped" and daemon.get("status"):
        _out(f"  {daemon['status']}")
    if daemon.get("paused_reason"):
        _out(f"  paused: {daemon['paused_reason']}")
    if state != "stopped" and daemon.get("workers") is not None:
        free = daemon.get("memory_available_bytes")
        _out(f"  workers {daemon['workers']}" + (f" ({format_size(free)} available)" if free else ""))
    for path in daemon.get("in_flight", []) if state != "stopped" else []:
        _out(f"  analysing {path}")
    _out(f"files {counts.files}  analysed {counts.analysed}  failed {counts.failed}"
         f" (quarantined {counts.quarantined})  queued {counts.queued}")
    if daemon.get("unanalysed"):
        kinds = ", ".join(f"{ext} {n}" for ext, n in daemon["unanalysed"].items())
        _out(f"left out (formats not in library.extensions): {kinds}")
    _out(f"database {config.store.path}")
    return Exit.OK


def _find(store: StoreReader, raw: Path) -> tuple[Path, FileDetail | None]:
    for candidate in dict.fromkeys([Path(os.path.abspath(raw)), Path(os.path.realpath(raw)), raw]):
        detail = store.file_detail(candidate)
        if detail is not None:
            return candidate, detail
    return Path(os.path.abspath(raw)), None


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    store = StoreReader.open(config.store.path)
    path, detail = _find(store, args.path)
    if detail is None:
        _err(f"{path} is not in the database (not in a library folder, not yet analysed, "
             "or not audio)")
        return Exit.NOT_FOUND
    if args.json:
        _dump({**detail.as_json(), **path_json(path)})
        return Exit.OK
    _out(str(path))
    _out(f"  state       {detail.state}" + (f" ({_when(detail.analysed_at)})"
                                             if detail.analysed_at else ""))
    if detail.duration_s is not None:
        minutes, seconds = divmod(round(detail.duration_s), 60)
        _out(f"  duration    {minutes}:{seconds:02d}")
    if detail.digest:
        _out(f"  digest      {detail.digest}")
    if detail.tags:
        _out("  tags")
        for key, value in detail.tags.items():
            _out(f"    {key:<22} {'; '.join(value) if isinstance(value, list) else value}")
    if detail.tags_error:
        _out(f"  tags error  {detail.tags_error}")
    if detail.decode_warning:
        _out(f"  decoding    {detail.decode_warning}")
    for group, values in detail.features.items():
        _out(f"  {group} (v{values.get('version')})")
        for key, value in values.items():
            if key != "version":
                _out(f"    {key:<22} {_fmt(value)}")
    failure = detail.failure
    if failure:
        label = "quarantined" if failure.quarantined else "failed"
        _out(f"  {label} {_when(failure.at)}: {failure.kind}: {failure.reason}")
    return Exit.OK


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return " ".join(_fmt(v) for v in value)
    return str(value)


def cmd_failures(args: argparse.Namespace, config: Config) -> int:
    store = StoreReader.open(config.store.path)
    rows = store.failures()
    if args.json:
        _dump([{**path_json(r.path), "kind": r.kind, "reason": r.reason, "at": r.at,
                "quarantined": r.quarantined, "attempts": r.attempts} for r in rows])
        return Exit.OK
    if not rows:
        _out("no failures")
    for r in rows:
        flag = " (quarantined)" if r.quarantined else ""
        _out(f"{r.path}\n  {r.kind}{flag}: {r.reason}  [{_when(r.at)}]")
    return Exit.OK


def cmd_retry(args: argparse.Namespace, config: Config) -> int:
    if not args.all and not args.paths:
        _err("name files to retry, or --all")
        return Exit.USAGE
    store = StoreWriter.open(config.store.path)  # the CLI's one write
    try:
        paths = None if args.all else [Path(os.path.abspath(p)) for p in args.paths]
        count = store.retry(paths)
        state = store.daemon_state()
    finally:
        store.close()
    _out(f"{count} file{'s' if count != 1 else ''} queued again")
    pid = state.get("pid") if state and state.get("state") != "stopped" else None
    if isinstance(pid, int):
        try:
            os.kill(pid, signal.SIGUSR1)  # "look at the queue now"
        except OSError:
            pass
    return Exit.OK


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    from tunescout.cli.doctor import check_all

    checks = check_all(config, os.environ, analysis=not args.quick)
    if args.json:
        _dump([{"name": c.name, "level": c.level, "message": c.message, "fix": c.fix} for c in checks])
    else:
        for check in checks:
            _out(f"{check.level.upper():<5} {check.name}: {check.message}")
            if check.fix and check.level != "ok":
                _out(f"      fix: {check.fix}")
    return Exit.FAILED if any(c.level == "fail" for c in checks) else Exit.OK


# --- parsing -----------------------------------------------------------------------------------


def cmd_playlist(args: argparse.Namespace, config: Config) -> int:
    from tunescout.cli.playlist import cmd_playlist as build

    return build(args, config)


def _parser(with_playlist: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunescout", description="Watch a music library, analyse every track, build playlists.")
    parser.add_argument("--config", type=Path, help="config file (default: $TUNESCOUT_CONFIG, "
                        "~/.config/tunescout/tunescout.toml, /etc/tunescout/tunescout.toml)")
    parser.add_argument("--version", action="version", version=f"tunescout {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--log-target", choices=["auto", "journal", "stderr"])
    scan = sub.add_parser("scan", help="analyse files or folders once, without the daemon")
    scan.add_argument("paths", nargs="+", type=Path)
    scan.add_argument("--json", action="store_true")
    scan.add_argument("-v", "--verbose", action="store_true")
    scan.add_argument("--scheduler", metavar="ADDRESS", help="send the files to this Dask scheduler "
                      "(tcp://HOST:8786) and its `tunescout worker`s; default: [workers] scheduler")
    worker = sub.add_parser("worker", help="lend this machine's cores to a tunescout server "
                            "through a Dask scheduler (needs tunescout[cluster])")
    worker.add_argument("scheduler", metavar="SCHEDULER", help="the scheduler, tcp://HOST:8786")
    worker.add_argument("--path-map", action="append", default=[], metavar="SERVER=LOCAL",
                        help="the server's library folder and where it is here (repeatable)")
    worker.add_argument("--nworkers", type=int, metavar="N",
                        help="worker processes, each one analysis at a time (default: one per core)")
    worker.add_argument("--name", help="a name for this machine's workers in the scheduler")
    status = sub.add_parser("status", help="what the daemon is doing; counts")
    status.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="tags and features of one file")
    show.add_argument("path", type=Path)
    show.add_argument("--json", action="store_true")
    failures = sub.add_parser("failures", help="files that failed, with the reason")
    failures.add_argument("--json", action="store_true")
    retry = sub.add_parser("retry", help="forget failures and analyse those files again")
    retry.add_argument("paths", nargs="*", type=Path)
    retry.add_argument("--all", action="store_true")
    if with_playlist:  # its options need numpy: loaded only when the command is `playlist`
        from tunescout.cli.playlist import add_playlist_parser

        add_playlist_parser(sub)
    else:
        sub.add_parser("playlist", help="build a playlist from the analysed library (similar "
                       "tracks, a path from A to B, a tag query); see tunescout playlist --help")
    doctor = sub.add_parser("doctor", help="check the config, database, library, journal, memory "
                            "and analysis stack; explain what is wrong")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--quick", action="store_true", help="skip starting the analysis stack")
    return parser


COMMANDS = {"run": cmd_run, "scan": cmd_scan, "status": cmd_status, "show": cmd_show,
            "failures": cmd_failures, "retry": cmd_retry, "playlist": cmd_playlist,
            "doctor": cmd_doctor, "worker": cmd_worker}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args = _parser(with_playlist="playlist" in words).parse_args(words)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        _config_problems(exc)
        return Exit.USAGE
    try:
        return int(COMMANDS[args.command](args, config))
    except StoreError as exc:
        _err(str(exc))
        return Exit.UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
