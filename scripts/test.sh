#!/usr/bin/env bash
# The whole test suite: unit tests, byte-exact protocol tests, in-process
# server tests, standalone daemon tests, and the differential tests against a
# real Postfix 3.7 (private instances; Postfix is installed here when missing).
# Run from anywhere, as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-test-deps.sh
# Everything with the worker as shipped: connection threads, a connection
# moving to its thread with its third request.
cargo test --release --locked --features postfix-tests
# The suites that drive the worker (in-process, standalone, under master(8)),
# again with every request in the event loop (proxymap_connection_threads =
# no), then with every request on a thread.
PROXYMAP_TEST_THREADS=no cargo test --release --locked --features postfix-tests --test server --test standalone --test fd_limit --test load \
    --test postfix_master --test postfix_diff --test postfix_tables --test postfix_verify \
    --test file_tables_stress
PROXYMAP_TEST_THREADS=0 cargo test --release --locked --features postfix-tests --test server --test standalone --test load --test postfix_master \
    --test postfix_diff --test file_tables_stress
# The README's first command, literally, in a fresh clone.
bash scripts/test-readme.sh
# Coverage-guided fuzzing of the parsers: every corpus replayed (a failure
# fails the suite), then 30 s of fuzzing a target, whose new findings are
# reported without failing the suite (a random find must not block every
# landing; FUZZ_STRICT=1, the default of scripts/fuzz.sh, makes them fail).
FUZZ_SECS=${FUZZ_SECS:-30} FUZZ_STRICT=${FUZZ_STRICT:-0} bash scripts/fuzz.sh
