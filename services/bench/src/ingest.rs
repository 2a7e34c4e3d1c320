//! Request-log ingestion: the indexer's durable rate from
//! `ENSPACE_REQUESTS` into the sled index, beside its two raw ceilings
//! measured in the same run on the same records:
//!
//! - JetStream: a bare durable pull consumer fetching and acking every
//!   message (explicit acks, nothing else done);
//! - sled: the records' keys and MessagePack written in batches of 1,000
//!   with a flush per batch (nothing else done), configured as the token
//!   service configures its data directory.
//!
//! Target: indexer ≥ 80 % of the sled ceiling (issue 26); JetStream's is
//! far above it and printed for reference. The indexer
//! runs as the control plane runs it, client IPs and the look at calls
//! answered 401 included. The stream is filled first
//! by the API node's own publisher (its rate is printed too).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use enspace_api_node::request_records::publisher::{Publisher, PublisherConfig};
use enspace_api_node::request_records::queue::RecordQueue;
use enspace_core::{RequestRecord, SystemClock};
use enspace_usage::{Indexer, IndexerMetrics, RequestIndex};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use rand::{Rng, SeedableRng};
use ulid::Ulid;

use crate::support::{Nats, request_record};

#[derive(clap::Args)]
pub struct Args {
    /// Records to ingest.
    #[arg(long, default_value_t = 300_000)]
    records: usize,
    /// Distinct tokens the records belong to.
    #[arg(long, default_value_t = 1_000)]
    tokens: usize,
}

/// `n` records of `tokens` tokens, at times over the last day.
pub fn records(n: usize, tokens: usize, seed: u64) -> Vec<RequestRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let token_ids: Vec<Ulid> = (0..tokens.max(1)).map(|_| Ulid::new()).collect();
    let now = jiff::Timestamp::now().as_millisecond();
    (0..n)
        .map(|_| {
            let token = token_ids[rng.gen_range(0..token_ids.len())];
            let at = now - rng.gen_range(0..86_400_000);
            request_record(&mut rng, token, at)
        })
        .collect()
}

/// Fills `ENSPACE_REQUESTS` with `records` through the API node's
/// publisher (making the stream first, as the control plane does); returns
/// the time it took.
pub async fn publish_all(
    client: &async_nats::Client,
    records: &[RequestRecord],
) -> anyhow::Result<Duration> {
    let config = enspace_nats::requests_config(enspace_nats::DEFAULT_REQUEST_RETENTION, None);
    enspace_nats::ensure_stream(&jetstream::new(client.clone()), config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot make the request records stream: {e}"))?;
    publish_through(client, records, PublisherConfig::default()).await
}

/// Publishes `records` through the API node's publisher into the stream
/// that is there; returns the time it took.
pub async fn publish_through(
    client: &async_nats::Client,
    records: &[RequestRecord],
    config: PublisherConfig,
) -> anyhow::Result<Duration> {
    let queue = Arc::new(RecordQueue::new(records.len() + 1, Counter::default()));
    let publisher = Publisher::new(
        queue.clone(),
        Counter::default(),
        Counter::default(),
        config,
    );
    for r in records {
        queue.push(r.clone());
    }
    let start = Instant::now();
    let task = tokio::spawn(publisher.run(client.clone()));
    let left = queue
        .wait_idle(tokio::time::Instant::now() + Duration::from_secs(600))
        .await;
    let took = start.elapsed();
    task.abort();
    anyhow::ensure!(left == 0, "{left} records not published");
    Ok(took)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(args))
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let n = args.records;
    let nats = Nats::start()?;
    let client = enspace_nats::connect(&nats.url(), "bench-ingest").await?;
    let js = jetstream::new(client.clone());
    let records = records(n, args.tokens, 7);
    let msgpack_bytes: usize = records.iter().map(|r| r.to_msgpack().len()).sum();
    println!(
        "{n} records over {} tokens, MessagePack {:.0} bytes each on average",
        args.tokens,
        msgpack_bytes as f64 / n as f64
    );

    let publish_took = publish_all(&client, &records).await?;
    println!(
        "  publisher (batches, 64 in flight, Nats-Msg-Id): {:>8.0} records/s",
        rate(n, publish_took)
    );

    // Ceiling 1: sled, batches of 1,000, a flush per batch; measured again
    // after the indexer, as it varies from run to run.
    let sled_before = sled_ceiling(&records)?;
    // The index's own write path, without JetStream, for reference.
    let direct_dir = tempfile::tempdir()?;
    let direct_rate = {
        let db = enspace_usage::db::requests_sled_config(direct_dir.path()).open()?;
        let index = RequestIndex::open(&db, db.open_tree("token_last_used")?)?;
        let start = Instant::now();
        for chunk in records.chunks(1000) {
            index.ingest(chunk, jiff::Timestamp::UNIX_EPOCH)?;
        }
        rate(n, start.elapsed())
    };
    drop(direct_dir);

    // Ceiling 2: JetStream fetch + ack of every message (a batch of
    // records each), nothing else.
    let stream = js.get_stream(enspace_nats::REQUESTS_STREAM).await?;
    let raw = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench-raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let start = Instant::now();
    let mut messages = raw.stream().max_messages_per_batch(1000).messages().await?;
    let mut seen = 0;
    while seen < n {
        let Some(message) = messages.next().await else {
            anyhow::bail!("the raw consumer ended after {seen}");
        };
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        // A message is a batch of records: count them by its header.
        seen += message
            .headers
            .as_ref()
            .and_then(|h| h.get(enspace_core::record_batch::COUNT_HEADER))
            .and_then(|v| v.as_str().parse::<usize>().ok())
            .unwrap_or(1);
    }
    let js_rate = rate(n, start.elapsed());
    drop(messages);

    // The indexer: the real consumer into a real index.
    let index_dir = tempfile::tempdir()?;
    let db = enspace_usage::db::requests_sled_config(index_dir.path()).open()?;
    let index = RequestIndex::open(&db, db.open_tree("token_last_used")?)?;
    let ips = index.client_ips()?;
    let metrics = IndexerMetrics::default();
    // As the control plane runs it: remembering each token's client IPs
    // and looking at the calls answered 401 (for decoys).
    let indexer = Indexer::new(
        index,
        Arc::new(SystemClock),
        jiff::SignedDuration::from_hours(90 * 24),
        metrics.clone(),
    )
    .telling_new_client_ips(ips, Arc::new(|_| {}))
    .telling_unauthorized_calls(Arc::new(|_| {}));
    let start = Instant::now();
    let task = tokio::spawn(enspace_usage::jetstream::consume_jetstream(
        indexer,
        js,
        Default::default(),
    ));
    while (metrics.indexed.get() as usize) < n {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(900),
            "indexer stuck at {}",
            metrics.indexed.get()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let indexer_rate = rate(n, start.elapsed());
    task.abort();
    anyhow::ensure!(
        metrics.duplicates.get() == 0,
        "{} duplicates",
        metrics.duplicates.get()
    );

    let sled_after = sled_ceiling(&records)?;
    let sled_rate = (sled_before + sled_after) / 2.0;
    println!(
        "  raw ceiling, sled batch insert + flush / 1,000:  {sled_rate:>8.0} records/s (before {sled_before:.0}, after {sled_after:.0})"
    );
    println!("  raw ceiling, JetStream fetch + ack each:         {js_rate:>8.0} records/s");
    println!("  the index alone (RequestIndex::ingest / 1,000):  {direct_rate:>8.0} records/s");
    println!("  request-log indexer (durable, acked):            {indexer_rate:>8.0} records/s");
    println!(
        "  indexer / sled ceiling: {:.2} (target >= 0.80); the index alone / sled ceiling: {:.2}",
        indexer_rate / sled_rate,
        direct_rate / sled_rate
    );
    drop(nats);
    Ok(())
}

/// sled alone: the records' keys and MessagePack in batches of 1,000, a
/// flush per batch, into a fresh database configured as the index's.
fn sled_ceiling(records: &[RequestRecord]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = enspace_usage::db::requests_sled_config(dir.path()).open()?;
    let tree = db.open_tree("raw")?;
    let start = Instant::now();
    for chunk in records.chunks(1000) {
        let mut batch = sled::Batch::default();
        for r in chunk {
            let mut key = Vec::with_capacity(40);
            key.extend_from_slice(&r.token_id.to_bytes());
            key.extend_from_slice(&r.at.as_millisecond().to_be_bytes());
            key.extend_from_slice(&r.id.to_bytes());
            batch.insert(key, r.to_msgpack());
        }
        tree.apply_batch(batch)?;
        db.flush()?;
    }
    Ok(rate(records.len(), start.elapsed()))
}
