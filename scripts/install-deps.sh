#!/usr/bin/env bash
# Install what building proxymap needs on a fresh Debian machine: the Berkeley
# DB 5.3 headers and library (hash:/btree: tables; Postfix 3.7 on Debian is
# built against the same 5.3). A C compiler comes with Rust's usual setup
# (build-essential); it is installed too when cc is missing.
# Idempotent and silent when everything is present. Run as root.
set -euo pipefail
PKGS="libdb5.3-dev"
command -v cc >/dev/null 2>&1 || PKGS="$PKGS gcc libc6-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install:$missing" >&2
    exit 1
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
