//! The request-log indexer's rate with the insight counters beside its
//! rate without them (`RequestIndex::without_insights`, the index as it was
//! before them), on the same records in the same run:
//!
//! - the indexer proper: the durable JetStream consumer into a fresh index,
//!   from `ENSPACE_REQUESTS` filled once by the API node's publisher (each
//!   run with a durable consumer of its own, from the stream's start);
//! - the index alone: `RequestIndex::ingest` in batches of 1,000, flushed.
//!
//! Runs alternate (without, with; then with, without; ...) so that neither
//! always goes first on a warmer machine. Target: with / without >= 0.90.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use enspace_core::{RequestRecord, SystemClock};
use enspace_usage::jetstream::Source;
use enspace_usage::{Indexer, IndexerMetrics, RequestIndex};

use crate::ingest::{publish_all, records};
use crate::support::Nats;
use crate::verdict::Verdict;

/// Fewer rounds than this make a mean of noise.
const MIN_ROUNDS: usize = 2;

#[derive(clap::Args)]
pub struct Args {
    /// Records to ingest in each run.
    #[arg(long, default_value_t = 300_000)]
    records: usize,
    /// Distinct tokens the records belong to.
    #[arg(long, default_value_t = 1_000)]
    tokens: usize,
    /// Rounds; each runs without and with the counters, both ways in.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Only the index alone (no NATS, no JetStream indexer).
    #[arg(long)]
    index_only: bool,
}

const TARGET: f64 = 0.90;

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.records > 0 && args.rounds > 0,
        "--records and --rounds must be at least 1"
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(args))
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

fn open(dir: &std::path::Path, insights: bool) -> anyhow::Result<RequestIndex> {
    let db = enspace_usage::db::requests_sled_config(dir).open()?;
    let index = RequestIndex::open(&db, db.open_tree("token_last_used")?)?;
    Ok(if insights {
        index
    } else {
        index.without_insights()
    })
}

/// `RequestIndex::ingest` alone, batches of 1,000, into a fresh index.
fn direct(records: &[RequestRecord], insights: bool) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let index = open(dir.path(), insights)?;
    let start = Instant::now();
    for chunk in records.chunks(1000) {
        index.ingest(chunk, jiff::Timestamp::UNIX_EPOCH)?;
    }
    Ok(rate(records.len(), start.elapsed()))
}

/// The JetStream indexer into a fresh index, with a durable of its own.
async fn indexer(
    js: &jetstream::Context,
    n: usize,
    insights: bool,
    durable: String,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let metrics = IndexerMetrics::default();
    let indexer = Indexer::new(
        open(dir.path(), insights)?,
        Arc::new(SystemClock),
        jiff::SignedDuration::from_hours(90 * 24),
        metrics.clone(),
    );
    let start = Instant::now();
    let task = tokio::spawn(enspace_usage::jetstream::consume_jetstream(
        indexer,
        js.clone(),
        Source {
            durable: durable.clone(),
            ..Source::default()
        },
    ));
    while (metrics.indexed.get() as usize) < n {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(900),
            "indexer stuck at {}",
            metrics.indexed.get()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    task.abort();
    let _ = task.await;
    anyhow::ensure!(
        metrics.duplicates.get() == 0,
        "{} duplicates",
        metrics.duplicates.get()
    );
    let stream = js.get_stream(enspace_nats::REQUESTS_STREAM).await?;
    let _ = stream.delete_consumer(&durable).await;
    Ok(rate(n, took))
}

#[derive(Default)]
struct Rates {
    without: Vec<f64>,
    with: Vec<f64>,
}

impl Rates {
    fn push(&mut self, insights: bool, rate: f64) {
        if insights {
            self.with.push(rate);
        } else {
            self.without.push(rate);
        }
    }

    fn row(&self, name: &str) -> f64 {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ratio = mean(&self.with) / mean(&self.without);
        println!(
            "  {name:<34} without {:>8.0}/s [{}]   with {:>8.0}/s [{}]   with/without {ratio:.2}",
            mean(&self.without),
            list(&self.without),
            mean(&self.with),
            list(&self.with),
        );
        ratio
    }
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let n = args.records;
    let nats = Nats::start()?;
    let client = enspace_nats::connect(&nats.url(), "bench-insight-ingest").await?;
    let js = jetstream::new(client.clone());
    let records = records(n, args.tokens, 7);
    println!(
        "enspace-bench insight-ingest: {n} records over {} tokens, {} rounds",
        args.tokens, args.rounds
    );
    if !args.index_only {
        publish_all(&client, &records).await?;
    }
    let (mut direct_rates, mut indexer_rates) = (Rates::default(), Rates::default());
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for insights in order {
            let recs = records.clone();
            let d = tokio::task::spawn_blocking(move || direct(&recs, insights)).await??;
            direct_rates.push(insights, d);
            let durable = format!(
                "bench-{round}-{}",
                if insights { "with" } else { "without" }
            );
            let i = if args.index_only {
                0.0
            } else {
                indexer(&js, n, insights, durable).await?
            };
            indexer_rates.push(insights, i);
            println!(
                "  round {round}, insight counters {}: indexer {i:>8.0}/s, index alone {d:>8.0}/s",
                if insights { "on " } else { "off" }
            );
        }
    }
    println!("records/s, mean of {} runs each:", args.rounds);
    let indexer_ratio = indexer_rates.row("request-log indexer (JetStream)");
    let direct_ratio = direct_rates.row("the index alone (ingest / 1,000)");
    println!(
        "target: indexer with counters >= {TARGET:.2} of without: {:.2} {}  (index alone {direct_ratio:.2})",
        indexer_ratio,
        Verdict::new(args.rounds, 0, MIN_ROUNDS, indexer_ratio >= TARGET),
    );
    drop(nats);
    Ok(())
}
