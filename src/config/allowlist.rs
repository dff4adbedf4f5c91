//! STUB
use std::collections::HashSet;
#[derive(Clone, Debug, Default)]
pub struct Allowlist(HashSet<String>);
impl Allowlist {
    pub fn from_param(value: &str, _param: &str) -> Allowlist {
        Allowlist(value.split([' ', ',']).filter_map(|t| t.strip_prefix("proxy:")).map(String::from).collect())
    }
    pub fn contains(&self, table: &str) -> bool {
        self.0.contains(table)
    }
}
pub fn proxy_allowlist(params: &super::Params, writer: bool) -> Allowlist {
    let name = if writer { "proxy_write_maps" } else { "proxy_read_maps" };
    Allowlist::from_param(&params.get(name), name)
}
