//! Compatibility levels (`major[.minor[.patch]]`) as Postfix compares them.

/// Converts a compatibility level to a comparable tuple. The error is the
/// warning text Postfix logs.
pub(crate) fn compat_level_from_string(s: &str) -> Result<(u64, u64, u64), String> {
    let bad = || format!("malformed compatibility level syntax: \"{s}\"");
    // Postfix limits minor and patch to 10 bits each.
    const MAX_MINOR: u64 = 0x3ff;
    let mut parts = s.split('.');
    let mut nums = [0u64; 3];
    let mut count = 0;
    for (i, part) in parts.by_ref().take(3).enumerate() {
        nums[i] = parse_num(part).ok_or_else(bad)?;
        count = i + 1;
    }
    if parts.next().is_some() || count == 0 {
        return Err(bad());
    }
    // The major number must fit in what remains of a long after 20 bits.
    if nums[0] > (i64::MAX as u64 >> 20) || nums[1] > MAX_MINOR || nums[2] > MAX_MINOR {
        return Err(bad());
    }
    Ok((nums[0], nums[1], nums[2]))
}

/// strtol-style: optional leading whitespace and '+', then digits. Negative
/// values are out of range for levels anyway.
fn parse_num(part: &str) -> Option<u64> {
    let t = part.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(compat_level_from_string("0"), Ok((0, 0, 0)));
        assert_eq!(compat_level_from_string("3.6"), Ok((3, 6, 0)));
        assert_eq!(compat_level_from_string("3.10.2"), Ok((3, 10, 2)));
        assert!(compat_level_from_string("3.10.2").unwrap() > compat_level_from_string("3.9").unwrap());
        for bad in ["", "x", "3.", "3.x", "1.2.3.4", "-1", "3.1024"] {
            assert_eq!(compat_level_from_string(bad), Err(format!("malformed compatibility level syntax: \"{bad}\"")));
        }
    }
}
