//! An API node's publisher alone, no HTTP: the same records published
//! through it into `ENSPACE_REQUESTS` on one NATS account, then on the
//! shipped two trust zones (`deploy/nats.conf`: the node as `enspace-node`,
//! its publishes crossing into the control plane's stream through the
//! service its account imports). Prints each rate and nats-server's CPU
//! time per 100,000 records, and the two zones' rate as a share of one
//! account's (the cost of crossing; target >= 0.95).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::stream::Stream;

use crate::ingest::{publish_through, records};
use crate::support::{Nats, Setup, cpu_seconds, records_in};
use enspace_api_node::request_records::publisher::PublisherConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Records to publish per set-up and round.
    #[arg(long, default_value_t = 300_000)]
    records: usize,
    /// Rounds per set-up, alternating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Batches awaiting their ack at most (the node's default).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Most records per batch (the node's default; 1 publishes every
    /// record on its own, as before batches).
    #[arg(long, default_value_t = enspace_api_node::request_records::publisher::DEFAULT_BATCH_RECORDS)]
    batch_max: usize,
}

const TARGET: f64 = 0.95;

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.records == 0 || args.rounds == 0 {
        bail!("--records and --rounds must be at least 1");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(args))
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let records = records(args.records, 1_000, 11);
    let mut rates = [Vec::new(), Vec::new()];
    for round in 1..=args.rounds {
        for (i, setup) in Setup::runs(true).into_iter().enumerate() {
            let nats = Nats::start_as(setup)?;
            nats.keep_node_streams().await?;
            let client = enspace_nats::connect(&nats.node_url(), "bench-record-publish").await?;
            let pid = nats.pid().to_string();
            let cpu_before = cpu_seconds(&pid).unwrap_or(0.0);
            let config = PublisherConfig {
                max_in_flight: args.in_flight,
                max_batch_records: args.batch_max,
                ..PublisherConfig::default()
            };
            let control = control_stream(&nats).await?;
            let start = Instant::now();
            let acked = publish_through(&client, &records, config).await?;
            let took = all_in(control, args.records as u64, start).await?;
            let cpu = cpu_seconds(&pid).unwrap_or(0.0) - cpu_before;
            let rate = args.records as f64 / took.as_secs_f64();
            println!(
                "round {round}, {:<11}: {rate:>8.0} records/s into the control plane's stream \
                 (all acked after {:.2} s, all there after {:.2} s), nats-server {:.2} CPU s per 100,000 records",
                setup.name(),
                acked.as_secs_f64(),
                took.as_secs_f64(),
                cpu * 100_000.0 / args.records as f64
            );
            rates[i].push(rate);
            drop(client);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let ratio = mean(&rates[1]) / mean(&rates[0]);
    println!(
        "publisher, {} records, {} batches of at most {} records in flight: one account {:.0}/s, two zones {:.0}/s",
        args.records,
        args.in_flight,
        args.batch_max,
        mean(&rates[0]),
        mean(&rates[1])
    );
    println!("two zones beside one account: {ratio:.3} (target >= {TARGET})");
    Ok(())
}

/// The control plane's request records stream (the one the indexers
/// consume), as the control plane sees it.
async fn control_stream(nats: &Nats) -> anyhow::Result<Stream> {
    let client = enspace_nats::connect(&nats.tokens_url(), "bench-record-publish-control").await?;
    async_nats::jetstream::new(client)
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .context("the control plane's request records stream")
}

/// Waits until `stream` holds `n` records (counted by their batches'
/// `Enspace-Record-Count`); returns the time since `start`. The headers are
/// read only once the message count has stopped growing for a moment.
async fn all_in(stream: Stream, n: u64, start: Instant) -> anyhow::Result<Duration> {
    let mut last = u64::MAX;
    loop {
        let messages = stream
            .clone()
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .state
            .messages;
        if messages == last {
            let held = records_in(&stream).await?;
            if held.records >= n {
                return Ok(start.elapsed());
            }
        }
        last = messages;
        if start.elapsed() > Duration::from_secs(300) {
            bail!(
                "the control plane's stream holds {messages} messages, not all {n} records, after 5 minutes"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
