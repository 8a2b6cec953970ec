#!/usr/bin/env bash
# Make sure Debian's chromium is there for the browser tests (tests/browser.py drives it).
# The browser comes from apt, never from `playwright install`: machines here reach package
# registries only. Where we cannot install it (not root, no apt-get) the browser tests skip,
# so this says so in one line and succeeds; an apt-get that fails is shown and fails.
set -euo pipefail

command -v chromium >/dev/null && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "chromium not found and cannot install it here (needs root and apt-get):" \
         "browser tests will be skipped; install it with: apt-get install chromium"
    exit 0
fi

echo "Installing chromium from Debian for the browser tests..."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet on success (dpkg alone prints hundreds of lines); the whole log on failure.
if ! { apt-get update -q \
       && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } \
       >"$log" 2>&1; then
    cat "$log" >&2
    echo "installing chromium failed (log above)" >&2
    exit 1
fi
