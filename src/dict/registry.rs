//! Table type names → constructors.

use super::{Dict, OpenError, OpenRequest};

pub type OpenFn = fn(&OpenRequest) -> Result<Box<dyn Dict>, OpenError>;

/// Every table type this build serves, by Postfix type name.
const TYPES: &[(&str, OpenFn)] = &[
    ("cidr", super::cidr::open),
    ("environ", super::environ::open),
    ("fail", super::fail::open),
    ("inline", super::inline::open),
    ("internal", super::internal::open),
    ("static", super::static_table::open),
    ("texthash", super::texthash::open),
    ("unix", super::unix::open),
];

pub fn lookup(type_name: &str) -> Option<OpenFn> {
    TYPES.iter().find(|(name, _)| *name == type_name).map(|(_, f)| *f)
}

/// Type names, for `proxymap -m`-style listings and docs.
pub fn type_names() -> impl Iterator<Item = &'static str> {
    TYPES.iter().map(|(name, _)| *name)
}

/// Open `req` with the constructor of its type.
pub fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    match lookup(req.type_name) {
        Some(open) => open(req),
        None => Err(OpenError::new(format!("unsupported dictionary type: {}", req.type_name))),
    }
}
