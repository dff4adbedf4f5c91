#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer, on the nightly toolchain):
# builds the targets of fuzz/ once, then for each target runs its checked-in
# corpus (fuzz/corpus/<target>/) as regression tests and fuzzes it for
# FUZZ_SECS (45) seconds into a scratch corpus under target/ (the checked-in one
# is never written). Prints one line per target: executions, coverage
# (libFuzzer's cov: edges and ft: features), crashes. Exits non-zero when a
# target crashed, hung (over 10 s on one input) or went over 2 GiB; with
# FUZZ_STRICT=0 (as the test suite runs it) only the corpus replay fails it,
# and a new finding of the timed run is reported with its file.
#
#   bash scripts/fuzz.sh                      # every target, 45 s each
#   FUZZ_SECS=5 bash scripts/fuzz.sh          # a quick pass
#   FUZZ_TARGETS="request attr" bash scripts/fuzz.sh
#
# A finding is left as target/fuzz/runs/<target>.artifacts/crash-...; replay
# it with `cargo +nightly fuzz run <target> <file>` (in fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECS:-45}
target_dir=${FUZZ_TARGET_DIR:-$PWD/target/fuzz}
# The Rust toolchain's own tools (cargo +nightly) may live in ~/.cargo/bin.
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# Release with debug assertions (integer overflow panics), AddressSanitizer
# for the FFI wrappers in src/sys/.
(cd fuzz && cargo +nightly fuzz build -O --debug-assertions --target-dir "$target_dir")
bin=$target_dir/x86_64-unknown-linux-gnu/release
targets=${FUZZ_TARGETS:-$(cd fuzz && cargo +nightly fuzz list)}
runs=$target_dir/runs
mkdir -p "$runs"
summary=$runs/summary.txt
: >"$summary"
failed=0
for t in $targets; do
    log=$runs/$t.log
    artifacts=$runs/$t.artifacts/
    rm -rf "$artifacts" "$runs/$t.corpus"
    mkdir -p "$artifacts" "$runs/$t.corpus"
    seeds=$(find "fuzz/corpus/$t" -type f | wc -l)
    # The checked-in corpus, every input once.
    status=ok
    if ! "$bin/$t" -runs=0 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts" \
        "fuzz/corpus/$t" >"$runs/$t.regression.log" 2>&1; then
        status=FAILED
        failed=1
    fi
    # New inputs go to the scratch corpus (the first directory named).
    rc=0
    "$bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "$runs/$t.corpus" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    crashes=$(find "$artifacts" -type f | wc -l)
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        if [ "${FUZZ_STRICT:-1}" = 1 ]; then
            failed=1
        else
            echo "fuzz: $t: NEW FINDING in the timed run (reported, not failing: FUZZ_STRICT=0); make it a unit test and add it to fuzz/corpus/$t"
        fi
    fi
    line=$(printf '%-15s seeds %3s (regression %s)  execs %9s in %ss  cov %5s  ft %6s  crashes %s' \
        "$t" "$seeds" "$status" "${execs:-?}" "$secs" "${cov:-?}" "${ft:-?}" "$crashes")
    echo "fuzz: $line"
    echo "$line" >>"$summary"
    if [ "$crashes" -ne 0 ] || [ "$status" != ok ]; then
        find "$artifacts" -type f | sed 's/^/fuzz:     finding: /'
        grep -m3 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" "$runs/$t.regression.log" | sed 's/^/fuzz:     /' || true
    fi
done
exit "$failed"
