//! Helpers for the table modules' unit tests.

use super::Dict;

/// Look `key` up and return the value as text; a miss must leave `out` empty.
pub fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
    let mut out = b"garbage".to_vec();
    match d.lookup(key.as_bytes(), flags, &mut out).unwrap() {
        true => Some(String::from_utf8(out).unwrap()),
        false => {
            assert!(out.is_empty());
            None
        }
    }
}
