#!/bin/bash
# The socket unit under a real systemd, run as root inside /work/shared/tools/systemd-sandbox.sh with
# systemd/ as the unit folder (tests/system/test_systemd.py starts it):
#
#   SANDBOX_BIND="$PWD" ../shared/tools/systemd-sandbox.sh systemd/ "$PWD/tests/system/socket.sh"
#
# tunescout.socket as shipped (127.0.0.1:8765) and the service as shipped (PrivateNetwork=yes, no IP
# sockets of its own), plus a test drop-in (ExecStart → TUNESCOUT_BIN, the cheap analyser, a config
# without [http]). Only the socket is started: the first request starts the daemon, which answers
# it on the socket systemd made, from its own empty network namespace.
set -euo pipefail

REPO=$(cd "$(dirname "$(realpath "$0")")/../.." && pwd)
BIN=${TUNESCOUT_BIN:-$REPO/.venv/bin/tunescout}
LIB=/srv/music
CFG_DIR=/run/tunescout-test
CFG=$CFG_DIR/tunescout.toml
DROPIN_DIR=/run/systemd/system/tunescout.service.d
API=http://127.0.0.1:8765
export SYSTEMD_PAGER= SYSTEMD_COLORS=0

step() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
diag() {
  echo "---- systemctl status tunescout.socket tunescout"
  systemctl status --no-pager -l tunescout.socket tunescout 2>&1 || true
  echo "---- journalctl -u tunescout.socket -u tunescout (last 60 lines)"
  journalctl --no-pager -u tunescout.socket -u tunescout -n 60 2>&1 || true
}
fail() { printf 'FAIL: %s\n' "$*"; diag; exit 1; }
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what (not within the deadline)"
    sleep 0.2
  done
}
prop() { systemctl show -p "$1" --value "${2:-tunescout}"; }
cli() { STATE_DIRECTORY=/var/lib/tunescout "$BIN" --config "$CFG" "$@"; }
# ask PATH of the API; print the body, fail on anything but 200
ask() {
  python3 - "$API$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as answer:
    assert answer.status == 200, answer.status
    sys.stdout.write(answer.read().decode())
EOF
}
analysed() { [ "$(ask /api/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["analysed"])')" -ge "$1" ]; }

[ -x "$BIN" ] || { echo "FAIL: no tunescout at $BIN"; exit 1; }

step "install the test drop-in and a config without [http]"
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
EOF
chmod 644 "$CFG"
cat >"$DROPIN_DIR/test.conf" <<EOF
[Service]
ExecStart=
ExecStart=$BIN run
Environment=TUNESCOUT_CONFIG=$CFG
Environment=PYTHONPATH=$REPO/daemon:$REPO/tests
ReadOnlyPaths=$LIB
LimitCORE=0
EOF
# the cheap analyser's duration is a file's size / 1000: 40 s, over the playlists' 30 s minimum
for i in 1 2 3 4; do { printf 'not really audio %s\n' "$i"; head -c 40000 /dev/zero; } >"$LIB/song$i.mp3"; done
systemctl daemon-reload
systemd-analyze verify /run/systemd/system/tunescout.socket /run/systemd/system/tunescout.service \
  || fail "verify the socket and the service with the test drop-in"
ok "installed"

step "systemctl start tunescout.socket: systemd listens, the daemon is not running yet"
systemctl start tunescout.socket || fail "systemctl start tunescout.socket"
[ "$(prop ActiveState tunescout.socket)" = active ] || fail "the socket is not active"
[ "$(prop ActiveState)" = inactive ] || fail "the service started before any connection"
case "$(prop Listen tunescout.socket)" in *127.0.0.1:8765*) ;; *) fail "Listen: $(prop Listen tunescout.socket)";; esac
ok "listening on 127.0.0.1:8765; tunescout.service inactive"

step "the first request starts the daemon, which answers it on systemd's socket"
status=$(ask /api/status) || fail "GET /api/status through the socket"
case "$status" in *'"analysed"'*) ;; *) fail "/api/status answered: $status";; esac
[ "$(prop ActiveState)" = active ] || fail "tunescout.service is not active after the request"
case "$(prop TriggeredBy)" in *tunescout.socket*) ;; *) fail "TriggeredBy: $(prop TriggeredBy)";; esac
MAINPID=$(prop MainPID)
ok "answered; tunescout.service active (pid $MAINPID), triggered by tunescout.socket"

step "the daemon runs without a network of its own and opened no IP socket"
[ "$(readlink "/proc/$MAINPID/ns/net")" != "$(readlink /proc/self/ns/net)" ] \
  || fail "the daemon shares the host's network namespace (PrivateNetwork=yes expected)"
python3 - "$MAINPID" <<'EOF' || fail "the daemon's sockets are not just the one systemd passed"
import os, sys
pid = sys.argv[1]
held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
# the listener systemd made is in the sandbox's namespace (this shell's): 127.0.0.1:8765, LISTEN (0A)
rows = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
ours = {f"socket:[{row[9]}]" for row in rows if row[1] == "0100007F:223D" and row[3] == "0A"}
# and the daemon's own namespace has no TCP socket at all: it opened none
own = [line for table in ("tcp", "tcp6") if os.path.exists(f"/proc/{pid}/net/{table}")
       for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]]
assert not own, own
assert ours and ours <= held, (ours, held)
EOF
journalctl --sync
journalctl --no-pager -u tunescout -o cat EVENT=http_listening | grep -q "the socket systemd passed" \
  || fail "no EVENT=http_listening naming the socket systemd passed"
ok "private network namespace; it holds the host's 127.0.0.1:8765 listener; journal: EVENT=http_listening"

step "similar tracks, asked through the socket"
wait_until 90 "the four files analysed (/api/status)" analysed 4
ID=$(cli show "$LIB/song1.mp3" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') \
  || fail "tunescout show --json"
wait_until 30 "similar_tracks answers" ask "/api/similar_tracks?item_id=$ID&n=3"
ask "/api/similar_tracks?item_id=$ID&n=3" | python3 -c '
import json, sys
items = json.load(sys.stdin)
assert len(items) == 3 and all(set(i) == {"item_id", "title", "author", "album", "distance"} for i in items), items
' || fail "similar_tracks did not answer three tracks"
ok "similar_tracks: three tracks"

step "systemctl stop tunescout: the socket stays, and the next request starts the daemon again"
systemctl stop tunescout || fail "systemctl stop tunescout"
[ "$(prop Result)" = success ] || fail "Result=$(prop Result) after stop"
[ "$(prop ActiveState tunescout.socket)" = active ] || fail "the socket went away with the service"
ask /api/status >/dev/null || fail "GET /api/status after the stop"
[ "$(prop ActiveState)" = active ] || fail "not started again by the request"
ok "started again by the next request"
systemctl stop tunescout tunescout.socket

step "without the socket, http.listen is refused clearly: the unit allows no IP sockets"
printf '[http]\nlisten = "127.0.0.1:8765"\n' >>"$CFG"
if timeout 120 systemctl start tunescout; then fail "the daemon started with http.listen and no socket"; fi
journalctl --sync
journalctl --no-pager -u tunescout -o cat | grep -q "may not open IP sockets.*enable tunescout.socket" \
  || fail "no line saying the unit allows no IP sockets and naming tunescout.socket"
journalctl --no-pager -u tunescout -o cat | grep -q Traceback && fail "a traceback in the journal"
ok "$(journalctl --no-pager -u tunescout -o cat | grep -m1 'may not open IP sockets')"
systemctl reset-failed tunescout

echo
echo "ALL SOCKET CHECKS PASSED"
