//! Request-log queries: the newest 100 records of one token's
//! 24-hour window, with `--records` records in the index over `--tokens`
//! tokens, and the index's disk bytes per record beside the record's
//! MessagePack size.
//!
//! The index is filled as the indexer fills it (`RequestIndex::ingest`,
//! batches of 1,000, flushed), in arrival order over `--days` days, so a
//! token has records in every window. Then, in the same run:
//!
//! - the index's query (what `GET /v1/tokens/{id}/requests` runs) on random
//!   tokens, beside its floor: a bare reverse range scan of the same 100
//!   keys and values in the same tree, nothing decoded;
//! - the HTTP route itself on the tokens a signed-in user owns, beside
//!   `GET /healthz` on the same server.
//!
//! Targets: p99 < 2 ms; disk bytes per record <= 3 x MessagePack.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use enspace_usage::RequestIndex;
use enspace_usage::index::{DAY_MS, Upper};
use rand::{Rng, SeedableRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use ulid::Ulid;

use crate::support::{percentile, request_record, sign_in, start_service};
use crate::verdict::Verdict;

/// Fewer queries than this say nothing of a p99.
const MIN_QUERIES: usize = 1000;

#[derive(clap::Args)]
pub struct Args {
    /// Records in the index.
    #[arg(long, default_value_t = 10_000_000)]
    records: usize,
    /// Tokens the records belong to (the first 100 are real tokens of one user).
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// Days the records span, ending now.
    #[arg(long, default_value_t = 3)]
    days: u64,
    /// Queries per measurement.
    #[arg(long, default_value_t = 20_000)]
    queries: usize,
}

const TARGET_P99: Duration = Duration::from_millis(2);
const TARGET_DISK_RATIO: f64 = 3.0;
const LIMIT: usize = 100;
/// Tokens created through the API, so that the HTTP route can be asked.
const OWNED: usize = 100;

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.records == 0 || args.tokens < OWNED || args.days == 0 || args.queries == 0 {
        bail!("--records, --days and --queries must be at least 1, --tokens at least {OWNED}");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(args))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn row(&self, name: &str) {
        println!(
            "  {name:<46} p50 {:>6.3} ms   p99 {:>6.3} ms   max {:>7.3} ms",
            ms(percentile(&self.0, 0.50)),
            ms(percentile(&self.0, 0.99)),
            ms(self.0.last().copied().unwrap_or_default()),
        );
    }

    fn p99(&self) -> Duration {
        percentile(&self.0, 0.99)
    }
}

fn sorted(mut v: Vec<Duration>) -> Latencies {
    v.sort_unstable();
    Latencies(v)
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let (addr, state) = start_service(data.path(), None).await?;
    let index = state.requests.clone();
    let tree = index.tree().clone();
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let session = sign_in(&client, &base).await?;
    let auth = format!("Bearer {session}");
    let mut tokens = Vec::with_capacity(args.tokens);
    for i in 0..OWNED {
        tokens.push(create_token(&client, &base, &auth, i).await?);
    }
    tokens.extend((OWNED..args.tokens).map(|_| Ulid::new()));
    let before = dir_bytes(data.path());
    println!(
        "enspace-bench query: {} records over {} tokens and {} days",
        args.records, args.tokens, args.days
    );

    let now_ms = jiff::Timestamp::now().as_millisecond();
    let span_ms = (args.days * DAY_MS) as i64;
    let first_ms = now_ms - span_ms;
    let (msgpack, fill) = {
        let (index, tokens, n) = (index.clone(), tokens.clone(), args.records);
        tokio::task::spawn_blocking(move || fill_index(&index, &tokens, n, first_ms, span_ms))
            .await??
    };
    let disk = dir_bytes(data.path()).saturating_sub(before);
    let per_record = disk as f64 / args.records as f64;
    let msgpack_per_record = msgpack as f64 / args.records as f64;
    println!(
        "  filled at {:.0} records/s (RequestIndex::ingest, batches of 1,000, flushed)",
        args.records as f64 / fill.as_secs_f64()
    );

    // The newest 100 of the window [now - 24 h, now).
    let (from_ms, to_ms) = ((now_ms - DAY_MS as i64) as u64, now_ms as u64 + 1);
    let (index_q, floor_q) = {
        let (index, tokens, n) = (index.clone(), tokens.clone(), args.queries);
        tokio::task::spawn_blocking(move || query_index(&index, &tree, &tokens, n, from_ms, to_ms))
            .await??
    };
    let (route_q, healthz_q) =
        query_http(&client, &base, &auth, &tokens[..OWNED], args.queries).await?;

    println!(
        "newest {LIMIT} of a token's 24-hour window, {} queries each:",
        args.queries
    );
    index_q.row("index query (decoded records)");
    floor_q.row("baseline: bare sled reverse scan of 100");
    route_q.row("GET /v1/tokens/{id}/requests?limit=100");
    healthz_q.row("baseline: GET /healthz");
    println!(
        "  p99 index / bare scan: {:.2};  p99 route / healthz: {:.2}",
        ms(index_q.p99()) / ms(floor_q.p99()).max(0.001),
        ms(route_q.p99()) / ms(healthz_q.p99()).max(0.001),
    );
    println!("disk:");
    println!(
        "  {:.0} bytes per record on disk ({:.2} GB), MessagePack {:.0} bytes per record: {:.2}x",
        per_record,
        disk as f64 / 1e9,
        msgpack_per_record,
        per_record / msgpack_per_record
    );
    let p99 = route_q.p99().max(index_q.p99());
    let ratio = per_record / msgpack_per_record;
    println!(
        "targets: p99 < {} ms: {};  disk <= {TARGET_DISK_RATIO:.0}x MessagePack: {}",
        TARGET_P99.as_millis(),
        Verdict::new(
            route_q.0.len().min(index_q.0.len()),
            0,
            MIN_QUERIES,
            p99 < TARGET_P99
        ),
        // One measurement of the disk over every record written.
        Verdict::new(1, 0, 1, ratio <= TARGET_DISK_RATIO),
    );
    Ok(())
}

/// Ingests `n` records in arrival order over `[first_ms, first_ms + span_ms)`,
/// each of a random token; returns their MessagePack bytes and the time taken.
fn fill_index(
    index: &RequestIndex,
    tokens: &[Ulid],
    n: usize,
    first_ms: i64,
    span_ms: i64,
) -> anyhow::Result<(usize, Duration)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut msgpack = 0;
    let mut took = Duration::ZERO;
    let step = span_ms as f64 / n as f64;
    let mut i = 0usize;
    while i < n {
        let batch: Vec<_> = (i..(i + 1000).min(n))
            .map(|j| {
                let token = tokens[rng.gen_range(0..tokens.len())];
                request_record(&mut rng, token, first_ms + (j as f64 * step) as i64)
            })
            .collect();
        msgpack += batch.iter().map(|r| r.to_msgpack().len()).sum::<usize>();
        let start = Instant::now();
        index.ingest(&batch, jiff::Timestamp::UNIX_EPOCH)?;
        took += start.elapsed();
        i += batch.len();
        if i.is_multiple_of(1_000_000) {
            println!("  ... {i} records indexed");
        }
    }
    Ok((msgpack, took))
}

/// Index queries and bare scans, alternating, each on its own random token.
fn query_index(
    index: &RequestIndex,
    tree: &sled::Tree,
    tokens: &[Ulid],
    n: usize,
    from_ms: u64,
    to_ms: u64,
) -> anyhow::Result<(Latencies, Latencies)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let (mut queried, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let token = tokens[rng.gen_range(0..tokens.len())];
        let start = Instant::now();
        let (page, _) = index.query(token, from_ms, Upper::To(to_ms), LIMIT)?;
        queried.push(start.elapsed());
        if page.len() != LIMIT {
            bail!(
                "a token had {} records in the window; raise --records",
                page.len()
            );
        }
        // Another token, so that neither warms the pages the other reads.
        let other = tokens[rng.gen_range(0..tokens.len())];
        let start = Instant::now();
        let scanned = bare_scan(tree, other, from_ms, to_ms)?;
        floor.push(start.elapsed());
        if scanned != LIMIT {
            bail!("the bare scan saw {scanned} records");
        }
    }
    Ok((sorted(queried), sorted(floor)))
}

/// The route on owned tokens and `/healthz`, alternating, one at a time.
async fn query_http(
    client: &reqwest::Client,
    base: &str,
    auth: &str,
    owned: &[Ulid],
    n: usize,
) -> anyhow::Result<(Latencies, Latencies)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let (mut route, mut healthz) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let healthz_url = format!("{base}/healthz");
    for _ in 0..n {
        let token = owned[rng.gen_range(0..owned.len())];
        let url = format!("{base}/v1/tokens/{token}/requests?limit={LIMIT}");
        let start = Instant::now();
        let res = client.get(&url).header(AUTHORIZATION, auth).send().await?;
        let status = res.status();
        let body = res.bytes().await?;
        route.push(start.elapsed());
        if !status.is_success() {
            bail!("the route answered {status}");
        }
        if n == route.len() {
            let page: serde_json::Value = serde_json::from_slice(&body)?;
            let got = page["requests"].as_array().map_or(0, Vec::len);
            if got != LIMIT {
                bail!("the route returned {got} records");
            }
        }
        let start = Instant::now();
        let res = client.get(&healthz_url).send().await?;
        res.bytes().await?;
        healthz.push(start.elapsed());
    }
    Ok((sorted(route), sorted(healthz)))
}

/// The newest [`LIMIT`] entries of the token's window, undecoded: the
/// index's key layout (token, time, id) read straight from sled.
fn bare_scan(tree: &sled::Tree, token: Ulid, from_ms: u64, to_ms: u64) -> anyhow::Result<usize> {
    let key = |ms: u64| {
        let mut k = [0u8; 24];
        k[..16].copy_from_slice(&token.to_bytes());
        k[16..].copy_from_slice(&ms.to_be_bytes());
        k
    };
    let mut seen = 0;
    let mut bytes = 0;
    for item in tree.range(key(from_ms)..key(to_ms)).rev() {
        let (k, v) = item?;
        if k.len() == 40 {
            seen += 1;
            bytes += v.len();
            if seen == LIMIT {
                break;
            }
        }
    }
    std::hint::black_box(bytes);
    Ok(seen)
}

pub(crate) fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub(crate) async fn create_token(
    client: &reqwest::Client,
    base: &str,
    auth: &str,
    i: usize,
) -> anyhow::Result<Ulid> {
    let res = client
        .post(format!("{base}/v1/tokens"))
        .header(AUTHORIZATION, auth)
        .header(CONTENT_TYPE, "application/json")
        .body(format!(
            r#"{{"description":"query bench {i}","expiration":"1y","scopes":["read"],"workspaces":["acme"]}}"#
        ))
        .send()
        .await?;
    if res.status().as_u16() != 201 {
        bail!("creating a token answered {}", res.status());
    }
    let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    body["token"]["id"]
        .as_str()
        .context("no token id in the answer")?
        .parse()
        .context("a token id that is not a ULID")
}
