//! `unix:passwd.byname` and `unix:group.byname`: the system's account
//! databases through getpwnam/getgrnam (Postfix dict_unix.c).
//!
//! Results, formatted as Postfix does:
//! * passwd: `name:passwd:uid:gid:gecos:dir:shell`
//! * group: `name:passwd:gid:member1,member2,...` (a trailing `:` when the
//!   group has no members).
//!
//! Read-only (proxywrite gets Postfix's `requires O_RDONLY` refusal), FIXED,
//! FOLD_FIX in the request flags lowercases the key, no sequence. When a key
//! is not found and no lookup of that database has been done yet in this
//! process, the database is checked once for uid/gid 0: if that fails too,
//! Postfix's warning `cannot access UNIX password database: <errno text>` is
//! logged and the lookup fails with RETRY.

use crate::dict::{Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX};
use crate::sys::passwd;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Database {
    Passwd,
    Group,
}

/// Per process and database, as Postfix's function-level statics: whether
/// the "is the database usable at all" check was done (or a lookup found
/// something, which proves it).
static PASSWD_CHECKED: AtomicBool = AtomicBool::new(false);
static GROUP_CHECKED: AtomicBool = AtomicBool::new(false);

pub(crate) struct Unix {
    flags: u32,
    db: Database,
}

impl Unix {
    fn checked(&self) -> &'static AtomicBool {
        match self.db {
            Database::Passwd => &PASSWD_CHECKED,
            Database::Group => &GROUP_CHECKED,
        }
    }

    /// The formatted entry of `key`, or None.
    fn find(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.db {
            Database::Passwd => passwd::getpwnam(key).ok().flatten().map(|pw| format_passwd(&pw)),
            Database::Group => passwd::getgrnam(key).ok().flatten().map(|gr| format_group(&gr)),
        }
    }

    /// Postfix's one-time sanity check after a miss: an error text when the
    /// entry for id 0 cannot be found either.
    fn unusable(&self) -> Option<String> {
        let (what, errno) = match self.db {
            Database::Passwd => {
                let r = passwd::getpwuid(0);
                if matches!(r, Ok(Some(_))) {
                    return None;
                }
                ("password", passwd::failure_errno(&r))
            }
            Database::Group => {
                let r = passwd::getgrgid(0);
                if matches!(r, Ok(Some(_))) {
                    return None;
                }
                ("group", passwd::failure_errno(&r))
            }
        };
        Some(format!("cannot access UNIX {what} database: {}", errno_text(errno)))
    }
}

/// Postfix's `%m`: strerror(), but "Application error" for errno 0 (what
/// a plain "not found" of uid/gid 0 leaves).
fn errno_text(errno: nix::errno::Errno) -> String {
    if errno as i32 == 0 {
        "Application error".into()
    } else {
        crate::sys::errno::strerror(errno as i32)
    }
}

fn format_passwd(pw: &passwd::Passwd) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&pw.name);
    out.push(b':');
    out.extend_from_slice(&pw.passwd);
    out.extend_from_slice(format!(":{}:{}:", pw.uid, pw.gid).as_bytes());
    out.extend_from_slice(&pw.gecos);
    out.push(b':');
    out.extend_from_slice(&pw.dir);
    out.push(b':');
    out.extend_from_slice(&pw.shell);
    out
}

fn format_group(gr: &passwd::Group) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&gr.name);
    out.push(b':');
    out.extend_from_slice(&gr.passwd);
    out.extend_from_slice(format!(":{}:", gr.gid).as_bytes());
    out.extend_from_slice(&gr.members.join(&b","[..]));
    out
}

impl Dict for Unix {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        // getpwnam() may ask a name service (LDAP, sssd) over the network.
        Waits::Always
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let key = crate::dict::fold_key(crate::dict::postmap_text::until_nul(key), flags & FOLD_FIX != 0);
        match self.find(&key) {
            Some(entry) => {
                self.checked().store(true, Ordering::Relaxed);
                *out = entry;
                Ok(true)
            }
            None => {
                if !self.checked().swap(true, Ordering::Relaxed) {
                    if let Some(why) = self.unusable() {
                        log::warn!("{why}");
                        return Err(DictError::Retry(why));
                    }
                }
                Ok(false)
            }
        }
    }
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    req.require_read_only()?;
    let db = match req.name {
        "passwd.byname" => Database::Passwd,
        "group.byname" => Database::Group,
        _ => return Err(OpenError::new(format!("unknown table: unix:{}", req.name))),
    };
    Ok(Box::new(Unix { flags: req.flags | FIXED, db }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::Mode;
    use std::process::Command;

    fn open_with(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
        let params = Params::default();
        open(&OpenRequest { type_name: "unix", name, mode, flags, params: &params })
    }

    fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
        let mut out = b"garbage".to_vec();
        match d.lookup(key.as_bytes(), flags, &mut out).unwrap() {
            true => Some(String::from_utf8(out).unwrap()),
            false => None,
        }
    }

    /// Entries every Debian system has (root); the comparison with
    /// `postmap -q` for these and other entries is in tests/postfix_files.rs.
    #[test]
    fn passwd_and_group() {
        let mut pw = open_with("passwd.byname", Mode::ReadOnly, 0).unwrap();
        assert_eq!(pw.flags(), FIXED);
        let root = get(&mut pw, "root", 0);
        assert!(root.as_deref().unwrap().starts_with("root:"), "{root:?}");
        assert_eq!(get(&mut pw, "no-such-user-xyzzy", 0), None);
        // postmap -q folds its keys (FOLD_FIX).
        assert_eq!(get(&mut pw, "ROOT", FOLD_FIX), root);
        assert_eq!(get(&mut pw, "ROOT", 0), None);

        let mut gr = open_with("group.byname", Mode::ReadOnly, FOLD_FIX).unwrap();
        assert_eq!(gr.flags(), FOLD_FIX | FIXED);
        let group = get(&mut gr, "root", 0);
        assert!(group.as_deref().unwrap().starts_with("root:"), "{group:?}");
        assert_eq!(get(&mut gr, "no-such-group-xyzzy", 0), None);
        assert_eq!(pw.sequence(&mut None, true, 0), Err(DictError::Unsupported("sequence")));
    }

    /// Run in a mount namespace where the account databases have no entry
    /// for id 0 (see `unusable_database`).
    #[test]
    #[ignore]
    fn unusable_database_inner() {
        if std::env::var_os("PROXYMAP_UNIX_TEST_INNER").is_none() {
            return;
        }
        for (name, what) in [("passwd.byname", "password"), ("group.byname", "group")] {
            let d = open_with(name, Mode::ReadOnly, 0).unwrap();
            let mut out = Vec::new();
            let want = format!("cannot access UNIX {what} database: Application error");
            assert_eq!(d.lookup(b"nosuch", 0, &mut out), Err(DictError::Retry(want)));
            // Checked once per process.
            assert_eq!(d.lookup(b"nosuch", 0, &mut out), Ok(false));
        }
        println!("INNER-OK");
    }

    /// Postfix: `cannot access UNIX password database: Application error`
    /// and RETRY when uid 0 is missing too (observed with postmap under the
    /// same bind mounts). Needs root and unshare(1); skipped otherwise.
    #[test]
    fn unusable_database() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("proxymap-unix-test-{}-nss", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("passwd"), "nobody:x:65534:65534:nobody:/:/bin/false\n").unwrap();
        std::fs::write(dir.join("group"), "nogroup:x:65534:\n").unwrap();
        std::fs::write(dir.join("nsswitch.conf"), "passwd: files\ngroup: files\n").unwrap();
        let script = format!(
            "mount --bind {d}/passwd /etc/passwd && mount --bind {d}/group /etc/group && \
             mount --bind {d}/nsswitch.conf /etc/nsswitch.conf && exec \"$0\" --exact --ignored --nocapture \
             {inner}",
            d = dir.display(),
            // The test's name without the crate's: where this module lives now.
            inner = concat!(module_path!(), "::unusable_database_inner").split_once("::").unwrap().1,
        );
        let out = Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .arg(std::env::current_exe().unwrap())
            .env("PROXYMAP_UNIX_TEST_INNER", "1")
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        match out {
            Ok(out) if out.status.success() => {
                assert!(String::from_utf8_lossy(&out.stdout).contains("INNER-OK"), "{out:?}");
            }
            Ok(out) if String::from_utf8_lossy(&out.stderr).contains("mount") || out.status.code() == Some(1) => {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(!text.contains("panicked"), "{text}");
                eprintln!("skipped: cannot set up a mount namespace: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(out) => panic!("inner test failed: {out:?}"),
            Err(e) => eprintln!("skipped: unshare: {e}"),
        }
    }

    #[test]
    fn open_errors() {
        let err = open_with("passwd.byname", Mode::ReadWrite, 0).err().unwrap();
        assert_eq!(err.reason, "unix:passwd.byname map requires O_RDONLY access mode");
        let err = open_with("shadow.byname", Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, "unknown table: unix:shadow.byname");
    }

    #[test]
    fn formats() {
        let pw = passwd::Passwd {
            name: b"u".to_vec(),
            passwd: b"x".to_vec(),
            uid: 1000,
            gid: 100,
            gecos: b"A B,,,".to_vec(),
            dir: b"/home/u".to_vec(),
            shell: b"/bin/sh".to_vec(),
        };
        assert_eq!(format_passwd(&pw), b"u:x:1000:100:A B,,,:/home/u:/bin/sh");
        let mut gr = passwd::Group { name: b"g".to_vec(), passwd: b"x".to_vec(), gid: 5, members: vec![] };
        assert_eq!(format_group(&gr), b"g:x:5:");
        gr.members = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(format_group(&gr), b"g:x:5:a,b");
    }
}
