#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine: Postfix 3.7 and
# its map plugins (the reference the differential tests compare against).
# Configures nothing system-wide: the tests run private Postfix instances.
set -euo pipefail
PKGS="postfix postfix-lmdb postfix-cdb postfix-pcre postfix-sqlite"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: need root to install:$missing" >&2
    exit 1
fi
# "No configuration": the package writes no main.cf and starts nothing.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost.localdomain" | debconf-set-selections
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
