#!/usr/bin/env bash
# The whole test suite: unit tests, byte-exact protocol tests, in-process
# server tests and the standalone daemon tests. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked
