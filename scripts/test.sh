#!/usr/bin/env bash
# The whole test suite: unit tests, byte-exact protocol tests, in-process
# server tests, standalone daemon tests, and the differential tests against a
# real Postfix 3.7 (private instances; Postfix is installed here when missing).
# Run from anywhere, as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/install-test-deps.sh
cargo test --release --locked
