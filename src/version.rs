//! What `proxymap --version` prints: our version and commit, and the
//! versions of the C libraries this binary uses, as they report themselves
//! at run time (what a bug report needs).

/// The report, one line each.
pub fn report() -> String {
    let (a, b, c) = crate::sys::db::runtime_version();
    let commit = option_env!("PROXYMAP_COMMIT").unwrap_or("unknown");
    format!(
        "proxymap {} (commit {commit})\n\
         Berkeley DB {a}.{b}.{c}\n\
         {}\n\
         PCRE2 {}\n\
         SQLite {}\n\
         libpq {}\n\
         libmariadb {}\n\
         OpenLDAP {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::sys::lmdb::version(),
        crate::sys::regex::pcre2_version(),
        crate::dict::sql::sqlite_version(),
        crate::sys::pq::library_version(),
        crate::sys::mysql::library_version(),
        crate::sys::ldap::library_version(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_every_library_with_a_version() {
        let text = super::report();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert!(lines[0].starts_with(concat!("proxymap ", env!("CARGO_PKG_VERSION"), " (commit ")), "{text}");
        assert!(lines[1].starts_with("Berkeley DB 5.3."), "{text}");
        assert!(lines[2].starts_with("LMDB 0."), "{text}");
        for (line, name) in [
            (lines[3], "PCRE2 10."),
            (lines[4], "SQLite 3."),
            (lines[5], "libpq 1"),
            (lines[6], "libmariadb "),
            (lines[7], "OpenLDAP 2."),
        ] {
            assert!(line.starts_with(name), "{text}");
        }
    }
}
