//! Flood fairness against a real `enspace serve` process (release build):
//! one token (alice's) under `wrk -t2 -c64` at full speed while another
//! (bob's) calls at `--light-rate` (100) per second, for `--seconds` (30).
//! Then: how many of the light token's records were indexed, and the heavy
//! token's served, indexed and dropped counts (`/requests/stats`).
//!
//! Baseline, same run: the light token alone at the same rate for 10 s.
//! Target: the light token's records 100 % indexed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::support::Process;
use crate::verdict::Verdict;
use crate::wrk::wrk;

/// Fewer light calls than this prove nothing of fairness.
const MIN_LIGHT_CALLS: usize = 100;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of flood.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Calls per second of the light token.
    #[arg(long, default_value_t = 100)]
    light_rate: u32,
    /// The serve process's `--record-queue-capacity` (its default if absent).
    #[arg(long)]
    record_queue_capacity: Option<usize>,
    /// The enspace binary (built with `cargo build --release --bin enspace`).
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
}

const PATH: &str = "/api/v1/workspaces/acme/records";
const BASELINE: Duration = Duration::from_secs(10);

async fn session(client: &reqwest::Client, base: &str, user: &str) -> anyhow::Result<String> {
    let res = client
        .post(format!("{base}/v1/session"))
        .header(CONTENT_TYPE, "application/json")
        .body(format!(
            r#"{{"username":"{user}","password":"{user}-password"}}"#
        ))
        .send()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    body["session"]
        .as_str()
        .map(str::to_owned)
        .context("no session")
}

/// A read token in acme: (id, secret).
async fn token(
    client: &reqwest::Client,
    base: &str,
    session: &str,
) -> anyhow::Result<(String, String)> {
    let res = client
        .post(format!("{base}/v1/tokens"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"description":"fairness","expiration":"3m","scopes":["read"],"workspaces":["acme"]}"#)
        .send()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    Ok((
        body["token"]["id"]
            .as_str()
            .context("no token id")?
            .to_owned(),
        body["secret"].as_str().context("no secret")?.to_owned(),
    ))
}

/// (indexed, dropped) of a token over the last day.
async fn accounted(
    client: &reqwest::Client,
    base: &str,
    session: &str,
    id: &str,
) -> anyhow::Result<(u64, u64)> {
    let res = client
        .get(format!("{base}/v1/tokens/{id}/requests/stats"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .send()
        .await?;
    let stats: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    let indexed = stats["buckets"]
        .as_array()
        .context("no buckets")?
        .iter()
        .filter_map(|b| b["total"].as_u64())
        .sum();
    Ok((indexed, stats["dropped"].as_u64().context("no dropped")?))
}

/// Calls at `rate` per second for `length`; how many were answered 200.
async fn paced(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    rate: u32,
    length: Duration,
) -> u64 {
    let step = Duration::from_secs(1) / rate.max(1);
    let start = tokio::time::Instant::now();
    let mut ok = 0;
    let mut n = 0u32;
    while start.elapsed() < length {
        tokio::time::sleep_until(start + step * n).await;
        n += 1;
        if client
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {secret}"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ok += 1;
        }
    }
    ok
}

/// Waits (up to a minute) until `want` records of the token are indexed;
/// what was indexed and dropped then, and how long it took.
async fn settle(
    client: &reqwest::Client,
    base: &str,
    session: &str,
    id: &str,
    want: u64,
) -> anyhow::Result<(u64, u64, Duration)> {
    let start = Instant::now();
    loop {
        let (indexed, dropped) = accounted(client, base, session, id).await?;
        if indexed + dropped >= want || start.elapsed() > Duration::from_secs(60) {
            return Ok((indexed, dropped, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.seconds == 0 || args.light_rate == 0 {
        bail!("--seconds and --light-rate must be at least 1");
    }
    let data = tempfile::tempdir()?;
    let dir = data.path().to_string_lossy().into_owned();
    let capacity = args.record_queue_capacity.map(|c| c.to_string());
    let mut serve_args = vec!["serve", "--data", dir.as_str()];
    if let Some(c) = &capacity {
        serve_args.extend(["--record-queue-capacity", c.as_str()]);
    }
    let serve = Process::enspace(&args.binary, &serve_args)?;
    serve.wait_ready(Duration::from_secs(30))?;
    let base = format!("http://{}", serve.base);
    let addr: SocketAddr = serve.base.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let url = format!("{base}{PATH}");
    let (alice, bob, heavy, light, baseline_light) = runtime.block_on(async {
        let alice = session(&client, &base, "alice").await?;
        let bob = session(&client, &base, "bob").await?;
        let heavy = token(&client, &base, &alice).await?;
        let light = token(&client, &base, &bob).await?;
        let baseline_light = token(&client, &base, &bob).await?;
        anyhow::Ok((alice, bob, heavy, light, baseline_light))
    })?;

    // Baseline: the light load alone.
    let baseline_calls = runtime.block_on(paced(
        &client,
        &url,
        &baseline_light.1,
        args.light_rate,
        BASELINE,
    ));
    let (baseline_indexed, baseline_dropped, baseline_settled) = runtime.block_on(settle(
        &client,
        &base,
        &bob,
        &baseline_light.0,
        baseline_calls,
    ))?;

    // The flood beside the light load.
    let length = Duration::from_secs(args.seconds);
    let light_task = {
        let (client, url, secret, rate) = (
            client.clone(),
            url.clone(),
            light.1.clone(),
            args.light_rate,
        );
        runtime.spawn(async move { paced(&client, &url, &secret, rate, length).await })
    };
    let flood = wrk(
        addr,
        PATH,
        args.seconds,
        &format!("Authorization: Bearer {}", heavy.1),
    )?;
    let light_calls = runtime.block_on(light_task)?;
    let (light_indexed, light_dropped, light_settled) =
        runtime.block_on(settle(&client, &base, &bob, &light.0, light_calls))?;
    let (heavy_indexed, heavy_dropped, _) =
        runtime.block_on(settle(&client, &base, &alice, &heavy.0, flood.requests))?;

    let pct = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
    println!(
        "enspace serve, heavy token under wrk -t2 -c64 for {} s, light token at {}/s:",
        args.seconds, args.light_rate
    );
    println!(
        "  baseline, light token alone for {} s: {baseline_calls} calls, {baseline_indexed} indexed ({:.1} %), {baseline_dropped} dropped, all indexed within {:.2} s",
        BASELINE.as_secs(),
        pct(baseline_indexed, baseline_calls),
        baseline_settled.as_secs_f64()
    );
    println!(
        "  light token beside the flood:     {light_calls} calls, {light_indexed} indexed ({:.1} %), {light_dropped} dropped, all indexed within {:.2} s (target 100 %)",
        pct(light_indexed, light_calls),
        light_settled.as_secs_f64()
    );
    println!(
        "  heavy token: {} served ({:.0} req/s), {heavy_indexed} indexed, {heavy_dropped} dropped, {} unaccounted",
        flood.requests,
        flood.requests_per_sec,
        flood.requests as i64 - (heavy_indexed + heavy_dropped) as i64
    );
    println!(
        "  target {}",
        Verdict::new(
            usize::try_from(light_calls).unwrap_or(usize::MAX),
            usize::try_from(light_calls.saturating_sub(light_indexed) + light_dropped)
                .unwrap_or(usize::MAX),
            MIN_LIGHT_CALLS,
            true
        )
    );
    Ok(())
}
