//! `enspace serve`, `enspace tokens` and `enspace api-node`: each builds its
//! router from the service crates and serves it until `shutdown` resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use enspace_api_node::Freshness;
use enspace_api_node::feed::Feed;
use enspace_api_node::metrics::NodeMetrics;
use enspace_api_node::publisher::{Publisher, PublisherConfig};
use enspace_api_node::record_queue::RecordQueue;
use enspace_api_node::{NodeOptions, NodeState};
use enspace_core::Clock;
use enspace_core::{EventKey, EventSigner};
use enspace_tokens::directory::Directory;
use enspace_tokens::event_stream::repair::Repairer;
use enspace_tokens::metrics::Metrics;
use enspace_tokens::outbox::Outbox;
use enspace_tokens::request_log::{Indexer, IndexerMetrics, RequestIndex};
use enspace_tokens::signing_key;
use enspace_tokens::store::Store;
use enspace_tokens::{AppState, Config};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::cli::{NodeArgs, ServiceArgs};

/// How long a graceful shutdown waits for buffered request records.
const RECORD_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// The control plane's state over its store, the JetStream context when
/// NATS is configured (with the outbox publishing to it, the heartbeat, and
/// the request-log indexer consuming from it), and the request-log indexer.
/// Before anything serves, the log is checked against what was committed
/// and, with NATS, against the token events stream (restored from it when
/// the data directory is empty).
async fn control_plane(
    args: &ServiceArgs,
    clock: Arc<dyn Clock>,
    mut registry: Registry,
) -> anyhow::Result<ControlPlane> {
    let cluster = cluster_config(args)?;
    let directory = match &args.directory {
        Some(path) => Directory::load(path)?,
        None => Directory::demo(),
    };
    std::fs::create_dir_all(&args.data).with_context(|| {
        format!(
            "cannot create the data directory {} (ENSPACE_DATA)",
            args.data.display()
        )
    })?;
    let store = Store::open(&args.data).with_context(|| {
        format!(
            "cannot open the store in {} (ENSPACE_DATA)",
            args.data.display()
        )
    })?;
    let requests = RequestIndex::open_in(&args.data).with_context(|| {
        format!(
            "cannot open the request index in {} (ENSPACE_DATA)",
            args.data.display()
        )
    })?;
    let key_path = signing_key::path(&args.data, args.event_signing_key.as_deref());
    let (signer, made) = signing_key::load_or_create(&key_path)?;
    if made {
        tracing::info!(
            key.id = signer.public().key_id(),
            "made the event signing key {} at {}",
            signer.public().key_id(),
            key_path.display()
        );
    }
    let signer = Arc::new(signer);
    let trust = match &args.event_key {
        Some(text) => EventKey::from_base64(text)
            .map_err(|e| anyhow::anyhow!("--event-key (ENSPACE_EVENT_KEY): {e}"))?,
        None => signer.public().clone(),
    };
    let nats = match &args.nats_url {
        None => None,
        Some(url) => {
            let client = enspace_nats::connect_with(
                url,
                &format!("enspace-tokens-{}", args.node_id),
                &args.nats_auth.credentials(),
                |_| {},
            )
            .await
            .with_context(|| enspace_nats::cannot_connect(url))?;
            let js = async_nats::jetstream::new(client.clone());
            let restored = match &cluster {
                // A process of a cluster may be behind the stream: it
                // fills in what the stream holds, checking every event.
                Some(_) => enspace_tokens::restore::restore(&js, &store, &trust).await?,
                None => enspace_tokens::restore::check_at_start(&js, &store, &trust).await?,
            };
            if restored > 0 {
                tracing::info!(
                    events = restored,
                    "restored {restored} events from the token events stream"
                );
            }
            Some((client, js))
        }
    };
    let webhook = webhook(args)?;
    let retention = jiff::SignedDuration::try_from(args.request_retention)
        .context("--request-retention (ENSPACE_REQUEST_RETENTION) is too long")?;
    let session_ttl = jiff::SignedDuration::try_from(args.limits.session_ttl)
        .context("--session-ttl (ENSPACE_SESSION_TTL) is too long")?;
    let mut config = Config {
        internal_key: args.internal_key.clone(),
        request_retention: retention,
        event_signer: Some(signer.clone()),
        limits: enspace_tokens::limits::Limits {
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
        deliver_notifications: webhook.is_some() || args.nats_url.is_some(),
        ..Config::default()
    };
    config.session_ttl = session_ttl;
    let indexer_metrics = IndexerMetrics::register(&mut registry);
    let state = AppState::new(
        store.clone(),
        requests,
        directory,
        clock,
        Metrics::new(registry),
        config,
    )?;
    if cluster.is_none() {
        enspace_tokens::membership::reconcile(&state)
            .await
            .context("cannot compare the tokens with the directory")?;
    }
    let indexer = Indexer::new(
        state.requests.clone(),
        state.clock.clone(),
        retention,
        indexer_metrics,
    )
    .telling_new_client_ips(state.requests.client_ips()?, new_ip_hook(&state, retention));
    tokio::spawn(indexer.clone().sweep_forever());
    tokio::spawn(enspace_tokens::routes::session::sweep_sessions_forever(
        state.clone(),
        enspace_tokens::routes::session::sweep_interval(state.config.session_ttl),
    ));
    let js = match nats {
        None => None,
        Some((client, js)) => {
            let replicas = usize::from(args.cluster.stream_replicas);
            let repairer = Repairer::new(
                store.outbox_state.clone(),
                args.stream_repair_interval,
                state.metrics.stream.clone(),
            );
            let outbox = Outbox::new(
                store.log.clone(),
                store.outbox_state.clone(),
                signer.clone(),
                repairer,
            )?
            .with_replicas(replicas);
            let mut source = enspace_tokens::request_log::jetstream::Source {
                replicas,
                max_bytes: args.request_max_bytes.0,
                edge_api: args.nats_edge_api.clone(),
                ..Default::default()
            };
            match &cluster {
                None => {
                    tokio::spawn(outbox.run(js.clone(), state.writer.head()));
                    // One more than at the last start: nodes order heartbeats by it.
                    let term = store.outbox_state.next_term()?;
                    tokio::spawn(enspace_tokens::heartbeat::heartbeat(
                        client.clone(),
                        store.log.clone(),
                        signer.clone(),
                        args.node_id.clone(),
                        move || Some(term),
                    ));
                }
                Some(config) => {
                    source.durable =
                        format!("{}-{}", enspace_nats::REQUEST_INDEXER, config.node_id);
                    enspace_tokens::cluster::start::join(
                        &state, config, &client, &js, &signer, &trust, outbox,
                    )
                    .await?;
                }
            }
            keep_node_streams(&state, &client, args, replicas);
            tokio::spawn(enspace_tokens::request_log::jetstream::consume_jetstream(
                indexer.clone(),
                js.clone(),
                source,
            ));
            let _ = state.nats.set(client);
            Some(js)
        }
    };
    tokio::spawn(enspace_tokens::notifications::sweep::sweep_forever(
        state.clone(),
        args.notifications.notification_sweep_interval,
    ));
    if state.config.deliver_notifications {
        // Only now that NATS, when configured, is there to publish to.
        tokio::spawn(enspace_tokens::notifications::delivery::deliver_forever(
            state.clone(),
            enspace_tokens::notifications::Delivery {
                webhook,
                retry_min: args.notifications.webhook_retry_min,
            },
        ));
    }
    Ok(ControlPlane {
        state,
        js,
        indexer,
        signer,
    })
}

/// Makes the streams API nodes use (in their own account with
/// `--nats-edge-api`) and keeps them in place: every process at start (in
/// the background: serving does not wait for it), the writer of a cluster
/// from then on.
fn keep_node_streams(
    state: &AppState,
    client: &async_nats::Client,
    args: &ServiceArgs,
    replicas: usize,
) {
    let streams = enspace_tokens::edge::EdgeStreams::new(
        client,
        args.nats_edge_api.as_deref(),
        args.request_retention,
        args.request_max_bytes.0,
        replicas,
    );
    let active: Box<dyn Fn() -> bool + Send> = match state.cluster.get() {
        Some(cluster) => {
            let role = cluster.role.clone();
            Box::new(move || role.is_writer())
        }
        None => Box::new(|| true),
    };
    tokio::spawn(async move {
        if let Err(e) = streams.ensure().await {
            tracing::warn!(error = %e, "cannot make the API nodes' streams yet; retrying");
        }
        streams.keep(active).await;
    });
}

/// Tells each token's owner of a client IP the token had not used in the
/// retention window.
fn new_ip_hook(
    state: &AppState,
    retention: jiff::SignedDuration,
) -> enspace_tokens::request_log::NewIpHook {
    let (notifications, tokens, made) = (
        state.notifications.clone(),
        state.store.projections.clone(),
        state.metrics.notifications.made.clone(),
    );
    let days = retention.as_hours() / 24;
    Arc::new(
        move |new| match notifications.tell_new_client_ips(&new, &tokens, days) {
            Ok(n) => {
                made.inc_by(n as u64);
            }
            Err(e) => tracing::error!(error = %e, "telling new client IPs failed"),
        },
    )
}

/// The notification webhook, when `--webhook-url` is given (with its
/// secret).
fn webhook(
    args: &ServiceArgs,
) -> anyhow::Result<Option<enspace_tokens::notifications::webhook::Webhook>> {
    let n = &args.notifications;
    match (&n.webhook_url, &n.webhook_secret) {
        (None, None) => Ok(None),
        (Some(url), Some(secret)) => Ok(Some(
            enspace_tokens::notifications::webhook::Webhook::new(url.clone(), secret.clone())
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
fn cluster_config(
    args: &ServiceArgs,
) -> anyhow::Result<Option<enspace_tokens::cluster::ClusterConfig>> {
    if !args.cluster.cluster {
        return Ok(None);
    }
    if args.nats_url.is_none() {
        bail!("--cluster (ENSPACE_CLUSTER) needs NATS: pass --nats-url or set NATS_URL");
    }
    let config = enspace_tokens::cluster::ClusterConfig {
        node_id: args.node_id.clone(),
        lease_ttl: args.cluster.lease_ttl,
        replicas: usize::from(args.cluster.stream_replicas),
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("--node-id / --lease-ttl: {e}"))?;
    Ok(Some(config))
}

struct ControlPlane {
    state: AppState,
    js: Option<async_nats::jetstream::Context>,
    indexer: Indexer,
    signer: Arc<EventSigner>,
}

/// Follows the token events stream into `node`'s replica, checking every
/// event against `pinned` (or the key the first heartbeat carries).
fn follow_token_events(
    js: async_nats::jetstream::Context,
    node: &NodeState,
    metrics: NodeMetrics,
    pinned: Option<EventKey>,
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
) -> anyhow::Result<()> {
    let publisher = Publisher::new(
        queue.clone(),
        metrics.records_published.clone(),
        metrics.records_dropped.clone(),
        PublisherConfig {
            node: name.to_owned(),
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
    let ControlPlane {
        state,
        js,
        indexer,
        signer,
    } = control_plane(&args, clock, registry).await?;
    match js {
        Some(js) => {
            let url = args.nats_url.as_deref().unwrap_or_default();
            start_publisher(
                &records,
                &node_metrics,
                url,
                args.nats_auth.credentials(),
                "enspace-serve",
            )?;
            follow_token_events(
                js,
                &node,
                node_metrics.clone(),
                Some(signer.public().clone()),
                Arc::new(Notify::new()),
            );
        }
        None => {
            enspace_api_node::feed::attach(&state, node.replica().clone())?;
            tokio::spawn(enspace_tokens::request_log::embedded::index_drops(
                records.clone(),
                indexer.clone(),
                args.node_id.clone(),
            ));
            tokio::spawn(enspace_tokens::request_log::embedded::index_records(
                records.clone(),
                indexer,
                node_metrics.records_published.clone(),
            ));
        }
    }
    let store = state.store.clone();
    keep_up(&node);
    let router = enspace_tokens::app(
        state,
        enspace_api_node::api_routes(node),
        &crate::openapi_document(),
    );
    serve_router(listener, wrap(router), &args.limits.http, shutdown).await?;
    flush_records(&records).await;
    store.db.flush_async().await?;
    store.close_cleanly()?;
    Ok(())
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
    let state = control_plane(&args, clock, Registry::default())
        .await?
        .state;
    let store = state.store.clone();
    serve_router(
        listener,
        enspace_tokens::router(state),
        &args.limits.http,
        shutdown,
    )
    .await?;
    store.db.flush_async().await?;
    store.close_cleanly()?;
    Ok(())
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
