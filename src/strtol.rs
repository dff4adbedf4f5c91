//! C's base-10 number conversions as glibc performs them: `strtol`, `strtoul`
//! and `sscanf("%u%c")`. Postfix reads main.cf numbers with strtol and the
//! integers of the attribute protocol with sscanf, so overflow, signs and
//! white space must come out exactly as there. Pure functions, shared by
//! `config` and `protocol`.

/// A conversion's result: the value, the index where parsing stopped (0 when
/// there were no digits, as C's `endptr` then points at the start) and
/// whether the value overflowed (C's ERANGE; the value is then saturated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Converted<T> {
    pub(crate) value: T,
    pub(crate) end: usize,
    pub(crate) overflow: bool,
}

/// C `isspace()` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The part both conversions share: white space, an optional sign, decimal
/// digits. Returns (negative, magnitude or None on u64 overflow, end);
/// None when there are no digits.
fn scan(s: &[u8]) -> Option<(bool, Option<u64>, usize)> {
    let mut i = s.iter().take_while(|&&c| is_space(c)).count();
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = s[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let magnitude = s[i..i + digits]
        .iter()
        .try_fold(0u64, |v, &c| v.checked_mul(10).and_then(|v| v.checked_add(u64::from(c - b'0'))));
    Some((negative, magnitude, i + digits))
}

/// `strtol(s, &end, 10)` with a 64-bit long: out of range saturates at
/// `i64::MIN`/`i64::MAX` with `overflow` set.
pub(crate) fn strtol(s: &[u8]) -> Converted<i64> {
    let Some((negative, magnitude, end)) = scan(s) else {
        return Converted { value: 0, end: 0, overflow: false };
    };
    let value = match (negative, magnitude) {
        (false, Some(m)) => i64::try_from(m).ok(),
        (true, Some(m)) => 0i64.checked_sub_unsigned(m),
        (_, None) => None,
    };
    match value {
        Some(value) => Converted { value, end, overflow: false },
        None => Converted { value: if negative { i64::MIN } else { i64::MAX }, end, overflow: true },
    }
}

/// `strtoul(s, &end, 10)` with a 64-bit unsigned long: a magnitude beyond
/// `u64::MAX` saturates there with `overflow` set (whatever the sign); any
/// other value with a minus sign is negated modulo 2^64, so "-1" is
/// `u64::MAX` and "-18446744073709551615" is 1, both without overflow.
pub(crate) fn strtoul(s: &[u8]) -> Converted<u64> {
    match scan(s) {
        None => Converted { value: 0, end: 0, overflow: false },
        Some((_, None, end)) => Converted { value: u64::MAX, end, overflow: true },
        Some((negative, Some(m), end)) => {
            Converted { value: if negative { m.wrapping_neg() } else { m }, end, overflow: false }
        }
    }
}

/// `sscanf(s, "%u%c", &n, &junk) == 1` on glibc: a whole-string strtoul whose
/// result (saturated or not) is truncated to 32 bits. None when there are no
/// digits or anything follows them.
pub(crate) fn scan_uint(s: &[u8]) -> Option<u32> {
    // Nine digits and nothing else, the usual case, cannot overflow.
    if !s.is_empty() && s.len() <= 9 {
        let mut value = 0u32;
        let mut digits = true;
        for &c in s {
            let d = c.wrapping_sub(b'0');
            digits &= d < 10;
            value = value.wrapping_mul(10).wrapping_add(u32::from(d));
        }
        if digits {
            return Some(value);
        }
    }
    let c = strtoul(s);
    (c.end != 0 && c.end == s.len()).then_some(c.value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> (i64, usize, bool) {
        let c = strtol(s.as_bytes());
        (c.value, c.end, c.overflow)
    }

    fn ul(s: &str) -> (u64, usize, bool) {
        let c = strtoul(s.as_bytes());
        (c.value, c.end, c.overflow)
    }

    // Expected values from glibc (a C program calling strtol/strtoul/sscanf).
    #[test]
    fn strtol_saturates_like_glibc() {
        assert_eq!(l("9223372036854775807"), (i64::MAX, 19, false));
        assert_eq!(l("9223372036854775808"), (i64::MAX, 19, true));
        assert_eq!(l("-9223372036854775808"), (i64::MIN, 20, false));
        assert_eq!(l("-9223372036854775809"), (i64::MIN, 20, true));
        assert_eq!(l(" \t+12x"), (12, 5, false));
        assert_eq!(l("-"), (0, 0, false));
        assert_eq!(l(" x"), (0, 0, false));
        assert_eq!(l(""), (0, 0, false));
    }

    #[test]
    fn strtoul_negates_modulo_2_64_like_glibc() {
        assert_eq!(ul("-1"), (u64::MAX, 2, false));
        assert_eq!(ul("-18446744073709551615"), (1, 21, false));
        assert_eq!(ul("-18446744073709551614"), (2, 21, false));
        assert_eq!(ul("18446744073709551615"), (u64::MAX, 20, false));
        assert_eq!(ul("18446744073709551616"), (u64::MAX, 20, true));
        assert_eq!(ul("-18446744073709551616"), (u64::MAX, 21, true));
        assert_eq!(ul("-0"), (0, 2, false));
    }

    #[test]
    fn scan_uint_is_sscanf_u() {
        assert_eq!(scan_uint(b"0"), Some(0));
        assert_eq!(scan_uint(b"524353"), Some(524353));
        assert_eq!(scan_uint(b"  \t16384"), Some(16384));
        assert_eq!(scan_uint(b"+7"), Some(7));
        assert_eq!(scan_uint(b"-0"), Some(0));
        assert_eq!(scan_uint(b"-1"), Some(u32::MAX));
        assert_eq!(scan_uint(b"-4294967295"), Some(1));
        assert_eq!(scan_uint(b"-4294967296"), Some(0));
        assert_eq!(scan_uint(b"4294967296"), Some(0));
        assert_eq!(scan_uint(b"4294967295"), Some(u32::MAX));
        assert_eq!(scan_uint(b"999999999"), Some(999_999_999));
        // glibc: strtoul gives 1 (no ERANGE), so sscanf stores 1.
        assert_eq!(scan_uint(b"-18446744073709551615"), Some(1));
        assert_eq!(scan_uint(b"18446744073709551616"), Some(u32::MAX));
        assert_eq!(scan_uint(b"-18446744073709551616"), Some(u32::MAX));
        assert_eq!(scan_uint(b"99999999999999999999999"), Some(u32::MAX));
        assert_eq!(scan_uint(b"-99999999999999999999999"), Some(u32::MAX));
        for bad in [&b""[..], b" ", b"1 ", b"0x10", b"abc", b"-", b"12a", b"1/", b":", b"+ 1"] {
            assert_eq!(scan_uint(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
