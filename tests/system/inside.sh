#!/bin/bash
# The system test, run as root inside /work/shared/tools/systemd-sandbox.sh (a real systemd 252 as
# PID 1) with systemd/ as the unit folder:
#
#   SANDBOX_BIND="$PWD" ../shared/tools/systemd-sandbox.sh systemd/ "$PWD/tests/system/inside.sh"
#
# A test drop-in points ExecStart at TUNESCOUT_BIN (default: the checkout's .venv), the library at
# /srv/music (a tmpfs of the sandbox) and the analyser at the cheap test one (tests/support/analysers.py).
# Everything else is the unit as shipped: DynamicUser, StateDirectory, ReadOnlyPaths, the filters.
set -euo pipefail

REPO=$(cd "$(dirname "$(realpath "$0")")/../.." && pwd)
BIN=${TUNESCOUT_BIN:-$REPO/.venv/bin/tunescout}
LIB=/srv/music
CFG_DIR=/run/tunescout-test
CFG=$CFG_DIR/tunescout.toml
DROPIN_DIR=/run/systemd/system/tunescout.service.d
export SYSTEMD_PAGER= SYSTEMD_COLORS=0

step() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
diag() {
  echo "---- systemctl status tunescout"
  systemctl status --no-pager -l tunescout 2>&1 || true
  echo "---- journalctl -u tunescout (last 60 lines)"
  journalctl --no-pager -u tunescout -n 60 2>&1 || true
}
fail() { printf 'FAIL: %s\n' "$*"; diag; exit 1; }
# wait_until SECONDS WHAT CMD...: poll CMD until it succeeds, or fail saying WHAT
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what (not within the deadline)"
    sleep 0.2
  done
}
prop() { systemctl show -p "$1" --value tunescout; }
prop_is() { [ "$(prop "$1")" = "$2" ]; }
cli() { STATE_DIRECTORY=/var/lib/tunescout "$BIN" --config "$CFG" "$@"; }
analysed_at_least() { [ "$(cli status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["analysed"])')" -ge "$1" ]; }
journal_has() { journalctl --sync; journalctl --no-pager -u tunescout -o cat "$@" | grep -q .; }

[ -x "$BIN" ] || { echo "FAIL: no tunescout at $BIN"; exit 1; }

step "install the test drop-in and config"
mkdir -p "$LIB" "$CFG_DIR" "$DROPIN_DIR"
chmod 755 "$LIB" "$CFG_DIR"
cat >"$CFG" <<EOF
[library]
paths = ["$LIB"]
[intake]
settle = "0.5s"
[workers]
analyser = "support.analysers:by_name"
max_workers = 1
[memory]
min_available = "50 MB"
pause_above_percent = 99
resume_below_percent = 98
[log]
level = "debug"
EOF
chmod 644 "$CFG"
cat >"$DROPIN_DIR/test.conf" <<EOF
[Service]
ExecStart=
ExecStart=$BIN run
Environment=TUNESCOUT_CONFIG=$CFG
Environment=PYTHONPATH=$REPO/tests
ReadOnlyPaths=$LIB
# the watchdog test below aborts the daemon: no core file anywhere
LimitCORE=0
EOF
systemctl daemon-reload
systemd-analyze verify /run/systemd/system/tunescout.service || fail "verify with the test drop-in"
ok "drop-in installed"

step "systemctl start returns once READY=1 arrived"
timeout 120 systemctl start tunescout || fail "systemctl start tunescout"
[ "$(prop ActiveState)/$(prop SubState)" = active/running ] || fail "not active/running after start"
status=$(prop StatusText)
case "$status" in *analysed*queue*) ;; *) fail "StatusText after start: '$status'";; esac
ok "active/running; StatusText: $status"
MAINPID=$(prop MainPID)
journal_has EVENT=started || fail "no EVENT=started in the journal"
ok "journal: EVENT=started (main pid $MAINPID)"

step "runs as a dynamic user with its state and cache directories"
uid=$(awk '/^Uid:/{print $2}' "/proc/$MAINPID/status")
[ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || fail "main process runs as uid $uid, not a dynamic user"
ok "uid $uid"
tr '\0' '\n' <"/proc/$MAINPID/environ" | grep -qx 'NUMBA_CACHE_DIR=/var/cache/tunescout/numba' \
  || fail "NUMBA_CACHE_DIR is not /var/cache/tunescout/numba"
tr '\0' '\n' <"/proc/$MAINPID/environ" | grep -qx 'STATE_DIRECTORY=/var/lib/tunescout' \
  || fail "STATE_DIRECTORY is not /var/lib/tunescout"
ok "NUMBA_CACHE_DIR and STATE_DIRECTORY set"
wait_until 30 "the database in /var/lib/private/tunescout" test -s /var/lib/private/tunescout/tunescout.db
[ "$(readlink /var/lib/tunescout)" = private/tunescout ] || fail "/var/lib/tunescout is not a link to private/tunescout"
[ "$(stat -c %u /var/lib/private/tunescout/tunescout.db)" = "$uid" ] || fail "the database is not the service's"
ok "database: /var/lib/private/tunescout/tunescout.db, owned by uid $uid"

step "the library is read-only to the service"
if out=$(nsenter -t "$MAINPID" -m touch "$LIB/probe" 2>&1); then
  rm -f "$LIB/probe"; fail "the service's mount namespace can write to $LIB"
fi
case "$out" in *"Read-only file system"*) ;; *) fail "unexpected error writing to $LIB: $out";; esac
ok "writing $LIB in the service's namespace: Read-only file system (even as root)"
if nsenter -t "$MAINPID" -m touch /var/lib/tunescout/.probe-writable 2>/dev/null; then
  rm -f /var/lib/private/tunescout/.probe-writable
  ok "the state directory stays writable"
else
  fail "the state directory is not writable in the service's namespace"
fi

step "a file dropped into the library is analysed"
printf 'not really audio\n' >/srv/.song.tmp && mv /srv/.song.tmp "$LIB/song.mp3"
printf 'not really audio either\n' >/srv/.fail.tmp && mv /srv/.fail.tmp "$LIB/fail.mp3"
wait_until 60 "song.mp3 analysed (tunescout status)" analysed_at_least 1
cli status || fail "tunescout status"
cli show "$LIB/song.mp3" --json >/dev/null || fail "tunescout show $LIB/song.mp3"
ok "tunescout status / show see it"
wait_until 30 "EVENT=analysed in the journal" journal_has EVENT=analysed TRACK_PATH="$LIB/song.mp3"
wait_until 30 "EVENT=failed in the journal" journal_has EVENT=failed ERROR_KIND=decode
journalctl --no-pager -u tunescout -o json EVENT=analysed | python3 -c '
import json, sys
entry = json.loads(sys.stdin.readline())
assert entry["_SYSTEMD_UNIT"] == "tunescout.service", entry
assert entry["SYSLOG_IDENTIFIER"] == "tunescout", entry
assert int(entry["CHILD_PID"]) > 0 and entry["BATCH_ID"], entry
' || fail "the EVENT=analysed entry lacks fields"
ok "journalctl -u tunescout EVENT=analysed / EVENT=failed"
status=$(prop StatusText)
case "$status" in *analysed*queue*) ok "StatusText: $status";; *) fail "StatusText: '$status'";; esac

step "systemctl reload"
timeout 60 systemctl reload tunescout || fail "systemctl reload"
wait_until 30 "EVENT=reloaded in the journal" journal_has EVENT=reloaded
[ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" = "$MAINPID" ] || fail "not the same active daemon after reload"
ok "reloaded in place (pid $MAINPID)"

step "systemctl stop ends with Result=success"
timeout 90 systemctl stop tunescout || fail "systemctl stop"
[ "$(prop Result)" = success ] || fail "Result=$(prop Result) after stop"
[ "$(prop ExecMainStatus)" = 0 ] || fail "ExecMainStatus=$(prop ExecMainStatus)"
journal_has EVENT=stopped || fail "no EVENT=stopped in the journal"
ok "Result=success, exit status 0"

step "the analysis stack (librosa, numba JIT, fork + setrlimit + SCM_RIGHTS) runs under the unit's sandboxing"
# the shipped unit, as a oneshot running tests/system/stack_probe.py with the daemon's Python
PYTHON=$(dirname "$BIN")/python
sed -e 's#^Type=notify#Type=oneshot#' -e '/^\(WatchdogSec\|ExecReload\|NotifyAccess\|Restart\|TimeoutStartSec\)=/d' \
    -e "s#^ExecStart=.*#ExecStart=$PYTHON $REPO/tests/system/stack_probe.py\nTimeoutStartSec=300#" \
    /run/systemd/system/tunescout.service >/run/systemd/system/tunescout-probe.service
systemctl daemon-reload
timeout 320 systemctl start tunescout-probe || true
journalctl --sync
journalctl --no-pager -u tunescout-probe -o cat | grep -v '^\(Starting\|Finished\|tunescout-probe\)' || true
[ "$(systemctl show -p Result --value tunescout-probe)" = success ] \
  && journalctl --no-pager -u tunescout-probe -o cat | grep -q 'STACK PROBE OK' \
  || fail "the analysis stack failed under the unit's sandboxing (see above)"
ok "librosa + numba + zygote-style fork under DynamicUser, the syscall filter and ProtectSystem=strict"

step "a stuck main loop is killed by the watchdog"
cat >"$DROPIN_DIR/watchdog.conf" <<EOF
[Service]
WatchdogSec=4s
Restart=no
EOF
systemctl daemon-reload
timeout 120 systemctl start tunescout || fail "systemctl start (watchdog test)"
sleep 10  # 2.5 watchdog periods: a healthy main loop keeps pinging
[ "$(prop ActiveState)/$(prop SubState)" = active/running ] || fail "a healthy daemon did not survive WatchdogSec=4s"
ok "healthy for 10 s under WatchdogSec=4s"
# another writer holds the database: the main loop's next write waits (up to 30 s) and no pings go out
python3 - /var/lib/private/tunescout/tunescout.db <<'EOF' &
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
time.sleep(60)
EOF
LOCKER=$!
sleep 1
printf 'stuck\n' >/srv/.stuck.tmp && mv /srv/.stuck.tmp "$LIB/stuck.mp3"
wait_until 60 "Result=watchdog" prop_is Result watchdog
kill "$LOCKER" 2>/dev/null || true
wait "$LOCKER" 2>/dev/null || true
ok "Result=watchdog, ActiveState=$(prop ActiveState)"
rm -f "$DROPIN_DIR/watchdog.conf"
systemctl daemon-reload

echo
echo "ALL SYSTEM CHECKS PASSED"
