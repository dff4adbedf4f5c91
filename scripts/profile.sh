#!/bin/bash
# User-space instructions per lookup of one standalone worker, counted by
# valgrind's callgrind (repeatable where wall-clock figures are not; see
# docs/performance.md, "Where a request's time goes").
#
#   bash scripts/profile.sh [static|hash|lmdb|cdb] [LOOKUPS]
#
# Builds a 100,000-entry table with Postfix's postmap (hash, lmdb, cdb; needs
# scripts/install-test-deps.sh), starts `proxymap standalone` with one worker
# under callgrind, sends 2,000 lookups to warm up, then LOOKUPS (20,000) over
# 4 connections, and prints the worker's instructions per lookup. The raw
# profile stays in the printed directory (callgrind_annotate --inclusive=yes FILE).
set -euo pipefail
type=${1:-static}
n=${2:-20000}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
(cd "$root" && cargo build --release --quiet)
bin=$root/target/release/proxymap

dir=$(mktemp -d /tmp/proxymap-profile.XXXXXX)
python3 - "$dir" <<'EOF'
import sys
d = sys.argv[1]
with open(f"{d}/t100k", "w") as f:
    for i in range(100000):
        f.write(f"key{i}@example.com value{i}\n")
with open(f"{d}/keys", "w") as f:
    for i in range(0, 100000, 7):
        f.write(f"key{i}@example.com\n")
EOF
case $type in
static) table=static:OK ;;
hash | lmdb | cdb)
    table=$type:$dir/t100k
    : >"$dir/main.cf"
    postmap -c "$dir" "$table"
    ;;
*) echo "usage: $0 [static|hash|lmdb|cdb] [LOOKUPS]" >&2; exit 2 ;;
esac
echo "proxy_read_maps = proxy:$table" >"$dir/main.cf"
cat >"$dir/proxymap.toml" <<EOF
config_directory = "$dir"
socket_directory = "$dir/sock"
max_use = 0
max_idle = 0
ipc_timeout = 3600
log = "stderr"
[proxymap]
workers = 1
[proxywrite]
workers = 1
EOF

valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$dir/cg.%p" \
    "$bin" standalone --config "$dir/proxymap.toml" 2>"$dir/valgrind.log" &
master=$!
trap 'kill $master 2>/dev/null || true' EXIT
for _ in $(seq 120); do [ -S "$dir/sock/proxymap" ] && break; sleep 0.5; done
[ -S "$dir/sock/proxymap" ] || { echo "no socket; see $dir/valgrind.log" >&2; exit 1; }

load() { # LOOKUPS: over 4 connections, every reply must be status 0
    python3 - "$dir/sock/proxymap" "$table" "$dir/keys" "$1" <<'EOF'
import socket, sys, threading
path, table, keyfile, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
keys = open(keyfile).read().split()
def attrs(*kv):
    return b"".join(x.encode() + b"\0" for x in kv) + b"\0"
def read_list(s, buf):
    # name NUL value NUL ... up to an empty name
    pos = 0
    while True:
        ends = []
        for _ in range(2):
            while (k := buf[0].find(b"\0", pos)) < 0:
                data = s.recv(65536)
                if not data:
                    raise SystemExit("connection closed")
                buf[0] += data
            ends.append(k)
            if k == pos and len(ends) == 1:
                out, buf[0] = buf[0][: k + 1], buf[0][k + 1 :]
                return out
            pos = k + 1
def client(c, errors):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    buf = [b""]
    read_list(s, buf)
    for j in range(c, n, 4):
        s.sendall(attrs("request", "lookup", "table", table, "flags", "540737", "key", keys[j % len(keys)]))
        if not read_list(s, buf).startswith(b"status\x000\x00"):
            errors.append(j)
    s.close()
errors = []
ts = [threading.Thread(target=client, args=(c, errors)) for c in range(4)]
for t in ts: t.start()
for t in ts: t.join()
if errors:
    raise SystemExit(f"{len(errors)} lookups were not OK")
EOF
}

load 2000
worker=$(pgrep -P $master | head -1)
callgrind_control -d "$worker" >/dev/null 2>&1
load "$n"
callgrind_control -d "$worker" >/dev/null 2>&1
kill $master
wait $master 2>/dev/null || true
trap - EXIT
file=$(ls -t "$dir"/cg."$worker".* | head -1)
total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
rm -rf "$dir"/t100k* "$dir/keys" "$dir/sock"
echo "$type: $((total / n)) instructions per lookup ($total over $n lookups; profile $file)"
