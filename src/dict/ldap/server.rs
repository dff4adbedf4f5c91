//! An LDAP server identity on `db_common::pool`: what Postfix's connection
//! cache key holds (the URL list, protocol version, bind mode, DN and
//! password, dereference, referral chasing, TLS settings) plus the timeout. Tables with
//! equal identities share one capped pool per worker process, as Postfix
//! shares one handle per process. The password is part of the identity,
//! never of its name.
//!
//! Connecting is Postfix's `dict_ldap_connect`: `ldap_initialize` with the
//! URL list (libldap tries the URLs in order), the network timeout, the
//! protocol version, dereferencing, referrals, the TLS options and
//! STARTTLS when the table uses TLS, then a simple bind when
//! `bind` says so, all bounded by `timeout`; without a bind the connection
//! is opened at once, so that a server that is down is noticed here and
//! logged once by the pool.

use crate::dict::db_common::pool::{Connection, Rank, Registry, Server};
use crate::sys::ldap::{self, Ldap, TlsOption, LDAP_SUCCESS, TLS_DEMAND, TLS_NEVER};
use std::sync::LazyLock;
use std::time::Duration;

/// The pools of every `ldap:` table of this process.
pub(super) fn registry() -> &'static Registry<LdapServer> {
    static LDAP: LazyLock<Registry<LdapServer>> = LazyLock::new(Registry::new);
    &LDAP
}

/// One LDAP server (list of URLs) as a table uses it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct LdapServer {
    pub(super) urls: String,
    pub(super) version: i32,
    pub(super) bind: bool,
    pub(super) bind_dn: String,
    pub(super) bind_pw: String,
    pub(super) dereference: i32,
    pub(super) chase_referrals: bool,
    pub(super) timeout: Duration,
    pub(super) tls: Option<Tls>,
}

/// The TLS settings of a server that uses TLS (STARTTLS or `ldaps:`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Tls {
    pub(super) start_tls: bool,
    pub(super) require_cert: bool,
    /// The file and string options that are set: option, parameter, value.
    pub(super) files: Vec<(TlsOption, &'static str, String)>,
}

impl Tls {
    /// Postfix's `dict_ldap_set_tls_options` and STARTTLS; the error is
    /// Postfix's message.
    fn apply(&self, ld: &mut Ldap) -> Result<(), String> {
        const ME: &str = "dict_ldap_set_tls_options";
        for (option, param, value) in &self.files {
            let rc = ld.set_tls(*option, value);
            if rc != LDAP_SUCCESS {
                return Err(format!("{ME}: Unable to set {param} to {value}: {rc}: {}", ldap::err2string(rc)));
            }
        }
        let require = if self.require_cert { TLS_DEMAND } else { TLS_NEVER };
        let rc = ld.set_tls_require_cert(require);
        if rc != LDAP_SUCCESS {
            return Err(format!("{ME}: Unable to set tls_require_cert to {require}: {rc}: {}", ldap::err2string(rc)));
        }
        let rc = ld.new_tls_context();
        if rc != LDAP_SUCCESS {
            return Err(format!("{ME}: Unable to allocate new TLS context {rc}: {}", ldap::err2string(rc)));
        }
        if self.start_tls {
            let rc = ld.start_tls();
            if rc != LDAP_SUCCESS {
                return Err(format!("dict_ldap_connect: Unable to set STARTTLS: {rc}: {}", ldap::err2string(rc)));
            }
        }
        Ok(())
    }
}

/// A connection: a bound libldap handle.
pub(crate) struct LdapConn {
    pub(super) ld: Ldap,
}

impl Connection for LdapConn {
    /// Closed by the server (or a notice of disconnection waiting): not
    /// reused. Looks without waiting.
    fn is_broken(&mut self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        let Some(fd) = self.ld.fd() else { return true };
        let mut byte = [0u8; 1];
        !matches!(recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT), Err(nix::errno::Errno::EAGAIN))
    }
}

impl Server for LdapServer {
    type Conn = LdapConn;

    fn name(&self) -> String {
        format!("ldap server {}", self.urls)
    }

    fn rank(&self) -> Rank {
        Rank::Uri
    }

    fn connect(&self, timeout: Duration) -> Result<LdapConn, String> {
        const ME: &str = "dict_ldap_connect";
        let urls = &self.urls;
        let mut ld = Ldap::initialize(urls).map_err(|_| format!("{ME}: Unable to init LDAP server {urls}"))?;
        if !ld.set_timeouts(timeout) {
            return Err(format!("{ME}: Unable to set network timeout."));
        }
        if !ld.set_protocol_version(self.version) {
            return Err(format!("{ME}: Unable to set LDAP protocol version"));
        }
        if !ld.set_deref(self.dereference) {
            log::warn!("{ME}: Unable to set dereference option.");
        }
        if !ld.set_referrals(self.chase_referrals) {
            return Err(format!("{ME}: Unable to set Referral chasing."));
        }
        if let Some(tls) = &self.tls {
            tls.apply(&mut ld)?;
        }
        let rc = if self.bind { ld.simple_bind(&self.bind_dn, &self.bind_pw) } else { ld.connect() };
        if rc != LDAP_SUCCESS {
            let dn = if self.bind_dn.is_empty() { "empty or implicit" } else { &self.bind_dn };
            return Err(if self.bind {
                format!("{ME}: Unable to bind to server {urls} with dn {dn}: {rc} ({})", ldap::err2string(rc))
            } else {
                format!("{ME}: Unable to connect to server {urls}: {rc} ({})", ldap::err2string(rc))
            });
        }
        Ok(LdapConn { ld })
    }
}
