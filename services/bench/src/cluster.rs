//! The control plane as a cluster (`enspace tokens --cluster`), as real
//! processes on real nats-servers (the release `enspace` binary):
//!
//! - durable creations through the JetStream commit point, with one replica
//!   (one NATS server) and three (a 3-server cluster on loopback), beside
//!   the single process of before (sled commit, then the outbox) in the same
//!   run: saturation, and p99 at a fixed rate (open loop);
//! - follower lag: a creation's `201` from the writer until the follower
//!   serves the token;
//! - failover as clients see it ([`failover`]): SIGKILL of the writer under
//!   three clients' load until the first acknowledged write, over many kills
//!   (the killed process restarts and catches up between kills), beside
//!   when the lease moved; and SIGKILL of the NATS server leading the token
//!   events stream, beside JetStream's own election.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{AUTHORIZATION, HeaderValue};

use crate::clusters::{Member, NatsCluster, wait_writer};
use crate::create::{Load, load, paced};
use crate::support::{Nats, percentile, sign_in};
use crate::verdict::Verdict;

mod failover;

#[derive(clap::Args)]
pub struct Args {
    /// The `enspace` binary.
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
    /// Creations of the saturation runs.
    #[arg(long, default_value_t = 3000)]
    count: usize,
    /// Concurrent clients of the saturation runs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Creations per second of the paced runs.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of each paced run.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Writers killed in the failover run.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// NATS servers killed (the one leading the token events stream) in the
    /// NATS server loss run.
    #[arg(long, default_value_t = 3)]
    nats_kills: usize,
    /// Creations timed from writer to follower.
    #[arg(long, default_value_t = 300)]
    lag_samples: usize,
}

const TARGET_R3_PER_SEC: f64 = 2000.0;
const TARGET_R3_P99: Duration = Duration::from_millis(25);
const TARGET_LAG_P99: Duration = Duration::from_millis(50);
/// Fewer timed creations than this say nothing of a p99.
const MIN_LAG_SAMPLES: usize = 100;
const MIN_P99_SAMPLES: usize = 1000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::support::require_binary(&args.binary)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

fn create_request(
    client: &reqwest::Client,
    base: &str,
    session: &str,
) -> anyhow::Result<impl Fn(usize) -> reqwest::RequestBuilder + Clone + Send + Sync + 'static> {
    let auth = HeaderValue::from_str(&format!("Bearer {session}"))?;
    let (client, url) = (client.clone(), format!("{base}/v1/tokens"));
    Ok(move |i: usize| {
        client
            .post(&url)
            .header(AUTHORIZATION, auth.clone())
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"description":"bench {i}","expiration":"1y","scopes":["read"],"workspaces":["acme"]}}"#
            ))
    })
}

/// Saturation and paced creations through `base`.
async fn creations(
    args: &Args,
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<(Load, Load)> {
    let session = sign_in(client, base).await?;
    let create = create_request(client, base, &session)?;
    load(200, 16, &create, 201).await?; // warm-up
    let saturation = load(args.count, args.concurrency, &create, 201).await?;
    let n = (args.rate * args.seconds) as usize;
    let at_rate = paced(n, args.rate, &create, 201).await?;
    Ok((saturation, at_rate))
}

fn report(name: &str, (saturation, at_rate): &(Load, Load), rate: u32) {
    println!(
        "  {name:<34} {:>6.0} creations/s   at {rate}/s: p50 {:.2} ms  p99 {:.2} ms",
        saturation.per_sec,
        ms(at_rate.p(0.50)),
        ms(at_rate.p(0.99)),
    );
}

/// Two members on `url` sharing a key; returns them with the writer first.
async fn pair(
    args: &Args,
    client: &reqwest::Client,
    dir: &Path,
    url: &str,
    extra: &[&str],
) -> anyhow::Result<(Member, Member)> {
    let key: PathBuf = dir.join("event-signing.key");
    let mut flags = vec!["--cluster"];
    flags.extend_from_slice(extra);
    let a = Member::start(&args.binary, &dir.join("a"), &key, url, "cp-a", &flags)?;
    wait_writer(client, &[a.base()]).await?;
    let b = Member::start(&args.binary, &dir.join("b"), &key, url, "cp-b", &flags)?;
    Ok((a, b))
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    println!("== durable creations: where a creation is committed");
    let single = {
        let nats = Nats::start()?;
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("event-signing.key");
        let one = Member::start(
            &args.binary,
            &dir.path().join("a"),
            &key,
            &nats.url(),
            "cp-a",
            &[],
        )?;
        creations(&args, &client, &one.base()).await?
    };
    report("one process (sled, then the outbox)", &single, args.rate);
    let r1 = {
        let nats = Nats::start()?;
        let dir = tempfile::tempdir()?;
        let (a, _b) = pair(&args, &client, dir.path(), &nats.url(), &[]).await?;
        creations(&args, &client, &a.base()).await?
    };
    report("cluster, stream R1 (1 NATS server)", &r1, args.rate);
    let nats3 = NatsCluster::start(3)?;
    nats3.wait_for_jetstream().await?;
    let dir = tempfile::tempdir()?;
    let (mut a, mut b) = pair(
        &args,
        &client,
        dir.path(),
        &nats3.url(),
        &["--stream-replicas", "3"],
    )
    .await?;
    let r3 = creations(&args, &client, &a.base()).await?;
    report("cluster, stream R3 (3 NATS servers)", &r3, args.rate);
    println!(
        "  R3 / one process: {:.2} of the saturation rate;  target R3: ≥ {TARGET_R3_PER_SEC:.0}/s and p99 < {} ms at 1000/s: {}",
        r3.0.per_sec / single.0.per_sec,
        TARGET_R3_P99.as_millis(),
        Verdict::new(
            r3.1.latencies.len(),
            0,
            MIN_P99_SAMPLES,
            r3.0.per_sec >= TARGET_R3_PER_SEC && r3.1.p(0.99) < TARGET_R3_P99
        )
    );

    println!("== follower lag (R3): writer's 201 until the follower serves the token");
    let session = sign_in(&client, &a.base()).await?;
    let mut lags = Vec::with_capacity(args.lag_samples);
    for i in 0..args.lag_samples {
        let res = create_request(&client, &a.base(), &session)?(i)
            .send()
            .await?;
        if res.status() != 201 {
            bail!("a creation answered {}", res.status());
        }
        let done = Instant::now();
        let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
        let id = body["token"]["id"].as_str().context("id")?.to_owned();
        loop {
            let seen = client
                .get(format!("{}/v1/tokens/{id}", b.base()))
                .bearer_auth(&session)
                .send()
                .await?
                .status();
            if seen == 200 {
                lags.push(done.elapsed());
                break;
            }
            if done.elapsed() > Duration::from_secs(5) {
                bail!("the follower never showed {id}");
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lags.sort_unstable();
    // The same read of one token on the follower, once it holds it: what
    // one poll costs, so what of the lag is the polling itself.
    let mut reads = Vec::with_capacity(100);
    let res = create_request(&client, &a.base(), &session)?(0)
        .send()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    let id = body["token"]["id"].as_str().context("id")?.to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..100 {
        let sent = Instant::now();
        client
            .get(format!("{}/v1/tokens/{id}", b.base()))
            .bearer_auth(&session)
            .send()
            .await?
            .bytes()
            .await?;
        reads.push(sent.elapsed());
    }
    reads.sort_unstable();
    println!(
        "  lag p50 {:.2} ms  p99 {:.2} ms  (one read of a token the follower holds, same run: p50 {:.2} ms)   target p99 < {} ms: {}",
        ms(percentile(&lags, 0.50)),
        ms(percentile(&lags, 0.99)),
        ms(percentile(&reads, 0.50)),
        TARGET_LAG_P99.as_millis(),
        Verdict::new(
            lags.len(),
            0,
            MIN_LAG_SAMPLES,
            percentile(&lags, 0.99) < TARGET_LAG_P99
        )
    );

    failover::writer_kills(&client, &nats3.url(), &mut a, &mut b, args.kills).await?;
    let mut nats3 = nats3;
    failover::nats_server_loss(&client, &mut nats3, &a, &b, args.nats_kills).await?;
    Ok(())
}
