//! Pieces the benchmarks share.

use std::time::Duration;

use enspace_core::events::TokenCreated;
use enspace_core::{EventEnvelope, Expiration, Scope, SecretHash, TokenEvent, base62};
use rand::Rng;
use ulid::Ulid;

/// A well-formed PAT from a fast seeded RNG (the product uses the OS CSPRNG;
/// a million getrandom calls would only slow the set-up).
pub fn fake_secret(rng: &mut impl Rng) -> String {
    let random: String = (0..32)
        .map(|_| char::from(base62::ALPHABET[rng.gen_range(0..62)]))
        .collect();
    let sum = base62::encode_padded(u64::from(crc32fast::hash(random.as_bytes())), 6);
    format!("ens_pat_{random}{sum}")
}

pub fn created_event(seq: u64, secret: &str, user: &str) -> EventEnvelope {
    EventEnvelope {
        seq,
        id: Ulid::new(),
        at: jiff::Timestamp::now(),
        actor: user.to_owned(),
        token_id: Ulid::new(),
        event: TokenEvent::TokenCreated(TokenCreated {
            user_id: user.to_owned(),
            description: "bench".into(),
            expiration: Expiration::OneYear,
            scopes: vec![Scope::Read, Scope::Write],
            workspaces: vec!["acme".into()],
            expires_at: Expiration::OneYear.expires_at(jiff::Timestamp::now()),
            secret_hash: SecretHash::of(secret).to_hex(),
        }),
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

/// A nats-server with JetStream on a free loopback port, killed on drop.
pub struct Nats {
    child: std::process::Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> anyhow::Result<Self> {
        use std::io::{BufRead, BufReader};
        let store = tempfile::tempdir()?;
        let mut child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(store.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot start nats-server (bash tests/run installs it): {e}")
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining the server's log so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening for client connections on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(
                        rest.trim()
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.parse::<u16>().ok()),
                    );
                }
            }
        });
        let port = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .ok()
            .flatten();
        let port = port.ok_or_else(|| anyhow::anyhow!("nats-server did not report its port"))?;
        Ok(Nats {
            child,
            port,
            _store: store,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
