//! Token creation with durable appends: the token service in-process (real
//! sled in a temp dir, the system clock, the full router and layers), signed
//! in as alice, `POST /v1/tokens` over real HTTP, measured two ways:
//!
//! - saturation: N creations by C concurrent closed-loop clients, as fast as
//!   they go (throughput; latency there is mostly queueing: C / rate);
//! - at the target rate: creations sent open-loop at a fixed rate (1,000/s),
//!   latency counted from when each was due, so a stall is not hidden by
//!   the clients waiting for it (no coordinated omission).
//!
//! Beside each, measured in the same run: the same HTTP load on
//! `GET /healthz` (what the HTTP stack costs) and a raw sled insert + flush
//! loop (what one durable write costs without group commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use crate::support::{Nats, percentile, sign_in, start_service};
use crate::verdict::Verdict;

#[derive(clap::Args)]
pub struct Args {
    /// Token creations to measure.
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Concurrent HTTP clients (each with its own keep-alive connection).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Creations per second of the open-loop run at the target rate.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of the open-loop run.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Raw sled insert + flush operations for the baseline.
    #[arg(long, default_value_t = 1000)]
    sled_ops: usize,
}

/// The target on the 2-core reference machine.
const TARGET_PER_SEC: f64 = 1000.0;
const TARGET_P99: Duration = Duration::from_millis(20);
/// Fewer paced creations than this say nothing of a p99.
const MIN_SAMPLES: usize = 1000;

pub struct Load {
    pub per_sec: f64,
    pub latencies: Vec<Duration>,
}

impl Load {
    pub fn p(&self, q: f64) -> Duration {
        percentile(&self.latencies, q)
    }

    fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.count == 0 || args.concurrency == 0 || args.rate == 0 || args.seconds == 0 {
        bail!("--count, --concurrency, --rate and --seconds must be at least 1");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    println!("== the control plane alone (embedded, nothing published)");
    let plain = measure(&args, None).await?;
    let nats = Nats::start()?;
    println!("== with the outbox signing every event and publishing it to JetStream");
    let signed = measure(&args, Some(&nats)).await?;
    println!("signing on / off, same run:");
    println!(
        "  saturation {:.0} / {:.0} creations/s = {:.2};  p99 at {} /s: {:.2} ms / {:.2} ms   target: >= 0.90, p99 < {} ms",
        signed.0.per_sec,
        plain.0.per_sec,
        signed.0.per_sec / plain.0.per_sec,
        args.rate,
        ms(signed.1.p(0.99)),
        ms(plain.1.p(0.99)),
        TARGET_P99.as_millis()
    );
    Ok(())
}

/// One full measurement on a fresh store; with `nats`, the outbox signs
/// and publishes every committed event there as it does in production.
/// Returns the saturation and the paced creations.
async fn measure(args: &Args, nats: Option<&Nats>) -> anyhow::Result<(Load, Load)> {
    let data = tempfile::tempdir()?;
    if let Some(nats) = nats {
        let client = enspace_nats::connect(&nats.url(), "bench-reset").await?;
        // A fresh stream per run.
        let _ = async_nats::jetstream::new(client)
            .delete_stream(enspace_nats::TOKEN_EVENTS_STREAM)
            .await;
    }
    let (addr, _) = start_service(data.path(), nats.map(Nats::control_plane)).await?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let session = sign_in(&client, &base).await?;
    let auth = HeaderValue::from_str(&format!("Bearer {session}"))?;

    let create = {
        let (client, url, auth) = (client.clone(), format!("{base}/v1/tokens"), auth);
        move |i: usize| {
            let body = format!(
                r#"{{"description":"bench {i}","expiration":"1y","scopes":["read","write"],"workspaces":["acme"]}}"#
            );
            client
                .post(&url)
                .header(AUTHORIZATION, auth.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body)
        }
    };
    let healthz = {
        let (client, url) = (client.clone(), format!("{base}/healthz"));
        move |_: usize| client.get(&url)
    };

    println!(
        "enspace-bench create: {} creations, {} concurrent clients, {} CPUs",
        args.count,
        args.concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Warm up both routes (connections, allocator, sled's first segments).
    let warm = args.count.min(500);
    load(warm, args.concurrency, &create, 201).await?;
    load(warm, args.concurrency, &healthz, 200).await?;

    let base_http = load(args.count, args.concurrency, &healthz, 200).await?;
    let creations = load(args.count, args.concurrency, &create, 201).await?;
    let n_paced = (args.rate * args.seconds) as usize;
    let base_paced = paced(n_paced, args.rate, &healthz, 200).await?;
    let paced_creations = paced(n_paced, args.rate, &create, 201).await?;
    let sled_per_sec = sled_insert_flush(args.sled_ops)?;

    let row = |name: &str, l: &Load| {
        println!(
            "  {name:<34} {:>7.0} /s   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>7.2} ms",
            l.per_sec,
            ms(l.p(0.50)),
            ms(l.p(0.99)),
            ms(l.max())
        );
    };
    println!("saturation, {} closed-loop clients:", args.concurrency);
    row("POST /v1/tokens (durable)", &creations);
    row("baseline: GET /healthz", &base_http);
    println!(
        "open loop at {} /s for {} s (latency from when each was due):",
        args.rate, args.seconds
    );
    row("POST /v1/tokens (durable)", &paced_creations);
    row("baseline: GET /healthz", &base_paced);
    println!("durable writes without grouping:");
    println!(
        "  {:<34} {sled_per_sec:>7.0} /s",
        "baseline: sled insert + flush"
    );
    println!("ratios:");
    println!(
        "  creations / healthz at saturation: {:.2};  creations / single sled flushes: {:.2}",
        creations.per_sec / base_http.per_sec,
        creations.per_sec / sled_per_sec
    );
    println!(
        "  p99 at {} /s, creations / healthz: {:.1}",
        args.rate,
        ms(paced_creations.p(0.99)) / ms(base_paced.p(0.99)).max(0.001)
    );
    // `load` and `paced` stop at the first failure: every sample counted
    // here succeeded.
    let verdict = Verdict::new(
        paced_creations.latencies.len(),
        0,
        MIN_SAMPLES,
        creations.per_sec >= TARGET_PER_SEC
            && paced_creations.per_sec >= TARGET_PER_SEC * 0.98
            && paced_creations.p(0.99) < TARGET_P99,
    );
    println!(
        "target: ≥ {TARGET_PER_SEC:.0} creations/s with p99 < {} ms: {verdict}",
        TARGET_P99.as_millis(),
    );
    Ok((creations, paced_creations))
}

/// `n` requests from `concurrency` workers; every answer must be `expect`.
pub async fn load<F>(n: usize, concurrency: usize, request: &F, expect: u16) -> anyhow::Result<Load>
where
    F: Fn(usize) -> reqwest::RequestBuilder + Clone + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, request) = (next.clone(), request.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let sent = Instant::now();
                    let res = request(i).send().await?;
                    let status = res.status().as_u16();
                    res.bytes().await?;
                    latencies.push(sent.elapsed());
                    if status != expect {
                        bail!("request {i} answered {status}, expected {expect}");
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(Load {
        per_sec: n as f64 / elapsed.as_secs_f64(),
        latencies,
    })
}

/// `n` requests sent open-loop at `rate` per second, each in its own task;
/// a request's latency runs from when it was due, not from when it went out.
pub async fn paced<F>(n: usize, rate: u32, request: &F, expect: u16) -> anyhow::Result<Load>
where
    F: Fn(usize) -> reqwest::RequestBuilder + Clone + Send + Sync + 'static,
{
    let interval = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due).await;
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let res = request(i).send().await?;
            let status = res.status().as_u16();
            res.bytes().await?;
            if status != expect {
                bail!("request {i} answered {status}, expected {expect}");
            }
            Ok::<_, anyhow::Error>(due.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for task in tasks {
        latencies.push(task.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(Load {
        per_sec: n as f64 / elapsed.as_secs_f64(),
        latencies,
    })
}

/// Durable single writes: one insert of an event-sized value, one flush, repeated.
fn sled_insert_flush(ops: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new().path(dir.path()).open()?;
    let tree = db.open_tree("events")?;
    let value = vec![0x5a_u8; 400];
    let start = Instant::now();
    for seq in 0..ops as u64 {
        tree.insert(seq.to_be_bytes(), value.as_slice())?;
        db.flush()?;
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}
