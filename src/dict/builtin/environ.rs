//! `environ:name`: the process environment (Postfix dict_env.c). The name is
//! ignored. Lookup returns the variable named by the key, update sets it;
//! both fold the key with FOLD_FIX in the request flags. Delete and sequence
//! are not implemented (as in Postfix).

use crate::dict::postmap_text::until_nul;
use crate::dict::{Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX};
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

pub(crate) struct Environ {
    flags: u32,
}

/// Postfix `unsafe()` on Linux: the environment of a set-uid/set-gid process
/// is not trusted, except when running fully as root.
fn environment_trusted() -> bool {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    let (uid, euid) = (getuid(), geteuid());
    (uid.is_root() && euid.is_root()) || (uid == euid && getgid() == getegid())
}

impl Dict for Environ {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        // the process environment, read in memory.
        Waits::Never
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        if !environment_trusted() {
            return Ok(false);
        }
        // Postfix passes C strings: a NUL ends the name.
        let name = crate::dict::fold_key(until_nul(key), flags & FOLD_FIX != 0);
        if name.is_empty() {
            return Ok(false);
        }
        match std::env::var_os(OsStr::from_bytes(&name)) {
            Some(value) => {
                out.extend_from_slice(&value.into_vec());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn update(&mut self, key: &[u8], value: &[u8], flags: u32) -> DictResult<bool> {
        let name = crate::dict::fold_key(until_nul(key), flags & FOLD_FIX != 0);
        // setenv(3) rejects these with EINVAL, which Postfix treats as fatal;
        // std::env::set_var would panic, so refuse before calling it.
        if name.is_empty() || name.contains(&b'=') {
            log::error!("setenv: Invalid argument");
            return Err(DictError::Config("setenv: Invalid argument".to_string()));
        }
        std::env::set_var(OsStr::from_bytes(&name), OsStr::from_bytes(until_nul(value)));
        Ok(true)
    }
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(Environ { flags: req.flags | FIXED }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::Mode;

    fn open_with(mode: Mode, flags: u32) -> Box<dyn Dict> {
        let params = Params::default();
        open(&OpenRequest { type_name: "environ", name: "anything", mode, flags, params: &params }).unwrap()
    }

    use crate::dict::testutil::get;

    #[test]
    fn lookup_and_folding() {
        std::env::set_var("PROXYMAP_TEST_ENV_Upper", "upper value");
        std::env::set_var("proxymap_test_env_lower", "lower value");
        let mut d = open_with(Mode::ReadOnly, 0);
        assert_eq!(d.flags(), FIXED);
        assert_eq!(get(&mut d, "PROXYMAP_TEST_ENV_Upper", 0).as_deref(), Some("upper value"));
        assert_eq!(get(&mut d, "PROXYMAP_TEST_ENV_Upper", FOLD_FIX), None);
        assert_eq!(get(&mut d, "PROXYMAP_TEST_ENV_LOWER", FOLD_FIX).as_deref(), Some("lower value"));
        assert_eq!(get(&mut d, "PROXYMAP_TEST_ENV_LOWER", 0), None);
        assert_eq!(get(&mut d, "PROXYMAP_TEST_ENV_UNSET", 0), None);
        assert_eq!(get(&mut d, "", 0), None);
    }

    #[test]
    fn update_sets_the_environment() {
        let mut d = open_with(Mode::ReadWrite, 0);
        assert_eq!(d.update(b"PROXYMAP_TEST_ENV_SET", b"v1", 0), Ok(true));
        assert_eq!(std::env::var("PROXYMAP_TEST_ENV_SET").unwrap(), "v1");
        assert_eq!(d.update(b"PROXYMAP_TEST_ENV_SET", b"v2", 0), Ok(true));
        assert_eq!(get(&mut d, "PROXYMAP_TEST_ENV_SET", 0).as_deref(), Some("v2"));
        assert_eq!(d.update(b"PROXYMAP_TEST_ENV_FOLDED", b"f", FOLD_FIX), Ok(true));
        assert_eq!(std::env::var("proxymap_test_env_folded").unwrap(), "f");
        assert!(matches!(d.update(b"A=B", b"v", 0), Err(DictError::Config(_))));
        assert!(matches!(d.update(b"", b"v", 0), Err(DictError::Config(_))));
        assert_eq!(d.delete(b"PROXYMAP_TEST_ENV_SET", 0), Err(DictError::Unsupported("delete")));
        assert_eq!(d.sequence(&mut None, true, 0), Err(DictError::Unsupported("sequence")));
    }
}
