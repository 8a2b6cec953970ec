#!/usr/bin/env bash
# Make sure promtool is there for the alert-rule tests (tests/test_operations.py): it comes with
# Debian's prometheus package. As with chromium, where we cannot install it (not root, no
# apt-get) those tests skip, so this says so in one line and succeeds; an apt-get that fails is
# shown and fails.
set -euo pipefail

command -v promtool >/dev/null && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "promtool not found and cannot install it here (needs root and apt-get):" \
         "alert-rule tests will be skipped; install it with: apt-get install prometheus"
    exit 0
fi

echo "Installing promtool (Debian's prometheus package) for the alert-rule tests..."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -q \
       && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; } \
       >"$log" 2>&1; then
    cat "$log" >&2
    echo "installing prometheus failed (log above)" >&2
    exit 1
fi
# The package enables a Prometheus service; the tests need only promtool.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
