//! The lossless rate: real processes on loopback, as deployed:
//! nats-server, `enspace tokens` (which runs the request-log indexer) and
//! `enspace api-node`. One token is created through the API; then requests
//! are sent open-loop at `--rate` per second for `--seconds`, first to the
//! node's `/healthz` (the baseline: what this load generator and machine
//! do with no auth and no record), then to its authenticated read route.
//!
//! Target: at 15,000 requests/s for 60 s, the node drops no record, and
//! every record is counted by the owner's `GET /v1/tokens/{id}/requests/stats`
//! within 5 s of the last request.
//!
//! With `--zones`, all of it again on the shipped two trust zones
//! (`deploy/nats.conf`, `enspace tokens --nats-edge-api`, the node as
//! `enspace-node`), beside one account: the logged route's achieved rate
//! must keep >= 0.95 of one account's, and the same targets hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::{Timestamp, ToSpan};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::support::{Nats, Process, Setup, cpu_seconds, percentile, sign_in};
use crate::verdict::Verdict;

/// Fewer records than this are too few to show a loss.
const MIN_RECORDS: usize = 1000;

#[derive(clap::Args)]
pub struct Args {
    /// Requests per second.
    #[arg(long, default_value_t = 15_000)]
    rate: u32,
    /// Seconds of load per side.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    /// Requests in flight at most (the generator's connections): enough
    /// that they never cap the offered rate when answers slow down.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// The enspace binary (built with `cargo build --release --bin enspace`).
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
    /// Also measure on the two NATS trust zones, beside one account.
    #[arg(long)]
    zones: bool,
    /// The node's `--record-batch-max` (1: every record its own message,
    /// as before batches).
    #[arg(long, default_value_t = enspace_api_node::request_records::publisher::DEFAULT_BATCH_RECORDS)]
    record_batch_max: usize,
    /// The node's `--record-linger`.
    #[arg(long, default_value = "5ms")]
    record_linger: String,
}

const ZONES_TARGET: f64 = 0.95;

const TARGET_VISIBLE: Duration = Duration::from_secs(5);
const PATH: &str = "/api/v1/workspaces/acme/records";

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.rate == 0 || args.seconds == 0 || args.connections == 0 {
        bail!("--rate, --seconds and --connections must be at least 1");
    }
    let mut outcomes = Vec::new();
    for setup in Setup::runs(args.zones) {
        println!("{}:", setup.name());
        outcomes.push(run_on(setup, &args)?);
    }
    if let [one, two] = &outcomes[..] {
        println!(
            "two zones beside one account: achieved {:.0} vs {:.0} /s, ratio {:.3} (target >= {ZONES_TARGET}); p99 {:.2} vs {:.2} ms; all queryable after {} vs {}",
            two.achieved,
            one.achieved,
            two.achieved / one.achieved,
            two.p99_ms,
            one.p99_ms,
            seconds(two.visible_after),
            seconds(one.visible_after),
        );
    }
    Ok(())
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// What one set-up achieved on the logged route.
struct Outcome {
    achieved: f64,
    p99_ms: f64,
    visible_after: Option<Duration>,
}

/// The whole benchmark on `setup`.
fn run_on(setup: Setup, args: &Args) -> anyhow::Result<Outcome> {
    let nats = Nats::start_as(setup)?;
    let data = tempfile::tempdir()?;
    let data_dir = data.path().to_string_lossy().into_owned();
    let tokens_url = nats.tokens_url();
    let mut tokens_args = vec!["tokens", "--nats-url", &tokens_url, "--data", &data_dir];
    tokens_args.extend(nats.control_flags());
    let tokens = Process::enspace(&args.binary, &tokens_args)?;
    tokens.wait_ready(Duration::from_secs(30))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let tokens_base = format!("http://{}", tokens.base);
    let (session, token_id, secret) = runtime.block_on(create_token(&client, &tokens_base))?;
    let key = crate::support::event_key_of(data.path())?;
    let node = Process::enspace(
        &args.binary,
        &[
            "api-node",
            "--nats-url",
            &nats.node_url(),
            "--node-id",
            "bench",
            "--event-key",
            &key,
            "--record-batch-max",
            &args.record_batch_max.to_string(),
            "--record-linger",
            &args.record_linger,
        ],
    )?;
    node.wait_ready(Duration::from_secs(30))?;
    let node_base = format!("http://{}", node.base);

    println!(
        "enspace-bench lossless: {} requests/s for {} s, {} connections; nats-server, enspace tokens, enspace api-node and this generator on {} CPUs",
        args.rate,
        args.seconds,
        args.connections,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let n = args.rate as usize * args.seconds as usize;
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", node.base);
    let route = format!(
        "GET {PATH} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {secret}\r\n\r\n",
        node.base
    );
    let (rate, conns) = (args.rate, args.connections);
    let load = |request: &str, n: usize| {
        runtime.block_on(paced(&node.base, request.as_bytes(), rate, n, conns))
    };
    // Warm both paths (and make sure the token has reached the node).
    let warm = load(&route, 100)?;
    if warm.failed > 0 {
        bail!("{} of 100 warm-up calls with the token failed", warm.failed);
    }
    load(&healthz, rate as usize)?;

    let processes = [
        ("nats-server", nats.pid().to_string()),
        ("enspace tokens", tokens.child.id().to_string()),
        ("enspace api-node", node.child.id().to_string()),
        ("generator", "self".to_owned()),
    ];
    let cpu = CpuUse::start(&processes);
    let baseline = load(&healthz, n)?;
    baseline.row("baseline: GET /healthz (no auth, no record)");
    let cpu_baseline = cpu.row();
    let cpu = CpuUse::start(&processes);
    let started = Timestamp::now();
    let logged = load(&route, n)?;
    logged.row(&format!("GET {PATH} (auth + record)"));
    let cpu_logged = cpu.row();

    let expected = (n + 100) as u64;
    let (counted, visible_after) = runtime.block_on(wait_counted(
        &client,
        &tokens_base,
        &session,
        &token_id,
        started,
        expected,
    ))?;
    let metrics = runtime.block_on(async {
        client
            .get(format!("{node_base}/metrics"))
            .send()
            .await?
            .text()
            .await
    })?;
    let dropped = metric(&metrics, "enspace_request_records_dropped_total");
    let published = metric(&metrics, "enspace_request_records_published_total");
    println!(
        "records: {expected} requests made, {published} published, {dropped} dropped, {counted} in the owner's stats"
    );
    match visible_after {
        Some(after) => println!(
            "  all queryable {:.2} s after the last answer (target <= {} s)",
            after.as_secs_f64(),
            TARGET_VISIBLE.as_secs()
        ),
        None => println!("  NOT all queryable within 60 s"),
    }
    let (held, stream_bytes) = runtime.block_on(async {
        let client = enspace_nats::connect(&nats.tokens_url(), "bench-lossless-stream").await?;
        let mut stream = async_nats::jetstream::new(client)
            .get_stream(enspace_nats::REQUESTS_STREAM)
            .await
            .context("the request records stream")?;
        let bytes = stream.info().await?.state.bytes;
        anyhow::Ok((crate::support::records_in(&stream).await?, bytes))
    })?;
    let index_bytes = crate::query::dir_bytes(&data.path().join("requests"));
    // CPU per record of the logged side: nats-server's and the control
    // plane's whole use, the node's beyond the baseline's (same pace).
    let per_record = |seconds: f64| seconds * 1e6 / expected as f64;
    println!(
        "  disk per record: {:.0} bytes in the stream (one replica), {:.0} bytes in the request index",
        stream_bytes as f64 / held.records.max(1) as f64,
        index_bytes as f64 / held.records.max(1) as f64,
    );
    println!(
        "  stream: {} records in {} messages ({:.1} records/message, --record-batch-max {}, --record-linger {}); \
         CPU per record: nats-server {:.1} µs, enspace tokens {:.1} µs, api-node {:.1} µs beyond /healthz",
        held.records,
        held.messages,
        held.records as f64 / held.messages.max(1) as f64,
        args.record_batch_max,
        args.record_linger,
        per_record(cpu_logged[0]),
        per_record(cpu_logged[1]),
        per_record(cpu_logged[2] - cpu_baseline[2]),
    );
    // A record dropped or never counted is a failure.
    let lost = dropped + expected.saturating_sub(counted);
    let verdict = Verdict::new(
        usize::try_from(expected).unwrap_or(usize::MAX),
        usize::try_from(lost).unwrap_or(usize::MAX),
        MIN_RECORDS,
        visible_after.is_some_and(|d| d <= TARGET_VISIBLE)
            && logged.achieved >= f64::from(args.rate) * 0.98,
    );
    println!(
        "target: {} /s paced, zero dropped, queryable within {} s: {verdict}",
        args.rate,
        TARGET_VISIBLE.as_secs(),
    );
    drop(node);
    drop(tokens);
    drop(nats);
    Ok(Outcome {
        achieved: logged.achieved,
        p99_ms: percentile(&logged.latencies, 0.99).as_secs_f64() * 1000.0,
        visible_after,
    })
}

async fn create_token(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<(String, String, String)> {
    let session = sign_in(client, base).await?;
    let res = client
        .post(format!("{base}/v1/tokens"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"description":"lossless bench","expiration":"1m","scopes":["read"],"workspaces":["acme"]}"#)
        .send()
        .await?;
    if res.status().as_u16() != 201 {
        bail!("creating the token answered {}", res.status());
    }
    let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    let id = body["token"]["id"]
        .as_str()
        .context("no token id")?
        .to_owned();
    let secret = body["secret"].as_str().context("no secret")?.to_owned();
    Ok((session, id, secret))
}

/// Each process's share of one CPU over a phase, so that a run shows
/// where the machine's cores went.
struct CpuUse<'a> {
    processes: &'a [(&'static str, String)],
    before: Vec<f64>,
    start: Instant,
}

impl<'a> CpuUse<'a> {
    fn start(processes: &'a [(&'static str, String)]) -> Self {
        CpuUse {
            processes,
            before: processes
                .iter()
                .map(|(_, pid)| cpu_seconds(pid).unwrap_or(0.0))
                .collect(),
            start: Instant::now(),
        }
    }

    /// Prints each process's share of a core since the start; returns
    /// the CPU seconds each used.
    fn row(&self) -> Vec<f64> {
        let wall = self.start.elapsed().as_secs_f64();
        let used: Vec<f64> = self
            .processes
            .iter()
            .zip(&self.before)
            .map(|((_, pid), before)| cpu_seconds(pid).unwrap_or(0.0) - before)
            .collect();
        let shares: Vec<String> = self
            .processes
            .iter()
            .zip(&used)
            .map(|((name, _), used)| format!("{name} {:.0} %", used / wall * 100.0))
            .collect();
        println!("    CPU (100 % = one core): {}", shares.join(", "));
        used
    }
}

struct Paced {
    achieved: f64,
    latencies: Vec<Duration>,
    failed: u64,
}

impl Paced {
    fn row(&self, name: &str) {
        println!(
            "  {name:<44} {:>7.0} /s   p50 {:>6.2} ms   p99 {:>7.2} ms   failed {}",
            self.achieved,
            percentile(&self.latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&self.latencies, 0.99).as_secs_f64() * 1000.0,
            self.failed
        );
    }
}

/// `n` requests due at `rate` per second over `connections` keep-alive
/// connections; a request's latency runs from when it was due, so a
/// generator or server falling behind shows in it (open loop). The client is
/// a bare HTTP/1.1 writer and reader (like wrk's), so that the generator
/// takes as little of the shared CPUs as it can.
async fn paced(
    addr: &str,
    request: &[u8],
    rate: u32,
    n: usize,
    connections: usize,
) -> anyhow::Result<Paced> {
    let interval = 1.0 / f64::from(rate);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let request: Arc<[u8]> = Arc::from(request);
    let start = tokio::time::Instant::now();
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut conn = Connection::open(addr).await?;
        let (next, failed, request) = (next.clone(), failed.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n / connections + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return latencies;
                }
                let due = start + Duration::from_secs_f64(interval * i as f64);
                tokio::time::sleep_until(due).await;
                if !matches!(conn.exchange(&request).await, Ok(200)) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(due.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for worker in workers {
        latencies.extend(worker.await?);
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Ok(Paced {
        achieved,
        latencies,
        failed: failed.load(Ordering::Relaxed),
    })
}

/// One keep-alive HTTP/1.1 connection that sends a fixed request and reads
/// the status and a `content-length` body.
struct Connection {
    addr: String,
    stream: Option<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let mut conn = Connection {
            addr: addr.to_owned(),
            stream: None,
            buf: Vec::with_capacity(4096),
        };
        conn.stream = Some(connect(addr).await?);
        Ok(conn)
    }

    /// Sends the request and reads the answer; returns its status. A
    /// broken connection is reopened for the next request.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<u16> {
        let result = self.try_exchange(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn try_exchange(&mut self, request: &[u8]) -> std::io::Result<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.stream.is_none() {
            self.stream = Some(connect(&self.addr).await?);
        }
        let (Some(stream), buf) = (self.stream.as_mut(), &mut self.buf) else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        stream.write_all(request).await?;
        buf.clear();
        let bad = || std::io::Error::other("malformed response");
        loop {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..read]);
            let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad())?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .ok_or_else(bad)?;
            let total = head_end + 4 + length;
            while buf.len() < total {
                let read = stream.read(&mut chunk).await?;
                if read == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..read]);
            }
            return Ok(status);
        }
    }
}

async fn connect(addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// From the last answer on: polls the owner's hourly stats over whole
/// hours around the run until they count `expected` records (at most a
/// minute); returns the count and how long that took.
async fn wait_counted(
    client: &reqwest::Client,
    base: &str,
    session: &str,
    token_id: &str,
    started: Timestamp,
    expected: u64,
) -> anyhow::Result<(u64, Option<Duration>)> {
    let hour = |t: Timestamp| -> anyhow::Result<Timestamp> {
        Ok(Timestamp::from_second(
            t.as_second() - t.as_second().rem_euclid(3600),
        )?)
    };
    let from = hour(started.checked_sub(1.hour())?)?;
    let to = hour(Timestamp::now().checked_add(2.hours())?)?;
    let url = format!("{base}/v1/tokens/{token_id}/requests/stats?bucket=hour&from={from}&to={to}");
    let start = Instant::now();
    let mut counted = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let res = client
            .get(&url)
            .header(AUTHORIZATION, format!("Bearer {session}"))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("stats answered {}", res.status());
        }
        let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
        counted = body["buckets"]
            .as_array()
            .map_or(0, |b| b.iter().filter_map(|b| b["total"].as_u64()).sum());
        if counted >= expected {
            return Ok((counted, Some(start.elapsed())));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((counted, None))
}

/// A counter's value in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
