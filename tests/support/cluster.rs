//! Control-plane clusters for a test: a 3-server NATS cluster on loopback,
//! and `enspace tokens --cluster` processes sharing one event signing key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::app::ApiClient;
use super::{EnspaceProcess, eventually};

/// NATS servers routed to each other, each with its own store, killed on
/// drop. Every server binds port 0 (`-1`) for clients and routes and
/// reports the ports it got: no port is guessed, so none can be taken by
/// someone else in between.
pub struct NatsCluster {
    servers: Vec<Option<Child>>,
    pub ports: Vec<u16>,
    // Kept for their lifetimes: each server's store and configuration.
    _stores: Vec<tempfile::TempDir>,
}

/// The route the first server is given: clustered JetStream needs at
/// least one configured route, and the others are not up yet; nobody can
/// answer on port 0, and the others route to the first server themselves.
const NO_ROUTE_YET: &str = "nats://127.0.0.1:0";

impl NatsCluster {
    /// Starts `n` servers, one after the other, each routed to the ones
    /// already up, and waits until JetStream has a meta leader.
    pub async fn start(n: usize) -> Self {
        let mut cluster = NatsCluster {
            servers: Vec::with_capacity(n),
            ports: Vec::with_capacity(n),
            _stores: Vec::with_capacity(n),
        };
        let mut routes: Vec<String> = Vec::with_capacity(n);
        for i in 0..n {
            let store = tempfile::tempdir().expect("temp dir");
            let known = if routes.is_empty() {
                vec![NO_ROUTE_YET.to_owned()]
            } else {
                routes.clone()
            };
            let (child, port, route_port) = spawn(i, store.path(), &known);
            cluster.servers.push(Some(child));
            cluster.ports.push(port);
            cluster._stores.push(store);
            routes.push(format!("nats://127.0.0.1:{route_port}"));
        }
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Every server's URL, comma-separated (what `NATS_URL` takes).
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until a stream with three replicas can be created and used.
    async fn wait_for_jetstream(&self) {
        let client = enspace_nats::connect(&self.url(), "readiness")
            .await
            .expect("connect to the NATS cluster");
        let js = async_nats::jetstream::new(client);
        eventually(
            Duration::from_secs(30),
            "the NATS cluster's JetStream",
            || {
                let js = js.clone();
                async move {
                    let made = js
                        .create_or_update_stream(async_nats::jetstream::stream::Config {
                            name: "READINESS".into(),
                            subjects: vec!["readiness".into()],
                            num_replicas: self.ports.len(),
                            ..Default::default()
                        })
                        .await
                        .ok()?;
                    drop(made);
                    js.delete_stream("READINESS").await.ok()?;
                    Some(())
                }
            },
        )
        .await;
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// Starts server `n<i>` on `store`, routed to `routes`; answers it and the
/// client and route ports it reports.
fn spawn(i: usize, store: &Path, routes: &[String]) -> (Child, u16, u16) {
    let routes: Vec<String> = routes.iter().map(|r| format!("\"{r}\"")).collect();
    let config = store.join("cluster.conf");
    std::fs::write(
        &config,
        format!(
            "cluster {{ name: enspace, listen: \"127.0.0.1:-1\", routes: [{}] }}\n",
            routes.join(", ")
        ),
    )
    .expect("write the cluster configuration");
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(&config)
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
        .arg(store)
        .args(["--server_name", &format!("n{i}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nats-server (is it on PATH? tests/run installs it)");
    let ports = super::nats::listening(&mut child, &["client", "route"]);
    (child, ports[0], ports[1])
}

/// One `enspace tokens --cluster` process and where it keeps its data.
pub struct Member {
    pub process: EnspaceProcess,
    pub api: ApiClient,
    pub node_id: String,
    pub data: PathBuf,
    /// The event signing key file it shares with the other members.
    pub key: PathBuf,
}

impl Member {
    /// Starts `node_id` on `data` (kept by the caller), signing with `key`.
    pub fn start(data: &Path, key: &Path, nats_url: &str, node_id: &str, extra: &[&str]) -> Self {
        super::distributed::remember_event_key(
            data,
            nats_url,
            &["--event-signing-key", key.to_str().expect("utf-8")],
        );
        let mut args = vec![
            "tokens",
            "--cluster",
            "--data",
            data.to_str().expect("utf-8"),
            "--event-signing-key",
            key.to_str().expect("utf-8"),
            "--nats-url",
            nats_url,
            "--node-id",
            node_id,
            "--internal-key",
            "test-internal-key",
        ];
        args.extend_from_slice(extra);
        let process = EnspaceProcess::start(&args, &[]);
        let api = ApiClient::from_base(&process.base);
        Member {
            process,
            api,
            node_id: node_id.to_owned(),
            data: data.to_path_buf(),
            key: key.to_path_buf(),
        }
    }

    /// SIGSTOP: the process stops answering, holding everything it held.
    pub fn pause(&self) {
        signal(&self.process, "-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(&self.process, "-CONT");
    }

    /// `GET /v1/cluster` with the internal key.
    pub async fn cluster(&self) -> Option<Value> {
        let res = self
            .api
            .client
            .get(self.api.url("/v1/cluster"))
            .bearer_auth("test-internal-key")
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if res.status() != 200 {
            return None;
        }
        res.json().await.ok()
    }

    /// The head `seq` of this process's log, as it reports it.
    pub async fn head(&self) -> Option<u64> {
        let view = self.cluster().await?;
        view["members"]
            .as_array()?
            .iter()
            .find(|m| m["node_id"] == self.node_id.as_str())?["head_seq"]
            .as_u64()
    }
}

fn signal(process: &EnspaceProcess, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &process.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal}");
}

/// Waits until one of `members` reports a writer, and returns its node id.
pub async fn writer(members: &[&Member]) -> String {
    eventually(Duration::from_secs(20), "a writer", || async {
        for member in members {
            if let Some(view) = member.cluster().await
                && let Some(writer) = view["writer"].as_str()
                && view["members"]
                    .as_array()?
                    .iter()
                    .any(|m| m["node_id"] == writer && m["role"] == "writer")
            {
                return Some(writer.to_owned());
            }
        }
        None
    })
    .await
}

/// `enspace audit export` of a stopped member's data directory, signed with
/// the key the members share.
pub fn audit_export(member: &Member) -> String {
    let (code, out) = super::process::audit(&[
        "export",
        "--data",
        member.data.to_str().expect("utf-8"),
        "--event-signing-key",
        member.key.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "audit export of {}: {out}", member.data.display());
    out
}

/// Enough tokens for any load a test puts on a cluster.
pub const MANY_TOKENS: [&str; 2] = ["--max-tokens-per-user", "100000"];

/// Two members on `url` sharing a key in `dir`; the first is started (and
/// has made the key) before the second. Each may hold [`MANY_TOKENS`]
/// unless `extra` says otherwise.
pub async fn pair(dir: &Path, url: &str, extra: &[&str]) -> (Member, Member) {
    let key = dir.join("event-signing.key");
    let (a_data, b_data) = (dir.join("a"), dir.join("b"));
    let mut args = Vec::new();
    if !extra.contains(&MANY_TOKENS[0]) {
        args.extend_from_slice(&MANY_TOKENS);
    }
    args.extend_from_slice(extra);
    let a = Member::start(&a_data, &key, url, "cp-a", &args);
    writer(&[&a]).await;
    let b = Member::start(&b_data, &key, url, "cp-b", &args);
    eventually(Duration::from_secs(20), "cp-b following", || async {
        (b.head().await.is_some()).then_some(())
    })
    .await;
    (a, b)
}

/// The member named `id`.
pub fn by_id<'a>(members: [&'a Member; 2], id: &str) -> &'a Member {
    if members[0].node_id == id {
        members[0]
    } else {
        members[1]
    }
}

/// The member not named `id`.
pub fn other<'a>(members: [&'a Member; 2], id: &str) -> &'a Member {
    if members[0].node_id == id {
        members[1]
    } else {
        members[0]
    }
}

/// Waits until both members report the same head.
pub async fn converge(a: &Member, b: &Member) -> u64 {
    eventually(
        Duration::from_secs(30),
        "both members at the same head",
        || async {
            let (x, y) = (a.head().await?, b.head().await?);
            (x == y && x > 0).then_some(x)
        },
    )
    .await
}
