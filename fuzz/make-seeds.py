#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the project's own
golden, unit and mutation tests: the string and byte-string literals of the
named test files that look like the target's input, framed as the target
reads them (see src/fuzz_api.rs). Run from the repository root; files are
named by content hash, so running it again only adds what is new.

    python3 fuzz/make-seeds.py
"""
import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_SEEDS = 60
MAX_BYTES = 16384

LITERAL = re.compile(rb'(b?)r(#*)"(.*?)"\2|(b?)"((?:[^"\\]|\\.)*)"', re.S)


def unescape(body):
    """A Rust (byte) string literal's escapes; a `\\` line end skips the
    newline and the next line's leading white space."""
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != 0x5C:
            out.append(c)
            i += 1
            continue
        e = body[i + 1:i + 2]
        i += 2
        if e == b"n":
            out += b"\n"
        elif e == b"t":
            out += b"\t"
        elif e == b"r":
            out += b"\r"
        elif e == b"0":
            out += b"\0"
        elif e in (b"\\", b'"', b"'"):
            out += e
        elif e == b"x":
            out.append(int(body[i:i + 2], 16))
            i += 2
        elif e == b"u":
            end = body.index(b"}", i)
            out += chr(int(body[i + 1:end], 16)).encode()
            i = end + 1
        elif e == b"\n":
            while i < len(body) and body[i] in b" \t\n":
                i += 1
        else:
            out += b"\\" + e
    return bytes(out)


def literals(*paths):
    for path in paths:
        full = os.path.join(ROOT, path)
        if not os.path.exists(full):
            continue
        text = open(full, "rb").read()
        for m in LITERAL.finditer(text):
            if m.group(3) is not None:
                yield m.group(3)
            else:
                yield unescape(m.group(5))


def write(target, seeds):
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    seen = set()
    n = 0
    for s in seeds:
        if len(s) > MAX_BYTES or s in seen:
            continue
        seen.add(s)
        name = hashlib.sha1(s).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(s)
        n += 1
        if n >= MAX_SEEDS:
            break
    print(f"{target}: {n} seeds", file=sys.stderr)


def fixture(name):
    return open(os.path.join(ROOT, "tests", "fixtures", name), "rb").read()


requests = [l for l in literals("tests/protocol_golden.rs", "src/protocol/request.rs", "tests/server.rs")
            if l.startswith(b"request\0") or l == b"\0" or l.startswith(b"table\0")]
replies = [l for l in literals("tests/protocol_golden.rs", "src/protocol/attr.rs") if b"\0" in l]
write("request", requests)
write("attr", requests[:30] + replies)

maincf = [l for l in literals("src/config/maincf.rs", "src/config/tests.rs", "src/config/mod.rs")
          if b"=" in l and len(l) > 2]
write("maincf", maincf)

expand = [l for l in literals("src/config/expand.rs", "src/config/tests.rs") if b"$" in l]
defs = b"a = 1\nb = $a$a\nc = ${a:x}${b?y}\nd = ${a<3?lt:ge}\n"
write("expand", [defs + b"\0" + e for e in expand] + [b"\0" + e for e in expand[:10]])

# Rule shapes of the set-equivalence (mutation) tests and the rule lines of
# the regexp/pcre unit and Postfix-differential tests.
shapes = list(literals("src/dict/pattern/rules/set_equivalence.rs"))
shapes = [s.replace(b"{}", b"foo") for s in shapes if s.startswith((b"/", b"!/"))]
keys = b"\0\x01foo@example.com\0FOO.net\0Subject: foo\0xfooy\0"
rule_lines = [l for l in literals("src/dict/pattern/regexp.rs", "src/dict/pattern/pcre.rs",
                                   "src/dict/pattern/parse.rs", "src/dict/pattern/rules.rs",
                                   "tests/postfix_pattern.rs")
              if l.lstrip().startswith((b"/", b"!/", b"if", b"IF", b"endif"))]
rules = [b"\n".join(shapes[i:i + 6]) + keys for i in range(0, len(shapes), 3)]
rules += [l + keys for l in rule_lines]
write("regexp_rules", rules)
write("pcre_rules", rules)
pats = [s.split(b"\t")[0] for s in shapes]
pats = [p[p.index(b"/") + 1:p.rindex(b"/")] for p in pats if p.count(b"/") >= 2]
write("translate", [bytes([sel]) + p + b"\0" + subj
                    for i, p in enumerate(pats)
                    for sel, subj in [(2 * (i % 8), b"foo@example.com"), (2 * (i % 8) + 1, b"xfooy")]])

cidr = [l for l in literals("src/dict/pattern/cidr/tests.rs", "src/dict/pattern/cidr.rs", "tests/postfix_pattern/cidr.rs")
        if re.search(rb"[0-9a-f][.:][0-9a-f]", l) and (b" " in l or b"\t" in l)]
ckeys = b"\0\x00" + b"\0".join([b"1.1.1.1", b"2.2.2.2", b"2001:db8::1", b"10.1.2.3", b"::ffff:1.2.3.4"])
write("cidr_rules", [c + ckeys for c in cidr])

texts = [fixture(n) for n in ("basic.txt", "db.txt", "changed.txt", "nonul.txt")]
texts += [l for l in literals("src/dict/file/texthash.rs", "src/dict/postmap_text.rs") if b"\n" in l]
write("texthash", [t + b"\0\x09" + b"\0".join(t.split()[:4]) for t in texts])

pages = []
for db in ("hash.db", "hash-nonul.db"):
    data = fixture(db)
    for key in fixture("db.txt").split(b"\n")[:2]:
        k = key.split()[0] + (b"\0" if "nonul" not in db else b"") if key.split() else b"k"
        pages.append(bytes([len(k)]) + k + data)
write("hash_pages", pages)

cfs = [l for l in literals("src/dict/db_common/cf_tests.rs", "src/dict/sql/sqlite_tests.rs",
                           "src/dict/sql/pgsql_tests.rs", "src/dict/sql/mysql_tests.rs",
                           "src/dict/sql/mod.rs", "src/dict/ldap/table_tests.rs",
                           "src/dict/net/memcache_tests.rs", "src/dict/db_common/domain_tests.rs")
       if b" = " in l or b"=" in l and b"\n" in l]
write("db_cf", cfs)

nets = [l for l in literals("src/dict/net/netstring.rs", "src/dict/net/socketmap_tests.rs")
        if re.match(rb"^[0-9]*:", l)]
write("netstring", [bytes([sel]) + n for n in nets for sel in (7, 255)])

mc = [l for l in literals("src/dict/net/memcache_proto.rs", "src/dict/net/memcache_tests.rs")
      if l.startswith((b"VALUE", b"END", b"STORED", b"DELETED", b"NOT_FOUND", b"SERVER_ERROR", b"ERROR"))]
write("memcache_reply", [bytes([sel]) + m for m in mc for sel in (3, 127)])
