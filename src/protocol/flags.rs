//! Postfix dictionary flags (`DICT_FLAG_*`, util/dict.h in 3.7) and status codes.
//!
//! Values are part of the wire protocol: clients send them in `flags`, and the
//! IMPL bits of an open reply decide how clients probe partial keys.

pub(crate) const DUP_WARN: u32 = 1 << 0;
pub(crate) const DUP_IGNORE: u32 = 1 << 1;
pub(crate) const TRY0NULL: u32 = 1 << 2;
pub(crate) const TRY1NULL: u32 = 1 << 3;
pub(crate) const FIXED: u32 = 1 << 4;
pub(crate) const PATTERN: u32 = 1 << 5;
pub(crate) const LOCK: u32 = 1 << 6;
pub(crate) const DUP_REPLACE: u32 = 1 << 7;
pub(crate) const SYNC_UPDATE: u32 = 1 << 8;
pub(crate) const DEBUG: u32 = 1 << 9;
pub(crate) const NO_REGSUB: u32 = 1 << 11;
pub(crate) const NO_PROXY: u32 = 1 << 12;
pub(crate) const NO_UNAUTH: u32 = 1 << 13;
pub(crate) const FOLD_FIX: u32 = 1 << 14;
pub(crate) const FOLD_MUL: u32 = 1 << 15;
pub(crate) const OPEN_LOCK: u32 = 1 << 16;
pub(crate) const BULK_UPDATE: u32 = 1 << 17;
pub(crate) const MULTI_WRITER: u32 = 1 << 18;
pub(crate) const UTF8_REQUEST: u32 = 1 << 19;
pub(crate) const UTF8_ACTIVE: u32 = 1 << 20;
pub(crate) const SRC_RHS_IS_FILE: u32 = 1 << 21;

pub(crate) const FOLD_ANY: u32 = FOLD_FIX | FOLD_MUL;
pub(crate) const PARANOID: u32 = NO_REGSUB | NO_PROXY | NO_UNAUTH;
/// Bits a table implementation sets; the only ones a 3.7 client keeps from an open reply.
pub(crate) const IMPL_MASK: u32 = FIXED | PATTERN | MULTI_WRITER;
/// Bits a client may change from one request to the next.
pub(crate) const RQST_MASK: u32 =
    FOLD_ANY | LOCK | DUP_REPLACE | DUP_WARN | DUP_IGNORE | SYNC_UPDATE | PARANOID | UTF8_REQUEST;
/// Instance bits: everything else. Two opens with different instance bits are two tables.
pub(crate) const INST_MASK: u32 = !(IMPL_MASK | RQST_MASK);

/// Names in the order `dict_flags_str()` prints them.
const NAMES: &[(u32, &str)] = &[
    (DUP_WARN, "warn_dup"),
    (DUP_IGNORE, "ignore_dup"),
    (TRY0NULL, "try0null"),
    (TRY1NULL, "try1null"),
    (FIXED, "fixed"),
    (PATTERN, "pattern"),
    (LOCK, "lock"),
    (DUP_REPLACE, "replace"),
    (SYNC_UPDATE, "sync_update"),
    (DEBUG, "debug"),
    (NO_REGSUB, "no_regsub"),
    (NO_PROXY, "no_proxy"),
    (NO_UNAUTH, "no_unauth"),
    (FOLD_FIX, "fold_fix"),
    (FOLD_MUL, "fold_mul"),
    (OPEN_LOCK, "open_lock"),
    (BULK_UPDATE, "bulk_update"),
    (MULTI_WRITER, "multi_writer"),
    (UTF8_REQUEST, "utf8_request"),
    (UTF8_ACTIVE, "utf8_active"),
    (SRC_RHS_IS_FILE, "src_rhs_is_file"),
];

/// `dict_flags_str()`: names joined with `|`, unknown bits once as `0x<hex>`, "" for 0.
pub(crate) fn flags_str(flags: u32) -> String {
    let mut out = String::new();
    let mut rest = flags;
    for &(bit, name) in NAMES {
        if flags & bit != 0 {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        if !out.is_empty() {
            out.push('|');
        }
        out.push_str(&format!("0x{rest:x}"));
    }
    out
}

/// `PROXY_STAT_*`: the status codes of every reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NoKey = 1,
    Retry = 2,
    Bad = 3,
    Deny = 4,
    Config = 5,
}

impl Status {
    pub fn code(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_postfix_37() {
        assert_eq!(IMPL_MASK, 0x0004_0030);
        assert_eq!(RQST_MASK, 0x0008_F9C3);
        assert_eq!(INST_MASK, 0xFFF3_060C);
        assert_eq!(INST_MASK as i32, -850420);
    }

    #[test]
    fn flags_str_like_dict_flags_str() {
        assert_eq!(flags_str(0), "");
        assert_eq!(flags_str(OPEN_LOCK), "open_lock");
        assert_eq!(flags_str(28), "try0null|try1null|fixed");
        assert_eq!(flags_str(1 << 10 | 1 << 30 | FIXED), "fixed|0x40000400");
    }
}
