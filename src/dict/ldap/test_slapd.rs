//! An OpenLDAP server (slapd) of the test's own, for the ldap tests: the
//! unit tests (`dict::ldap`) and, included by path as
//! `tests/common/slapd.rs`, the integration tests. It uses nothing of the
//! crate; the including module provides `TempDir`.
//!
//! A slapd.conf in a temporary directory (mdb backend, suffix
//! `dc=example,dc=com`, root `cn=admin,dc=example,dc=com` / [`ROOT_PW`]),
//! loaded with `slapadd` from the test's LDIF, listening on
//! `ldap://127.0.0.1:<free port>/` and `ldapi://<dir>/ldapi`; run in the
//! foreground as our child, stopped by its PID when dropped. The system's
//! own slapd (if any) is never touched. Tests skip, saying so, when slapd
//! is not installed.
#![allow(dead_code, unreachable_pub)] // each test uses a part

use super::TempDir;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
/// A password with characters that need care anywhere they are written.
pub const ROOT_PW: &str = "s3cr3t p#w";

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

pub struct Slapd {
    dir: TempDir,
    port: u16,
    /// The `ldaps://` port; 0 when no certificate could be made.
    tls_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Slapd {
    /// A running server holding `ldif` (after the suffix entry, which this
    /// writes), or None (after saying why on stderr) when slapd is not
    /// installed.
    pub fn start(tag: &str, ldif: &str) -> Option<Slapd> {
        if !std::path::Path::new(SLAPD).exists() {
            eprintln!("skipped: slapd is not installed (scripts/install-test-deps.sh installs it)");
            return None;
        }
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.path().join("db")).expect("db dir");
        let d = dir.path().display().to_string();
        let schemas: String = ["core", "cosine", "inetorgperson", "misc", "dyngroup"]
            .iter()
            .map(|s| format!("include /etc/ldap/schema/{s}.schema\n"))
            .collect();
        let tls = if make_certificate(dir.path()) {
            format!("TLSCertificateFile {d}/cert.pem\nTLSCertificateKeyFile {d}/key.pem\n")
        } else {
            eprintln!("no TLS: openssl could not make a certificate");
            String::new()
        };
        let conf = format!(
            "{schemas}{tls}pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw \"{ROOT_PW}\"\n\
             directory {d}/db\nindex objectClass eq\nindex mail,uid eq\n"
        );
        std::fs::write(dir.path().join("slapd.conf"), conf).expect("slapd.conf");
        let base = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n{ldif}"
        );
        std::fs::write(dir.path().join("data.ldif"), base).expect("ldif");
        let out = Command::new(SLAPADD)
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .arg("-l")
            .arg(dir.path().join("data.ldif"))
            .output()
            .expect("slapadd");
        assert!(out.status.success(), "slapadd failed: {}", String::from_utf8_lossy(&out.stderr));
        let has_tls = !tls.is_empty();
        let mut server = Slapd { dir, port: 0, tls_port: 0, child: None };
        server.port = free_port();
        if has_tls {
            server.tls_port = free_port();
        }
        server.run();
        Some(server)
    }

    /// Start slapd on our port and socket, and wait until it answers.
    fn run(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("slapd.log"))
            .expect("slapd.log");
        let err = log.try_clone().expect("log");
        let mut urls = format!("{} {}", self.url(), self.ldapi_url());
        if self.tls_port != 0 {
            urls = format!("{urls} ldaps://127.0.0.1:{}/", self.tls_port);
        }
        let child = Command::new(SLAPD)
            .args(["-d", "0", "-f"])
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &urls])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() || !self.socket().exists() {
            assert!(Instant::now() < deadline, "slapd did not start: {}", self.log_text());
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("slapd exited ({status}): {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ldap://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ldaps://127.0.0.1:<port>/`, and the certificate to trust (the
    /// server's own, self-signed for 127.0.0.1); None without TLS.
    pub fn tls(&self) -> Option<(String, PathBuf)> {
        (self.tls_port != 0)
            .then(|| (format!("ldaps://127.0.0.1:{}/", self.tls_port), self.dir.path().join("cert.pem")))
    }

    /// The UNIX socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("ldapi")
    }

    /// `ldapi://<socket, %-encoded>/`
    pub fn ldapi_url(&self) -> String {
        let path = self.socket().display().to_string().replace('%', "%25").replace('/', "%2F");
        format!("ldapi://{path}/")
    }

    /// The server's process id (0 when stopped).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Stop the server (by its PID) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(self.socket());
        }
    }

    /// Stop and start again on the same port and socket, with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

/// A self-signed certificate for 127.0.0.1 (cert.pem, key.pem in `dir`).
fn make_certificate(dir: &std::path::Path) -> bool {
    Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory both the unit and the differential tests load: people
/// with multi-valued mail attributes, a terminal one (`mailHost`), values
/// with the filter specials `*()\`, groups with member DNs (nested, and
/// one naming a DN that does not exist), a dynamic group with member URLs,
/// and three entries sharing a `mail` value (size limits).
pub const SAMPLE_LDIF: &str = r"dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@example.com
mail: team@example.com
mailLocalAddress: alice@example.com
mailLocalAddress: a@example.com
mailLocalAddress: liddell@example.org
mailRoutingAddress: alice@mail.example.com
description: leaf-alice

dn: uid=bob,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: bob
cn: Bob
sn: B
mail: bob@sub.example.com
mail: team@example.com
mailLocalAddress: bob@sub.example.com
mailRoutingAddress: bob@mail.example.com
description: leaf-bob

dn: uid=carol,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: carol
cn: Carol
sn: C
mail: carol@example.com
mail: team@example.com
mailRoutingAddress: carol@mail.example.com
mailHost: forward.example.net
description: leaf-carol

dn: uid=star,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: star
cn: Star
sn: S
mail: st*r(x)\@example.com
description: special*chars()\

dn: uid=plainstar,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: plainstar
cn: Plain
sn: P
mail: str@example.com
description: only matched by a wildcard

dn: uid=a\,b,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: a,b
cn: Comma
sn: C
mail: a,b@example.com
description: comma-in-dn

dn: ou=groups,dc=example,dc=com
objectClass: organizationalUnit
ou: groups

dn: cn=staff,ou=groups,dc=example,dc=com
objectClass: groupOfNames
objectClass: extensibleObject
cn: staff
mail: staff@example.com
member: uid=alice,ou=people,dc=example,dc=com
member: uid=bob,ou=people,dc=example,dc=com
description: leaf-staff

dn: cn=all,ou=groups,dc=example,dc=com
objectClass: groupOfNames
objectClass: extensibleObject
cn: all
mail: all@example.com
member: cn=staff,ou=groups,dc=example,dc=com
member: uid=carol,ou=people,dc=example,dc=com

dn: cn=ghosts,ou=groups,dc=example,dc=com
objectClass: groupOfNames
objectClass: extensibleObject
cn: ghosts
mail: ghosts@example.com
member: uid=alice,ou=people,dc=example,dc=com
member: uid=ghost,ou=people,dc=example,dc=com

dn: cn=dynamic,ou=groups,dc=example,dc=com
objectClass: groupOfURLs
objectClass: extensibleObject
cn: dynamic
mail: dynamic@example.com
memberURL: ldap:///ou=people,dc=example,dc=com??sub?(uid=bob)
memberURL: ldap:///ou=people,dc=example,dc=com?uid?sub?(uid=alice)
";
