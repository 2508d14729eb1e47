#!/usr/bin/env bash
# Make sure Debian's Chromium (/usr/bin/chromium) is present for the browser tests.
# Playwright cannot fetch its own browser builds here, so the tests drive this one.
# Installs nothing when it is already there. When it cannot be installed this says why
# and exits 0 outside CI (the browser tests then skip, naming the reason) but 1 in CI,
# where the browser tests must run.
set -uo pipefail

CHROMIUM=${SCOREBOARD_CHROMIUM:-/usr/bin/chromium}

have_inter() { command -v fc-list >/dev/null && fc-list : family | grep -qx "Inter"; }

if [ -x "$CHROMIUM" ]; then
  echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo present) at $CHROMIUM"
  exit 0
fi

fail() {
  echo "WARNING: $1" >&2
  echo "         The browser tests (tests/browser) need Debian's chromium package at $CHROMIUM." >&2
  if [ "${CI:-}" = "true" ]; then
    echo "ERROR: in CI the browser tests must run." >&2
    exit 1
  fi
  exit 0
}

command -v apt-get >/dev/null || fail "chromium is missing and apt-get is not available to install it."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    fail "chromium is missing and installing it needs root (as root: apt-get install chromium)."
  fi
fi

echo "chromium not found; installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || fail "apt-get update failed."
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null || fail "apt-get install chromium failed."
[ -x "$CHROMIUM" ] || fail "the chromium package installed, but $CHROMIUM is not there."
# The screenshot in docs/ is rendered with Inter; without it the widget falls back to other sans fonts.
have_inter || $SUDO apt-get install -y -qq --no-install-recommends fonts-inter >/dev/null \
  || echo "note: fonts-inter could not be installed; screenshots use a fallback font" >&2
echo "chromium: $("$CHROMIUM" --version 2>/dev/null) at $CHROMIUM"
