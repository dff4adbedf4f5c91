#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine: Postfix 3.7 and
# its map plugins (the reference the differential tests compare against), the
# sqlite3 command that builds the sqlite: tests' database, and PostgreSQL and
# MariaDB for the pgsql: and mysql: tests, and memcached for the memcache:
# tests, which run server instances of their own.
# Configures nothing system-wide: with the "No configuration" preseed the
# package writes no main.cf and starts nothing; the tests run private instances.
# PostgreSQL's package may create and start its default cluster: the tests
# leave it alone (they never use its socket or port); so with MariaDB's and
# memcached's. slapd is preseeded to configure nothing; the ldap tests run
# slapd instances of their own.
set -euo pipefail
. "$(dirname "$0")/apt-install-missing.sh"
apt_install_missing install-test-deps postfix postfix-lmdb postfix-cdb postfix-pcre postfix-sqlite sqlite3 \
    postgresql postfix-pgsql mariadb-server postfix-mysql slapd ldap-utils postfix-ldap memcached
