//! The distributed mode as child processes on a real nats-server: the
//! control plane (`enspace tokens`), API nodes, and what tests ask of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::app::ApiClient;
use super::{EnspaceProcess, NatsServer, eventually};

// Moved to `support::node`; re-exported for the tests that name them here.
pub use super::node::{RECORDS, status, wait_status};

/// The public event key of the control plane last started on each NATS
/// server (by port): [`api_node`] pins it, as an operator passes
/// `--event-key`.
static EVENT_KEYS: Mutex<BTreeMap<u16, String>> = Mutex::new(BTreeMap::new());

/// The port of the first server of a NATS URL list.
fn nats_port(url: &str) -> Option<u16> {
    let first = url.split(',').next()?;
    let host = first.rsplit('@').next()?;
    host.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// Makes the signing key a control plane on `data` (or at the
/// `--event-signing-key` among `extra`) signs with, if it is not there yet,
/// and remembers its public key for the API nodes of `nats_url`.
pub fn remember_event_key(data: &Path, nats_url: &str, extra: &[&str]) -> String {
    let explicit = extra
        .iter()
        .position(|a| *a == "--event-signing-key")
        .and_then(|i| extra.get(i + 1))
        .map(Path::new);
    let path = enspace_tokens::signing_key::path(data, explicit);
    let (signer, _) = enspace_tokens::signing_key::load_or_create(&path).expect("signing key");
    let key = signer.public().to_base64();
    if let Some(port) = nats_port(nats_url) {
        EVENT_KEYS.lock().expect("lock").insert(port, key.clone());
    }
    key
}

/// The event key remembered for the control plane on `nats_url`.
pub fn event_key_for(nats_url: &str) -> String {
    nats_port(nats_url)
        .and_then(|port| EVENT_KEYS.lock().expect("lock").get(&port).cloned())
        .unwrap_or_else(|| {
            panic!("no control plane started on {nats_url} yet: no event key to pin")
        })
}

/// `enspace tokens` on `data`, with `extra` flags.
pub fn token_service(data: &Path, nats_url: &str, extra: &[&str]) -> EnspaceProcess {
    remember_event_key(data, nats_url, extra);
    let mut args = vec![
        "tokens",
        "--data",
        data.to_str().expect("utf-8"),
        "--nats-url",
        nats_url,
        "--internal-key",
        "test-internal-key",
    ];
    args.extend_from_slice(extra);
    EnspaceProcess::start(&args, &[])
}

/// `enspace api-node` named `id`, with `extra` flags; pinned to the event
/// key of the control plane started on the same NATS unless `extra` says
/// otherwise.
pub fn api_node(nats_url: &str, id: &str, extra: &[&str]) -> EnspaceProcess {
    let mut args = vec!["api-node", "--nats-url", nats_url, "--node-id", id];
    let key;
    let own = ["--event-key", "--event-key-file", "--trust-first-event-key"];
    if !extra.iter().any(|a| own.contains(a)) {
        key = event_key_for(nats_url);
        args.extend_from_slice(&["--event-key", &key]);
    }
    args.extend_from_slice(extra);
    EnspaceProcess::start(&args, &[])
}

pub fn api_node_on(nats: &NatsServer, id: &str) -> EnspaceProcess {
    api_node(&nats.url(), id, &[])
}

pub async fn wait_ready(api: &ApiClient) {
    eventually(
        Duration::from_secs(30),
        &format!("{} ready", api.base),
        || async {
            let res = api.client.get(api.url("/readyz")).send().await.ok()?;
            (res.status() == 200).then_some(())
        },
    )
    .await;
}

/// A read-only, never-expiring token on `acme`.
pub fn body(description: &str) -> Value {
    json!({"description": description, "expiration": "never", "scopes": ["read"], "workspaces": ["acme"]})
}

pub async fn revoke(svc: &ApiClient, session: &str, token: &Value) {
    let id = token["id"].as_str().expect("id");
    assert_eq!(
        svc.delete(session, &format!("/v1/tokens/{id}"))
            .await
            .status(),
        204
    );
}

/// The sum of a process's `/metrics` samples whose series starts with
/// `prefix` ([`ApiClient::metric`]).
pub async fn metric(api: &ApiClient, prefix: &str) -> f64 {
    api.metric(prefix).await
}

/// A real nats-server, `enspace tokens` and two API nodes on it, all ready.
pub struct TwoNodes {
    pub svc: ApiClient,
    pub nodes: [ApiClient; 2],
    // Kept for their lifetimes: dropped, the processes stop.
    _processes: [EnspaceProcess; 3],
    _data: tempfile::TempDir,
    _nats: NatsServer,
}

impl TwoNodes {
    pub async fn start() -> Self {
        let nats = NatsServer::start();
        let data = tempfile::tempdir().expect("temp dir");
        let service = token_service(data.path(), &nats.url(), &[]);
        let (a, b) = (api_node_on(&nats, "node-a"), api_node_on(&nats, "node-b"));
        let svc = ApiClient::from_base(&service.base);
        let nodes = [ApiClient::from_base(&a.base), ApiClient::from_base(&b.base)];
        wait_ready(&svc).await;
        for node in &nodes {
            wait_ready(node).await;
        }
        TwoNodes {
            svc,
            nodes,
            _processes: [service, a, b],
            _data: data,
            _nats: nats,
        }
    }
}
