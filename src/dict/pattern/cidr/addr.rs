//! Addresses as Postfix reads and prints them: glibc `inet_pton()` and
//! `inet_ntop()` on 128-bit integers (IPv4 in the low 32 bits).

/// A lookup key: family by the presence of `:`, then inet_pton().
pub(super) fn parse_key(key: &[u8]) -> Option<(bool, u128)> {
    let v6 = key.contains(&b':');
    parse_addr(key, v6).map(|a| (v6, a))
}

pub(super) fn parse_addr(s: &[u8], v6: bool) -> Option<u128> {
    if v6 {
        inet_pton6(s)
    } else {
        inet_pton4(s).map(|a| u128::from(u32::from_be_bytes(a)))
    }
}

/// glibc inet_pton(AF_INET): exactly four decimal octets, no leading zeros.
pub(super) fn inet_pton4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut octets = 0;
    let mut saw_digit = false;
    let mut cur: u32 = 0;
    for &ch in s {
        if ch.is_ascii_digit() {
            if saw_digit && cur == 0 {
                return None;
            }
            cur = cur * 10 + u32::from(ch - b'0');
            if cur > 255 {
                return None;
            }
            if !saw_digit {
                octets += 1;
                if octets > 4 {
                    return None;
                }
                saw_digit = true;
            }
            out[octets - 1] = cur as u8;
        } else if ch == b'.' && saw_digit {
            if octets == 4 {
                return None;
            }
            cur = 0;
            saw_digit = false;
        } else {
            return None;
        }
    }
    (octets == 4).then_some(out)
}

/// glibc inet_pton(AF_INET6): up to four hex digits a group, one `::`, an
/// optional dotted-quad tail.
pub(super) fn inet_pton6(s: &[u8]) -> Option<u128> {
    let mut tmp = [0u8; 16];
    let mut tp = 0usize;
    let mut colonp: Option<usize> = None;
    let mut src = s;
    if src.is_empty() {
        return None;
    }
    if src[0] == b':' {
        src = &src[1..];
        if src.first() != Some(&b':') {
            return None;
        }
    }
    let mut curtok = 0usize;
    let mut digits = 0;
    let mut val: u32 = 0;
    let mut i = 0;
    while i < src.len() {
        let ch = src[i];
        i += 1;
        if let Some(d) = (ch as char).to_digit(16) {
            if digits == 4 {
                return None;
            }
            val = (val << 4) | d;
            digits += 1;
            continue;
        }
        if ch == b':' {
            curtok = i;
            if digits == 0 {
                if colonp.is_some() {
                    return None;
                }
                colonp = Some(tp);
                continue;
            } else if i == src.len() {
                return None;
            }
            if tp + 2 > 16 {
                return None;
            }
            tmp[tp] = (val >> 8) as u8;
            tmp[tp + 1] = val as u8;
            tp += 2;
            digits = 0;
            val = 0;
            continue;
        }
        if ch == b'.' && tp + 4 <= 16 {
            if let Some(v4) = inet_pton4(&src[curtok..]) {
                tmp[tp..tp + 4].copy_from_slice(&v4);
                tp += 4;
                digits = 0;
                break;
            }
        }
        return None;
    }
    if digits > 0 {
        if tp + 2 > 16 {
            return None;
        }
        tmp[tp] = (val >> 8) as u8;
        tmp[tp + 1] = val as u8;
        tp += 2;
    }
    if let Some(c) = colonp {
        if tp == 16 {
            return None;
        }
        let n = tp - c;
        tmp.copy_within(c..tp, 16 - n);
        tmp[c..16 - n].fill(0);
        tp = 16;
    }
    (tp == 16).then(|| u128::from_be_bytes(tmp))
}

/// glibc inet_ntop(): dotted quad, or RFC 5952-style IPv6 with the embedded
/// IPv4 forms `::a.b.c.d` and `::ffff:a.b.c.d`.
pub(super) fn format_addr(v6: bool, addr: u128) -> String {
    if !v6 {
        return std::net::Ipv4Addr::from(addr as u32).to_string();
    }
    let bytes = addr.to_be_bytes();
    let words: Vec<u16> = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    // Longest run of zero words (first on ties), if at least two long.
    let (mut best, mut cur): ((usize, usize), Option<(usize, usize)>) = ((0, 0), None);
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            let run = cur.map_or((i, 1), |(b, l)| (b, l + 1));
            cur = Some(run);
            if run.1 > best.1 {
                best = run;
            }
        } else {
            cur = None;
        }
    }
    let best = (best.1 >= 2).then_some(best);
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if let Some((base, len)) = best {
            if i >= base && i < base + len {
                if i == base {
                    out.push(':');
                }
                i += 1;
                continue;
            }
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best.is_some_and(|(base, len)| base == 0 && (len == 6 || (len == 5 && words[5] == 0xffff))) {
            out.push_str(&format!("{}.{}.{}.{}", bytes[12], bytes[13], bytes[14], bytes[15]));
            break;
        }
        out.push_str(&format!("{:x}", words[i]));
        i += 1;
    }
    if best.is_some_and(|(base, len)| base + len == 8) {
        out.push(':');
    }
    out
}
