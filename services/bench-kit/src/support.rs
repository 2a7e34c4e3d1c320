//! Pieces the benchmarks share.

use std::time::{Duration, Instant};

use enspace_core::{EventEnvelope, Expiration, RequestRecord, Scope, SecretHash};
use rand::Rng;
use ulid::Ulid;

/// `user`'s read-write token on `acme` for a year, with this secret.
pub fn created_event(seq: u64, secret: &str, user: &str) -> EventEnvelope {
    enspace_core::fixtures::created(seq, &SecretHash::of(secret))
        .user(user)
        .scopes(&[Scope::Read, Scope::Write])
        .expiring(Expiration::OneYear, jiff::Timestamp::now())
        .build()
}

/// A realistic request record of `token` at `at_ms`: a mix of methods,
/// paths, statuses, nodes and clients.
pub fn request_record(rng: &mut impl Rng, token: Ulid, at_ms: i64) -> RequestRecord {
    const STATUSES: [u16; 9] = [200, 200, 200, 201, 204, 403, 404, 401, 500];
    const METHODS: [&str; 5] = ["GET", "GET", "POST", "PUT", "DELETE"];
    RequestRecord {
        id: Ulid::from_parts(at_ms.max(0) as u64, rng.r#gen()),
        token_id: token,
        user_id: format!("user-{}", rng.gen_range(0..500)),
        at: jiff::Timestamp::from_millisecond(at_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        node: format!("api-node-{}", rng.gen_range(1..4)),
        method: METHODS[rng.gen_range(0..METHODS.len())].into(),
        path: format!(
            "/api/v1/workspaces/acme/records/{}",
            Ulid::from_parts(at_ms.max(0) as u64, rng.r#gen())
        ),
        path_truncated: false,
        workspace: Some("acme".into()),
        status: STATUSES[rng.gen_range(0..STATUSES.len())],
        duration_ms: f64::from(rng.gen_range(50..5_000u32)) / 1000.0,
        client_ip: format!("10.0.{}.{}", rng.gen_range(0..255), rng.gen_range(1..255)),
        user_agent: Some("erp-sync/2.3 (+https://example.com)".into()),
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Resident set size of a process, from /proc.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) a process has used so far, from /proc; `pid`
/// may be `self`.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// A nats-server with JetStream on a free loopback port, killed on drop:
/// one account for everything, or the shipped two trust zones.
pub struct Nats {
    child: std::process::Child,
    port: u16,
    store: tempfile::TempDir,
    zoned: bool,
}

/// The shipped configuration, and the passwords its users get here.
const SHIPPED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/nats.conf");
const TOKENS_PASSWORD: &str = "bench-tokens";
const NODE_PASSWORD: &str = "bench-node";

/// Which NATS set-up a benchmark runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// One account, no configuration (`nats-server -js`).
    OneAccount,
    /// `deploy/nats.conf`: the control plane's account and the API nodes'.
    TwoZones,
}

impl Setup {
    /// One account, and with `zones` the two zones after it: what a
    /// benchmark's `--zones` runs.
    pub fn runs(zones: bool) -> Vec<Setup> {
        if zones {
            vec![Setup::OneAccount, Setup::TwoZones]
        } else {
            vec![Setup::OneAccount]
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Setup::OneAccount => "one account",
            Setup::TwoZones => "two zones",
        }
    }
}

/// The ports a just-started nats-server (stderr piped) listens on, one per
/// kind in `kinds` ("client", "route"), read from its "Listening for <kind>
/// connections on" lines; its log is drained afterwards so that it never
/// blocks on a full pipe.
pub fn listening(child: &mut std::process::Child, kinds: &[&str]) -> anyhow::Result<Vec<u16>> {
    use std::io::{BufRead, BufReader};
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let wanted: Vec<String> = kinds
        .iter()
        .map(|k| format!("Listening for {k} connections on "))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for (i, marker) in wanted.iter().enumerate() {
                if let Some(rest) = line.split(marker.as_str()).nth(1) {
                    let port = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                    let _ = tx.send((i, port));
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ports: Vec<Option<u16>> = vec![None; kinds.len()];
    while ports.iter().any(Option::is_none) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((i, Some(port))) => ports[i] = Some(port),
            Ok((_, None)) | Err(_) => {
                anyhow::bail!("nats-server did not report its {kinds:?} ports")
            }
        }
    }
    Ok(ports.into_iter().flatten().collect())
}

/// Starts nats-server on `port` (a free one for `None`) with `store`, with
/// the shipped configuration when `zoned`; returns it with its port.
fn spawn_nats(
    port: Option<u16>,
    store: &std::path::Path,
    zoned: bool,
) -> anyhow::Result<(std::process::Child, u16)> {
    let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
    let mut command = std::process::Command::new("nats-server");
    if zoned {
        command
            .args(["-c", SHIPPED_CONFIG])
            .env("ENSPACE_NATS_TOKENS_PASSWORD", TOKENS_PASSWORD)
            .env("ENSPACE_NATS_NODE_PASSWORD", NODE_PASSWORD);
    }
    let mut child = command
        .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
        .arg(store)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("cannot start nats-server (bash tests/run installs it): {e}")
        })?;
    let port = listening(&mut child, &["client"])?[0];
    Ok((child, port))
}

impl Nats {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_as(Setup::OneAccount)
    }

    pub fn start_as(setup: Setup) -> anyhow::Result<Self> {
        let store = tempfile::tempdir()?;
        let zoned = setup == Setup::TwoZones;
        let (child, port) = spawn_nats(None, store.path(), zoned)?;
        Ok(Nats {
            child,
            port,
            store,
            zoned,
        })
    }

    /// Where the control plane connects (user `enspace-tokens` with two
    /// zones).
    pub fn tokens_url(&self) -> String {
        match self.zoned {
            true => format!(
                "nats://enspace-tokens:{TOKENS_PASSWORD}@127.0.0.1:{}",
                self.port
            ),
            false => self.url(),
        }
    }

    /// Where API nodes connect (user `enspace-node` with two zones).
    pub fn node_url(&self) -> String {
        match self.zoned {
            true => format!(
                "nats://enspace-node:{NODE_PASSWORD}@127.0.0.1:{}",
                self.port
            ),
            false => self.url(),
        }
    }

    /// The control plane's `--nats-edge-api`, with two zones.
    pub fn edge_api(&self) -> Option<&'static str> {
        self.zoned.then_some(enspace_nats::edge::EDGE_API)
    }

    /// The control plane's flags for this set-up.
    pub fn control_flags(&self) -> Vec<&'static str> {
        match self.edge_api() {
            Some(api) => vec!["--nats-edge-api", api],
            None => Vec::new(),
        }
    }

    /// What the control plane keeps for the nodes, made now and kept in
    /// place from then on (for benchmarks that run no control plane).
    /// How a control plane in the benchmark's process connects to this
    /// server (and makes the nodes' streams in their account, if zoned).
    pub fn control_plane(&self) -> enspace_tokens::control_plane::NatsConfig {
        enspace_tokens::control_plane::NatsConfig {
            url: self.tokens_url(),
            credentials: enspace_nats::Credentials::default(),
            edge_api: self.edge_api().map(str::to_owned),
            request_max_bytes: None,
            stream_replicas: 1,
            stream_repair_interval: enspace_cluster::event_stream::repair::DEFAULT_INTERVAL,
        }
    }

    pub async fn keep_node_streams(&self) -> anyhow::Result<()> {
        let client = enspace_nats::connect(&self.tokens_url(), "bench-control").await?;
        let streams = enspace_cluster::edge::EdgeStreams::new(
            &client,
            self.edge_api(),
            enspace_nats::DEFAULT_REQUEST_RETENTION,
            None,
            1,
        );
        streams
            .ensure()
            .await
            .map_err(|e| anyhow::anyhow!("cannot make the nodes' streams: {e}"))?;
        tokio::spawn(streams.keep(|| true));
        Ok(())
    }

    /// A lost NATS disk: stops the server, empties its store and starts it
    /// again on the same port.
    pub fn wipe_and_restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(self.store.path())?;
        std::fs::create_dir_all(self.store.path())?;
        let (child, _) = spawn_nats(Some(self.port), self.store.path(), self.zoned)?;
        self.child = child;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process of the `enspace` binary listening on a free loopback
/// port; killed on drop.
pub struct Process {
    pub child: std::process::Child,
    /// `127.0.0.1:<port>`
    pub base: String,
}

impl Process {
    /// Starts `binary` with `args` and `--listen` on a free port.
    pub fn enspace(binary: &str, args: &[&str]) -> anyhow::Result<Self> {
        use anyhow::Context;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // ENSPACE_BENCH_LOGS=DIR keeps each process's log (at info, or as
        // RUST_LOG says) in DIR/enspace-<port>.log, to see what happened.
        let (level, stderr) = match std::env::var_os("ENSPACE_BENCH_LOGS") {
            Some(dir) => {
                let path = std::path::Path::new(&dir).join(format!("enspace-{port}.log"));
                let file = std::fs::File::create(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
                (level, std::process::Stdio::from(file))
            }
            None => ("warn".into(), std::process::Stdio::null()),
        };
        let child = std::process::Command::new(binary)
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", level)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| {
                format!("cannot start {binary}; build it with cargo build --release --bin enspace")
            })?;
        Ok(Process {
            child,
            base: format!("127.0.0.1:{port}"),
        })
    }

    /// Polls `/readyz` over plain HTTP/1.1 until it answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<Duration> {
        use std::io::{Read, Write};
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(mut conn) = std::net::TcpStream::connect(&self.base) {
                let _ =
                    conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = [0u8; 12];
                if conn.read_exact(&mut buf).is_ok() && buf.ends_with(b"200") {
                    return Ok(start.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("{} not ready within {timeout:?}", self.base)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The public event key (base64) of the control plane whose data directory
/// is `data` (made at its start), for its API nodes' `--event-key`.
pub fn event_key_of(data: &std::path::Path) -> anyhow::Result<String> {
    let path = enspace_tokens::signing_key::path(data, None);
    let start = std::time::Instant::now();
    loop {
        if let Some(signer) = enspace_tokens::signing_key::load(&path)? {
            return Ok(signer.public().to_base64());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "no event signing key at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The control plane (demo directory, system clock) on a free loopback
/// port, assembled as `enspace serve` assembles it, over the data directory
/// `data`; with `nats`, its outbox signs and publishes every event there.
/// The returned state reaches the store and the request index it opened.
pub async fn start_service(
    data: &std::path::Path,
    nats: Option<enspace_tokens::control_plane::NatsConfig>,
) -> anyhow::Result<(std::net::SocketAddr, enspace_tokens::AppState)> {
    use enspace_tokens::control_plane::{ControlPlane, ControlPlaneConfig};
    let config = ControlPlaneConfig {
        nats,
        web: enspace_tokens::Config {
            // The benchmarks create thousands of tokens as one user.
            limits: enspace_accounts::limits::Limits {
                max_tokens_per_user: usize::MAX,
                ..Default::default()
            },
            ..Default::default()
        },
        ..ControlPlaneConfig::new(data, std::sync::Arc::new(enspace_core::SystemClock))
    };
    let control = ControlPlane::start(config).await?;
    let state = control.state.clone();
    let app = enspace_tokens::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        // Keeps the control plane's tasks running for as long as it serves.
        let _control = control;
        let _ = enspace_http::server::serve(
            listener,
            app,
            enspace_http::server::ServerLimits::default(),
            std::future::pending(),
        )
        .await;
    });
    Ok((addr, state))
}

/// Signs in as the demo user alice at `base` (`http://host:port`); returns
/// the session.
pub async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    let res = client
        .post(format!("{base}/v1/session"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(r#"{"username":"alice","password":"alice-password"}"#)
        .send()
        .await?;
    if !res.status().is_success() {
        anyhow::bail!("sign-in answered {}", res.status());
    }
    let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    body["session"]
        .as_str()
        .map(str::to_owned)
        .context("no session in the sign-in answer")
}

/// A hash-chained, signed token event log as the control plane publishes
/// it, for benchmarks that feed nodes without running a control plane.
pub struct SignedLog {
    pub signer: enspace_core::EventSigner,
    prev: [u8; 32],
}

impl Default for SignedLog {
    fn default() -> Self {
        Self::new()
    }
}

impl SignedLog {
    pub fn new() -> Self {
        SignedLog {
            signer: enspace_core::EventSigner::from_seed(&[42; 32]),
            prev: enspace_core::events::GENESIS_HASH,
        }
    }

    /// The public key, as `api-node --event-key` takes it.
    pub fn key(&self) -> String {
        self.signer.public().to_base64()
    }

    /// The next event's subject, headers and payload.
    pub fn next(&mut self, envelope: EventEnvelope) -> (String, async_nats::HeaderMap, Vec<u8>) {
        let stored = enspace_core::StoredEvent::new(self.prev, &envelope);
        self.prev = stored.hash;
        let subject = enspace_nats::token_event_subject(&envelope.token_id.to_string());
        let entry = enspace_store::event_log::LogEntry { envelope, stored };
        let signature = self.signer.sign_event(&entry.stored.hash);
        let headers = enspace_cluster::outbox::event_headers(
            &entry,
            self.signer.public().key_id(),
            &signature,
        );
        (subject, headers, entry.stored.payload)
    }
}

/// What a request records stream holds: records (each batch counted by
/// its `Enspace-Record-Count` header, a message without it as one record;
/// counts of dropped records left out) and messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamRecords {
    pub records: u64,
    pub messages: u64,
}

/// Reads the headers of every record message of `stream` (an ordered
/// consumer, headers only, on `enspace.requests.*`: partitions and old
/// single records, not `<token>.dropped`).
pub async fn records_in(
    stream: &async_nats::jetstream::stream::Stream,
) -> anyhow::Result<StreamRecords> {
    use futures::TryStreamExt;
    let mut stream = stream.clone();
    let state = stream
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .state
        .clone();
    let mut out = StreamRecords::default();
    if state.messages == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "enspace.requests.*".to_owned(),
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.try_next()).await;
        let Ok(Some(message)) = next.map(|m| m.ok().flatten()) else {
            break;
        };
        out.messages += 1;
        out.records += message
            .headers
            .as_ref()
            .and_then(|h| h.get(enspace_core::record_batch::COUNT_HEADER))
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .unwrap_or(1);
        let pending = message.info().map_or(0, |i| i.pending);
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// Fails unless the `enspace` binary a benchmark starts is at `binary`.
pub fn require_binary(binary: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        std::path::Path::new(binary).exists(),
        "{binary} is missing: cargo build --release --bin enspace"
    );
    Ok(())
}
