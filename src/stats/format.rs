//! `proxymap stats` output: a table for people, Prometheus's text format
//! for node_exporter's textfile collector or a scraper.

use super::layout as l;
use super::reader::ServiceTotals;
use std::fmt::Write;

/// A latency bound for people: 512us, 4ms, 1.0s; ">8.4s" past the last.
fn duration(q: Option<Option<f64>>) -> String {
    match q {
        None => "-".into(),
        Some(None) => format!(">{:.1}s", l::bucket_bound(l::BUCKETS - 2).unwrap_or(0.0)),
        Some(Some(s)) if s < 1e-3 => format!("{}us", (s * 1e6).round()),
        Some(Some(s)) if s < 1.0 => format!("{:.3}ms", s * 1e3),
        Some(Some(s)) => format!("{s:.1}s"),
    }
}

/// The table: one block per service.
pub fn table(services: &[ServiceTotals]) -> String {
    let mut out = String::new();
    for s in services {
        let _ = writeln!(
            out,
            "service {}: processes {} alive, {} started; connections {} open, {} total; tables open {}",
            s.service, s.alive, s.starts, s.connections_open, s.connections, s.tables_open
        );
        // Names escaped as in labels: one row per table, whatever the name.
        let names: Vec<String> = s.tables.iter().map(|t| label(&t.name)).collect();
        let width = names.iter().map(String::len).max().unwrap_or(0).max(5);
        let _ = writeln!(
            out,
            "  {:<width$} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}",
            "table", "requests", "lookups", "hits", "misses", "retry", "deny", "bad", "config", "p50", "p99"
        );
        for (t, name) in s.tables.iter().zip(&names) {
            let _ = writeln!(
                out,
                "  {:<width$} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}",
                name,
                t.requests(),
                t.lookups(),
                t.counts[1][0],
                t.counts[1][1],
                t.with_status(2),
                t.with_status(4),
                t.with_status(3),
                t.with_status(5),
                duration(t.quantile(0.5)),
                duration(t.quantile(0.99)),
            );
        }
    }
    out
}

/// A label value as the text format wants it: backslash, double quote
/// and newline escaped.
pub(crate) fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A service-wide metric: name, type, help, value.
type ServiceMetric = (&'static str, &'static str, &'static str, fn(&ServiceTotals) -> u64);

/// Prometheus text format (version 0.0.4).
pub fn prometheus(services: &[ServiceTotals]) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut out, "proxymap_requests_total", "counter", "Requests answered, by table, request and status.");
    for s in services {
        let svc = label(&s.service);
        for t in &s.tables {
            let table = label(&t.name);
            for (op, row) in t.counts.iter().enumerate() {
                // Lookups always (stable series); other requests once seen.
                if op != 1 && row.iter().all(|&n| n == 0) {
                    continue;
                }
                for (status, n) in row.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "proxymap_requests_total{{service=\"{svc}\",table=\"{table}\",request=\"{}\",status=\"{}\"}} {n}",
                        l::OPS[op],
                        l::STATUSES[status]
                    );
                }
            }
        }
    }
    family(&mut out, "proxymap_lookup_duration_seconds", "histogram", "Time lookups took in the table.");
    for s in services {
        let svc = label(&s.service);
        for t in s.tables.iter().filter(|t| t.buckets.iter().any(|&n| n > 0)) {
            let table = label(&t.name);
            let mut cumulative = 0;
            for (b, n) in t.buckets.iter().enumerate() {
                cumulative += n;
                let le = l::bucket_bound(b).map_or_else(|| "+Inf".to_string(), |s| format!("{s}"));
                let _ = writeln!(
                    out,
                    "proxymap_lookup_duration_seconds_bucket{{service=\"{svc}\",table=\"{table}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let labels = format!("service=\"{svc}\",table=\"{table}\"");
            let _ = writeln!(out, "proxymap_lookup_duration_seconds_sum{{{labels}}} {}", t.latency_sum_ns as f64 / 1e9);
            let _ = writeln!(out, "proxymap_lookup_duration_seconds_count{{{labels}}} {cumulative}");
        }
    }
    let service_metrics: [ServiceMetric; 5] = [
        ("proxymap_processes_started_total", "counter", "Processes started (restarts included).", |s| s.starts),
        ("proxymap_processes", "gauge", "Processes running now.", |s| s.alive),
        ("proxymap_connections_total", "counter", "Client connections accepted.", |s| s.connections),
        ("proxymap_connections", "gauge", "Client connections open now.", |s| s.connections_open),
        ("proxymap_open_tables", "gauge", "Tables open now, summed over the processes.", |s| s.tables_open),
    ];
    for (name, kind, help, value) in service_metrics {
        family(&mut out, name, kind, help);
        for s in services {
            let _ = writeln!(out, "{name}{{service=\"{}\"}} {}", label(&s.service), value(s));
        }
    }
    out
}
