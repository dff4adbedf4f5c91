#!/usr/bin/env bash
# The whole test suite: unit tests, byte-exact protocol tests, in-process
# server tests, standalone daemon tests, and the differential tests against a
# real Postfix 3.7 (installed here when missing). Run from anywhere, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --release --locked
