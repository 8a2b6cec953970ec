#!/usr/bin/env bash
# Usage: tests/install-debian.sh COMMAND PACKAGE WHAT
# Make sure COMMAND is there for tests that drive a real program (chromium for the browser tests,
# promtool for the alert rules), installing Debian's PACKAGE if it is not. Programs come from apt,
# never from a download at run time: machines here reach package registries only. Where we cannot
# install (not root, no apt-get) the tests that need COMMAND skip, so this says so in one line
# and succeeds; an apt-get that fails is shown and fails.
set -euo pipefail
command=$1 package=$2 what=$3

command -v "$command" >/dev/null && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "$command not found and cannot install it here (needs root and apt-get):" \
         "$what will be skipped; install it with: apt-get install $package"
    exit 0
fi

echo "Installing $package from Debian for the $what..."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Quiet on success (dpkg alone prints hundreds of lines); the whole log on failure.
if ! { apt-get update -q \
       && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package"; } \
       >"$log" 2>&1; then
    cat "$log" >&2
    echo "installing $package failed (log above)" >&2
    exit 1
fi
# A package that enables a service (prometheus does) is for its command only here.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ] && systemctl is-enabled "$package" >/dev/null 2>&1; then
    systemctl disable --now "$package" >/dev/null 2>&1 || true
fi
