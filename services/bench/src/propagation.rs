//! Revocation propagation on loopback: from `DELETE` committing in the token
//! service to a node's replica knowing it, through the outbox and the
//! JetStream token events stream; then the same while a raw client
//! publishes a foreign message into the stream every `--poison-every-ms`
//! (what a misconfigured client, or a PubAck aimed at the stream, does),
//! which the outbox appends past and deletes once per repair interval.
//! Baselines in the same run: the revocations without the poisoning, and a
//! core NATS publish -> subscriber round trip on the same server. With
//! `--zones`, all of it again on the shipped two trust zones
//! (`deploy/nats.conf`: the node reads the mirror in its own account),
//! beside one account.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use enspace_api_node::Freshness;
use enspace_api_node::TokenReplica;
use enspace_api_node::feed::Feed;
use enspace_api_node::metrics::NodeMetrics;
use enspace_core::{Expiration, PatSecret, Scope};
use enspace_store::commands::{Command, CreateToken};
use enspace_tokens::AppState;
use futures::StreamExt;
use prometheus_client::registry::Registry;
use ulid::Ulid;

use crate::support::{Nats, Setup, percentile, start_service};

#[derive(clap::Args)]
pub struct Args {
    /// Revocations to time, without and with the poisoning each.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// A foreign message into the token events stream every this many
    /// milliseconds while the second half is timed.
    #[arg(long, default_value_t = 500)]
    poison_every_ms: u64,
    /// Milliseconds between two timed revocations (so the poisoned half
    /// spans many foreign messages).
    #[arg(long, default_value_t = 25)]
    pause_ms: u64,
    /// Also measure on the two NATS trust zones, beside one account.
    #[arg(long)]
    zones: bool,
}

/// The p99 ratio of one account to two zones must not fall below this.
const ZONES_TARGET: f64 = 0.95;

pub fn run(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure(args))
}

async fn until(deadline: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
    None
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let mut figures = Vec::new();
    for setup in Setup::runs(args.zones) {
        figures.push(measure_on(setup, &args).await?);
    }
    if let [(one50, one99), (two50, two99)] = figures[..] {
        let ratio = |one: Duration, two: Duration| one.as_secs_f64() / two.as_secs_f64().max(1e-9);
        println!(
            "two zones beside one account: p50 {two50:.2?} vs {one50:.2?} (ratio {:.3}), p99 {two99:.2?} vs {one99:.2?} (ratio {:.3}, target >= {ZONES_TARGET})",
            ratio(one50, two50),
            ratio(one99, two99),
        );
    }
    Ok(())
}

/// Times revocations on `setup`, clean and poisoned; prints them and
/// returns the clean p50 and p99.
async fn measure_on(setup: Setup, args: &Args) -> anyhow::Result<(Duration, Duration)> {
    println!("{}:", setup.name());
    let nats = Nats::start_as(setup)?;
    let data = tempfile::tempdir()?;
    // The control plane as the product assembles it: outbox, heartbeat,
    // and the nodes' streams (in their own account with two zones).
    let (_, state) = start_service(data.path(), Some(nats.control_plane())).await?;
    let keys = state
        .config
        .event_keys
        .clone()
        .context("a control plane with NATS signs its events")?;

    let node_client = enspace_nats::connect(&nats.node_url(), "bench-node").await?;
    let replica = Arc::new(TokenReplica::new());
    let feed = Feed::new(
        async_nats::jetstream::new(node_client.clone()),
        node_client.clone(),
        replica.clone(),
        Arc::new(Freshness::new(None)),
        NodeMetrics::register(&mut Registry::default()),
        vec![keys.current().public().clone()],
        Arc::new(tokio::sync::Notify::new()),
    );
    tokio::spawn(feed.run());

    let clean = revocations(&state, &replica, args).await?;
    let poison_every = Duration::from_millis(args.poison_every_ms);
    let poison = spawn_poisoner(&nats.tokens_url(), poison_every).await?;
    let poisoned = revocations(&state, &replica, args).await?;
    poison.abort();
    let foreign = state.metrics.stream.foreign.get();
    let repairs = state.metrics.stream.repairs.get();
    let refills = state.metrics.stream.refills.get();

    // Both ends in the control plane's account, on a subject its user may
    // use (no plain subject crosses between two zones).
    let listener = enspace_nats::connect(&nats.tokens_url(), "bench-ping").await?;
    let mut sub = listener.subscribe("enspace.control.bench-ping").await?;
    listener.flush().await?;
    let client = enspace_nats::connect(&nats.tokens_url(), "bench-tokens").await?;
    let mut rtts = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let start = Instant::now();
        client
            .publish("enspace.control.bench-ping", "x".into())
            .await?;
        client.flush().await?;
        sub.next().await;
        rtts.push(start.elapsed());
    }
    rtts.sort();

    let (p50, p99) = (percentile(&clean, 0.5), percentile(&clean, 0.99));
    let (q50, q99) = (percentile(&poisoned, 0.5), percentile(&poisoned, 0.99));
    let (b50, b99) = (percentile(&rtts, 0.5), percentile(&rtts, 0.99));
    println!(
        "revocation propagation (durable commit + JetStream + replica), {} samples:",
        clean.len()
    );
    println!(
        "  p50 {p50:>10.2?}   p99 {p99:>10.2?}   max {:>10.2?}",
        clean[clean.len() - 1]
    );
    println!(
        "the same with a foreign message every {poison_every:?} ({foreign} found, {repairs} repairs, {refills} refills):"
    );
    println!(
        "  p50 {q50:>10.2?}   p99 {q99:>10.2?}   max {:>10.2?}",
        poisoned[poisoned.len() - 1]
    );
    println!("baseline core NATS publish -> subscriber on the same server:");
    println!("  p50 {b50:>10.2?}   p99 {b99:>10.2?}");
    println!(
        "ratio p99 / baseline p99: {:.1}; poisoned p99 / clean p99: {:.2}   target: p99 < 100 ms, poisoned too",
        p99.as_secs_f64() / b99.as_secs_f64().max(1e-9),
        q99.as_secs_f64() / p99.as_secs_f64().max(1e-9)
    );
    Ok((p50, p99))
}

/// A raw client publishing a foreign message into the token events stream
/// every `every`, until aborted.
async fn spawn_poisoner(url: &str, every: Duration) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Ok(ack) = js
                .publish(
                    enspace_nats::token_event_subject("01FOREIGN"),
                    "not an event".into(),
                )
                .await
            {
                let _ = ack.await;
            }
        }
    }))
}

/// Times `args.samples` revocations, each from `DELETE` committing to the
/// replica knowing it; sorted.
async fn revocations(
    state: &AppState,
    replica: &TokenReplica,
    args: &Args,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        let secret = PatSecret::generate();
        let view = state
            .writer
            .execute(Command::CreateToken(CreateToken {
                token_id: Ulid::nil(),
                actor: "alice".into(),
                description: "bench".into(),
                expiration: Expiration::Never,
                scopes: vec![Scope::Read],
                workspaces: vec!["acme".into()],
                secret_hash: secret.hash(),
                allowed_cidrs: Vec::new(),
                not_before: None,
                self_rotate: false,
                decoy: false,
            }))
            .await?;
        let hash = secret.hash().0;
        // The first waits for the node's feed (and the mirror) to be there.
        let first_wait = if i == 0 { 30 } else { 5 };
        until(Duration::from_secs(first_wait), || {
            replica.lookup(&hash).is_some()
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("creation never reached the replica"))?;
        let start = Instant::now();
        state
            .writer
            .execute(Command::RevokeToken {
                token_id: view.id,
                actor: "alice".into(),
                reason: enspace_core::token::RevokeReason::User,
            })
            .await?;
        until(Duration::from_secs(5), || {
            replica.lookup(&hash).is_some_and(|f| f.revoked)
        })
        .await
        .ok_or_else(|| anyhow::anyhow!("revocation never reached the replica"))?;
        samples.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    samples.sort();
    Ok(samples)
}
