//! The protocol's framing as the benches' clients read replies.

/// End offset of the first complete attribute list in `b` (names and values
/// alternate, each NUL-terminated; a NUL where a name starts ends the list).
pub(crate) fn list_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let name = b[i..].iter().position(|&c| c == 0)?;
        if name == 0 {
            return Some(i + 1);
        }
        i += name + 1;
        i += b[i..].iter().position(|&c| c == 0)? + 1;
    }
}
