#!/usr/bin/env bash
# Runs the README's first command block exactly as written, in a fresh clone
# of this repository's HEAD (a full build of its own), and checks that it
# prints the demo's answer. The daemon it leaves in the background is stopped
# by its process group, which this script started.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/proxymap-readme.XXXXXX)
pgid=""
cleanup() {
    [ -n "$pgid" ] && kill -TERM -- "-$pgid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
git clone -q "$repo" "$tmp/clone"
# The first ```sh block of README.md.
block=$(awk '/^```sh$/ { inside = 1; next } inside && /^```$/ { exit } inside { print }' "$tmp/clone/README.md")
[ -n "$block" ] || { echo "test-readme: no sh block in README.md" >&2; exit 1; }
echo "test-readme: running in a fresh clone: $block"
cd "$tmp/clone"
# A session of its own, so that the daemon it starts can be stopped as a group.
setsid bash -c "$block" >"$tmp/out" 2>"$tmp/err" </dev/null &
pgid=$!
status=0
wait "$pgid" || status=$?
answer=$(tail -n 1 "$tmp/out")
if [ "$status" != 0 ] || [ "$answer" != "alice@example.com, bob@example.com" ]; then
    echo "test-readme: FAILED (exit $status), printed: $answer" >&2
    tail -n 20 "$tmp/err" >&2
    exit 1
fi
echo "test-readme: printed \"$answer\""
echo "1 passed, 0 failed"
