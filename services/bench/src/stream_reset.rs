//! A lost NATS store under a running deployment: nats-server, `enspace
//! tokens` and an `enspace api-node` as real processes, the control plane
//! holding many tokens. NATS is restarted on an empty store; right after,
//! one token is created and an old one revoked. Measured: the time from
//! NATS' return until the running node is consistent again (the new token
//! works, the old one is refused), which needs the whole stream refilled
//! from the control plane's log. Baseline in the same run: a fresh node's
//! catch-up on the refilled stream.

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use crate::support::{Nats, Process, sign_in};
use crate::verdict::Verdict;

#[derive(clap::Args)]
pub struct Args {
    /// Tokens the control plane holds before the loss.
    #[arg(long, default_value_t = 100_000)]
    tokens: usize,
    /// Concurrent creating clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The enspace binary (built with `cargo build --release --bin enspace`).
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
}

const TARGET: Duration = Duration::from_secs(5);

pub fn run(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure(args))
}

async fn create(
    client: &reqwest::Client,
    base: &str,
    session: &str,
) -> anyhow::Result<(String, String)> {
    let res = client
        .post(format!("{base}/v1/tokens"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"description":"reset","expiration":"never","scopes":["read"],"workspaces":["acme"]}"#)
        .send()
        .await?;
    anyhow::ensure!(res.status() == 201, "create answered {}", res.status());
    let body: Value = serde_json::from_slice(&res.bytes().await?)?;
    Ok((
        body["token"]["id"].as_str().context("id")?.to_owned(),
        body["secret"].as_str().context("secret")?.to_owned(),
    ))
}

async fn status(client: &reqwest::Client, node: &str, secret: &str) -> u16 {
    client
        .get(format!("http://{node}/api/v1/workspaces/acme/records"))
        .header(AUTHORIZATION, format!("Bearer {secret}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn until(timeout: Duration, mut done: impl AsyncFnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done().await {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("not within {timeout:?}")
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let mut nats = Nats::start()?;
    let data = tempfile::tempdir()?;
    let data_dir = data.path().to_str().context("utf-8 path")?;
    let tokens = Process::enspace(
        &args.binary,
        &["tokens", "--data", data_dir, "--nats-url", &nats.url()],
    )?;
    tokens.wait_ready(Duration::from_secs(30))?;
    let key = crate::support::event_key_of(data.path())?;
    let node = Process::enspace(
        &args.binary,
        &[
            "api-node",
            "--nats-url",
            &nats.url(),
            "--node-id",
            "old",
            "--event-key",
            &key,
        ],
    )?;
    node.wait_ready(Duration::from_secs(30))?;
    let base = format!("http://{}", tokens.base);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let session = sign_in(&client, &base).await?;

    let filled = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, base, session, next) =
            (client.clone(), base.clone(), session.clone(), next.clone());
        let n = args.tokens;
        workers.push(tokio::spawn(async move {
            let mut first = None;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let made = create(&client, &base, &session).await?;
                first.get_or_insert(made);
            }
            anyhow::Ok(first)
        }));
    }
    let mut old = None;
    for worker in workers {
        if let Some(made) = worker.await?? {
            old.get_or_insert(made);
        }
    }
    let (old_id, old_secret) = old.context("no token made")?;
    let (_, last_secret) = create(&client, &base, &session).await?;
    until(Duration::from_secs(120), async || {
        status(&client, &node.base, &last_secret).await == 200
    })
    .await?;
    println!(
        "{} tokens made and on the node in {:.1?}",
        args.tokens + 1,
        filled.elapsed()
    );

    nats.wipe_and_restart()?;
    let back = Instant::now();
    // Acknowledged once in the control plane's log, whether or not NATS
    // has it yet.
    let (_, new_secret) = create(&client, &base, &session).await?;
    let res = client
        .delete(format!("{base}/v1/tokens/{old_id}"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .send()
        .await?;
    anyhow::ensure!(res.status() == 204, "revoke answered {}", res.status());
    let consistent = until(Duration::from_secs(120), async || {
        status(&client, &node.base, &new_secret).await == 200
            && status(&client, &node.base, &old_secret).await == 401
    })
    .await?;
    let consistent = back.elapsed().max(consistent);

    let fresh = Process::enspace(
        &args.binary,
        &[
            "api-node",
            "--nats-url",
            &nats.url(),
            "--node-id",
            "fresh",
            "--event-key",
            &key,
        ],
    )?;
    let fresh_start = Instant::now();
    until(Duration::from_secs(120), async || {
        status(&client, &fresh.base, &new_secret).await == 200
    })
    .await?;
    let fresh_catch_up = fresh_start.elapsed();

    println!("NATS store lost under {} tokens:", args.tokens + 2);
    println!(
        "  running node consistent again       {:>8.2} s after NATS returned",
        consistent.as_secs_f64()
    );
    println!(
        "  baseline: a fresh node's catch-up   {:>8.2} s on the refilled stream",
        fresh_catch_up.as_secs_f64()
    );
    println!(
        "ratio {:.2}   target: < {} s ({})",
        consistent.as_secs_f64() / fresh_catch_up.as_secs_f64().max(1e-3),
        TARGET.as_secs(),
        // One outage, one measurement.
        Verdict::new(1, 0, 1, consistent < TARGET)
    );
    Ok(())
}
