//! The Debian package: `scripts/build-deb.sh` around the binary under test,
//! installed with dpkg into a scratch root that holds a Postfix
//! configuration, checked file by file, then removed and purged: the
//! scratch root must end exactly as it began.

mod common;

use common::TempDir;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file and directory under `root` (dpkg's own database aside): its
/// mode and contents.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            if rel.starts_with("var/lib/dpkg") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                out.insert(rel, (meta.permissions().mode(), Vec::new()));
                walk(root, &path, out);
            } else {
                out.insert(rel, (meta.permissions().mode(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn dpkg(root: &Path, args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("--force-depends")
        .arg("--log=/dev/null")
        .args(args))
}

#[test]
fn the_package_installs_its_files_and_leaves_postfix_as_it_was() {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        eprintln!("skipped: dpkg-deb is not installed (not a Debian system)");
        return;
    }
    let work = TempDir::new("package");
    let out_dir = work.path().join("out");
    let built = run(Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-deb.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_proxymap"), "--out"])
        .arg(&out_dir));
    let deb = PathBuf::from(text(&built).trim());
    assert!(deb.file_name().is_some_and(|n| n.to_string_lossy().starts_with("proxymap-rs_")), "{deb:?}");

    // A scratch root with a Postfix configuration and daemon directory, and
    // an empty dpkg database.
    let root = work.path().join("root");
    for dir in ["etc/postfix", "usr/lib/postfix/sbin", "var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(file), "").expect("dpkg database");
    }
    std::fs::write(root.join("etc/postfix/main.cf"), "proxy_read_maps = proxy:hash:/etc/postfix/virtual\n")
        .expect("main.cf");
    std::fs::write(
        root.join("etc/postfix/master.cf"),
        "proxymap   unix  -       -       n       -       -       proxymap\n\
         proxywrite unix  -       -       n       -       1       proxymap\n",
    )
    .expect("master.cf");
    std::fs::write(root.join("usr/lib/postfix/sbin/proxymap"), "Postfix's proxymap\n").expect("proxymap");
    let before = snapshot(&root);

    dpkg(&root, &["-i", deb.to_str().expect("utf-8 path")]);
    let status = text(&dpkg(&root, &["-s", "proxymap-rs"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("/etc/proxymap-rs/proxymap.toml"), "the settings are a conffile: {status}");

    // The binary: executable, stripped, and it runs.
    let binary = root.join("usr/lib/postfix/sbin/proxymap-rs");
    assert_eq!(std::fs::metadata(&binary).expect("binary").permissions().mode() & 0o777, 0o755);
    let sections = text(&run(Command::new("readelf").arg("-S").arg(&binary)));
    assert!(!sections.contains(".debug_info") && !sections.contains(".symtab"), "not stripped:\n{sections}");
    let version = text(&run(Command::new(&binary).arg("--version")));
    assert!(version.starts_with(&format!("proxymap {}", env!("CARGO_PKG_VERSION"))), "{version}");

    // The man page reads with man -l.
    let man = root.join("usr/share/man/man8/proxymap-rs.8.gz");
    if Command::new("man").arg("--version").output().is_ok() {
        let page = text(&run(Command::new("man").arg("-l").arg(&man).env("MANWIDTH", "80").env("MANPAGER", "cat")));
        for heading in
            ["NAME", "SYNOPSIS", "DESCRIPTION", "SECURITY", "DIAGNOSTICS", "CONFIGURATION PARAMETERS", "SEE ALSO"]
        {
            assert!(page.contains(heading), "man page lacks {heading}:\n{page}");
        }
        assert!(page.contains("proxymap_connection_threads"), "{page}");
    } else {
        assert!(std::fs::metadata(&man).expect("man page").len() > 1000);
    }

    // Documentation and examples.
    let doc = root.join("usr/share/doc/proxymap-rs");
    for file in [
        "README.md",
        "postfix.md",
        "operating.md",
        "compatibility.md",
        "copyright",
        "examples/proxymap.toml",
        "examples/master.cf.example",
    ] {
        assert!(doc.join(file).is_file(), "missing {file}");
    }

    // The systemd unit: readiness, reload, the installed paths, hardening
    // that leaves the socket and data directories writable.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/proxymap-rs.service")).expect("unit");
    for line in [
        "Type=notify",
        "ExecStart=/usr/lib/postfix/sbin/proxymap-rs standalone --config /etc/proxymap-rs/proxymap.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/spool/postfix/private /var/lib/postfix",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line:?}:\n{unit}");
    }
    if Command::new("systemd-analyze").arg("--version").output().is_ok() {
        // Without a running systemd, verify still parses every setting.
        let unit_path = root.join("lib/systemd/system/proxymap-rs.service");
        let out = Command::new("systemd-analyze").arg("verify").arg(&unit_path).output().expect("systemd-analyze");
        let said = String::from_utf8_lossy(&out.stderr);
        for bad in ["Unknown key", "Unknown section", "Failed to parse", "Invalid", "ignoring"] {
            assert!(!said.contains(bad), "systemd-analyze verify: {said}");
        }
    }
    // The standalone settings the unit names (parsed by a unit test of
    // config::settings) serve Postfix's socket directory.
    let toml = std::fs::read_to_string(root.join("etc/proxymap-rs/proxymap.toml")).expect("settings");
    assert!(toml.contains("socket_directory = \"/var/spool/postfix/private\""), "{toml}");

    // Nothing of Postfix's was touched.
    let installed = snapshot(&root);
    for (path, entry) in &before {
        assert_eq!(installed.get(path), Some(entry), "{} changed by the install", path.display());
    }

    // Remove: only the conffile stays; purge: the root is as it was.
    dpkg(&root, &["-r", "proxymap-rs"]);
    let removed = snapshot(&root);
    let left: Vec<&PathBuf> = removed.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(left.iter().all(|p| p.starts_with("etc/proxymap-rs")), "left after removal: {left:?}");
    dpkg(&root, &["-P", "proxymap-rs"]);
    assert_eq!(snapshot(&root), before, "the scratch root differs after purge");
}
