//! Starts the control plane: opens the store and the request index, checks
//! the log against what was committed (and against the token events stream,
//! restoring from it when the data directory is empty), builds the state the
//! routes serve, and starts every background task.

use std::sync::Arc;

use anyhow::Context;
use async_nats::jetstream;
use enspace_cluster::event_stream::classify::Keys;
use enspace_core::RecordSource;
use enspace_store::keyring::Keyring;
use prometheus_client::metrics::counter::Counter;

use super::config::{ControlPlaneConfig, NatsConfig};
use super::tasks::Tasks;
use crate::metrics::Metrics;
use crate::{AppState, signing_key};
use enspace_cluster::event_stream::repair::Repairer;
use enspace_cluster::outbox::Outbox;
use enspace_notify::Delivery;
use enspace_store::Store;
use enspace_usage::{Indexer, IndexerMetrics, NewIpHook, RequestIndex};

/// A started control plane: the state its routes serve, and what an
/// API node in the same process needs of it.
pub struct ControlPlane {
    pub state: AppState,
    /// The JetStream context, with NATS.
    pub js: Option<jetstream::Context>,
    pub indexer: Indexer,
    /// The partitions of the request records this process serves (the
    /// intake sets them; reads follow them).
    pub ownership: enspace_usage::ownership::Ownership,
    pub keys: Keyring,
    tasks: Tasks,
}

impl ControlPlane {
    pub async fn start(config: ControlPlaneConfig) -> anyhow::Result<ControlPlane> {
        let ControlPlaneConfig {
            data,
            node_id,
            clock,
            directory,
            signing_key: key_file,
            trust,
            nats,
            cluster,
            web: mut config,
            notify,
            mut registry,
        } = config;
        if cluster.is_some() && nats.is_none() {
            anyhow::bail!(
                "--cluster (ENSPACE_CLUSTER) needs NATS: pass --nats-url or set NATS_URL"
            );
        }
        std::fs::create_dir_all(&data).with_context(|| {
            format!(
                "cannot create the data directory {} (ENSPACE_DATA)",
                data.display()
            )
        })?;
        let store = Store::open(&data).with_context(|| {
            format!("cannot open the store in {} (ENSPACE_DATA)", data.display())
        })?;
        let requests = RequestIndex::open_in(&data).with_context(|| {
            format!(
                "cannot open the request index in {} (ENSPACE_DATA)",
                data.display()
            )
        })?;
        let key_path = signing_key::path(&data, key_file.as_deref());
        let (keys, made) = Keyring::open(&store, &key_path)?;
        if made {
            let key = keys.current();
            tracing::info!(
                key.id = key.public().key_id(),
                "made the event signing key {} at {}",
                key.public().key_id(),
                key_path.display()
            );
        }
        let connected = match &nats {
            None => None,
            Some(nats) => {
                let head = store.log.head()?.0;
                let trust = Keys::of_log(&keys, head, trust.as_ref())?;
                Some(connect(nats, &node_id, &store, trust, cluster.is_some()).await?)
            }
        };
        config.event_keys = Some(keys.clone());
        config.deliver_notifications = notify.webhook.is_some() || nats.is_some();
        let retention = config.request_retention;
        let indexer_metrics = IndexerMetrics::register(&mut registry);
        // The one place where what this process serves of the request logs
        // is made: every partition alone; in a cluster, those its intake has
        // caught up with (none at start).
        let ownership = match cluster {
            Some(_) => enspace_usage::ownership::Ownership::partitioned(),
            None => enspace_usage::ownership::Ownership::all(),
        };
        let state = AppState::new(
            store.clone(),
            requests,
            ownership.clone(),
            directory,
            clock,
            Metrics::new(registry),
            config,
        )?;
        if cluster.is_none() {
            crate::membership::reconcile(&state.membership())
                .await
                .context("cannot compare the tokens with the directory")?;
        }
        let indexer = Indexer::new(
            state.requests.clone(),
            state.clock.clone(),
            retention,
            indexer_metrics,
        )
        .telling_new_client_ips(state.requests.client_ips()?, new_ip_hook(&state, retention))
        .telling_unauthorized_calls(decoy_hook(&state));
        let mut tasks = Tasks::default();
        tasks.spawn("request-retention-sweep", indexer.clone().sweep_forever());
        tasks.spawn(
            "session-sweep",
            enspace_store::sessions::sweep_forever(
                state.store.sessions.clone(),
                state.clock.clone(),
                crate::routes::session::sweep_interval(state.config.session_ttl),
            ),
        );
        let js = match (connected, &nats) {
            (Some((client, js)), Some(nats)) => {
                let repairer = Repairer::new(
                    store.outbox_state.clone(),
                    nats.stream_repair_interval,
                    state.metrics.stream.clone(),
                );
                let outbox = Outbox::new(
                    store.log.clone(),
                    store.outbox_state.clone(),
                    keys.clone(),
                    repairer,
                )?
                .with_replicas(nats.stream_replicas);
                let mut to_index = None;
                let mut source = enspace_usage::jetstream::Source {
                    replicas: nats.stream_replicas,
                    max_bytes: nats.request_max_bytes,
                    edge_api: nats.edge_api.clone(),
                    ..Default::default()
                };
                match &cluster {
                    None => {
                        tasks.spawn("outbox", outbox.run(js.clone(), state.writer.head()));
                        // One more than at the last start: nodes order heartbeats by it.
                        let term = store.outbox_state.next_term()?;
                        tasks.spawn(
                            "heartbeat",
                            enspace_cluster::heartbeat::heartbeat(
                                client.clone(),
                                store.log.clone(),
                                keys.clone(),
                                node_id.clone(),
                                move || Some(term),
                            ),
                        );
                    }
                    Some(config) => {
                        source.durable =
                            format!("{}-{}", enspace_nats::REQUEST_INDEXER, config.node_id);
                        let local = enspace_cluster::start::Local {
                            store: store.clone(),
                            writer: state.writer.clone(),
                            clock: state.clock.clone(),
                            session_ttl: state.config.session_ttl,
                            metrics: state.metrics.cluster.clone(),
                            serving: {
                                let ownership = ownership.clone();
                                Arc::new(move || ownership.served().partitions())
                            },
                        };
                        let joined = enspace_cluster::start::join(
                            local, config, &client, &js, &keys, outbox,
                        )
                        .await?;
                        // Only the writer delivers notifications.
                        state.notifications.join_cluster(joined.handle.role.clone());
                        // What one process makes alone, every process keeps.
                        let notices = enspace_notify::notices::join(
                            &state.notifications,
                            &js,
                            &keys,
                            &enspace_notify::notices::NoticeConfig {
                                node_id: config.node_id.clone(),
                                replicas: config.replicas,
                            },
                            &state.metrics.notifications,
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot make the notices stream: {e}"))?;
                        for (name, task) in notices {
                            tasks.spawn(name, task);
                        }
                        tasks.spawn(
                            "membership-reconcile",
                            reconcile_membership(state.membership()),
                        );
                        let _ = state.cluster.set(joined.handle);
                        to_index = Some(joined.to_index);
                        for (name, task) in joined.tasks {
                            tasks.spawn(name, task);
                        }
                    }
                }
                tasks.spawn("node-streams", keep_node_streams(&state, &client, nats));
                match to_index {
                    Some(to_index) => tasks.spawn(
                        "request-intake",
                        enspace_usage::partitioned::consume_partitions(
                            indexer.clone(),
                            js.clone(),
                            source,
                            to_index,
                            ownership.clone(),
                        ),
                    ),
                    None => tasks.spawn(
                        "request-intake",
                        enspace_usage::jetstream::consume_jetstream(
                            indexer.clone(),
                            js.clone(),
                            source,
                        ),
                    ),
                }
                state.usage.connect(client.clone());
                if cluster.is_some() {
                    tasks.spawn(
                        "usage-queries",
                        enspace_usage::reads::serve_queries(
                            client.clone(),
                            state.requests.clone(),
                            ownership.clone(),
                        ),
                    );
                }
                let _ = state.nats.set(client);
                Some(js)
            }
            _ => None,
        };
        tasks.spawn(
            "notification-sweep",
            enspace_notify::sweep::sweep_forever(
                state.notifications.clone(),
                state.clock.clone(),
                state.metrics.notifications.clone(),
                notify.sweep_interval,
            ),
        );
        if state.config.deliver_notifications {
            // Only now that NATS, when configured, is there to publish to.
            tasks.spawn(
                "notification-delivery",
                enspace_notify::delivery::deliver_forever(
                    enspace_notify::delivery::Sinks {
                        notifications: state.notifications.clone(),
                        nats: state.nats.get().cloned(),
                        metrics: state.metrics.notifications.clone(),
                    },
                    Delivery {
                        webhook: notify.webhook,
                        retry_min: notify.retry_min,
                    },
                ),
            );
        }
        Ok(ControlPlane {
            state,
            js,
            indexer,
            ownership,
            keys,
            tasks,
        })
    }

    /// Indexes the request records of an API node in this process (`enspace
    /// serve` without NATS): the records `queue` holds, and its drop counts
    /// as `node`'s; `delivered` counts what was indexed.
    pub fn index_in_process<Q: RecordSource>(
        &mut self,
        queue: Arc<Q>,
        node: String,
        delivered: Counter,
    ) {
        self.tasks.spawn(
            "request-drops",
            enspace_usage::embedded::index_drops(queue.clone(), self.indexer.clone(), node),
        );
        self.tasks.spawn(
            "request-intake",
            enspace_usage::embedded::index_records(queue, self.indexer.clone(), delivered),
        );
    }

    /// The names of background tasks that have ended (none should have).
    pub fn ended_tasks(&self) -> Vec<&'static str> {
        self.tasks.ended()
    }

    /// Once nothing serves any more: ends every background task, then
    /// flushes the store and the request index and marks the stop clean.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let ControlPlane { state, tasks, .. } = self;
        tasks.stop().await;
        // A projection being folded again after a failure lets go of the
        // store (within STOP_CHECK) rather than retry for ever.
        state.metrics.projections.stop();
        tokio::time::sleep(enspace_core::projection::STOP_CHECK * 2).await;
        state.store.db.flush_async().await?;
        state.requests.flush().await?;
        state.store.close_cleanly()?;
        Ok(())
    }
}

/// Connects to NATS, then checks the log against the token events stream
/// (a process of a cluster fills in what the stream holds, checking every
/// event).
async fn connect(
    nats: &NatsConfig,
    node_id: &str,
    store: &Store,
    trust: Keys,
    in_cluster: bool,
) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    let client = enspace_nats::connect_with(
        &nats.url,
        &format!("enspace-tokens-{node_id}"),
        &nats.credentials,
        |_| {},
    )
    .await
    .with_context(|| enspace_nats::cannot_connect(&nats.url))?;
    let js = jetstream::new(client.clone());
    let restored = if in_cluster {
        enspace_cluster::log_recovery::restore_at_start(&js, store, trust).await?
    } else {
        enspace_cluster::log_recovery::check_at_start(&js, store, trust).await?
    };
    if restored > 0 {
        tracing::info!(
            events = restored,
            "restored {restored} events from the token events stream"
        );
    }
    Ok((client, js))
}

/// Makes the streams API nodes use (in their own account with
/// `--nats-edge-api`) and keeps them in place: every process at start (in
/// the background: serving does not wait for it), the writer of a cluster
/// from then on.
fn keep_node_streams(
    state: &AppState,
    client: &async_nats::Client,
    nats: &NatsConfig,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let streams = enspace_cluster::edge::EdgeStreams::new(
        client,
        nats.edge_api.as_deref(),
        state.config.request_retention.unsigned_abs(),
        nats.request_max_bytes,
        nats.stream_replicas,
    );
    let active: Box<dyn Fn() -> bool + Send> = match state.cluster.get() {
        Some(cluster) => {
            let role = cluster.role.clone();
            Box::new(move || role.is_writer())
        }
        None => Box::new(|| true),
    };
    async move {
        if let Err(e) = streams.ensure().await {
            tracing::warn!(error = %e, "cannot make the API nodes' streams yet; retrying");
        }
        streams.keep(active).await;
    }
}

/// Tells each token's owner of a client IP the token had not used in the
/// retention window.
fn new_ip_hook(state: &AppState, retention: jiff::SignedDuration) -> NewIpHook {
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
                // In a cluster, in the notices stream before the batch's ack.
                if n > 0 {
                    notifications.wait_shared(enspace_notify::notices::SHARE_WAIT);
                }
            }
            Err(e) => tracing::error!(error = %e, "telling new client IPs failed"),
        },
    )
}

/// Tells each decoy's owner of its use, from the calls API nodes answered
/// `401` and recorded under it.
fn decoy_hook(state: &AppState) -> enspace_usage::UnauthorizedHook {
    let (notifications, tokens, made) = (
        state.notifications.clone(),
        state.store.projections.clone(),
        state.metrics.notifications.made.clone(),
    );
    Arc::new(move |refused| {
        let uses: Vec<enspace_notify::DecoyUse> = refused
            .iter()
            .map(|r| enspace_notify::DecoyUse {
                token_id: r.token_id,
                at: r.at,
                client_ip: r.client_ip.clone(),
                user_agent: r.user_agent.clone(),
                call: format!("{} {}", r.method, r.path),
                node: r.node.clone(),
            })
            .collect();
        match notifications.tell_decoy_uses(&uses, &tokens) {
            Ok(n) => {
                made.inc_by(n as u64);
                if n > 0 {
                    notifications.wait_shared(enspace_notify::notices::SHARE_WAIT);
                }
            }
            Err(e) => tracing::error!(error = %e, "telling decoy uses failed"),
        }
    })
}

/// Revokes the tokens of users who left the directory or a workspace, once
/// a writer can record it (in a cluster, the writer may not be elected yet).
async fn reconcile_membership(membership: crate::membership::Membership) {
    let mut backoff = enspace_core::Backoff::new(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(5),
    );
    loop {
        match crate::membership::reconcile(&membership).await {
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(error = %e, "cannot compare the tokens with the directory yet");
                backoff.wait().await;
            }
        }
    }
}
