//! Builds csrc/dbshim.c, the C veneer over Berkeley DB 5.3 used by the
//! hash:/btree: tables (src/sys/db.rs), and links libdb-5.3.

use std::io::Write;
use std::process::{Command, Stdio};

const HINT: &str = "install libdb5.3-dev (scripts/install-deps.sh)";

fn main() {
    println!("cargo:rerun-if-changed=csrc/dbshim.c");
    println!("cargo:rerun-if-changed=build.rs");
    probe_header();
    commit();
    cc::Build::new().file("csrc/dbshim.c").warnings(true).compile("dbshim");
    println!("cargo:rustc-link-lib=dylib=db-5.3");
}

/// Fail early, with a clear message, when db.h is missing or is not 5.3:
/// without this the build would die inside the C compiler's output.
fn probe_header() {
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let mut cmd: Command = compiler.to_command();
    cmd.args(["-E", "-x", "c", "-o", "/dev/null", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run the C compiler ({e}): {HINT}"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let probe = "#include <db.h>\n\
                     #if DB_VERSION_MAJOR != 5 || DB_VERSION_MINOR != 3\n\
                     #error Berkeley DB 5.3 required\n\
                     #endif\n";
        let _ = stdin.write_all(probe.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "Berkeley DB 5.3 header db.h not found or not version 5.3: {HINT}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run the C compiler ({e}): {HINT}"),
    }
}

/// The git commit being built, for `proxymap --version` (none outside a
/// git checkout, e.g. from a source package).
fn commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(id) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=PROXYMAP_COMMIT={id}");
    }
    // Built again when HEAD moves (a commit, a checkout).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = std::fs::read_to_string(format!("{dir}/HEAD"))
            .ok()
            .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
        {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
}
