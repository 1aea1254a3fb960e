#!/usr/bin/env bash
# Install tunescout and its system packages, then run the daemon or the test suite.
#
#   bash scripts/setup.sh run     install, then run `tunescout run` in the foreground
#   bash scripts/setup.sh test    install with the test extras, then run the whole test suite
#   bash scripts/setup.sh install install only
#
# As root the virtual environment goes to /opt/tunescout/venv (readable by systemd's DynamicUser,
# linked as /usr/local/bin/tunescout); otherwise to ~/.local/share/tunescout/venv. Set
# TUNESCOUT_VENV to choose another place. Needs Debian 12 (or later) with Python 3.11+.
set -euo pipefail

action="${1:-install}"
shift || true
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${TUNESCOUT_PYTHON:-/usr/bin/python3}"
if [ "$(id -u)" = 0 ]; then
  venv="${TUNESCOUT_VENV:-/opt/tunescout/venv}"
else
  venv="${TUNESCOUT_VENV:-$HOME/.local/share/tunescout/venv}"
fi

say() { printf 'setup: %s\n' "$*" >&2; }

install_system_packages() {
  # systemd-python builds against libsystemd; the rest make a venv that can compile it.
  # Extra arguments are packages only the tests need.
  local wanted=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev "$@")
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    say "missing system packages: ${missing[*]}; run as root, or: sudo apt-get install ${missing[*]}"
    exit 1
  fi
  say "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_venv() {
  local extras="$1"
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  say "installing tunescout${extras} into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade "$here$extras" 2>&1 \
    | grep -v '^WARNING: Location' || true
  "$venv/bin/python" -c "import tunescout, systemd.daemon" \
    || { say "the installation is incomplete"; exit 1; }
  if [ "$(id -u)" = 0 ] && [ "$venv" = /opt/tunescout/venv ]; then
    ln -sf "$venv/bin/tunescout" /usr/local/bin/tunescout
  fi
}

case "$action" in
  install)
    install_system_packages
    install_venv ""
    say "done: $venv/bin/tunescout"
    ;;
  run)
    install_system_packages
    install_venv ""
    # On the built-in defaults (no config file) the daemon watches ~/Music (or $XDG_MUSIC_DIR) and
    # refuses a library folder that does not exist: make the default one, empty, on a new machine.
    if [ -z "${TUNESCOUT_CONFIG:-}" ] && [ ! -e "$HOME/.config/tunescout/tunescout.toml" ] \
        && [ ! -e /etc/tunescout/tunescout.toml ] && [ ! -e "${XDG_MUSIC_DIR:-$HOME/Music}" ]; then
      say "creating ${XDG_MUSIC_DIR:-$HOME/Music}, the default library folder"
      mkdir -p "${XDG_MUSIC_DIR:-$HOME/Music}"
    fi
    exec "$venv/bin/tunescout" "$@" run
    ;;
  test)
    # rsync: tests/integration/test_changes.py copies an album in with it; mpd and mpc: the radio
    # tests (tests/integration/test_radio.py) start a private MPD and drive it with mpc
    install_system_packages rsync mpd mpc
    install_venv "[test]"
    cd "$here"
    set +e
    "$venv/bin/python" -m pytest "$@"
    status=$?
    set -e
    if [ "$status" = 5 ]; then say "pytest collected no tests"; exit 1; fi
    exit "$status"
    ;;
  *)
    say "usage: bash scripts/setup.sh run|test|install [ARGS]"
    exit 2
    ;;
esac
