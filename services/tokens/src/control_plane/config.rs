//! What a control plane is started from: the flags of `enspace serve` and
//! `enspace tokens`, already parsed and checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use enspace_core::{Clock, EventKey};
use prometheus_client::registry::Registry;

use crate::state::Config;
use enspace_accounts::directory::Directory;
use enspace_cluster::ClusterConfig;
use enspace_notify::webhook::Webhook;

pub struct ControlPlaneConfig {
    /// The data directory (`--data`); made when missing.
    pub data: PathBuf,
    /// This process's name on NATS and in the request indexer's durable.
    pub node_id: String,
    pub clock: Arc<dyn Clock>,
    pub directory: Directory,
    /// The event signing key file; default `<data>/event-signing.key`.
    pub signing_key: Option<PathBuf>,
    /// The key the token events stream is checked against at start
    /// (`--event-key`); default: this process's own.
    pub trust: Option<EventKey>,
    /// NATS: without it the control plane publishes nothing and indexes
    /// only what an in-process node hands it.
    pub nats: Option<NatsConfig>,
    /// One of several control-plane processes (needs `nats`).
    pub cluster: Option<ClusterConfig>,
    /// What the HTTP side needs: sessions, limits, keys. `event_signer` and
    /// `deliver_notifications` are filled in at start.
    pub web: Config,
    pub notify: NotifyConfig,
    /// Where every metric is registered (an in-process node's included).
    pub registry: Registry,
}

/// The control plane's NATS connection and the streams it keeps.
pub struct NatsConfig {
    pub url: String,
    pub credentials: enspace_nats::Credentials,
    /// `--nats-edge-api`: the API nodes' JetStream API, when they live in an
    /// account of their own.
    pub edge_api: Option<String>,
    /// `--request-max-bytes`: every request stream's `max_bytes`.
    pub request_max_bytes: Option<u64>,
    /// Replicas of every `ENSPACE_` stream and bucket this process creates.
    pub stream_replicas: usize,
    /// At most one repair of the token events stream per this interval.
    pub stream_repair_interval: Duration,
}

/// Notifications: how often expiry stages are looked for, and where they
/// are delivered besides NATS.
pub struct NotifyConfig {
    pub sweep_interval: Duration,
    pub webhook: Option<Webhook>,
    /// The wait after the first failed webhook delivery.
    pub retry_min: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            sweep_interval: Duration::from_secs(10),
            webhook: None,
            retry_min: Duration::from_secs(1),
        }
    }
}

impl ControlPlaneConfig {
    /// The defaults of `enspace serve`: no NATS, the demo directory.
    pub fn new(data: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Self {
        ControlPlaneConfig {
            data: data.into(),
            node_id: "serve".into(),
            clock,
            directory: Directory::demo(),
            signing_key: None,
            trust: None,
            nats: None,
            cluster: None,
            web: Config::default(),
            notify: NotifyConfig::default(),
            registry: Registry::default(),
        }
    }
}
