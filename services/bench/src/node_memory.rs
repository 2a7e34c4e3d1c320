//! A real `enspace api-node` process catching up on a million tokens from
//! JetStream: time to `/readyz` and resident memory, beside the same
//! process's memory with no tokens, measured in the same run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use rand::SeedableRng;

use crate::support::{Nats, created_event, fake_secret, rss_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Tokens to publish to the token events stream.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: usize,
    /// The enspace binary (built with `cargo build --release --bin enspace`).
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
}

struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_node(binary: &str, nats: &Nats) -> anyhow::Result<Node> {
    let port = free_port()?;
    let child = Command::new(binary)
        .args(["api-node", "--nats-url", &nats.url(), "--node-id", "bench"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("cannot start {binary}; build it with cargo build --release --bin enspace")
        })?;
    Ok(Node {
        child,
        base: format!("127.0.0.1:{port}"),
    })
}

/// Polls `/readyz` over plain HTTP/1.1 until it answers 200.
fn wait_ready(node: &Node, timeout: Duration) -> anyhow::Result<Duration> {
    use std::io::{Read, Write};
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(mut conn) = std::net::TcpStream::connect(&node.base) {
            let _ = conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 12];
            if conn.read_exact(&mut buf).is_ok() && buf.ends_with(b"200") {
                return Ok(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("node not ready within {timeout:?}")
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
    let idle = start_node(&args.binary, &empty_nats)?;
    wait_ready(&idle, Duration::from_secs(30))?;
    let idle_rss = rss_bytes(&idle.child.id().to_string()).unwrap_or(0);

    let node = start_node(&args.binary, &nats)?;
    let ready_after = wait_ready(&node, Duration::from_secs(600))?;
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
    let mut acks = Vec::with_capacity(1024);
    for i in 0..tokens {
        let event = created_event(
            i as u64 + 1,
            &fake_secret(&mut rng),
            &format!("user{}", i % 1000),
        );
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
        let subject = enspace_nats::token_event_subject(&event.token_id.to_string());
        acks.push(
            js.publish_with_headers(subject, headers, event.encode().into())
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
