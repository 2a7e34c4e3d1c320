//! Token insights: `GET /v1/tokens/{id}/insights` for a token with
//! `--records` records in its 90-day window (and `--others` records of
//! `--other-tokens` other tokens in the same index), beside, in the same
//! run on the same token:
//!
//! - `GET /v1/tokens/{id}/requests/stats?bucket=day` over the same 90 days,
//!   the existing route that reads the hourly counts (2,160 keys);
//! - the index read behind each (`RequestIndex::insights`, `stats`), and a
//!   bare sled range read of the token's 90 day keys (nothing decoded),
//!   most of what the insights read.
//!
//! The index is filled as the indexer fills it (`RequestIndex::ingest`,
//! batches of 1,000, flushed), in arrival order over `--days` days ending
//! now. The token's calls come from `--ips` client IPs (a few CI runners by
//! default; give 65000 for a token used from everywhere). Target: p99 < 5 ms.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use enspace_usage::RequestIndex;
use enspace_usage::index::DAY_MS;
use rand::{Rng, SeedableRng};
use reqwest::header::AUTHORIZATION;
use ulid::Ulid;

use crate::query::create_token;
use crate::support::{percentile, request_record, sign_in, start_service};
use crate::verdict::Verdict;

/// Fewer queries than this say nothing of a p99.
const MIN_QUERIES: usize = 1000;

#[derive(clap::Args)]
pub struct Args {
    /// Records of the measured token, all in its window.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Records of other tokens in the same index.
    #[arg(long, default_value_t = 1_000_000)]
    others: usize,
    /// Other tokens.
    #[arg(long, default_value_t = 1_000)]
    other_tokens: usize,
    /// Days the records span, ending now (at most the 90-day retention).
    #[arg(long, default_value_t = 90)]
    days: u64,
    /// Client IPs the measured token's calls come from.
    #[arg(long, default_value_t = 20)]
    ips: usize,
    /// Requests per measurement.
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
}

const TARGET_P99: Duration = Duration::from_millis(5);
const RETENTION_DAYS: u64 = 90;

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.records == 0
        || args.other_tokens == 0
        || args.days == 0
        || args.days > RETENTION_DAYS
        || args.ips == 0
        || args.queries == 0
    {
        bail!("--records, --other-tokens, --ips, --queries at least 1; --days 1 to 90");
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
    fn new(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Latencies(v)
    }

    fn row(&self, name: &str) {
        println!(
            "  {name:<52} p50 {:>6.3} ms   p99 {:>6.3} ms   max {:>7.3} ms",
            ms(percentile(&self.0, 0.50)),
            ms(percentile(&self.0, 0.99)),
            ms(self.0.last().copied().unwrap_or_default()),
        );
    }

    fn p99(&self) -> Duration {
        percentile(&self.0, 0.99)
    }
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let (addr, state) = start_service(data.path(), None).await?;
    let index = state.requests.clone();
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let auth = format!("Bearer {}", sign_in(&client, &base).await?);
    let token = create_token(&client, &base, &auth, 0).await?;
    println!(
        "enspace-bench insights: {} records of the token from {} IPs, {} of {} other tokens, over {} days",
        args.records, args.ips, args.others, args.other_tokens, args.days
    );

    // Over [now - days + 1 h, now - 1 min): inside the window for the whole run.
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let first_ms = now_ms - (args.days * DAY_MS) as i64 + 3_600_000;
    let span_ms = now_ms - 60_000 - first_ms;
    let fill = {
        let (index, args) = (
            index.clone(),
            (args.records, args.others, args.other_tokens, args.ips),
        );
        tokio::task::spawn_blocking(move || fill_index(&index, token, args, first_ms, span_ms))
            .await??
    };
    println!(
        "  filled at {:.0} records/s (RequestIndex::ingest with insight counters, batches of 1,000, flushed)",
        (args.records + args.others) as f64 / fill.as_secs_f64()
    );

    // The window as the route computes it, give or take the run's length.
    let cutoff_ms =
        (jiff::Timestamp::now().as_millisecond() as u64).saturating_sub(RETENTION_DAYS * DAY_MS);
    let summary = index.insights(token, cutoff_ms)?;
    let counted: u64 = summary
        .scopes
        .iter()
        .map(|t| t.allowed + t.denied)
        .sum::<u64>()
        + summary.invalid_token
        + summary.rate_limited;
    if counted != args.records as u64 {
        bail!("the insights count {counted} calls, not {}", args.records);
    }
    println!(
        "  the insights count all {counted} calls, {} client IPs",
        summary.ips.len()
    );

    let (insights_q, stats_q, bare_q) = {
        let (index, n) = (index.clone(), args.queries);
        tokio::task::spawn_blocking(move || query_index(&index, token, cutoff_ms, n)).await??
    };
    let (route_q, stats_route_q) = query_http(&client, &base, &auth, token, args.queries).await?;

    println!("{} requests each, alternating:", args.queries);
    route_q.row("GET /v1/tokens/{id}/insights");
    stats_route_q.row("baseline: GET .../requests/stats?bucket=day, 90 d");
    insights_q.row("index: RequestIndex::insights");
    stats_q.row("baseline: RequestIndex::stats, 90 days by day");
    bare_q.row("baseline: bare sled read of the token's day keys");
    println!(
        "  p99 route / stats route: {:.2};  p99 index / bare read: {:.2}",
        ms(route_q.p99()) / ms(stats_route_q.p99()).max(0.001),
        ms(insights_q.p99()) / ms(bare_q.p99()).max(0.001),
    );
    let p99 = route_q.p99().max(insights_q.p99());
    println!(
        "target: p99 < {} ms: {}",
        TARGET_P99.as_millis(),
        Verdict::new(
            route_q.0.len().min(insights_q.0.len()),
            0,
            MIN_QUERIES,
            p99 < TARGET_P99
        )
    );
    Ok(())
}

/// Ingests the token's and the other tokens' records, interleaved in
/// arrival order over `[first_ms, first_ms + span_ms)`.
fn fill_index(
    index: &RequestIndex,
    token: Ulid,
    (records, others, other_tokens, ips): (usize, usize, usize, usize),
    first_ms: i64,
    span_ms: i64,
) -> anyhow::Result<Duration> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let other_ids: Vec<Ulid> = (0..other_tokens).map(|_| Ulid::new()).collect();
    let pool: Vec<String> = (0..ips)
        .map(|i| format!("10.{}.{}.{}", i / 65_536 % 256, i / 256 % 256, i % 256))
        .collect();
    let total = records + others;
    let step = span_ms as f64 / total as f64;
    let p_mine = records as f64 / total as f64;
    let (mut mine, mut theirs) = (0usize, 0usize);
    let mut took = Duration::ZERO;
    let mut i = 0usize;
    while i < total {
        let mut batch = Vec::with_capacity(1000);
        while batch.len() < 1000 && i < total {
            let at = first_ms + (i as f64 * step) as i64;
            let is_mine = theirs == others || (mine < records && rng.gen_bool(p_mine));
            let record = if is_mine {
                mine += 1;
                let mut r = request_record(&mut rng, token, at);
                r.client_ip = pool[rng.gen_range(0..pool.len())].clone();
                if rng.gen_range(0..10) == 0 {
                    r.workspace = Some("globex".into());
                }
                r
            } else {
                theirs += 1;
                let other = other_ids[rng.gen_range(0..other_ids.len())];
                request_record(&mut rng, other, at)
            };
            batch.push(record);
            i += 1;
        }
        let start = Instant::now();
        index.ingest(&batch, jiff::Timestamp::UNIX_EPOCH)?;
        took += start.elapsed();
        if (i / 1000).is_multiple_of(500) {
            println!("  ... {i} records indexed");
        }
    }
    Ok(took)
}

/// The index reads, alternating: insights, the 90-day stats, a bare read.
fn query_index(
    index: &RequestIndex,
    token: Ulid,
    cutoff_ms: u64,
    n: usize,
) -> anyhow::Result<(Latencies, Latencies, Latencies)> {
    let (mut insights, mut stats, mut bare) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let tree = index
        .insight_tree()
        .context("the index keeps no insights")?
        .clone();
    let to_ms = jiff::Timestamp::now().as_millisecond() as u64 + DAY_MS;
    for _ in 0..n {
        let start = Instant::now();
        std::hint::black_box(index.insights(token, cutoff_ms)?);
        insights.push(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(index.stats(token, cutoff_ms, to_ms, DAY_MS)?);
        stats.push(start.elapsed());
        let start = Instant::now();
        let mut bytes = 0usize;
        for item in tree.scan_prefix([&token.to_bytes()[..], b"D"].concat()) {
            let (_, value) = item?;
            bytes += value.len();
        }
        std::hint::black_box(bytes);
        bare.push(start.elapsed());
    }
    Ok((
        Latencies::new(insights),
        Latencies::new(stats),
        Latencies::new(bare),
    ))
}

/// The two routes, alternating, one request at a time.
async fn query_http(
    client: &reqwest::Client,
    base: &str,
    auth: &str,
    token: Ulid,
    n: usize,
) -> anyhow::Result<(Latencies, Latencies)> {
    let insights_url = format!("{base}/v1/tokens/{token}/insights");
    let from =
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * RETENTION_DAYS as i64);
    let stats_url = format!(
        "{base}/v1/tokens/{token}/requests/stats?bucket=day&from={}",
        from.to_string().replace('+', "%2B")
    );
    let (mut route, mut stats) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        for (url, out) in [(&insights_url, &mut route), (&stats_url, &mut stats)] {
            let start = Instant::now();
            let res = client.get(url).header(AUTHORIZATION, auth).send().await?;
            let status = res.status();
            let body = res.bytes().await?;
            out.push(start.elapsed());
            if !status.is_success() {
                bail!(
                    "{url} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
    Ok((Latencies::new(route), Latencies::new(stats)))
}
