#!/usr/bin/env bash
# Build the Debian package proxymap-rs_VERSION-1_ARCH.deb with dpkg-deb.
#
#   scripts/build-deb.sh [--binary PATH] [--out DIR]
#
# Without --binary it runs `cargo build --release --locked` first. The
# package holds the stripped binary as $daemon_directory/proxymap-rs, the man
# page, the documentation and examples, and a systemd unit for standalone
# mode (not enabled). It has no maintainer scripts: installing or removing it
# never touches master.cf or main.cf (docs/postfix.md shows the two
# `postconf` lines that switch over, and back).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out="target/deb"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        *) echo "build-deb.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [ -z "$binary" ]; then
    cargo build --release --locked
    binary=target/release/proxymap
fi

# (No pipes that end early: with pipefail a writer killed by SIGPIPE fails
# the script.)
version="$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)-1"
arch="$(dpkg --print-architecture)"
root="$out/root"
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/usr/lib/postfix/sbin" "$root/usr/share/man/man8" \
    "$root/usr/share/doc/proxymap-rs/examples" "$root/lib/systemd/system" "$root/etc/proxymap-rs"

install -m 755 "$binary" "$root/usr/lib/postfix/sbin/proxymap-rs"
strip --strip-unneeded "$root/usr/lib/postfix/sbin/proxymap-rs"
gzip -9n < man/proxymap-rs.8 > "$root/usr/share/man/man8/proxymap-rs.8.gz"
install -m 644 README.md docs/*.md "$root/usr/share/doc/proxymap-rs/"
install -m 644 examples/proxymap.toml master.cf.example "$root/usr/share/doc/proxymap-rs/examples/"
install -m 644 packaging/proxymap-rs.service "$root/lib/systemd/system/"
install -m 644 packaging/proxymap-rs.toml "$root/etc/proxymap-rs/proxymap.toml"
cat > "$root/usr/share/doc/proxymap-rs/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: proxymap-rs

Files: *
Copyright: The proxymap-rs developers
License: MIT
EOF
echo /etc/proxymap-rs/proxymap.toml > "$root/DEBIAN/conffiles"

# Depends: the packages of the libraries the binary links to directly.
libs=$(readelf -d "$root/usr/lib/postfix/sbin/proxymap-rs" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
depends=""
for lib in $libs; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found {print $NF; found = 1}')
    [ -n "$path" ] || { echo "build-deb.sh: $lib not found by ldconfig" >&2; exit 1; }
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true)
    pkg=${pkg%%:*}
    [ -n "$pkg" ] || { echo "build-deb.sh: no package owns $path" >&2; exit 1; }
    case ",$depends," in *",$pkg,"*) ;; *) depends="${depends:+$depends,}$pkg" ;; esac
done
depends="$(echo "$depends" | tr ',' '\n' | sort | paste -sd, | sed 's/,/, /g'), postfix (>= 3.7)"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat > "$root/DEBIAN/control" <<EOF
Package: proxymap-rs
Version: $version
Architecture: $arch
Maintainer: proxymap-rs developers <postmaster@localhost>
Installed-Size: $size
Depends: $depends
Section: mail
Priority: optional
Description: memory-safe drop-in replacement for Postfix's proxymap(8)
 Serves the proxymap and proxywrite services of Postfix (proxy:TYPE:NAME
 tables) with the same replies, allowlists and table files as Postfix 3.7's
 proxymap, with connection threads, pooled database connections and
 timeouts. Installed as /usr/lib/postfix/sbin/proxymap-rs; master.cf is not
 changed: see /usr/share/doc/proxymap-rs/postfix.md to switch over.
EOF

deb="$out/proxymap-rs_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
