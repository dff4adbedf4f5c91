//! `proxy:type:name` inside the server (a component of a composite table):
//! the table is opened directly, in this process, as Postfix's proxymap does.

use crate::dict::{registry, Dict, OpenError, OpenRequest};

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    let mut name = req.name;
    while let Some(rest) = name.strip_prefix("proxy:") {
        name = rest;
    }
    Ok(registry::open_or_surrogate(name, req.mode, req.flags, req.params))
}
