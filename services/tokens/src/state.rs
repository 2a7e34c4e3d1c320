//! The service's shared state: a cheap clone with everything a handler needs.

use std::sync::Arc;

use enspace_core::projection::{EventSource, Runner};
use enspace_core::{Clock, CommittedEvents, EventEnvelope};
use jiff::SignedDuration;

use crate::metrics::Metrics;
use enspace_accounts::directory::Directory;
use enspace_store::Store;
use enspace_store::writer::Writer;
use enspace_usage::RequestIndex;
use enspace_usage::ownership::Ownership;
use enspace_usage::reads::UsageReads;

/// Cloned for every request, so it is one `Arc`: one reference count to
/// touch rather than one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub store: Store,
    /// Request records by token and time, and each token's last use (the
    /// request-log indexer's), in a database of their own: what this
    /// process indexes. Routes read a token's records through `usage`.
    pub requests: RequestIndex,
    /// Reads of a token's request records, answered here or by a process
    /// that serves its partition.
    pub usage: UsageReads,
    pub writer: Writer,
    pub directory: Arc<Directory>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub config: Arc<Config>,
    /// The NATS connection, when the service publishes to JetStream.
    pub nats: std::sync::OnceLock<async_nats::Client>,
    /// The throttle and hashing pool every sign-in goes through.
    pub sign_in: enspace_accounts::credentials::SignInGuard,
    /// Active tokens per user, kept under `limits.max_tokens_per_user`.
    pub quota: crate::token_quota::TokenQuota,
    /// This process's place in a cluster of control-plane processes, when
    /// it is one of several.
    pub cluster: std::sync::OnceLock<ClusterHandle>,
    /// The limit on leak reports per client address, and the room for the
    /// revocations they start.
    pub leak_reports: crate::leaks::LeakReports,
    /// Notifications, their due index and their delivery queue.
    pub notifications: enspace_notify::Notifications,
}

pub use enspace_cluster::handle::ClusterHandle;

#[derive(Debug, Clone)]
pub struct Config {
    pub session_ttl: SignedDuration,
    /// `Bearer` key API nodes in other languages use for `/v1/introspect`.
    pub internal_key: Option<String>,
    /// How long request records are kept; older ones are never returned.
    pub request_retention: SignedDuration,
    /// The keys that sign token events and heartbeats (served at
    /// `GET /v1/event-key`); filled in at start.
    pub event_keys: Option<enspace_store::keyring::Keyring>,
    /// Limits on sign-ins, sessions and tokens.
    pub limits: enspace_accounts::limits::Limits,
    /// Mark the session cookie `Secure` on every response (a TLS proxy is in
    /// front); without it, only when the proxy says the request was TLS.
    pub secure_cookies: bool,
    /// GitHub's secret-scanning keys (`--github-keys`); without them
    /// `POST /v1/secret-scanning/github` answers 404.
    pub github_keys: Option<Arc<crate::leaks::GithubKeys>>,
    /// Whether new notifications are queued for delivery (a webhook is
    /// configured, or NATS).
    pub deliver_notifications: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session_ttl: SignedDuration::from_hours(12),
            internal_key: None,
            request_retention: SignedDuration::from_hours(90 * 24),
            event_keys: None,
            limits: enspace_accounts::limits::Limits::default(),
            secure_cookies: false,
            github_keys: None,
            deliver_notifications: false,
        }
    }
}

impl AppState {
    /// The keys this process signs events with, for audit events.
    pub fn keys(&self) -> Result<enspace_store::keyring::Keyring, enspace_http::ApiError> {
        self.config.event_keys.clone().ok_or_else(|| {
            enspace_http::ApiError::internal(
                "the control plane was started without an event signing key",
            )
        })
    }

    /// What reconciling the tokens with the directory needs.
    pub fn membership(&self) -> crate::membership::Membership {
        crate::membership::Membership {
            projections: self.store.projections.clone(),
            directory: self.directory.clone(),
            writer: self.writer.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Opens nothing: takes an opened store and request index (with the
    /// partitions of it this process serves), and starts the store's writer.
    pub fn new(
        store: Store,
        requests: RequestIndex,
        ownership: Ownership,
        directory: Directory,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        config: Config,
    ) -> Result<Self, enspace_store::StoreError> {
        let writer = Writer::start(store.clone(), clock.clone(), metrics.events.clone())?;
        let sign_in = enspace_accounts::credentials::SignInGuard::new(
            &config.limits,
            metrics.sign_ins.clone(),
            config
                .event_keys
                .as_ref()
                .map(|k| k.current().seed())
                .as_ref(),
        );
        let quota = crate::token_quota::TokenQuota::new(
            config.limits.max_tokens_per_user,
            store.log.head()?.0,
            store.projections.clone(),
        );
        let leak_reports =
            crate::leaks::LeakReports::new(config.limits.leak_reports_per_minute, clock.clone());
        let counted = Runner::new(
            Arc::new(store.log.clone()),
            Arc::new(quota.clone()),
            metrics.projections.clone(),
        );
        writer.on_commit(move |events| counted.on_commit(events));
        let notifications =
            enspace_notify::Notifications::open(&store.db, config.deliver_notifications)?;
        // Notifications are folded by the projection runner: caught up
        // with the log now, then fed each committed group; a failure marks
        // them lagging (`/readyz`), is counted and folded again from the log.
        let fold = Arc::new(enspace_notify::NotificationFold {
            notifications: notifications.clone(),
            tokens: store.projections.clone(),
        });
        let runner = Runner::new(
            Arc::new(store.log.clone()),
            fold,
            metrics.projections.clone(),
        );
        runner.catch_up()?;
        writer.on_commit(move |events| runner.on_commit(events));
        Ok(AppState(Arc::new(AppParts {
            store,
            usage: UsageReads::new(requests.clone(), ownership),
            requests,
            writer,
            directory: Arc::new(directory),
            clock,
            metrics,
            config: Arc::new(config),
            nats: std::sync::OnceLock::new(),
            sign_in,
            quota,
            cluster: std::sync::OnceLock::new(),
            leak_reports,
            notifications,
        })))
    }
}

/// What an API node in the same process folds into its replica: the log as
/// it stands, then every group the writer commits, before it answers.
impl CommittedEvents for AppState {
    fn on_commit(&self, hook: impl Fn(&[EventEnvelope]) + Send + Sync + 'static) {
        self.writer.on_commit(hook);
    }
}

impl EventSource for AppState {
    type Error = enspace_store::StoreError;

    fn head_seq(&self) -> Result<u64, Self::Error> {
        EventSource::head_seq(&self.store.log)
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<EventEnvelope>, Self::Error> {
        EventSource::read_after(&self.store.log, after, limit)
    }
}
