//! An OpenLDAP server of the test's own: the harness the unit tests use
//! too (src/dict/ldap/test_slapd.rs, included by path). Tests that need it
//! skip, saying so, when slapd is not installed.

use super::TempDir;

#[path = "../../src/dict/ldap/test_slapd.rs"]
mod test_slapd;
#[allow(unused_imports)] // not every test crate starts a server
pub(crate) use test_slapd::*;
