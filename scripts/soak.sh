#!/usr/bin/env bash
# On demand, not in CI: the benchmark's persistent load (PM_SOAK_CONNS
# clients, default 16, looking keys up in a hash table) against our proxymap
# and then Postfix 3.7's, each under a private Postfix master(8) for
# SOAK_SECS (default 3600), sampling the proxymap processes' RSS and open
# descriptors every SOAK_EVERY seconds (default 10). Prints the series and
# first/last/max per server. Processes are not recycled during the run
# (max_use = 1000000), so a leak shows instead of being reset.
#   SOAK_SECS=120 scripts/soak.sh
#   SOAK_SERVERS=ours scripts/soak.sh        (ours only)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
PM_LOAD_MODES=soak \
PM_SOAK_SECS="${SOAK_SECS:-3600}" \
PM_SOAK_EVERY="${SOAK_EVERY:-10}" \
PM_LOAD_SERVERS="${SOAK_SERVERS:-ours,postfix}" \
    cargo bench --locked --bench load
