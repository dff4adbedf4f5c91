//! `inline:{ key=value, { key = value with spaces } }`: a table given in its
//! name (Postfix dict_inline.c on top of the in-memory dict_ht).
//!
//! Read-only; items are separated by commas or whitespace outside braces; a
//! braced item may contain spaces and commas. Keys keep quotes and
//! backslashes, as in texthash. Later items replace earlier ones. Keys are
//! folded at load only with FOLD_FIX in the open flags, and at lookup with
//! FOLD_FIX in the request flags. Sequence is supported (inherited from
//! dict_ht in Postfix).

use crate::dict::file::texthash::{MemDict, MemTable};
use crate::dict::postmap_text::{self, BraceTokens};
use crate::dict::{Dict, OpenError, OpenRequest};
use crate::protocol::flags::{FIXED, FOLD_FIX, SRC_RHS_IS_FILE};

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    req.require_read_only()?;
    let name = req.name.as_bytes();
    // Postfix's "bad UTF-8 syntax" check of the name cannot fail here:
    // `req.name` is a Rust string, so it is valid UTF-8 already.
    let len = postmap_text::balpar(name);
    if len == 0 || len != name.len() || len == 2 {
        return Err(OpenError::new(format!("bad syntax: \"inline:{}\"; need \"inline:{{name=value...}}\"", req.name)));
    }
    let files = req.flags & SRC_RHS_IS_FILE != 0;
    let fold = req.flags & FOLD_FIX != 0;
    let mut table = MemTable::default();
    let mut count = 0;
    let mut error = None;
    for item in BraceTokens::new(&name[1..len - 1]) {
        match parse_item(item, files) {
            Ok((key, value)) => {
                table.put(&crate::dict::fold_key(key, fold), &value);
                count += 1;
            }
            Err(err) => {
                error = Some(err);
                break;
            }
        }
    }
    if error.is_some() || count == 0 {
        return Err(OpenError::new(format!(
            "{}: \"inline:{}\"; need \"inline:{{name={}...}}\"",
            error.as_deref().unwrap_or("empty table"),
            req.name,
            if files { "filename" } else { "value" }
        )));
    }
    Ok(Box::new(MemDict { flags: req.flags | FIXED, table }))
}

/// One `key=value` or `{ key = value }` item; errors are Postfix's texts.
fn parse_item(item: &[u8], files: bool) -> Result<(&[u8], Vec<u8>), String> {
    let inner = if item.first() == Some(&b'{') { postmap_text::extpar(item)? } else { item };
    let (key, value) = postmap_text::split_qnameval(inner).map_err(str::to_string)?;
    let value = if files { postmap_text::file_to_base64(value)? } else { value.to_vec() };
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::{DictError, Mode};

    fn open_with(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
        let params = Params::default();
        open(&OpenRequest { type_name: "inline", name, mode, flags, params: &params })
    }

    fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
        let mut out = b"garbage".to_vec();
        match d.lookup(key.as_bytes(), flags, &mut out).unwrap() {
            true => Some(String::from_utf8(out).unwrap()),
            false => None,
        }
    }

    fn reason(name: &str) -> String {
        open_with(name, Mode::ReadOnly, 0).err().unwrap().reason
    }

    #[test]
    fn brace_forms() {
        let mut d =
            open_with("{ a=1, b=2 ,{ c = value with spaces, and commas }  D=4 {\"q k\" = 5} e=}", Mode::ReadOnly, 0)
                .unwrap();
        assert_eq!(d.flags(), FIXED);
        assert_eq!(get(&mut d, "a", 0).as_deref(), Some("1"));
        assert_eq!(get(&mut d, "b", 0).as_deref(), Some("2"));
        assert_eq!(get(&mut d, "c", 0).as_deref(), Some("value with spaces, and commas"));
        assert_eq!(get(&mut d, "D", 0).as_deref(), Some("4"));
        assert_eq!(get(&mut d, "\"q k\"", 0).as_deref(), Some("5"));
        assert_eq!(get(&mut d, "e", 0).as_deref(), Some(""));
        assert_eq!(get(&mut d, "x", 0), None);
    }

    #[test]
    fn folding_and_last_wins() {
        let mut d = open_with("{Key=one, key=two}", Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "Key", 0).as_deref(), Some("one"));
        assert_eq!(get(&mut d, "KEY", FOLD_FIX).as_deref(), Some("two"));
        assert_eq!(get(&mut d, "KEY", 0), None);
        let mut d = open_with("{Key=one, key=two}", Mode::ReadOnly, FOLD_FIX).unwrap();
        assert_eq!(d.flags(), FIXED | FOLD_FIX);
        assert_eq!(get(&mut d, "kEy", FOLD_FIX).as_deref(), Some("two"));
        assert_eq!(get(&mut d, "Key", 0), None);
    }

    #[test]
    fn syntax_errors() {
        let need = "need \"inline:{name=value...}\"";
        assert_eq!(reason("a=b"), format!("bad syntax: \"inline:a=b\"; {need}"));
        assert_eq!(reason(" {a=b}"), format!("bad syntax: \"inline: {{a=b}}\"; {need}"));
        assert_eq!(reason("{a=b}x"), format!("bad syntax: \"inline:{{a=b}}x\"; {need}"));
        assert_eq!(reason("{a=b"), format!("bad syntax: \"inline:{{a=b\"; {need}"));
        // Postfix: "{}" has nothing inside the braces (bad syntax), "{ }" has
        // only separators (empty table).
        assert_eq!(reason("{}"), format!("bad syntax: \"inline:{{}}\"; {need}"));
        assert_eq!(reason("{ , }"), format!("empty table: \"inline:{{ , }}\"; {need}"));
        // Outside braces, whitespace separates items.
        assert_eq!(reason("{a = b}"), format!("missing '=' after attribute name: \"inline:{{a = b}}\"; {need}"));
        assert_eq!(reason("{a}"), format!("missing '=' after attribute name: \"inline:{{a}}\"; {need}"));
        assert_eq!(
            reason("{a=1, {}}"),
            format!("no key found; expected format: key = value: \"inline:{{a=1, {{}}}}\"; {need}")
        );
        assert_eq!(
            reason("{{a=1}x}"),
            format!("syntax error after '}}' in \"{{a=1}}x\": \"inline:{{{{a=1}}x}}\"; {need}")
        );
        assert_eq!(reason("{\"a=1}"), format!("unbalanced '\"': \"inline:{{\"a=1}}\"; {need}"));
        let err = open_with("{a=b}", Mode::ReadWrite, 0).err().unwrap();
        assert_eq!(err.reason, "inline:{a=b} map requires O_RDONLY access mode");
    }

    #[test]
    fn sequence_and_unsupported() {
        let mut d = open_with("{b=2, a=1, b=3}", Mode::ReadOnly, 0).unwrap();
        let mut c = None;
        assert_eq!(d.sequence(&mut c, true, 0).unwrap(), Some((b"b".to_vec(), b"3".to_vec())));
        assert_eq!(d.sequence(&mut c, false, 0).unwrap(), Some((b"a".to_vec(), b"1".to_vec())));
        assert_eq!(d.sequence(&mut c, false, 0).unwrap(), None);
        assert_eq!(d.delete(b"a", 0), Err(DictError::Unsupported("delete")));
    }

    #[test]
    fn values_are_files_error() {
        let err = open_with("{a=/nonexistent/file}", Mode::ReadOnly, SRC_RHS_IS_FILE).err().unwrap();
        assert_eq!(
            err.reason,
            "open /nonexistent/file: No such file or directory: \"inline:{a=/nonexistent/file}\"; need \"inline:{name=filename...}\""
        );
    }
}
