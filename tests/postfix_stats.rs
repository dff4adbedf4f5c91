//! Statistics under a real master(8): independent processes (max_use=2, so
//! several of them serve the clients one after another) add to one file,
//! and `proxymap stats` finds it through main.cf's data_directory.

mod common;

use common::postfix::{ours_binary, Instance, Server};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

const MAIN_CF: &str = "proxy_read_maps = proxy:inline:{k1=v1}\n";

fn metric(text: &str, series: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn counts_of_processes_under_master_are_gathered_in_one_file() {
    let mut inst = Instance::new("stats", MAIN_CF, Server::Ours);
    inst.postconf(&["-P", "proxymap/unix/max_use=2"]);
    inst.start();
    for (key, want) in [("k1", "v1\n"); 6].into_iter().chain([("nokey", ""); 2]) {
        let out = inst.postmap(&["-q", key, "proxy:inline:{k1=v1}"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{}", inst.log());
    }
    // The denied one: postmap asks proxymap to open a table it may not.
    let out = inst.postmap(&["-q", "k1", "proxy:inline:{k2=v2}"]);
    assert!(!out.status.success());

    let out = Command::new(ours_binary())
        .args(["stats", "--format", "prometheus", "--config"])
        .arg(&inst.config)
        .output()
        .expect("proxymap stats");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let series = |request: &str, status: &str| {
        format!("proxymap_requests_total{{service=\"proxymap\",table=\"inline:{{k1=v1}}\",request=\"{request}\",status=\"{status}\"}} ")
    };
    assert_eq!(metric(&text, &series("lookup", "ok")), 6);
    assert_eq!(metric(&text, &series("lookup", "noent")), 2);
    assert_eq!(metric(&text, &series("open", "ok")), 8, "postmap opens before it looks up");
    let denied =
        "proxymap_requests_total{service=\"proxymap\",table=\"(unapproved)\",request=\"open\",status=\"deny\"} ";
    assert_eq!(metric(&text, denied), 1);
    assert_eq!(metric(&text, "proxymap_connections_total{service=\"proxymap\"} "), 9);
    // Two clients per process: at least five processes served them.
    let started = metric(&text, "proxymap_processes_started_total{service=\"proxymap\"} ");
    assert!(started >= 5, "{started} processes started\n{text}");

    // Created by a root process that then became mail_owner: owned by
    // mail_owner, as Postfix's own files in data_directory.
    let file = inst.dir.path().join("data/proxymap-rs/proxymap.stats");
    let owner = nix::unistd::User::from_name("postfix").ok().flatten().expect("postfix user");
    let meta = std::fs::metadata(&file).expect("statistics file");
    assert_eq!(meta.uid(), owner.uid.as_raw(), "{}", file.display());
    inst.stop();
}
