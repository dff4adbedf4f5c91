//! Compiled-in 3.7.11 defaults (Debian build) of the parameters proxymap
//! evaluates: the global table of mail_params_init() followed by
//! proxymap's own table, in Postfix's evaluation order.

/// How a parameter is evaluated and what is written back when unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// String; the expanded default is written back.
    Str,
    /// String whose default is computed at run time (myhostname etc.).
    Computed,
    /// C int / long / yes-no; the default literal is written back.
    Int,
    Long,
    Bool,
    /// yes/no whose default is an expression, written back unexpanded.
    NBool,
    /// Time with unit; the default literal is written back.
    Time,
}

/// One parameter: name, kind, default text, minimum and maximum (0 = none;
/// string length bounds for strings).
pub(crate) struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub min: i64,
    pub max: i64,
}

const fn d(name: &'static str, kind: Kind, default: &'static str, min: i64, max: i64) -> Def {
    Def { name, kind, default, min, max }
}

use Kind::*;

/// The proxy_read_maps default, verbatim from `postconf -d` of 3.7.11.
pub(crate) const PROXY_READ_MAPS: &str = "$local_recipient_maps $mydestination $virtual_alias_maps \
$virtual_alias_domains $virtual_mailbox_maps $virtual_mailbox_domains $relay_recipient_maps \
$relay_domains $canonical_maps $sender_canonical_maps $recipient_canonical_maps $relocated_maps \
$transport_maps $mynetworks $smtpd_sender_login_maps $sender_bcc_maps $recipient_bcc_maps \
$smtp_generic_maps $lmtp_generic_maps $alias_maps $smtpd_client_restrictions \
$smtpd_helo_restrictions $smtpd_sender_restrictions $smtpd_relay_restrictions \
$smtpd_recipient_restrictions $address_verify_sender_dependent_default_transport_maps \
$address_verify_sender_dependent_relayhost_maps $address_verify_transport_maps \
$fallback_transport_maps $lmtp_discard_lhlo_keyword_address_maps $lmtp_pix_workaround_maps \
$lmtp_sasl_password_maps $lmtp_tls_policy_maps $mailbox_command_maps $mailbox_transport_maps \
$postscreen_discard_ehlo_keyword_address_maps $rbl_reply_maps \
$sender_dependent_default_transport_maps $sender_dependent_relayhost_maps \
$smtp_discard_ehlo_keyword_address_maps $smtp_pix_workaround_maps $smtp_sasl_password_maps \
$smtp_tls_policy_maps $smtpd_discard_ehlo_keyword_address_maps $smtpd_milter_maps \
$virtual_gid_maps $virtual_uid_maps $local_login_sender_maps $postscreen_reject_footer_maps \
$smtpd_reject_footer_maps $tls_server_sni_maps $tlsproxy_client_policy_maps \
$default_delivery_status_filter $lmtp_delivery_status_filter $lmtp_dns_reply_filter \
$lmtp_reply_filter $local_delivery_status_filter $pipe_delivery_status_filter \
$postscreen_command_filter $smtp_delivery_status_filter $smtp_dns_reply_filter $smtp_reply_filter \
$smtpd_command_filter $smtpd_dns_reply_filter $virtual_delivery_status_filter $body_checks \
$header_checks $lmtp_body_checks $lmtp_header_checks $lmtp_mime_header_checks \
$lmtp_nested_header_checks $milter_header_checks $mime_header_checks $nested_header_checks \
$smtp_body_checks $smtp_header_checks $smtp_mime_header_checks $smtp_nested_header_checks";

/// The proxy_write_maps default.
pub(crate) const PROXY_WRITE_MAPS: &str =
    "$smtp_sasl_auth_cache_name $lmtp_sasl_auth_cache_name $address_verify_map $postscreen_cache_map";

/// Fallback domain when the host name has no dot.
pub(crate) const DEF_MYDOMAIN: &str = "localdomain";

/// mynetworks is computed from interfaces in Postfix; it never yields
/// `proxy:` entries, so a fixed loopback value stands in.
pub(crate) const MYNETWORKS: &str = "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128";

/// Every registered parameter, in Postfix's evaluation order.
pub(crate) static TABLE: &[Def] = &[
    // mail_params_init: compatibility level first.
    d("compatibility_level", Str, "0", 0, 0),
    d("mail_version", Str, "3.7.11", 1, 0),
    d("syslog_facility", Str, "mail", 1, 0),
    d("inet_protocols", Str, "all", 0, 0),
    d("multi_instance_directories", Str, "", 0, 0),
    d("multi_instance_group", Str, "", 0, 0),
    d("multi_instance_name", Str, "", 0, 0),
    d("maillog_file", Str, "", 0, 0),
    d("maillog_file_prefixes", Str, "/var, /dev/stdout", 1, 0),
    d("maillog_file_compressor", Str, "gzip", 1, 0),
    d("maillog_file_rotate_suffix", Str, "%Y%m%d-%H%M%S", 1, 0),
    d("postlog_service_name", Str, "postlog", 1, 0),
    d("dnssec_probe", Str, "ns:.", 0, 0),
    d("known_tcp_ports", Str, "lmtp=24, smtp=25, smtps=submissions=465, submission=587", 0, 0),
    d("daemon_table_open_error_is_fatal", Bool, "no", 0, 0),
    d("dns_ncache_ttl_fix_enable", Bool, "no", 0, 0),
    d("smtputf8_enable", NBool, "${{$compatibility_level} <level {1} ? {no} : {yes}}", 0, 0),
    d("enable_idna2003_compatibility", NBool, "no", 0, 0),
    d("respectful_logging", NBool, "${{$compatibility_level} <level {3.6} ? {no} : {yes}}", 0, 0),
    d("myhostname", Computed, "", 1, 0),
    d("mydomain", Computed, "", 1, 0),
    d("mail_name", Str, "Postfix", 1, 0),
    d("syslog_name", Str, "${multi_instance_name?{$multi_instance_name}:{postfix}}", 1, 0),
    d("mail_owner", Str, "postfix", 1, 0),
    d("setgid_group", Str, "postdrop", 1, 0),
    d("mydestination", Str, "$myhostname, localhost.$mydomain, localhost", 0, 0),
    d("myorigin", Str, "$myhostname", 1, 0),
    d("relayhost", Str, "", 0, 0),
    d("daemon_directory", Str, "/usr/lib/postfix/sbin", 1, 0),
    d("data_directory", Str, "/var/lib/postfix", 1, 0),
    d("command_directory", Str, "/usr/sbin", 1, 0),
    d("meta_directory", Str, "/etc/postfix", 1, 0),
    d("queue_directory", Str, "/var/spool/postfix", 1, 0),
    d("shlib_directory", Str, "/usr/lib/postfix", 1, 0),
    d("process_id_directory", Str, "pid", 1, 0),
    d("inet_interfaces", Str, "all", 0, 0),
    d("proxy_interfaces", Str, "", 0, 0),
    d("double_bounce_sender", Str, "double-bounce", 1, 0),
    d("default_privs", Str, "nobody", 1, 0),
    d("alias_database", Str, "hash:/etc/aliases", 0, 0),
    d("mail_release_date", Str, "20240304", 1, 0),
    d("default_database_type", Str, "hash", 1, 0),
    d("hash_queue_names", Str, "deferred, defer", 1, 0),
    d("recipient_delimiter", Str, "", 0, 0),
    d("relay_domains", Str, "${{$compatibility_level} <level {2} ? {$mydestination} : {}}", 0, 0),
    d("fast_flush_domains", Str, "$relay_domains", 0, 0),
    d("export_environment", Str, "TZ MAIL_CONFIG LANG", 0, 0),
    d(
        "import_environment",
        Str,
        "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME",
        0,
        0,
    ),
    d("mynetworks_style", Str, "${{$compatibility_level} <level {2} ? {subnet} : {host}}", 1, 0),
    d("debug_peer_list", Str, "", 0, 0),
    d("default_verp_delimiters", Str, "+=", 2, 2),
    d("verp_delimiter_filter", Str, "-=+", 1, 0),
    d(
        "parent_domain_matches_subdomains",
        Str,
        "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps",
        0,
        0,
    ),
    d("alternate_config_directories", Str, "", 0, 0),
    d("bounce_service_name", Str, "bounce", 1, 0),
    d("cleanup_service_name", Str, "cleanup", 1, 0),
    d("defer_service_name", Str, "defer", 1, 0),
    d("pickup_service_name", Str, "pickup", 1, 0),
    d("queue_service_name", Str, "qmgr", 1, 0),
    d("rewrite_service_name", Str, "rewrite", 1, 0),
    d("showq_service_name", Str, "showq", 1, 0),
    d("error_service_name", Str, "error", 1, 0),
    d("flush_service_name", Str, "flush", 1, 0),
    d("address_verify_service_name", Str, "verify", 1, 0),
    d("trace_service_name", Str, "trace", 1, 0),
    d("proxymap_service_name", Str, "proxymap", 1, 0),
    d("proxywrite_service_name", Str, "proxywrite", 1, 0),
    d("internal_mail_filter_classes", Str, "", 0, 0),
    d("multi_instance_wrapper", Str, "", 0, 0),
    d("default_delivery_status_filter", Str, "", 0, 0),
    d("smtputf8_autodetect_classes", Str, "sendmail, verify", 1, 0),
    d("message_drop_headers", Str, "bcc, content-length, resent-bcc, return-path", 0, 0),
    d("info_log_address_format", Str, "external", 1, 0),
    d("default_process_limit", Int, "100", 1, 0),
    d("max_use", Int, "100", 1, 0),
    d("dont_remove", Int, "0", 0, 0),
    d("line_length_limit", Int, "2048", 512, 0),
    d("hash_queue_depth", Int, "1", 1, 0),
    d("fork_attempts", Int, "5", 1, 0),
    d("deliver_lock_attempts", Int, "20", 1, 0),
    d("debug_peer_level", Int, "2", 1, 0),
    d("fault_injection_code", Int, "0", 0, 0),
    d("berkeley_db_create_buffer_size", Int, "16777216", 1, 0),
    d("berkeley_db_read_buffer_size", Int, "131072", 1, 0),
    d("header_size_limit", Int, "102400", 1, 0),
    d("header_address_token_limit", Int, "10240", 1, 0),
    d("mime_nesting_limit", Int, "100", 1, 0),
    d("mime_boundary_length_limit", Int, "2048", 1, 0),
    d("delay_logging_resolution_limit", Int, "2", 0, 6),
    d("tcp_windowsize", Int, "0", 0, 0),
    d("message_size_limit", Long, "10240000", 0, 0),
    d("lmdb_map_size", Long, "16777216", 1, 0),
    d("disable_dns_lookups", Bool, "no", 0, 0),
    d("soft_bounce", Bool, "no", 0, 0),
    d("owner_request_special", Bool, "yes", 0, 0),
    d("strict_8bitmime", Bool, "no", 0, 0),
    d("strict_7bit_headers", Bool, "no", 0, 0),
    d("strict_8bitmime_body", Bool, "no", 0, 0),
    d("strict_mime_encoding_domain", Bool, "no", 0, 0),
    d("disable_mime_input_processing", Bool, "no", 0, 0),
    d("disable_mime_output_conversion", Bool, "no", 0, 0),
    d("address_verify_negative_cache", Bool, "yes", 0, 0),
    d("backwards_bounce_logfile_compatibility", Bool, "yes", 0, 0),
    d("helpful_warnings", Bool, "yes", 0, 0),
    d("send_cyrus_sasl_authzid", Bool, "no", 0, 0),
    d("multi_instance_enable", Bool, "no", 0, 0),
    d("enable_long_queue_ids", Bool, "no", 0, 0),
    d("strict_smtputf8", Bool, "no", 0, 0),
    d("enable_original_recipient", Bool, "yes", 0, 0),
    d("application_event_drain_time", Time, "100s", 1, 0),
    d("max_idle", Time, "100s", 1, 0),
    d("ipc_timeout", Time, "3600s", 1, 0),
    d("ipc_idle", Time, "5s", 1, 0),
    d("ipc_ttl", Time, "1000s", 1, 0),
    d("trigger_timeout", Time, "10s", 1, 0),
    d("fork_delay", Time, "1s", 1, 0),
    d("deliver_lock_delay", Time, "1s", 1, 0),
    d("stale_lock_time", Time, "500s", 1, 0),
    d("daemon_timeout", Time, "18000s", 1, 0),
    d("in_flow_delay", Time, "1s", 0, 10),
    d("mynetworks", Computed, "", 0, 0),
    // proxymap's own table; the two proxy_*_maps must come last.
    d("alias_maps", Str, "hash:/etc/aliases, nis:mail.aliases", 0, 0),
    d("local_recipient_maps", Str, "proxy:unix:passwd.byname $alias_maps", 0, 0),
    d("virtual_alias_maps", Str, "$virtual_maps", 0, 0),
    d("virtual_alias_domains", Str, "$virtual_alias_maps", 0, 0),
    d("virtual_mailbox_maps", Str, "", 0, 0),
    d("virtual_mailbox_domains", Str, "$virtual_mailbox_maps", 0, 0),
    d("relay_recipient_maps", Str, "", 0, 0),
    d("canonical_maps", Str, "", 0, 0),
    d("sender_canonical_maps", Str, "", 0, 0),
    d("recipient_canonical_maps", Str, "", 0, 0),
    d("relocated_maps", Str, "", 0, 0),
    d("transport_maps", Str, "", 0, 0),
    d("address_verify_map", Str, "btree:$data_directory/verify_cache", 0, 0),
    d("smtpd_sender_login_maps", Str, "", 0, 0),
    d("postscreen_cache_map", Str, "btree:$data_directory/postscreen_cache", 0, 0),
    d("proxy_read_maps", Str, PROXY_READ_MAPS, 0, 0),
    d("proxy_write_maps", Str, PROXY_WRITE_MAPS, 0, 0),
];

/// Looks up a registered parameter.
pub(crate) fn find(name: &str) -> Option<&'static Def> {
    TABLE.iter().find(|d| d.name == name)
}

/// The machine's host name as gethostname() reports it.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// myhostname default: the host name, with `.$mydomain` (main.cf value,
/// else "localdomain") appended when it has no dot.
pub(crate) fn default_myhostname(mydomain_setting: Option<&str>) -> String {
    let host = hostname();
    if host.contains('.') {
        host
    } else {
        format!("{host}.{}", mydomain_setting.unwrap_or(DEF_MYDOMAIN))
    }
}

/// mydomain default: what follows the first dot of myhostname.
pub(crate) fn default_mydomain(myhostname: &str) -> String {
    match myhostname.split_once('.') {
        Some((_, domain)) => domain.to_string(),
        None => DEF_MYDOMAIN.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_unique_and_ordered() {
        let mut seen = std::collections::HashSet::new();
        for def in TABLE {
            assert!(seen.insert(def.name), "duplicate {}", def.name);
        }
        let n = TABLE.len();
        assert_eq!(TABLE[n - 2].name, "proxy_read_maps");
        assert_eq!(TABLE[n - 1].name, "proxy_write_maps");
        assert_eq!(TABLE[0].name, "compatibility_level");
    }

    #[test]
    fn domain_derivation() {
        assert_eq!(default_mydomain("mail.example.com"), "example.com");
        assert_eq!(default_mydomain("host"), "localdomain");
        let h = default_myhostname(Some("example.org"));
        assert!(h.contains('.'));
    }
}
