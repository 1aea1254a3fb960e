"""The command line's parser and dispatch, `run` and `scan`; the inspect commands are in inspect.py."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tunescout import __version__, early
from tunescout.cli.inspect import cmd_failures, cmd_retry, cmd_show, cmd_status
from tunescout.cli.output import Exit, dump, err, fail, out
from tunescout.config import Config, load_config, parse_config, salvage_store_path, scheduler_address
from tunescout.errors import ConfigError, StoreError
from tunescout.library.intake import is_candidate
from tunescout.lock import DatabaseBusy
from tunescout.logs import setup_logging
from tunescout.units import is_within, path_json

READERS = frozenset({"status", "show", "failures"})  # they work from the database alone


def _config_problems(exc: ConfigError, as_json: bool = False) -> Exit:
    return fail(Exit.USAGE, f"configuration {exc.source} is invalid:", as_json=as_json,
                details=exc.problems)


# --- commands ----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from tunescout.service import run_daemon  # the wiring is imported by nothing else

    setup_logging(config.log.level, args.log_target or config.log.target)
    try:
        return run_daemon(config, args.config, os.environ, log_target=args.log_target)
    except ConfigError as exc:
        return _config_problems(exc)
    except DatabaseBusy as exc:
        pid = exc.holder.pid if exc.holder else "PID"
        return fail(Exit.UNAVAILABLE, f"{exc}; stop it first (systemctl stop tunescout, or kill "
                    f"{pid}), or give this one another store.path")


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
            return fail(Exit.USAGE, f"--scheduler: {exc}", as_json=args.json)
        config = replace(config, workers=replace(config.workers, scheduler=scheduler))
    if config.workers.scheduler and importlib.util.find_spec("distributed") is None:
        return fail(Exit.USAGE, "a Dask scheduler is configured, but Dask is not installed: "
                    "pip install 'tunescout[cluster]'", as_json=args.json)
    targets, problems = _expand_targets(args.paths, config)
    for problem in problems:
        err(problem)
    if not targets:
        if problems:
            return fail(Exit.USAGE, "nothing to analyse", as_json=args.json, details=problems)
        err("nothing to analyse")
        return Exit.OK
    bar = _Bar()
    try:
        analysed, failed, missed = run_scan(config, targets, os.environ, bar)
    except DatabaseBusy as exc:
        return fail(Exit.UNAVAILABLE, f"{exc}: the daemon analyses the library itself (tunescout "
                    "status shows how far it is; tunescout retry PATH analyses a file again)",
                    as_json=args.json)
    finally:
        bar.close()
    summary = f"{analysed} analysed, {failed} failed, {len(missed)} not recorded"
    if args.json:
        dump({"analysed": analysed, "failed": failed,
               "not_recorded": [path_json(p) for p in missed]})
    else:
        out(summary)
        if failed:
            out("see: tunescout failures")
    return Exit.OK if not missed else Exit.FAILED


def cmd_worker(args: argparse.Namespace, config: Config) -> int:
    from tunescout.cluster.worker import run_worker

    why = run_worker(args.scheduler, args.path_map, args.nworkers, args.name)  # returns on failure
    return fail(Exit.USAGE, why)


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    from tunescout.cli.doctor import Level, check_all

    checks = check_all(config, os.environ, analysis=not args.quick)
    if args.json:
        dump([{"name": c.name, "level": c.level, "message": c.message, "fix": c.fix} for c in checks])
    else:
        for check in checks:
            out(f"{check.level.upper():<5} {check.name}: {check.message}")
            if check.fix and check.level != Level.OK:
                out(f"      fix: {check.fix}")
    return Exit.FAILED if any(c.level == Level.FAIL for c in checks) else Exit.OK


# --- parsing -----------------------------------------------------------------------------------


def cmd_playlist(args: argparse.Namespace, config: Config) -> int:
    from tunescout.cli.playlist import cmd_playlist as build

    return build(args, config)


def cmd_radio(args: argparse.Namespace, config: Config) -> int:
    from tunescout.cli.radio import cmd_radio as run_radio

    return run_radio(args, config)


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
    failures.add_argument("--warnings", action="store_true",
                          help="instead, files that decoded only in part (truncated, corrupt)")
    retry = sub.add_parser("retry", help="forget failures and analyse those files again")
    retry.add_argument("paths", nargs="*", type=Path)
    retry.add_argument("--all", action="store_true")
    if with_playlist:  # its options need numpy: loaded only when the command is `playlist`
        from tunescout.cli.playlist import add_playlist_parser

        add_playlist_parser(sub)
    else:
        sub.add_parser("playlist", help="build a playlist from the analysed library (similar "
                       "tracks, a path from A to B, a tag query); see tunescout playlist --help")
    from tunescout.cli.radio import add_radio_parser

    add_radio_parser(sub)
    doctor = sub.add_parser("doctor", help="check the config, database, library, journal, memory "
                            "and analysis stack; explain what is wrong")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--quick", action="store_true", help="skip starting the analysis stack")
    return parser


COMMANDS = {"run": cmd_run, "scan": cmd_scan, "status": cmd_status, "show": cmd_show,
            "failures": cmd_failures, "retry": cmd_retry, "playlist": cmd_playlist,
            "doctor": cmd_doctor, "radio": cmd_radio, "worker": cmd_worker}


def _load(args: argparse.Namespace) -> Config | Exit:
    """Return the configuration; for a reading command, one from the database path alone when
    the file is invalid (said in one line)."""
    try:
        return load_config(args.config)
    except ConfigError as exc:
        if args.command not in READERS:
            return _config_problems(exc, getattr(args, "json", False))
        store = salvage_store_path(args.config)
        err(f"configuration {exc.source} is invalid ({exc.problems[0]}"
            f"{f' and {len(exc.problems) - 1} more' if len(exc.problems) > 1 else ''}; "
            f"tunescout doctor lists them); reading the database {store}")
        return parse_config({"store": {"path": str(store)}}, env=os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args = _parser(with_playlist="playlist" in words).parse_args(words)
    if args.command != "run":  # only the daemon reloads: the other commands end on a hangup
        early.restore_defaults()
    as_json = bool(getattr(args, "json", False))
    config = _load(args)
    if isinstance(config, Exit):
        return config
    try:
        return int(COMMANDS[args.command](args, config))
    except StoreError as exc:
        return fail(Exit.UNAVAILABLE, str(exc), as_json=as_json)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return Exit.OK
