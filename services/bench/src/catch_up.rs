//! A node catching up on a long token events stream, in-process on one
//! thread, over the same signed log a control plane publishes: the fold
//! with every check (chain hash per event, one Ed25519 signature per run of
//! 1,024, as the feed does) beside the same fold with no checks (decode and
//! apply only), and beside a signature check on every event.

use enspace_core::PatSecret;
use std::time::Instant;

use enspace_api_node::TokenReplica;
use enspace_api_node::chain::{self, Chain};
use rand::SeedableRng;

use crate::support::{SignedLog, created_event};
use crate::verdict::Verdict;

#[derive(clap::Args)]
pub struct Args {
    /// Events in the stream.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
}

const RUN: usize = 1024;
const TARGET_PER_SEC: f64 = 50_000.0;
/// Fewer events than this are over too fast to say anything of a rate.
const MIN_EVENTS: usize = 100_000;

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut log = SignedLog::new();
    let key = log.signer.public().clone();
    eprintln!("signing {} events…", args.events);
    let messages: Vec<(Vec<u8>, Vec<u8>, [u8; 32])> = (0..args.events)
        .map(|i| {
            let event = created_event(
                i as u64 + 1,
                PatSecret::from_rng(&mut rng).expose(),
                &format!("user{}", i % 1000),
            );
            let (_, headers, payload) = log.next(event);
            let sig = enspace_nats::signature_of(Some(&headers));
            let prev = enspace_nats::prev_hash_of(Some(&headers)).unwrap_or([0; 32]);
            (payload, sig, prev)
        })
        .collect();

    // Baseline: decode and apply, no checks.
    let replica = TokenReplica::new();
    let start = Instant::now();
    for (payload, _, _) in &messages {
        let envelope = enspace_core::EventEnvelope::decode(payload)?;
        replica.apply(&envelope);
    }
    let bare = start.elapsed();
    anyhow::ensure!(
        replica.len() == args.events,
        "baseline folded {}",
        replica.len()
    );

    // The feed's fold: chain hash per event, a signature per run.
    let replica = TokenReplica::new();
    let mut chain = Chain::default();
    let start = Instant::now();
    let mut run = Vec::with_capacity(RUN);
    let mut tentative = chain;
    let mut keys = enspace_core::KeyChain::new(key.clone());
    for (payload, sig, prev) in &messages {
        let candidate = tentative
            .place(payload, sig.clone(), Some(*prev))
            .map_err(|r| anyhow::anyhow!("refused: {}", r.label()))?;
        tentative.extend(&candidate);
        run.push((candidate, bytes::Bytes::from(payload.clone())));
        if run.len() == RUN {
            chain::apply_run(&run, &mut keys, &replica, &mut chain)
                .map_err(|(r, seq)| anyhow::anyhow!("event {seq} refused: {}", r.label()))?;
            run.clear();
        }
    }
    chain::apply_run(&run, &mut keys, &replica, &mut chain)
        .map_err(|(r, seq)| anyhow::anyhow!("event {seq} refused: {}", r.label()))?;
    let checked = start.elapsed();
    anyhow::ensure!(
        replica.len() == args.events,
        "checked fold folded {}",
        replica.len()
    );

    // For scale: one signature check per event, on a tenth of the stream.
    let sample = (args.events / 10).max(1);
    let mut chain = Chain::default();
    let start = Instant::now();
    for (payload, sig, prev) in messages.iter().take(sample) {
        let candidate = chain
            .place(payload, sig.clone(), Some(*prev))
            .map_err(|r| anyhow::anyhow!("refused: {}", r.label()))?;
        chain::check(&candidate, &key, payload)
            .map_err(|r| anyhow::anyhow!("refused: {}", r.label()))?;
        chain.extend(&candidate);
    }
    let every = start.elapsed();

    let rate = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64();
    let (checked_rate, bare_rate) = (rate(args.events, checked), rate(args.events, bare));
    println!(
        "catch-up fold of {} signed token events on one thread:",
        args.events
    );
    println!(
        "  with chain and signature checks {checked_rate:>12.0} events/s  ({:.2} s; 1 M in {:.1} s)",
        checked.as_secs_f64(),
        1_000_000.0 / checked_rate
    );
    println!(
        "  baseline, decode + apply only    {bare_rate:>12.0} events/s  ({:.2} s)",
        bare.as_secs_f64()
    );
    println!(
        "  a signature on every event       {:>12.0} events/s  (on {sample})",
        rate(sample, every)
    );
    println!(
        "ratio checked / baseline: {:.2}   target: >= {TARGET_PER_SEC:.0} events/s checked ({})",
        checked_rate / bare_rate,
        // A refused event aborts the run: every event counted was folded.
        Verdict::new(args.events, 0, MIN_EVENTS, checked_rate >= TARGET_PER_SEC)
    );
    Ok(())
}
