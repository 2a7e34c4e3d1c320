//! Request logging under load: `wrk -t2 -c64` on an API node's
//! read route, side by side, rounds alternating:
//!
//! - the production API node (`enspace::run::api_node`, the code behind
//!   `enspace api-node`) with auth and request logging, publishing every
//!   record to `ENSPACE_REQUESTS` on a real nats-server;
//! - the same route, router and layers with neither (the baseline).
//!
//! Then the accounting: the requests the node served (its own HTTP counter)
//! must equal the records in the stream plus the records it counted as
//! dropped; nothing may vanish silently (records in the stream counted by
//! their batches' `Enspace-Record-Count`). Target: throughput ratio >= 0.70
//! (issue 26; it was >= 0.40 before batches).
//!
//! With `--zones`, all of it again on the shipped two trust zones
//! (`deploy/nats.conf`: the node publishes into its own account's intake,
//! the control plane's copy sources it, and the accounting counts that
//! copy), beside one account: the two ratios' quotient must be >= 0.95.

use enspace_core::PatSecret;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream;
use enspace_api_node::NodeState;
use enspace_core::SystemClock;
use prometheus_client::registry::Registry;
use rand::SeedableRng;

use crate::node_load::{PATH, bare_route, serve};
use crate::support::{Nats, Setup, SignedLog, created_event};
use crate::wrk::{alternate, mean};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per wrk round.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Rounds per side.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Also measure on the two NATS trust zones, beside one account.
    #[arg(long)]
    zones: bool,
    /// The node's `--record-batch-max` (1: every record its own message,
    /// as before batches).
    #[arg(long, default_value_t = enspace_api_node::request_records::publisher::DEFAULT_BATCH_RECORDS)]
    record_batch_max: usize,
}

const TARGET_RATIO: f64 = 0.70;
const ZONES_TARGET: f64 = 0.95;
const ROUTE_LABEL: &str = "route=\"/api/v1/workspaces/{ws}/records\"";

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.seconds == 0 || args.rounds == 0 {
        bail!("--seconds and --rounds must be at least 1");
    }
    let mut ratios = Vec::new();
    for setup in Setup::runs(args.zones) {
        println!("{}:", setup.name());
        ratios.push(run_on(setup, &args)?);
    }
    if let [one, two] = ratios[..] {
        println!(
            "two zones beside one account: {:.3} (target >= {ZONES_TARGET})",
            two / one
        );
    }
    Ok(())
}

/// The whole benchmark on `setup`; returns its throughput ratio.
fn run_on(setup: Setup, args: &Args) -> anyhow::Result<f64> {
    let nats = Nats::start_as(setup)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let secret = PatSecret::from_rng(&mut rand::rngs::StdRng::seed_from_u64(5))
        .expose()
        .to_owned();
    let (logged, bare) = runtime.block_on(start_nodes(&nats, &secret, args.record_batch_max))?;
    let header = format!("Authorization: Bearer {secret}");

    let (bare_runs, logged_runs) = alternate(
        (bare, "neither"),
        (logged, "auth + logging"),
        PATH,
        args.seconds,
        args.rounds,
        &header,
    )?;
    let accounts = runtime.block_on(account(&nats, logged))?;

    let (rps_logged, rps_bare) = (
        mean(&logged_runs, |r| r.requests_per_sec),
        mean(&bare_runs, |r| r.requests_per_sec),
    );
    println!(
        "wrk -t2 -c64 -d{}s GET {PATH}, mean of {} rounds:",
        args.seconds, args.rounds
    );
    println!(
        "  neither auth nor logging (baseline): {rps_bare:>9.0} req/s   p99 {:.3} ms",
        mean(&bare_runs, |r| r.p99_ms)
    );
    println!(
        "  auth + request logging to JetStream: {rps_logged:>9.0} req/s   p99 {:.3} ms",
        mean(&logged_runs, |r| r.p99_ms)
    );
    println!(
        "  throughput ratio: {:.3} (target >= {TARGET_RATIO:.2})",
        rps_logged / rps_bare
    );
    let wrk_counted: u64 = logged_runs.iter().map(|r| r.requests).sum();
    println!(
        "accounting: served {} (wrk counted {wrk_counted}) = {} in the stream + {} dropped; missing {}",
        accounts.served,
        accounts.in_stream,
        accounts.dropped,
        accounts.served as i64 - (accounts.in_stream + accounts.dropped) as i64,
    );
    if accounts.served != accounts.in_stream + accounts.dropped {
        bail!("records vanished");
    }
    Ok(rps_logged / rps_bare)
}

/// The logged node (production code, fed its one token over JetStream) and
/// the bare route; both serving on loopback from this runtime.
async fn start_nodes(
    nats: &Nats,
    secret: &str,
    record_batch_max: usize,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let client = enspace_nats::connect(&nats.tokens_url(), "bench-node-logging").await?;
    let js = jetstream::new(client);
    enspace_nats::ensure_stream(&js, enspace_nats::token_events_config())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut log = SignedLog::new();
    let (subject, headers, payload) = log.next(created_event(1, secret, "alice"));
    js.publish_with_headers(subject, headers, payload.into())
        .await?
        .await?;
    nats.keep_node_streams().await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let logged = listener.local_addr()?;
    let args = enspace::cli::NodeArgs {
        listen: logged,
        nats_url: nats.node_url(),
        node_id: "bench".into(),
        nats_auth: Default::default(),
        event_key: Some(log.key()),
        event_key_file: None,
        trust_first_event_key: false,
        max_staleness: enspace::cli::Staleness(None),
        limits: enspace::cli::NodeLimits {
            record_batch_max,
            ..Default::default()
        },
    };
    let forever: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(std::future::pending());
    tokio::spawn(async move {
        if let Err(e) = enspace::run::api_node(args, listener, Arc::new(SystemClock), forever).await
        {
            eprintln!("api node stopped: {e:#}");
        }
    });
    let ready = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(res) = ready.get(format!("http://{logged}/readyz")).send().await
            && res.status().is_success()
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the api node was not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut registry = Registry::default();
    let node = NodeState::new(
        "bare",
        Arc::new(SystemClock),
        &mut registry,
        None,
        Arc::new(enspace_api_node::Freshness::in_process()),
    );
    let http = enspace_http::HttpMetrics::register(&mut registry);
    Ok((logged, serve(bare_route(node, http)).await?))
}

struct Accounts {
    served: u64,
    in_stream: u64,
    dropped: u64,
}

/// Once the node has published or dropped every record it made (at most a
/// minute): what it served and dropped, by its `/metrics`, and what the
/// stream holds.
async fn account(nats: &Nats, node: SocketAddr) -> anyhow::Result<Accounts> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let (served, dropped) = loop {
        let text = http
            .get(format!("http://{node}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let served = metric_sum(&text, "http_requests_total", ROUTE_LABEL);
        let published = metric_sum(&text, "enspace_request_records_published_total", "");
        let dropped = metric_sum(&text, "enspace_request_records_dropped_total", "");
        if published + dropped >= served || start.elapsed() > Duration::from_secs(60) {
            break (served, dropped);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let client = enspace_nats::connect(&nats.tokens_url(), "bench-accounting").await?;
    let mut stream = jetstream::new(client.clone())
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .context("the requests stream")?;
    // With two zones, the control plane's copy: once it holds all the
    // nodes' intake does (at most a minute).
    let intake = match nats.edge_api() {
        Some(api) => Some(
            jetstream::with_prefix(client, api)
                .get_stream(enspace_nats::REQUESTS_STREAM)
                .await
                .context("the intake")?,
        ),
        None => None,
    };
    let start = Instant::now();
    let messages = loop {
        let messages = stream
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .state
            .messages;
        let Some(mut intake) = intake.clone() else {
            break messages;
        };
        let taken = intake
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .state
            .messages;
        if messages >= taken || start.elapsed() > Duration::from_secs(60) {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Records counted by their batches' header; counts of dropped records
    // travel on the same stream and are not records.
    let in_stream = crate::support::records_in(&stream).await?.records;
    println!("    stream: {messages} messages");
    Ok(Accounts {
        served,
        in_stream,
        dropped,
    })
}

/// The sum of a metric's samples whose labels contain `labels`.
fn metric_sum(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}
