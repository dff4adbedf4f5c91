//! The parameters of an `ldap:` table, read in Postfix 3.7's order (so a
//! bad configuration fails with Postfix's first message) with its defaults,
//! limits and warnings (`dict_ldap_open`).
//!
//! Read and honoured: `server_host` (hosts and `ldap://`/`ldapi://` URLs;
//! a bare host gets `server_port`), `server_port`, `version` (default 3,
//! as Debian's postfix-ldap 3.7.11 has it; upstream's is 2), `scope`,
//! `search_base`, `timeout`, `query_filter`, `result_format` (or the old
//! `result_filter`), `domain`, `terminal_result_attribute`,
//! `leaf_result_attribute`, `result_attribute`, `special_result_attribute`,
//! `bind` (`no`/`none`, `yes`/`simple`), `bind_dn`, `bind_pw`,
//! `recursion_limit`, `expansion_limit`, `size_limit`, `dereference`,
//! `chase_referrals`; `cache`, `cache_expiry`, `cache_size` are read and
//! ignored with Postfix's warnings; `debuglevel` is read and ignored.
//!
//! TLS as Postfix: `start_tls`, `ldaps://` URLs, `tls_require_cert`,
//! `tls_ca_cert_file`, `tls_ca_cert_dir`, `tls_cert`, `tls_key`,
//! `tls_random_file`, `tls_cipher_suite` (set only when one of the first
//! two asks for TLS).
//!
//! Refused at open (the table becomes a surrogate answering RETRY, with a
//! reason naming the parameter; docs/compatibility.md): `bind = sasl`,
//! which this build does not implement. The SASL parameters are still
//! read, so that their syntax errors are Postfix's.
//!
//! Ours: `max_connections` (4, per server per worker process) and
//! `retry_interval` (5 s without connect attempts after a failed one).

use super::filter::is_dynamic;
use super::server::Tls;
use crate::dict::db_common::cf::Cf;
use crate::dict::db_common::domain::{DomainFilter, Sources, System};
use crate::dict::db_common::template::{Context, Role, Template};
use crate::dict::OpenError;
use crate::sys::ldap::{self, TlsOption, SCOPE_BASE, SCOPE_ONE, SCOPE_SUB};

/// Postfix's CHARS_COMMA_SP.
const SEPARATORS: &[char] = &[',', ' ', '\t', '\r', '\n'];
const LDAP_PORT: i32 = 389;

/// The attributes asked for, in Postfix's order: terminal, leaf, regular,
/// special.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Attributes {
    pub(super) names: Vec<String>,
    pub(super) num_terminal: usize,
    pub(super) num_leaf: usize,
    /// Terminal, leaf and regular together (special ones come after).
    pub(super) num_attributes: usize,
}

/// A parsed configuration.
pub(super) struct Config {
    /// The URL list, space-separated, as libldap takes it.
    pub(super) urls: String,
    pub(super) version: i32,
    pub(super) scope: i32,
    pub(super) ctx: Context,
    pub(super) search_base: Template,
    pub(super) dynamic_base: bool,
    pub(super) timeout: i32,
    pub(super) query_filter: Template,
    pub(super) result_format: Template,
    pub(super) domain: Option<DomainFilter>,
    pub(super) attributes: Attributes,
    /// Whether to bind (simple bind; `no`/`none`: no bind at all).
    pub(super) bind: bool,
    pub(super) bind_dn: String,
    pub(super) bind_pw: String,
    pub(super) recursion_limit: i32,
    pub(super) expansion_limit: i32,
    pub(super) size_limit: i32,
    pub(super) dereference: i32,
    pub(super) chase_referrals: bool,
    /// Set when `start_tls = yes` or a URL is `ldaps:`.
    pub(super) tls: Option<Tls>,
    pub(super) max_connections: i32,
    pub(super) retry_interval: i32,
}

/// Read table `name`'s configuration (`ldap:<name>`).
pub(super) fn read(name: &str, params: &crate::config::Params) -> Result<Config, OpenError> {
    let cf = Cf::open(name, params)?;
    from_cf(name, &cf, &mut System { params })
}

/// [`read`] from parameters already read; the `domain` list's files and
/// tables come from `sources`.
pub(super) fn from_cf(name: &str, cf: &Cf<'_>, sources: &mut dyn Sources) -> Result<Config, OpenError> {
    let str0 = |param, default| cf.get_str(param, Some(default), 0, 0).map(Option::unwrap_or_default);
    let server_host = cf.get_str("server_host", Some("localhost"), 1, 0)?.unwrap_or_default();
    let server_port = cf.get_int("server_port", LDAP_PORT, 0, 0)?;
    // Debian's build (the reference here) defaults to 3; upstream 3.7 to 2.
    let mut version = cf.get_int("version", 3, 2, 0)?;
    if version != 2 && version != 3 {
        log::warn!("dict_ldap_open: {name} Unknown version {version}, using 3.");
        version = 3;
    }
    let mut urls: Vec<String> = Vec::new();
    let mut ldaps = false;
    for h in server_host.split(SEPARATORS).filter(|h| !h.is_empty()) {
        if ldap::is_ldap_url(h) {
            let url = match ldap::parse_url(h) {
                Ok(url) => url,
                Err(rc) => {
                    log::error!("dict_ldap_open: error parsing URL {h}: {rc}: {}; skipping", ldap::err2string(rc));
                    continue;
                }
            };
            if !url.scheme.eq_ignore_ascii_case("ldap") && version != 3 {
                log::warn!("dict_ldap_open: URL scheme {} requires protocol version 3", url.scheme);
                version = 3;
            }
            ldaps |= url.scheme.eq_ignore_ascii_case("ldaps");
            urls.push(h.to_string());
        } else if h.contains(':') {
            urls.push(format!("ldap://{h}"));
        } else {
            urls.push(format!("ldap://{h}:{server_port}"));
        }
    }
    let scope_text = cf.get_str("scope", Some("sub"), 1, 0)?.unwrap_or_default();
    let scope = match scope_text.to_ascii_lowercase().as_str() {
        "one" => SCOPE_ONE,
        "base" => SCOPE_BASE,
        "sub" => SCOPE_SUB,
        _ => {
            log::warn!("dict_ldap_open: {name}: Unrecognized value {scope_text} specified for scope; using sub");
            SCOPE_SUB
        }
    };
    let search_base = str0("search_base", "")?;
    let timeout = cf.get_int("timeout", 10, 0, 0)?;
    let query_filter = str0("query_filter", "(mailacceptinggeneralid=%s)")?;
    let result_format = match cf.get_str("result_format", None, 0, 0)? {
        Some(f) => f,
        None => cf.get_str("result_filter", Some("%s"), 1, 0)?.unwrap_or_default(),
    };
    let mut ctx = Context::new("ldap", name);
    let dynamic_base = is_dynamic(&search_base);
    let search_base = ctx.parse(&search_base, Role::Query)?;
    let filter_template = ctx.parse(&query_filter, Role::Query)?;
    if !is_dynamic(&query_filter) {
        log::warn!("dict_ldap_open: {name}: Fixed query_filter {query_filter} is probably useless");
    }
    let result_format = ctx.parse(&result_format, Role::Result)?;
    let domain = match str0("domain", "")? {
        list if list.is_empty() => None,
        list => Some(DomainFilter::parse(&list, cf.name(), sources)?),
    };
    let attributes = attributes(cf)?;
    let bind_text = cf.get_str("bind", Some("yes"), 1, 0)?.unwrap_or_default();
    let bind = match bind_text.to_ascii_lowercase().as_str() {
        "no" | "none" => Some(false),
        "yes" | "simple" => Some(true),
        "sasl" => None,
        _ => return Err(OpenError::new(format!("{name}: unsupported parameter value: bind = {bind_text}"))),
    };
    let bind_dn = str0("bind_dn", "")?;
    let bind_pw = str0("bind_pw", "")?;
    if cf.get_bool("cache", false)? {
        log::warn!("dict_ldap_open: {name} ignoring cache");
    }
    if cf.get_int("cache_expiry", -1, 0, 0)? >= 0 {
        log::warn!("dict_ldap_open: {name} ignoring cache_expiry");
    }
    if cf.get_int("cache_size", -1, 0, 0)? >= 0 {
        log::warn!("dict_ldap_open: {name} ignoring cache_size");
    }
    let recursion_limit = cf.get_int("recursion_limit", 1000, 1, 0)?;
    let expansion_limit = cf.get_int("expansion_limit", 0, 0, 0)?;
    let size_limit = cf.get_int("size_limit", expansion_limit, 0, 0)?;
    let mut dereference = cf.get_int("dereference", 0, 0, 0)?;
    if !(0..=3).contains(&dereference) {
        log::warn!("dict_ldap_open: {name} Unrecognized value {dereference} specified for dereference; using 0");
        dereference = 0;
    }
    let chase_referrals = cf.get_bool("chase_referrals", false)?;
    if bind.is_none() {
        str0("sasl_mechs", "")?;
        str0("sasl_realm", "")?;
        str0("sasl_authz_id", "")?;
        cf.get_int("sasl_minssf", 0, 0, 4096)?;
    }
    let start_tls = cf.get_bool("start_tls", false)?;
    if start_tls && version < 3 {
        log::warn!("dict_ldap_open: {name} start_tls requires protocol version 3");
        version = 3;
    }
    let require_cert = cf.get_bool("tls_require_cert", false)?;
    let mut files = Vec::new();
    for (param, option) in [
        ("tls_ca_cert_file", TlsOption::CaCertFile),
        ("tls_ca_cert_dir", TlsOption::CaCertDir),
        ("tls_cert", TlsOption::CertFile),
        ("tls_key", TlsOption::KeyFile),
        ("tls_random_file", TlsOption::RandomFile),
        ("tls_cipher_suite", TlsOption::CipherSuite),
    ] {
        let value = str0(param, "")?;
        if !value.is_empty() {
            files.push((option, param, value));
        }
    }
    // Postfix sets them in this order (the random file first).
    files.sort_by_key(|(o, _, _)| *o != TlsOption::RandomFile);
    cf.get_int("debuglevel", 0, 0, 0)?;
    let max_connections = cf.get_int("max_connections", 4, 1, 0)?;
    let retry_interval = cf.get_int("retry_interval", 5, 1, 0)?;
    let Some(bind) = bind else {
        return Err(OpenError::new(format!("{name}: bind = sasl is not supported by this proxymap")));
    };
    let tls = (start_tls || ldaps).then_some(Tls { start_tls, require_cert, files });
    Ok(Config {
        urls: urls.join(" "),
        version,
        scope,
        ctx,
        search_base,
        dynamic_base,
        timeout,
        query_filter: filter_template,
        result_format,
        domain,
        attributes,
        bind,
        bind_dn,
        bind_pw,
        recursion_limit,
        expansion_limit,
        size_limit,
        dereference,
        chase_referrals,
        tls,
        max_connections,
        retry_interval,
    })
}

/// The four attribute lists, in Postfix's order.
fn attributes(cf: &Cf<'_>) -> Result<Attributes, OpenError> {
    let list = |param, default| -> Result<Vec<String>, OpenError> {
        let text = cf.get_str(param, Some(default), 0, 0)?.unwrap_or_default();
        Ok(text.split(SEPARATORS).filter(|s| !s.is_empty()).map(str::to_string).collect())
    };
    let mut names = list("terminal_result_attribute", "")?;
    let num_terminal = names.len();
    names.extend(list("leaf_result_attribute", "")?);
    let num_leaf = names.len() - num_terminal;
    names.extend(list("result_attribute", "maildrop")?);
    let num_attributes = names.len();
    names.extend(list("special_result_attribute", "")?);
    Ok(Attributes { names, num_terminal, num_leaf, num_attributes })
}
