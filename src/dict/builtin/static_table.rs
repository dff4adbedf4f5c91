//! `static:text` / `static:{ text }`: every lookup returns the text (Postfix
//! dict_static.c). Braces and the whitespace inside them are stripped. No
//! update, delete or sequence (Postfix exits on those; we answer the trait's
//! "not supported" error). Open mode does not matter.

use crate::dict::postmap_text;
use crate::dict::{Dict, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, SRC_RHS_IS_FILE};

pub(crate) struct Static {
    flags: u32,
    value: Vec<u8>,
}

impl Dict for Static {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        Waits::Never
    }

    fn lookup(&self, _key: &[u8], _flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        out.extend_from_slice(&self.value);
        Ok(true)
    }
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    let name = req.name.as_bytes();
    let text = if name.first() == Some(&b'{') {
        postmap_text::extpar(name).map_err(|err| OpenError::new(format!("bad static:name syntax: {err}")))?
    } else {
        name
    };
    let value = if req.flags & SRC_RHS_IS_FILE != 0 {
        postmap_text::file_to_base64(text).map_err(OpenError::new)?
    } else {
        text.to_vec()
    };
    Ok(Box::new(Static { flags: req.flags | FIXED, value }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::{DictError, Mode};
    use crate::protocol::flags::FOLD_FIX;

    fn open_with(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
        let params = Params::default();
        open(&OpenRequest { type_name: "static", name, mode, flags, params: &params })
    }

    fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> String {
        let mut out = b"garbage".to_vec();
        assert!(d.lookup(key.as_bytes(), flags, &mut out).unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_and_braced() {
        let mut d = open_with("OK", Mode::ReadOnly, 0).unwrap();
        assert_eq!(d.flags(), FIXED);
        assert_eq!(get(&mut d, "anything", 0), "OK");
        assert_eq!(get(&mut d, "", FOLD_FIX), "OK");
        let mut d = open_with("{  REJECT with spaces, commas {nested}  }", Mode::ReadWrite, FOLD_FIX).unwrap();
        assert_eq!(d.flags(), FIXED | FOLD_FIX);
        assert_eq!(get(&mut d, "Key", FOLD_FIX), "REJECT with spaces, commas {nested}");
        let mut d = open_with("{}", Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "k", 0), "");
        // Only a leading brace starts the braced form.
        let mut d = open_with(" {x}", Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "k", 0), " {x}");
    }

    #[test]
    fn brace_errors() {
        let err = open_with("{x", Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, "bad static:name syntax: missing '}' in \"{x\"");
        let err = open_with("{x} y", Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, "bad static:name syntax: syntax error after '}' in \"{x} y\"");
    }

    #[test]
    fn other_operations_unsupported() {
        let mut d = open_with("x", Mode::ReadWrite, 0).unwrap();
        assert_eq!(d.update(b"k", b"v", 0), Err(DictError::Unsupported("update")));
        assert_eq!(d.delete(b"k", 0), Err(DictError::Unsupported("delete")));
        assert_eq!(d.sequence(&mut None, true, 0), Err(DictError::Unsupported("sequence")));
    }

    #[test]
    fn value_is_file() {
        let err = open_with("/nonexistent/x", Mode::ReadOnly, SRC_RHS_IS_FILE).err().unwrap();
        assert_eq!(err.reason, "open /nonexistent/x: No such file or directory");
    }
}
