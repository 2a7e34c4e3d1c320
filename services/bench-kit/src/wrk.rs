//! Running `wrk` and reading its figures.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{Context, bail};

pub struct WrkResult {
    /// Responses wrk counted.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn to_ms(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = value.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => return None,
    })
}

pub fn wrk(addr: SocketAddr, path: &str, seconds: u64, header: &str) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            header,
        ])
        .arg(format!("http://{addr}{path}"))
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    };
    if text.contains("Non-2xx") {
        bail!("wrk saw non-2xx answers:\n{text}");
    }
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no request count in wrk output")?;
    Ok(WrkResult {
        requests,
        requests_per_sec: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .context("no Requests/sec in wrk output")?,
        p50_ms: field("50%").and_then(|v| to_ms(&v)).context("no p50")?,
        p99_ms: field("99%").and_then(|v| to_ms(&v)).context("no p99")?,
    })
}

/// `rounds` of `wrk` on the baseline and the subject, alternating which
/// goes first so that drift hits both alike; each round printed with the
/// two labels.
pub fn alternate(
    (baseline, baseline_label): (SocketAddr, &str),
    (subject, subject_label): (SocketAddr, &str),
    path: &str,
    seconds: u64,
    rounds: usize,
    header: &str,
) -> anyhow::Result<(Vec<WrkResult>, Vec<WrkResult>)> {
    let (mut baseline_runs, mut subject_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // ABBA: every other round the subject goes first, so that whatever
        // favours the first (or the second) run of a round hits both.
        let (b, s) = if round % 2 == 0 {
            let b = wrk(baseline, path, seconds, header)?;
            (b, wrk(subject, path, seconds, header)?)
        } else {
            let s = wrk(subject, path, seconds, header)?;
            (wrk(baseline, path, seconds, header)?, s)
        };
        println!(
            "round {}: {baseline_label} {:>9.0} req/s p99 {:.3} ms | {subject_label} {:>9.0} req/s p99 {:.3} ms",
            round + 1,
            b.requests_per_sec,
            b.p99_ms,
            s.requests_per_sec,
            s.p99_ms
        );
        baseline_runs.push(b);
        subject_runs.push(s);
    }
    Ok((baseline_runs, subject_runs))
}

/// The mean of one figure over runs.
pub fn mean(runs: &[WrkResult], figure: fn(&WrkResult) -> f64) -> f64 {
    runs.iter().map(figure).sum::<f64>() / runs.len().max(1) as f64
}
