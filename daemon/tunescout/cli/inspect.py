"""The inspect commands: status, show and failures read the database; retry is the CLI's one write."""

from __future__ import annotations

import argparse
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunescout.cli.output import Exit, dump, fail, out
from tunescout.config import Config
from tunescout.store.reader import DaemonState, FileDetail, StoreReader
from tunescout.store.writer import StoreWriter
from tunescout.units import format_duration, format_size, path_json


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


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
        radio = daemon.get("radio") if daemon["state"] != "stopped" else None
        dump({**asdict(counts), "daemon": daemon, "radio": radio, "database": str(config.store.path)})
        return Exit.OK
    state = daemon["state"]
    line = f"tunescout: {state}"
    if state != "stopped" and daemon.get("started_at"):
        line += f" (pid {daemon['pid']}, up {format_duration(time.time() - daemon['started_at'])})"
    elif daemon.get("detail"):
        line += f" ({daemon['detail']})"
    out(line)
    if state != "stopped" and daemon.get("status"):
        out(f"  {daemon['status']}")
    if daemon.get("paused_reason"):
        out(f"  paused: {daemon['paused_reason']}")
    if state != "stopped" and isinstance(daemon.get("radio"), dict):
        from tunescout.radio.status import status_line

        out(f"  {status_line(daemon['radio'])}")
    if state != "stopped" and isinstance(daemon.get("subsonic"), dict):
        from tunescout.subsonic.link import status_line as subsonic_line

        out(f"  {subsonic_line(daemon['subsonic'])}")
    if state != "stopped" and daemon.get("workers") is not None:
        free = daemon.get("memory_available_bytes")
        out(f"  workers {daemon['workers']}" + (f" ({format_size(free)} available)" if free else ""))
    for path in daemon.get("in_flight", []) if state != "stopped" else []:
        out(f"  analysing {path}")
    out(f"files {counts.files}  analysed {counts.analysed}  failed {counts.failed}"
         f" (quarantined {counts.quarantined})  queued {counts.queued}")
    if counts.suspect:
        kinds = ", ".join(f"{kind} {n}" for kind, n in counts.suspect.items())
        out(f"suspect (decoded in part, left out of playlists): {kinds}; "
            "see: tunescout failures --warnings")
    if daemon.get("unanalysed"):
        kinds = ", ".join(f"{ext} {n}" for ext, n in daemon["unanalysed"].items())
        out(f"left out (formats not in library.extensions): {kinds}")
    out(f"database {config.store.path}")
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
        return fail(Exit.NOT_FOUND, f"{path} is not in the database (not in a library folder, not "
                    "yet analysed, or not audio)", as_json=args.json)
    if args.json:
        dump({**detail.as_json(), **path_json(path)})
        return Exit.OK
    out(str(path))
    out(f"  state       {detail.state}" + (f" ({_when(detail.analysed_at)})"
                                             if detail.analysed_at else ""))
    if detail.duration_s is not None:
        minutes, seconds = divmod(round(detail.duration_s), 60)
        out(f"  duration    {minutes}:{seconds:02d}")
    if detail.digest:
        out(f"  digest      {detail.digest}")
    if detail.tags:
        out("  tags")
        for key, value in detail.tags.items():
            out(f"    {key:<22} {'; '.join(value) if isinstance(value, list) else value}")
    if detail.tags_error:
        out(f"  tags error  {detail.tags_error}")
    if detail.decode_warning:
        kind = f"{detail.warning_kind}: " if detail.warning_kind else ""
        out(f"  decoding    {kind}{detail.decode_warning}")
    for group, values in detail.features.items():
        out(f"  {group} (v{values.get('version')})")
        for key, value in values.items():
            if key != "version":
                out(f"    {key:<22} {_fmt(value)}")
    failure = detail.failure
    if failure:
        label = "quarantined" if failure.quarantined else "failed"
        out(f"  {label} {_when(failure.at)}: {failure.kind}: {failure.reason}")
    return Exit.OK


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return " ".join(_fmt(v) for v in value)
    return str(value)


def cmd_failures(args: argparse.Namespace, config: Config) -> int:
    store = StoreReader.open(config.store.path)
    if getattr(args, "warnings", False):
        return _warnings(store, args.json)
    rows = store.failures()
    if args.json:
        dump([{**path_json(r.path), "kind": r.kind, "reason": r.reason, "at": r.at,
                "quarantined": r.quarantined, "attempts": r.attempts} for r in rows])
        return Exit.OK
    if not rows:
        out("no failures")
    for r in rows:
        flag = " (quarantined)" if r.quarantined else ""
        out(f"{r.path}\n  {r.kind}{flag}: {r.reason}  [{_when(r.at)}]")
    return Exit.OK


def _warnings(store: StoreReader, as_json: bool) -> int:
    """List the files that decoded only in part (truncated, corrupt packets skipped)."""
    rows = store.warnings()
    if as_json:
        dump([{**path_json(r.path), "kind": r.kind, "warning": r.warning,
               "duration_s": r.duration_s, "analysed_at": r.analysed_at} for r in rows])
        return Exit.OK
    if not rows:
        out("no decode warnings")
    for r in rows:
        duration = f", {format_duration(r.duration_s)} decoded" if r.duration_s is not None else ""
        out(f"{r.path}\n  {r.kind}{duration}: {r.warning}  [{_when(r.analysed_at)}]")
    return Exit.OK


def cmd_retry(args: argparse.Namespace, config: Config) -> int:
    if not args.all and not args.paths:
        return fail(Exit.USAGE, "name files to retry, or --all")
    store = StoreWriter.open(config.store.path)  # the CLI's one write
    try:
        paths = None if args.all else [Path(os.path.abspath(p)) for p in args.paths]
        count = store.retry(paths)
        state = store.daemon_state()
    finally:
        store.close()
    out(f"{count} file{'s' if count != 1 else ''} queued again")
    pid = state.get("pid") if state and state.get("state") != "stopped" else None
    if isinstance(pid, int):
        try:
            os.kill(pid, signal.SIGUSR1)  # "look at the queue now"
        except OSError:
            pass
    return Exit.OK
