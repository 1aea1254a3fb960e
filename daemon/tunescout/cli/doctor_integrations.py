"""`tunescout doctor` for the integrations: `[radio]` against its MPD, `[workers] scheduler`
against its Dask cluster. Each answers within a few seconds and says how to fix what is wrong.

cli/doctor.py calls these when the section is configured (Dask is imported only then).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from tunescout.cli.doctor import Check, Level
from tunescout.config import Config, RadioConfig
from tunescout.errors import StoreError
from tunescout.radio.mpd import (
    ACK_NO_EXIST,
    ACK_PERMISSION,
    MPDClient,
    MPDCommandError,
    MPDError,
    as_dict,
    parse_address,
)
from tunescout.radio.uris import UriMap
from tunescout.store.reader import StoreReader

CONNECT_TIMEOUT_S = 5.0
PROBE_FILES = 5  # analysed files asked of MPD: one it knows proves the music directory
_MODES = ("random", "repeat", "single")


def check_radio(config: Config) -> Iterator[Check]:
    """MPD reachable, the password accepted, its music directory the radio's, its modes."""
    radio = config.radio
    assert radio is not None
    address = parse_address(radio.mpd)
    try:
        client = MPDClient.connect(address, radio.password, timeout_s=CONNECT_TIMEOUT_S)
    except MPDError as exc:
        refused = "password" in str(exc)
        yield Check("radio mpd", Level.FAIL, str(exc),
                    "check MPD_PASSWORD or [radio] password against MPD's `password` setting" if refused
                    else f"is MPD running and listening on {address}? (`mpc -h HOST -p PORT status`, "
                    "MPD's bind_to_address and port; or set [radio] mpd)")
        return
    try:
        try:
            status = as_dict(client.command("status"))
        except MPDCommandError as exc:
            if exc.code != ACK_PERMISSION:
                raise
            yield Check("radio mpd", Level.FAIL, f"MPD {client.version} at {address} answers, but "
                        "not without a password", "set MPD_PASSWORD (or [radio] password) to one "
                        "of MPD's passwords with read, add and control")
            return
        yield Check("radio mpd", Level.OK, f"MPD {client.version} at {address}")
        yield _music_directory(client, radio, config)
        on = [mode for mode in _MODES if status.get(mode, "0") not in ("0", "")]
        if on:
            yield Check("radio modes", Level.WARN, f"{', '.join(on)} on: the radio pauses until "
                        f"{'it is' if len(on) == 1 else 'they are'} off",
                        "; ".join(f"mpc {mode} off" for mode in on))
        else:
            yield Check("radio modes", Level.OK, "random, repeat and single off")
    except MPDError as exc:
        yield Check("radio mpd", Level.FAIL, f"MPD at {address}: {exc}", "see MPD's log")
    finally:
        client.close()


def _music_directory(client: MPDClient, radio: RadioConfig, config: Config) -> Check:
    """Compare MPD's own music_directory (local clients may ask) or probe analysed files."""
    ours = radio.music_directory
    assert ours is not None
    name = "radio music_directory"
    try:
        theirs = as_dict(client.command("config")).get("music_directory")
    except MPDCommandError:
        theirs = None  # only a client on MPD's local socket may ask
    if theirs and os.path.realpath(theirs) != os.path.realpath(ours):
        return Check(name, Level.FAIL, f"MPD's music_directory is {theirs}, [radio] music_directory "
                     f"is {ours}", f"set [radio] music_directory = \"{theirs}\"")
    known = f"{ours} (MPD's own)" if theirs else f"{ours}"
    try:
        store = StoreReader.open(config.store.path)
        try:
            paths = store.analysed_paths(PROBE_FILES)
        finally:
            store.close()
    except StoreError:
        paths = []  # the database check says why
    uris = UriMap(ours, config.library.paths)
    mapped = [(p, uri) for p in paths if (uri := uris.to_uri(p)) is not None]
    if paths and not mapped:
        return Check(name, Level.FAIL, f"the library ({', '.join(map(str, config.library.paths))}) is "
                     f"not under {ours}", "set [radio] music_directory to MPD's music_directory")
    for _path, uri in mapped:
        try:
            client.command("lsinfo", uri)
        except MPDCommandError as exc:
            if exc.code != ACK_NO_EXIST:
                raise
            continue
        return Check(name, Level.OK, f"{known}: MPD knows {uri}")
    if not mapped:
        return Check(name, Level.OK if theirs else Level.WARN, known if theirs else
                     f"{known}: nothing analysed yet to ask MPD about",
                     "run doctor again once a few files are analysed")
    path, uri = mapped[0]
    return Check(name, Level.FAIL, f"MPD does not know {uri} (tunescout's {path})",
                 "is [radio] music_directory MPD's music_directory? Has MPD indexed it (mpc update)?")


def check_cluster(config: Config) -> Iterator[Check]:
    """The scheduler reachable, how many workers, and whether each sees the library."""
    scheduler = config.workers.scheduler
    assert scheduler
    name = f"cluster {scheduler}"
    try:
        from distributed import Client

        from tunescout.cluster.remote import check_worker
    except ImportError:
        yield Check(name, Level.FAIL, "Dask is not installed", "pip install 'tunescout[cluster]'")
        return
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False, name="tunescout-doctor")
    except (OSError, TimeoutError, ValueError) as exc:
        yield Check(name, Level.FAIL, f"cannot reach the scheduler: {exc}",
                    "is `dask scheduler` running there, and its port (8786) open to this machine?")
        return
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
        roots = tuple(str(p) for p in config.library.paths)
        found = client.run(check_worker, roots, on_error="return") if workers else {}
    except (OSError, TimeoutError) as exc:
        yield Check(name, Level.FAIL, f"the scheduler stopped answering: {exc}", "see its log")
        return
    finally:
        client.close()
    if not workers:
        yield Check(name, Level.WARN, "reachable, no workers: the daemon analyses everything here",
                    f"on a machine that sees the library: tunescout worker {scheduler}")
        return
    threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
    refused = {a: (w if isinstance(w, str) else f"{type(w).__name__}: {w}") for a, w in found.items()}
    refused = {a: why for a, why in refused.items() if why}
    good = len(workers) - len(refused)
    level = Level.OK if not refused else Level.WARN if good else Level.FAIL
    yield Check(name, level, f"{len(workers)} workers ({threads} threads), {good} see the library",
                "" if not refused else "mount the library on those workers, or start them with "
                "--path-map SERVER_FOLDER=LOCAL_FOLDER")
    for address, why in sorted(refused.items()):
        yield Check(f"cluster worker {address}", Level.FAIL if not good else Level.WARN, why)
