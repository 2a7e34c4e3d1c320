//! Clusters for the benchmarks: nats-servers routed to each other on
//! loopback ([`NatsCluster`]), `enspace tokens --cluster` processes
//! ([`Member`]), and which of them writes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::support::Process;

/// A 3-server NATS cluster on loopback, killed on drop. Every server binds
/// port 0 for clients and routes and reports the ports it got, so no port
/// is guessed; a server started again takes the ports it had.
pub struct NatsCluster {
    children: Vec<Option<std::process::Child>>,
    ports: Vec<u16>,
    /// Each server's arguments, to start it again.
    args: Vec<Vec<String>>,
    _stores: Vec<tempfile::TempDir>,
}

/// The route the first server is given: clustered JetStream needs at least
/// one configured route, and the others are not up yet; the others route
/// to the first server themselves.
const NO_ROUTE_YET: &str = "nats://127.0.0.1:0";

impl NatsCluster {
    /// Starts `n` servers, one after the other, each routed to the ones
    /// already up.
    pub fn start(n: usize) -> anyhow::Result<Self> {
        let mut cluster = NatsCluster {
            children: Vec::new(),
            ports: Vec::new(),
            args: Vec::new(),
            _stores: Vec::new(),
        };
        let mut routes: Vec<String> = Vec::new();
        for i in 0..n {
            let store = tempfile::tempdir()?;
            let known = if routes.is_empty() {
                vec![NO_ROUTE_YET.to_owned()]
            } else {
                routes.clone()
            };
            let args = |port: &str, route: &str, known: &[String]| -> Vec<String> {
                vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.into(),
                    "-js".into(),
                    "-sd".into(),
                    store.path().display().to_string(),
                    "--server_name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "bench".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".into(),
                    known.join(","),
                ]
            };
            let mut child = std::process::Command::new("nats-server")
                .args(args("-1", "-1", &known))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("start nats-server")?;
            let ports = crate::support::listening(&mut child, &["client", "route"])?;
            routes.push(format!("nats://127.0.0.1:{}", ports[1]));
            // Started again, it takes the same ports and every route.
            cluster
                .args
                .push(args(&ports[0].to_string(), &ports[1].to_string(), &[]));
            cluster.ports.push(ports[0]);
            cluster.children.push(Some(child));
            cluster._stores.push(store);
        }
        for args in &mut cluster.args {
            if let Some(last) = args.last_mut() {
                *last = routes.join(",");
            }
        }
        Ok(cluster)
    }

    /// Starts server `i` again, with its store and its ports.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.children[i] = Some(
            std::process::Command::new("nats-server")
                .args(&self.args[i])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("start nats-server")?,
        );
        Ok(())
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until a stream with a replica on every server can be made.
    pub async fn wait_for_jetstream(&self) -> anyhow::Result<()> {
        let client = enspace_nats::connect(&self.url(), "bench-readiness").await?;
        let js = async_nats::jetstream::new(client);
        let start = Instant::now();
        loop {
            let made = js
                .create_or_update_stream(async_nats::jetstream::stream::Config {
                    name: "READINESS".into(),
                    subjects: vec!["readiness".into()],
                    num_replicas: self.ports.len(),
                    ..Default::default()
                })
                .await;
            if made.is_ok() && js.delete_stream("READINESS").await.is_ok() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("the NATS cluster's JetStream was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// One control-plane process and how to start it again.
pub struct Member {
    pub process: Process,
    args: Vec<String>,
    binary: String,
}

impl Member {
    pub fn start(
        binary: &str,
        data: &Path,
        key: &Path,
        url: &str,
        id: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args: Vec<String> = [
            "tokens",
            "--data",
            &data.display().to_string(),
            "--event-signing-key",
            &key.display().to_string(),
            "--nats-url",
            url,
            "--node-id",
            id,
            "--internal-key",
            "bench-key",
            "--max-tokens-per-user",
            "100000000",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let process =
            Process::enspace(binary, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        process.wait_ready(Duration::from_secs(60))?;
        Ok(Member {
            process,
            args,
            binary: binary.to_owned(),
        })
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.process.base)
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let process = Process::enspace(
            &self.binary,
            &self.args.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        process.wait_ready(Duration::from_secs(60))?;
        self.process = process;
        Ok(())
    }

    pub fn kill(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }
}

/// The writer's node id, as `GET /v1/cluster` on `base` says.
pub async fn writer_of(client: &reqwest::Client, base: &str) -> Option<String> {
    let view = view(client, base).await?;
    let writer = view["writer"].as_str()?.to_owned();
    view["members"]
        .as_array()?
        .iter()
        .any(|m| m["node_id"] == writer.as_str() && m["role"] == "writer")
        .then_some(writer)
}

/// `GET /v1/cluster` on `base`, with the benchmarks' internal key.
pub async fn view(client: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    client
        .get(format!("{base}/v1/cluster"))
        .bearer_auth("bench-key")
        .send()
        .await
        .ok()?
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

pub async fn wait_writer(client: &reqwest::Client, bases: &[String]) -> anyhow::Result<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        for base in bases {
            if let Some(writer) = writer_of(client, base).await {
                return Ok(writer);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no writer within 30 s")
}
