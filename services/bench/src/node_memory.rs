//! A real `enspace api-node` process catching up on a million tokens from
//! JetStream: time to `/readyz` and resident memory, beside the same
//! process's memory with no tokens, measured in the same run.

use enspace_core::PatSecret;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use crate::support::{Nats, Process, SignedLog, created_event, rss_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Tokens to publish to the token events stream.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: usize,
    /// The enspace binary (built with `cargo build --release --bin enspace`).
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
}

fn start_node(binary: &str, nats: &Nats) -> anyhow::Result<Process> {
    Process::enspace(
        binary,
        &[
            "api-node",
            "--nats-url",
            &nats.url(),
            "--node-id",
            "bench",
            "--event-key",
            &SignedLog::new().key(),
            "--max-staleness",
            "none",
        ],
    )
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let nats = Nats::start()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let published = Instant::now();
    runtime.block_on(publish(&nats, args.tokens))?;
    println!(
        "published {} token_created events in {:.2?}",
        args.tokens,
        published.elapsed()
    );

    let empty_nats = Nats::start()?;
    runtime.block_on(async {
        let client = enspace_nats::connect(&empty_nats.url(), "bench-empty").await?;
        enspace_nats::ensure_stream(
            &async_nats::jetstream::new(client),
            enspace_nats::token_events_config(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(())
    })?;
    let idle = start_node(&args.binary, &empty_nats)?;
    idle.wait_ready(Duration::from_secs(30))?;
    let idle_rss = rss_bytes(&idle.child.id().to_string()).unwrap_or(0);

    let node = start_node(&args.binary, &nats)?;
    let ready_after = node.wait_ready(Duration::from_secs(600))?;
    let rss = rss_bytes(&node.child.id().to_string()).unwrap_or(0);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "api-node with no tokens (baseline): RSS {:.1} MiB",
        mib(idle_rss)
    );
    println!(
        "api-node with {} tokens: ready after {:.2?}, RSS {:.1} MiB ({:.0} bytes per token over the baseline)",
        args.tokens,
        ready_after,
        mib(rss),
        rss.saturating_sub(idle_rss) as f64 / args.tokens as f64
    );
    println!(
        "ratio RSS loaded / idle: {:.1}   target: under 256 MB with 1,000,000 tokens",
        rss as f64 / idle_rss.max(1) as f64
    );
    Ok(())
}

async fn publish(nats: &Nats, tokens: usize) -> anyhow::Result<()> {
    let client = enspace_nats::connect(&nats.url(), "bench-publisher").await?;
    let js = async_nats::jetstream::new(client);
    enspace_nats::ensure_stream(&js, enspace_nats::token_events_config())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut log = SignedLog::new();
    let mut acks = Vec::with_capacity(1024);
    for i in 0..tokens {
        let event = created_event(
            i as u64 + 1,
            PatSecret::from_rng(&mut rng).expose(),
            &format!("user{}", i % 1000),
        );
        let (subject, headers, payload) = log.next(event);
        acks.push(
            js.publish_with_headers(subject, headers, payload.into())
                .await?,
        );
        if acks.len() == 1024 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}
