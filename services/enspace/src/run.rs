//! `enspace serve`, `enspace tokens` and `enspace api-node`: each builds its
//! router from the service crates and serves it until `shutdown` resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use enspace_accounts::directory::Directory;
use enspace_api_node::Freshness;
use enspace_api_node::feed::Feed;
use enspace_api_node::metrics::NodeMetrics;
use enspace_api_node::request_records::publisher::{Publisher, PublisherConfig};
use enspace_api_node::request_records::queue::RecordQueue;
use enspace_api_node::{NodeOptions, NodeState};
use enspace_core::Clock;
use enspace_core::EventKey;
use enspace_tokens::Config;
use enspace_tokens::control_plane::{ControlPlane, ControlPlaneConfig, NatsConfig, NotifyConfig};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::cli::{NodeArgs, ServiceArgs};

/// How long a graceful shutdown waits for buffered request records.
const RECORD_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// The control plane's configuration from the flags of `serve` and
/// `tokens`.
fn control_plane_config(
    args: &ServiceArgs,
    clock: Arc<dyn Clock>,
    registry: Registry,
) -> anyhow::Result<ControlPlaneConfig> {
    let directory = match &args.directory {
        Some(path) => Directory::load(path)?,
        None => Directory::demo(),
    };
    let trust = args
        .event_key
        .as_deref()
        .map(EventKey::from_base64)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--event-key (ENSPACE_EVENT_KEY): {e}"))?;
    let retention = jiff::SignedDuration::try_from(args.request_retention)
        .context("--request-retention (ENSPACE_REQUEST_RETENTION) is too long")?;
    let session_ttl = jiff::SignedDuration::try_from(args.limits.session_ttl)
        .context("--session-ttl (ENSPACE_SESSION_TTL) is too long")?;
    let web = Config {
        internal_key: args.internal_key.clone(),
        request_retention: retention,
        session_ttl,
        limits: enspace_accounts::limits::Limits {
            max_tokens_per_user: args.limits.max_tokens_per_user,
            max_sessions_per_user: args.limits.max_sessions_per_user,
            leak_reports_per_minute: args.limits.leak_report_limit.0,
            ..Default::default()
        },
        secure_cookies: args.limits.secure_cookies,
        github_keys: args
            .github_keys
            .as_deref()
            .map(enspace_tokens::leaks::GithubKeys::load)
            .transpose()
            .context("--github-keys (ENSPACE_GITHUB_KEYS)")?
            .map(Arc::new),
        ..Config::default()
    };
    Ok(ControlPlaneConfig {
        data: args.data.clone(),
        node_id: args.node_id.clone(),
        clock,
        directory,
        signing_key: args.event_signing_key.clone(),
        trust,
        nats: args.nats_url.as_ref().map(|url| NatsConfig {
            url: url.clone(),
            credentials: args.nats_auth.credentials(),
            edge_api: args.nats_edge_api.clone(),
            request_max_bytes: args.request_max_bytes.0,
            stream_replicas: usize::from(args.cluster.stream_replicas),
            stream_repair_interval: args.stream_repair_interval,
        }),
        cluster: cluster_config(args)?,
        web,
        notify: NotifyConfig {
            sweep_interval: args.notifications.notification_sweep_interval,
            webhook: webhook(args)?,
            retry_min: args.notifications.webhook_retry_min,
        },
        registry,
    })
}

/// The notification webhook, when `--webhook-url` is given (with its
/// secret).
fn webhook(args: &ServiceArgs) -> anyhow::Result<Option<enspace_notify::webhook::Webhook>> {
    let n = &args.notifications;
    match (&n.webhook_url, &n.webhook_secret) {
        (None, None) => Ok(None),
        (Some(url), Some(secret)) => Ok(Some(
            enspace_notify::webhook::Webhook::new(url.clone(), secret.clone())
                .context("cannot make the webhook's HTTP client")?,
        )),
        (Some(_), None) => {
            bail!(
                "--webhook-url (ENSPACE_WEBHOOK_URL) needs --webhook-secret (ENSPACE_WEBHOOK_SECRET)"
            )
        }
        (None, Some(_)) => {
            bail!(
                "--webhook-secret (ENSPACE_WEBHOOK_SECRET) needs --webhook-url (ENSPACE_WEBHOOK_URL)"
            )
        }
    }
}

/// The cluster settings, when `--cluster` is given.
fn cluster_config(args: &ServiceArgs) -> anyhow::Result<Option<enspace_cluster::ClusterConfig>> {
    if !args.cluster.cluster {
        return Ok(None);
    }
    if args.nats_url.is_none() {
        bail!("--cluster (ENSPACE_CLUSTER) needs NATS: pass --nats-url or set NATS_URL");
    }
    let config = enspace_cluster::ClusterConfig {
        node_id: args.node_id.clone(),
        lease_ttl: args.cluster.lease_ttl,
        replicas: usize::from(args.cluster.stream_replicas),
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("--node-id / --lease-ttl: {e}"))?;
    Ok(Some(config))
}

/// Follows the token events stream into `node`'s replica, checking every
/// event against `pinned` (or the key the first heartbeat carries).
fn follow_token_events(
    js: async_nats::jetstream::Context,
    node: &NodeState,
    metrics: NodeMetrics,
    pinned: Vec<EventKey>,
    kick: Arc<Notify>,
) {
    let client = js.client();
    let feed = Feed::new(
        js,
        client,
        node.replica().clone(),
        node.freshness.clone(),
        metrics,
        pinned,
        kick,
    );
    tokio::spawn(feed.run());
}

/// A NATS event callback that restarts the token events feed on reconnect.
fn kick_on_reconnect(kick: &Arc<Notify>) -> impl Fn(&async_nats::Event) + Send + Sync + 'static {
    let kick = kick.clone();
    move |event| {
        if matches!(event, async_nats::Event::Connected) {
            kick.notify_one();
        }
    }
}

/// An API node's metrics and the bounded queue its request records go into.
fn record_queue(registry: &mut Registry, capacity: usize) -> (NodeMetrics, Arc<RecordQueue>) {
    let metrics = NodeMetrics::register(registry);
    let queue = RecordQueue::new(capacity, metrics.records_dropped.clone());
    (metrics, Arc::new(queue))
}

/// Publishes the queue's records to JetStream, forever, on a thread of its
/// own with its own NATS connection. Serving many requests then cannot
/// starve the publisher of CPU: the operating system shares the cores
/// between it and the HTTP workers, where the HTTP runtime would give it
/// one turn among thousands of connection tasks and let the queue overflow.
fn start_publisher(
    queue: &Arc<RecordQueue>,
    metrics: &NodeMetrics,
    nats_url: &str,
    credentials: enspace_nats::Credentials,
    name: &str,
    linger: std::time::Duration,
    max_batch_records: usize,
) -> anyhow::Result<()> {
    let publisher = Publisher::new(
        queue.clone(),
        metrics.records_published.clone(),
        metrics.records_dropped.clone(),
        PublisherConfig {
            node: name.to_owned(),
            linger,
            max_batch_records,
            ..PublisherConfig::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the request record publisher's runtime")?;
    let (url, name) = (nats_url.to_owned(), format!("{name}-records"));
    std::thread::Builder::new()
        .name("record-publisher".into())
        .spawn(move || {
            runtime.block_on(async move {
                match enspace_nats::connect_with(&url, &name, &credentials, |_| {}).await {
                    Ok(client) => publisher.run(client).await,
                    Err(e) => tracing::error!(
                        error = %e,
                        "cannot connect the request record publisher to NATS at {}",
                        enspace_nats::redact_url(&url)
                    ),
                }
            });
        })
        .context("cannot start the request record publisher's thread")?;
    Ok(())
}

/// After the HTTP server has drained: waits, up to a deadline, until every
/// buffered request record is delivered.
async fn flush_records(queue: &RecordQueue) {
    let deadline = tokio::time::Instant::now() + RECORD_FLUSH_DEADLINE;
    match queue.wait_idle(deadline).await {
        0 => tracing::info!("request records flushed"),
        left => tracing::warn!(
            records = left,
            "shutting down with {left} request records undelivered"
        ),
    }
}

async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: &crate::cli::HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = limits.trusted_proxies.clone().layer(router);
    enspace_http::server::serve(listener, router, limits.server(), shutdown).await?;
    Ok(())
}

/// Everything in one process. Without NATS the API node's replica follows
/// the event log in-process; with it, both sides go through JetStream.
pub async fn serve(
    args: ServiceArgs,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(args, listener, clock, shutdown, |router| router).await
}

/// `serve`, with `wrap` applied to the finished router (the test suite wraps
/// it in a layer that checks every response against the OpenAPI document).
pub async fn serve_with(
    args: ServiceArgs,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    wrap: impl FnOnce(Router) -> Router,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let (node_metrics, records) = record_queue(&mut registry, args.limits.record_queue_capacity);
    let sink: Arc<dyn enspace_core::RecordSink> = records.clone();
    let freshness = Arc::new(match &args.nats_url {
        Some(_) => Freshness::new(args.max_staleness.0),
        None => Freshness::in_process(),
    });
    let node = NodeState::with_options(
        &args.node_id,
        clock.clone(),
        node_metrics.clone(),
        Some(sink),
        freshness,
        node_options(args.limits.token_rate_limit),
    );
    let config = control_plane_config(&args, clock, registry)?;
    let mut control = ControlPlane::start(config).await?;
    match control.js.clone() {
        Some(js) => {
            let url = args.nats_url.as_deref().unwrap_or_default();
            start_publisher(
                &records,
                &node_metrics,
                url,
                args.nats_auth.credentials(),
                "enspace-serve",
                args.limits.record_linger,
                args.limits.record_batch_max,
            )?;
            follow_token_events(
                js,
                &node,
                node_metrics.clone(),
                control
                    .keys
                    .eras()?
                    .eras()
                    .iter()
                    .map(|era| era.key.clone())
                    .collect(),
                Arc::new(Notify::new()),
            );
        }
        None => {
            enspace_api_node::feed::attach(&control.state, node.replica().clone())?;
            control.index_in_process(
                records.clone(),
                args.node_id.clone(),
                node_metrics.records_published.clone(),
            );
        }
    }
    keep_up(&node);
    let router = enspace_tokens::app(
        control.state.clone(),
        enspace_api_node::api_routes(node),
        &crate::openapi_document(),
    );
    serve_router(listener, wrap(router), &args.limits.http, shutdown).await?;
    flush_records(&records).await;
    control.shutdown().await
}

/// The control plane alone; needs NATS.
pub async fn tokens(
    args: ServiceArgs,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if args.nats_url.is_none() {
        bail!(
            "`enspace tokens` needs NATS: pass --nats-url or set NATS_URL (or run `enspace serve`)"
        );
    }
    let config = control_plane_config(&args, clock, Registry::default())?;
    let control = ControlPlane::start(config).await?;
    serve_router(
        listener,
        enspace_tokens::router(control.state.clone()),
        &args.limits.http,
        shutdown,
    )
    .await?;
    control.shutdown().await
}

/// One API node; needs NATS.
pub async fn api_node(
    args: NodeArgs,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let name = format!("enspace-api-node-{}", args.node_id);
    let pinned = crate::event_key::pin(&args)?;
    let kick = Arc::new(Notify::new());
    let client = enspace_nats::connect_with(
        &args.nats_url,
        &name,
        &args.nats_auth.credentials(),
        kick_on_reconnect(&kick),
    )
    .await
    .with_context(|| enspace_nats::cannot_connect(&args.nats_url))?;
    let js = async_nats::jetstream::new(client);
    let mut registry = Registry::default();
    let (node_metrics, records) = record_queue(&mut registry, args.limits.record_queue_capacity);
    start_publisher(
        &records,
        &node_metrics,
        &args.nats_url,
        args.nats_auth.credentials(),
        &name,
        args.limits.record_linger,
        args.limits.record_batch_max,
    )?;
    let sink: Arc<dyn enspace_core::RecordSink> = records.clone();
    let freshness = Arc::new(Freshness::new(args.max_staleness.0));
    let node = NodeState::with_options(
        &args.node_id,
        clock,
        node_metrics.clone(),
        Some(sink),
        freshness,
        node_options(args.limits.token_rate_limit),
    );
    follow_token_events(js, &node, node_metrics, pinned, kick);
    let http = enspace_http::HttpMetrics::register(&mut registry);
    keep_up(&node);
    let router = enspace_api_node::router(node, Arc::new(registry), http);
    serve_router(listener, router, &args.limits.http, shutdown).await?;
    flush_records(&records).await;
    Ok(())
}

/// An API node's limits from its flags.
fn node_options(rate: crate::cli::TokenRateLimit) -> NodeOptions {
    NodeOptions {
        token_rate_limit: rate.0,
    }
}

/// Starts the upkeep an API node's limits need: a rate limit forgets quiet
/// tokens every minute; each hour's count of calls refused before a token
/// was known is logged.
fn keep_up(node: &NodeState) {
    if let Some(limit) = node.rate_limit() {
        tokio::spawn(limit.clone().prune_forever());
    }
    tokio::spawn(
        node.auth
            .refused
            .clone()
            .report_forever(node.clock.clone(), node.auth.node_id.clone()),
    );
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
