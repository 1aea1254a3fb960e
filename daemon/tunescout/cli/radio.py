"""`tunescout radio`: the radio in the foreground, reading the database and never writing it.

For a user who wants it on demand (or alongside a daemon without `[radio]`): Ctrl-C stops it.
cli/main.py wires it in with `add_radio_parser(sub)` and `COMMANDS["radio"]`.
"""

from __future__ import annotations

import argparse
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunescout.cli.output import Exit, fail
from tunescout.config import Config, RadioConfig
from tunescout.logs import setup_logging
from tunescout.radio.history import PlayHistory, history_path
from tunescout.radio.mpd import parse_address
from tunescout.store.reader import StoreReader


def add_radio_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "radio", help="keep MPD's queue playing similar music, in the foreground (Ctrl-C stops)")
    parser.add_argument("--mpd", metavar="ADDR", help="MPD's host:port or socket path "
                        "(default: [radio] mpd, else 127.0.0.1:6600)")
    parser.add_argument("--ahead", type=int, metavar="N", help="songs kept queued after the current one")
    parser.add_argument("--music-directory", metavar="DIR", help="MPD's music_directory")
    return parser


def _radio_config(args: argparse.Namespace, config: Config) -> RadioConfig | str:
    """Return the radio's settings: `[radio]` (or the defaults) with the command line's on top."""
    radio = config.radio or RadioConfig(
        music_directory=config.library.paths[0] if len(config.library.paths) == 1 else None,
        password=os.environ.get("MPD_PASSWORD") or None)
    if args.mpd is not None:
        try:
            parse_address(args.mpd)
        except ValueError as exc:
            return f"--mpd: {exc}"
        radio = replace(radio, mpd=args.mpd)
    if args.ahead is not None:
        if not 1 <= args.ahead <= 100:
            return "--ahead must be from 1 to 100"
        radio = replace(radio, ahead=args.ahead)
    if args.music_directory is not None:
        radio = replace(radio, music_directory=Path(os.path.abspath(args.music_directory)))
    if radio.music_directory is None:
        return "give --music-directory (MPD's music_directory): library.paths lists several folders"
    return radio


def cmd_radio(args: argparse.Namespace, config: Config) -> int:
    radio_config = _radio_config(args, config)
    if isinstance(radio_config, str):
        return fail(Exit.USAGE, radio_config)
    from tunescout.radio.radio import Radio  # numpy: only when the command is `radio`

    setup_logging(config.log.level, "stderr")
    store = StoreReader.open(config.store.path)
    path = history_path(config)
    history = PlayHistory.load(None, path, window_tracks=radio_config.no_repeat_tracks,
                               window_s=radio_config.no_repeat_for_s)
    radio = Radio(radio_config, store, config.library.paths, history=history)

    def stop(_signum: int, _frame: Any) -> None:
        radio.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        radio.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        radio.close()
        store.close()
    return Exit.OK
