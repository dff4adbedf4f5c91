//! The allowlists we build from main.cf (and `-o` overrides) equal what Postfix
//! itself computes: `postconf -xh proxy_read_maps` / `proxy_write_maps` on the
//! same files, split by the allowlist rules.

mod common;

use common::TempDir;
use proxymap::config::allowlist::{proxy_allowlist, Allowlist};
use proxymap::config::Params;
use std::process::Command;

fn postconf_allowlist(dir: &std::path::Path, overrides: &[(&str, &str)], param: &str) -> Vec<String> {
    let mut cmd = Command::new("postconf");
    cmd.arg("-c").arg(dir).arg("-xh");
    for (n, v) in overrides {
        cmd.arg("-o").arg(format!("{n}={v}"));
    }
    let out = cmd.arg(param).output().expect("postconf (run scripts/install-test-deps.sh)");
    assert!(out.status.success(), "postconf: {}", String::from_utf8_lossy(&out.stderr));
    let value = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    sorted(&Allowlist::from_param(&value, param))
}

fn sorted(a: &Allowlist) -> Vec<String> {
    let mut v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn compare(tag: &str, main_cf: &str, overrides: &[(&str, &str)]) -> (Vec<String>, Vec<String>) {
    let dir = TempDir::new(tag);
    dir.write("main.cf", main_cf);
    let ov: Vec<(String, String)> = overrides.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let params = Params::load(dir.path(), &ov).expect("main.cf");
    let mut ours = Vec::new();
    for (writer, param) in [(false, "proxy_read_maps"), (true, "proxy_write_maps")] {
        let mine = sorted(&proxy_allowlist(&params, writer));
        let postfix = postconf_allowlist(dir.path(), overrides, param);
        assert_eq!(mine, postfix, "{tag}: {param} differs from postconf -xh");
        ours.push(mine);
    }
    let write = ours.pop().unwrap_or_default();
    let read = ours.pop().unwrap_or_default();
    (read, write)
}

#[test]
fn empty_main_cf() {
    let (read, write) = compare("empty", "", &[]);
    assert_eq!(read, vec!["unix:passwd.byname".to_string()]);
    assert!(write.is_empty());
}

#[test]
fn lab_main_cf() {
    // The shape of a typical proxymap lab: defaults plus explicit tables.
    let main_cf = "\
compatibility_level = 3.6
myhostname = lab.localdomain
mydestination = $myhostname, localhost
mynetworks = 127.0.0.0/8 [::1]/128
alias_maps =
smtputf8_enable = no
address_verify_map = proxy:btree:$data_directory/verify_cache
proxy_read_maps = $local_recipient_maps $mydestination $virtual_alias_maps $virtual_alias_domains
  $transport_maps $mynetworks $smtpd_recipient_restrictions
  proxy:hash:/etc/postfix/lab/small proxy:lmdb:/etc/postfix/lab/small proxy:cdb:/etc/postfix/lab/small
  proxy:texthash:/etc/postfix/lab/small proxy:regexp:/etc/postfix/lab/small.regexp
  proxy:inline:{k1=v1, k2=v2}
proxy_write_maps = $smtp_sasl_auth_cache_name $lmtp_sasl_auth_cache_name $address_verify_map
  $postscreen_cache_map proxy:btree:/var/lib/postfix/lab/wtable
";
    let (read, write) = compare("lab", main_cf, &[]);
    assert!(read.contains(&"inline:{k1=v1, k2=v2}".to_string()), "{read:?}");
    assert!(write.contains(&"btree:/var/lib/postfix/verify_cache".to_string()), "{write:?}");
}

#[test]
fn name_chains_conditionals_and_composites() {
    let main_cf = "\
base = /etc/postfix/maps
my_maps = proxy:hash:$base/a, $more_maps
more_maps = proxy:proxy:regexp:${base}/b $(third)
third = { proxy:texthash:$base/c attr=x }
enable_x = yes
virtual_alias_maps = $my_maps ${enable_x?proxy:hash:$base/x} ${disable_y?proxy:hash:$base/y}
  ${enable_x?{proxy:cidr:$base/z}:{proxy:cidr:$base/w}}
transport_maps = unionmap:{proxy:inline:{a=1}, proxy:static:foo} pipemap:{proxy:hash:$base/p1, proxy:hash:$base/p2}
relocated_maps = proxy:unionmap:{hash:$base/u} hash:$base/not-proxied
smtpd_recipient_restrictions = permit_mynetworks,
    check_recipient_access proxy:hash:$base/access,
    check_client_access proxy:cidr:$base/clients reject_unauth_destination
local_recipient_maps = proxy:unix:passwd.byname $alias_maps proxy:unix:passwd.byname
";
    let (read, _) = compare("chains", main_cf, &[]);
    for want in [
        "hash:/etc/postfix/maps/a",
        "regexp:/etc/postfix/maps/b",
        "texthash:/etc/postfix/maps/c",
        "hash:/etc/postfix/maps/x",
        "cidr:/etc/postfix/maps/z",
        "inline:{a=1}",
        "static:foo",
        "hash:/etc/postfix/maps/p2",
        "unionmap:{hash:/etc/postfix/maps/u}",
        "hash:/etc/postfix/maps/access",
    ] {
        assert!(read.contains(&want.to_string()), "missing {want} in {read:?}");
    }
    assert!(!read.iter().any(|t| t.ends_with("/y") || t.ends_with("/w") || t.contains("not-proxied")), "{read:?}");
}

#[test]
fn master_cf_override_of_postscreen_cache_map() {
    let main_cf = "postscreen_cache_map = btree:$data_directory/postscreen_cache\n";
    let (_, write) =
        compare("override", main_cf, &[("postscreen_cache_map", "proxy:btree:$data_directory/postscreen_cache")]);
    assert_eq!(write, vec!["btree:/var/lib/postfix/postscreen_cache".to_string()]);
}
