"""The radio: keep MPD's queue `ahead` songs ahead of the one playing, chosen by how they sound.

One connection waits in `idle` for the player, the queue, the options, the database and
client-to-client messages; another sends the commands. The loop runs in one thread (the
daemon's radio thread, or the foreground `tunescout radio`) and never holds anything the
daemon's main loop waits for. It always leaves the user in charge: songs the user queued count
as queued, a cleared and stopped queue stays that way, random/repeat/single pause it, and
`mpc sendmessage tunescout pause|resume|reseed` is obeyed.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunescout.config import RadioConfig
from tunescout.errors import PlaylistError
from tunescout.radio.history import PlayHistory
from tunescout.radio.mpd import (
    ACK_NO_EXIST,
    ACK_PERMISSION,
    MPDClient,
    MPDCommandError,
    MPDError,
    as_dict,
    parse_address,
    records,
)
from tunescout.radio.picker import Pick, Picker
from tunescout.radio.status import Addition, RadioStatus
from tunescout.radio.uris import UriMap
from tunescout.store.reader import StoreReader

log = logging.getLogger(__name__)

CHANNEL = "tunescout"  # mpc sendmessage tunescout pause|resume|reseed
IDLE_SUBSYSTEMS = ("player", "playlist", "database", "options", "message")
POLL_S = 10.0  # at least this often: look at the database, and keep the command connection alive
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)  # reconnecting after MPD went away
EXTRA_PICKS = 5  # chosen beyond what is needed, for songs MPD has not indexed yet
MISMATCH_AFTER = 10  # chosen songs in a row MPD does not have: the music directories differ
_MODES = (("random", "random mode is on"), ("repeat", "repeat mode is on"), ("single", "single mode is on"))


class Radio:
    """Keep one MPD's queue filled; `run` until `stop` (from any thread)."""

    def __init__(self, config: RadioConfig, store: StoreReader, library_paths: Iterable[Path], *,
                 history: PlayHistory, on_status: Callable[[RadioStatus], None] | None = None) -> None:
        self.config = config
        self.address = parse_address(config.mpd)
        music = config.music_directory or Path("/")
        self.uris = UriMap(music, library_paths)
        self.picker = Picker(store, self.uris, config.rules)
        self.history = history
        self._on_status = on_status
        self.status = RadioStatus(mpd=str(self.address), wanted=config.ahead)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._cmd: MPDClient | None = None
        self._idle: MPDClient | None = None
        self._paused_by_user = False
        self._reseed = False
        self._ours: set[str] = set()  # song ids the radio added
        self._misses = 0
        self._told: tuple[str, str | None] | None = None

    # --- life cycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run` to return (thread-safe: a byte on the wake pipe)."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is full: it is awake anyway

    def close(self) -> None:
        self._disconnect()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def run(self) -> None:
        """Serve MPD until stopped: reconnect with backoff, say so once, never raise for MPD."""
        failures = 0
        last_error = ""
        while not self._stopping:
            try:
                self._connect()
                if failures:
                    log.info("radio connected to MPD at %s again", self.address,
                             extra={"EVENT": "radio_connected", "MPD": str(self.address)})
                failures = 0
                self._serve()
            except MPDError as exc:
                self._disconnect()
                if self._stopping:
                    break
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                reason = self._reason(exc)
                # once per outage; a refusal (a password) that follows a lost connection too
                if failures == 1 or (isinstance(exc, MPDCommandError) and reason != last_error):
                    log.warning("radio: %s; retrying (every %d s at most)", reason, BACKOFF_S[-1],
                                extra={"EVENT": "radio_disconnected", "MPD": str(self.address),
                                       "REASON": reason})
                last_error = reason
                self._set(state="disconnected", connected=False, reason=reason)
                self._sleep(delay)
        self._disconnect()

    def _reason(self, exc: MPDError) -> str:
        if isinstance(exc, MPDCommandError) and exc.code == ACK_PERMISSION:
            return (f"MPD at {self.address} does not allow {exc.command or 'the radio'} without a "
                    "password: set MPD_PASSWORD or [radio] password")
        return str(exc)

    def _connect(self) -> None:
        self._set(state="connecting", reason=None)
        self._cmd = MPDClient.connect(self.address, self.config.password)
        self._idle = MPDClient.connect(self.address, self.config.password)
        self._idle.command("subscribe", CHANNEL)
        if self._told is None or self._told[0] in ("connecting", "disconnected"):
            log.info("radio connected to MPD %s at %s", self._cmd.version, self.address,
                     extra={"EVENT": "radio_connected", "MPD": str(self.address)})
        self._set(connected=True, mpd_version=self._cmd.version)
        self._check_music_directory()

    def _disconnect(self) -> None:
        for client in (self._cmd, self._idle):
            if client is not None:
                client.close()
        self._cmd = self._idle = None

    def _sleep(self, seconds: float) -> None:
        select.select([self._wake_r], [], [], seconds)
        self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    # --- the loop ---------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._idle is not None
        self.picker.refresh(time.monotonic(), force=self.picker.catalogue is None)
        self._refill()
        while not self._stopping:
            self._idle.send_idle(IDLE_SUBSYSTEMS)
            readable, _, _ = select.select([self._idle.fileno(), self._wake_r], [], [], POLL_S)
            if self._stopping:
                return
            changed = self._idle.read_idle() if self._idle.fileno() in readable else self._idle.noidle()
            self._drain_wake()
            if "message" in changed:
                self._read_messages()
            self.picker.refresh(time.monotonic())
            self._refill()

    def _read_messages(self) -> None:
        assert self._idle is not None
        for message in records(self._idle.command("readmessages"), "channel"):
            if message.get("channel") != CHANNEL:
                continue
            text = message.get("message", "").strip().lower()
            if text == "pause":
                self._paused_by_user = True
            elif text == "resume":
                self._paused_by_user = False
            elif text == "reseed":
                self._reseed = True
                self._paused_by_user = False
            else:
                log.warning("radio: unknown message %r; known: pause, resume, reseed", text,
                            extra={"EVENT": "radio_message", "REASON": text})
                continue
            log.info("radio: %s (message)", text, extra={"EVENT": "radio_message", "REASON": text})

    # --- one refill -------------------------------------------------------------------------

    def _refill(self) -> None:
        """Look at MPD's state; add songs when it plays with fewer than `ahead` queued after."""
        cmd = self._cmd
        assert cmd is not None
        status = as_dict(cmd.command("status"))
        now = time.time()
        current = as_dict(cmd.command("currentsong")).get("file") if "song" in status else None
        if current:
            self.history.note(current, now)
        length = int(status.get("playlistlength", "0"))
        position = int(status["song"]) if "song" in status else -1
        ahead = max(0, length - position - 1) if position >= 0 else length
        self._set(ahead=ahead)
        why = self._why_not(status, length)
        if why is not None:
            self._tell(*why)
            return
        if self._reseed:
            self._drop_ours(position, length)
            length = int(as_dict(cmd.command("status")).get("playlistlength", "0"))
            ahead = max(0, length - position - 1)
        need = self.config.ahead - ahead
        recent = [] if self._reseed else self.history.recent(self.config.seeds + 1)
        seeds = list(dict.fromkeys(u for u in [current or "", *recent] if u))[: self.config.seeds]
        self._set(seeds=tuple(self.picker.label(u) for u in seeds))
        if need <= 0:
            self._tell("running", None)
            return
        queued = [r["file"] for r in records(cmd.command("playlistinfo", f"{position + 1}:{length}"), "file")]
        exclude = self.history.in_window(now)
        if self._reseed:  # start again from the song playing: the user's queued songs are
            exclude |= set(queued)  # only left out, the flow does not continue from them
            queued = []
        try:
            picks = self.picker.pick(seeds, queued, exclude, need + EXTRA_PICKS)
        except PlaylistError as exc:
            self._tell("waiting", str(exc))
            return
        self._reseed = False
        added = self._add(picks, need)
        self._set(ahead=ahead + added)
        if added < need and self._misses < MISMATCH_AFTER:
            self._tell("starved", f"only {ahead + added} of {self.config.ahead} songs fit the rules "
                       "outside the repeat window")
        elif self._misses < MISMATCH_AFTER:
            self._tell("running", None)

    def _why_not(self, status: dict[str, str], length: int) -> tuple[str, str] | None:
        """Return (state, reason) when the radio must not add now, else None."""
        if self._paused_by_user:
            return "paused", "paused by a message (mpc sendmessage tunescout resume)"
        for key, reason in _MODES:
            if status.get(key, "0") not in ("0", ""):
                return "paused", f"{reason} (turn it off to let the radio fill the queue)"
        state = status.get("state", "stop")
        if state == "stop" and length == 0:
            return "idle", "the queue is empty and stopped; play something to start the radio"
        if state != "play":
            return "waiting", f"MPD is {'paused' if state == 'pause' else 'stopped'}"
        return None

    def _add(self, picks: Sequence[Pick], need: int) -> int:
        """Add up to `need` picks in command lists; skip the ones MPD's database lacks."""
        cmd = self._cmd
        assert cmd is not None
        remaining, added = list(picks), 0
        while remaining and added < need:
            batch, remaining = remaining[: need - added], remaining[need - added:]
            try:
                results = cmd.command_list([("addid", [p.uri]) for p in batch])
                done, missing = batch, None
            except MPDCommandError as exc:
                if exc.code != ACK_NO_EXIST:
                    raise
                done, missing = batch[: exc.index], batch[exc.index]
                remaining = batch[exc.index + 1:] + remaining
                results = [[] for _ in done]  # the ids of a list cut short are not returned
            for pick, pairs in zip(done, results, strict=True):
                self._added(pick, as_dict(pairs).get("Id"))
            added += len(done)
            self._misses = 0 if done else self._misses
            if missing is not None:
                self._skipped(missing)
        return added

    def _added(self, pick: Pick, song_id: str | None) -> None:
        if song_id:
            self._ours.add(song_id)
        path = next(iter(self.uris.candidates(pick.uri)), None)
        log.info("radio added %s: %s", pick.label, pick.reason,
                 extra={"EVENT": "radio_added", "TRACK_PATH": str(path or pick.uri), "MPD_URI": pick.uri,
                        "REASON": pick.reason})
        addition = Addition(pick.uri, pick.label, pick.reason, time.time())
        self._set(last_added=addition, added=self.status.added + 1)

    def _skipped(self, pick: Pick) -> None:
        self._misses += 1
        self._set(skipped=self.status.skipped + 1)
        log.debug("radio: %s is not in MPD's database (yet); skipped", pick.uri,
                  extra={"EVENT": "radio_skipped", "MPD_URI": pick.uri})
        if self._misses == MISMATCH_AFTER:
            self._tell("mismatch", f"MPD's database has none of the last {MISMATCH_AFTER} songs chosen: "
                       f"is [radio] music_directory ({self.config.music_directory}) MPD's "
                       "music_directory, and has MPD finished updating its database?", warn=True)

    def _drop_ours(self, position: int, length: int) -> None:
        """Remove the songs the radio queued after the current one (reseed), never the user's."""
        cmd = self._cmd
        assert cmd is not None
        after = records(cmd.command("playlistinfo", f"{position + 1}:{length}"), "file")
        ids = [r["Id"] for r in after if r.get("Id") in self._ours]
        if ids:
            cmd.command_list([("deleteid", [i]) for i in ids])
        self._ours.difference_update(ids)

    def _check_music_directory(self) -> None:
        """Over a local socket MPD tells its music_directory: warn when it is not the radio's."""
        assert self._cmd is not None
        try:
            theirs = as_dict(self._cmd.command("config")).get("music_directory")
        except MPDCommandError:
            return  # only local clients may ask
        ours = self.config.music_directory
        if theirs and ours and os.path.realpath(theirs) != os.path.realpath(ours):
            log.warning("radio: MPD's music_directory is %s, [radio] music_directory is %s", theirs, ours,
                        extra={"EVENT": "radio_mismatch", "REASON": "music_directory"})

    # --- telling --------------------------------------------------------------------------

    def _tell(self, state: str, reason: str | None, *, warn: bool = False) -> None:
        """Set the state; log it once when it changes (the journal says why the radio waits)."""
        if self._told != (state, reason):
            previous = self._told
            self._told = (state, reason)
            if state == "running" and previous is not None and previous[0] != "running":
                log.info("radio running: keeping %d songs ahead", self.config.ahead,
                         extra={"EVENT": "radio_resumed"})
            elif state != "running":
                log.log(logging.WARNING if warn else logging.INFO, "radio %s: %s", state, reason,
                        extra={"EVENT": f"radio_{state}", "REASON": reason or ""})
        self._set(state=state, reason=reason)

    def _set(self, **changes: Any) -> None:
        new = replace(self.status, **changes)
        if new != self.status:
            self.status = replace(new, updated_at=time.time())
            if self._on_status is not None:
                self._on_status(self.status)
