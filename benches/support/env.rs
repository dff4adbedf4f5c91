//! The benches' settings from the environment (PM_BENCH_*, PM_LOAD_*).

/// `name` parsed, or `default` when unset; a value that does not parse
/// stops the bench, naming it.
pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?}: not a valid value")),
        Err(_) => default,
    }
}

/// A comma-separated list from `name`, or from `default` when unset.
pub(crate) fn env_list(name: &str, default: &str) -> Vec<String> {
    let v = std::env::var(name).unwrap_or_else(|_| default.to_string());
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}
