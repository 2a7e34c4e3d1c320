//! An API node's read route under `wrk -t2 -c64`, side by side: the same
//! router and layers with the auth layer, and with it switched off.
//! Rounds alternate (off, on, off, on, …) so drift hits both alike.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
use enspace_api_node::{NodeState, records};
use enspace_core::SystemClock;
use prometheus_client::registry::Registry;
use rand::SeedableRng;
use tokio::sync::watch;

use crate::support::{created_event, fake_secret};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per wrk round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds per side.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Tokens in the replica.
    #[arg(long, default_value_t = 100_000)]
    tokens: usize,
}

const PATH: &str = "/api/v1/workspaces/acme/records";

struct WrkResult {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
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

fn wrk(addr: SocketAddr, seconds: u64, header: &str) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            header,
        ])
        .arg(format!("http://{addr}{PATH}"))
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
    Ok(WrkResult {
        requests_per_sec: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .context("no Requests/sec in wrk output")?,
        p50_ms: field("50%").and_then(|v| to_ms(&v)).context("no p50")?,
        p99_ms: field("99%").and_then(|v| to_ms(&v)).context("no p99")?,
    })
}

async fn serve(router: Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok(addr)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let secrets: Vec<String> = (0..args.tokens).map(|_| fake_secret(&mut rng)).collect();
    let (on, off) = runtime.block_on(async {
        let mut registry = Registry::default();
        let (_ready_tx, ready) = watch::channel(true);
        let node = NodeState::new("bench", Arc::new(SystemClock), &mut registry, None, ready);
        for (i, secret) in secrets.iter().enumerate() {
            node.replica()
                .apply(&created_event(i as u64 + 1, secret, "alice"));
        }
        let http = enspace_http::HttpMetrics::register(&mut registry);
        let with_auth =
            enspace_http::layers::harden(enspace_api_node::api_routes(node.clone()), http.clone());
        let without_auth = enspace_http::layers::harden(
            Router::new()
                .route(
                    "/api/v1/workspaces/{ws}/records",
                    get(records::list_records),
                )
                .with_state(node),
            http,
        );
        anyhow::Ok((serve(with_auth).await?, serve(without_auth).await?))
    })?;
    let header = format!("Authorization: Bearer {}", secrets[args.tokens / 2]);

    let (mut on_runs, mut off_runs) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let off_run = wrk(off, args.seconds, &header)?;
        let on_run = wrk(on, args.seconds, &header)?;
        println!(
            "round {}: auth off {:>9.0} req/s p99 {:.3} ms | auth on {:>9.0} req/s p99 {:.3} ms",
            round + 1,
            off_run.requests_per_sec,
            off_run.p99_ms,
            on_run.requests_per_sec,
            on_run.p99_ms
        );
        off_runs.push(off_run);
        on_runs.push(on_run);
    }
    let mean = |runs: &[WrkResult], f: fn(&WrkResult) -> f64| {
        runs.iter().map(f).sum::<f64>() / runs.len() as f64
    };
    let (rps_on, rps_off) = (
        mean(&on_runs, |r| r.requests_per_sec),
        mean(&off_runs, |r| r.requests_per_sec),
    );
    let (p99_on, p99_off) = (mean(&on_runs, |r| r.p99_ms), mean(&off_runs, |r| r.p99_ms));
    let (p50_on, p50_off) = (mean(&on_runs, |r| r.p50_ms), mean(&off_runs, |r| r.p50_ms));
    println!(
        "wrk -t2 -c64 GET {PATH}, {} tokens in the replica, mean of {} rounds:",
        args.tokens, args.rounds
    );
    println!(
        "  auth off (baseline): {rps_off:>9.0} req/s   p50 {p50_off:.3} ms   p99 {p99_off:.3} ms"
    );
    println!(
        "  auth on:             {rps_on:>9.0} req/s   p50 {p50_on:.3} ms   p99 {p99_on:.3} ms"
    );
    println!(
        "  throughput ratio on/off: {:.3} (target >= 0.85); p99 added by auth: {:.3} ms (target < 1 ms)",
        rps_on / rps_off,
        p99_on - p99_off
    );
    Ok(())
}
