#!/usr/bin/env bash
# Install what building proxymap needs on a fresh Debian machine: the Berkeley
# DB 5.3 headers and library (hash:/btree: tables; Postfix 3.7 on Debian is
# built against the same 5.3), the SQLite 3 library and headers (sqlite:
# tables, through the same libsqlite3 as Postfix's sqlite plugin), libpq
# (pgsql: tables) and libmariadb (mysql: tables, the client library Debian's
# postfix-mysql uses), both found with pkg-config, and OpenLDAP's libldap
# (ldap: tables, the library postfix-ldap links). A C compiler comes with Rust's
# usual setup (build-essential); it is installed too when cc is missing.
# Idempotent and silent when everything is present. Run as root.
set -euo pipefail
. "$(dirname "$0")/apt-install-missing.sh"
PKGS="libdb5.3-dev libsqlite3-dev libpq-dev libmariadb-dev libldap-dev pkg-config"
command -v cc >/dev/null 2>&1 || PKGS="$PKGS gcc libc6-dev"
apt_install_missing install-deps $PKGS
