//! Joining a cluster: the buckets, the commit point, and the tasks that
//! follow the stream, hold the lease, answer forwarded commands and report.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use enspace_store::keyring::Keyring;

use super::commit::StreamCommit;
use super::deliver::{self, Delivery};
use super::forward::{self, Asker};
use super::handle::ClusterHandle;
use super::session_mirror::SessionMirror;
use super::{
    ClusterConfig, LEASE_BUCKET, MEMBERS_BUCKET, Part, Role, SESSIONS_BUCKET, follow, lease,
    members, partitions,
};
use crate::event_stream::Followed;
use crate::event_stream::repair::Repairer;
use crate::outbox::Outbox;
use enspace_store::Store;
use enspace_store::writer::Writer;
use partitions::ASSIGNMENT_BUCKET;

/// This process's side of what joining touches.
pub struct Local {
    pub store: Store,
    pub writer: Writer,
    pub clock: Arc<dyn enspace_core::Clock>,
    pub session_ttl: jiff::SignedDuration,
    pub metrics: super::ClusterMetrics,
    /// The partitions of the request records this process serves.
    pub serving: super::partitions::Serving,
}

/// A task of the cluster's, not started yet.
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What joining gives: the handle handlers use, and the tasks to start.
pub struct Joined {
    pub handle: ClusterHandle,
    pub tasks: Vec<(&'static str, Task)>,
    /// The partitions of the request records this process should index,
    /// as the assignment goes (see [`partitions`](super::partitions)).
    pub to_index: tokio::sync::watch::Receiver<std::collections::BTreeSet<u32>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot open the cluster's NATS buckets and streams: {0}")]
    Nats(String),
    #[error(
        "--lease-ttl is {ours:?} here but {theirs:?} in the cluster's lease bucket: every \
         process of a cluster needs the same (or delete the bucket ENSPACE_CONTROL_LEASE while \
         all are stopped)"
    )]
    LeaseTtl { ours: Duration, theirs: Duration },
}

fn nats(e: impl std::fmt::Display) -> JoinError {
    JoinError::Nats(e.to_string())
}

/// Makes this process one of the cluster's: opens the buckets, makes the
/// writer commit through the stream, and returns the tasks that follow the
/// stream, hold the lease, answer forwarded commands and report. Call once,
/// before serving.
pub async fn join(
    state: Local,
    config: &ClusterConfig,
    client: &async_nats::Client,
    js: &jetstream::Context,
    keys: &Keyring,
    outbox: Outbox,
) -> Result<Joined, JoinError> {
    let repairer = outbox.repairer().clone();
    let replicas = config.replicas;
    let session_ttl = state.session_ttl.unsigned_abs();
    if let Some(theirs) = lease::other_lease_ttl(js, config.lease_ttl).await {
        return Err(JoinError::LeaseTtl {
            ours: config.lease_ttl,
            theirs,
        });
    }
    let lease_kv = lease::bucket(js, LEASE_BUCKET, config.lease_ttl, replicas)
        .await
        .map_err(nats)?;
    let members_kv = lease::bucket(js, MEMBERS_BUCKET, members::FORGET_AFTER, replicas)
        .await
        .map_err(nats)?;
    let sessions_kv = lease::bucket(js, SESSIONS_BUCKET, session_ttl, replicas)
        .await
        .map_err(nats)?;
    let assignment_kv = lease::bucket(js, ASSIGNMENT_BUCKET, Duration::ZERO, replicas)
        .await
        .map_err(nats)?;
    enspace_nats::ensure_stream(
        js,
        enspace_nats::with_replicas(enspace_nats::token_events_config(), replicas),
    )
    .await
    .map_err(nats)?;

    let role = Role::default();
    let writer = state.writer.clone();
    // For the JetStream requests a waiting write makes: one sent while NATS
    // elects a leader is never answered, and should not cost 5 s.
    let mut quick_js = js.clone();
    quick_js.set_timeout(Duration::from_secs(1));
    let metrics = &state.metrics;
    writer.join_cluster(
        Arc::new(StreamCommit::new(
            role.clone(),
            js.clone(),
            keys.clone(),
            tokio::runtime::Handle::current(),
            &state.store,
            repairer.clone(),
        )),
        Arc::new(Delivery {
            node_id: config.node_id.clone(),
            role: role.clone(),
            lease: lease_kv.clone(),
            asker: Asker {
                client: client.clone(),
                keys: keys.clone(),
                ignored: metrics.forward_replies_ignored.clone(),
            },
            keys: keys.clone(),
            js: quick_js,
            log: state.store.log.clone(),
            projections: state.store.projections.clone(),
            budget: deliver::budget(config.lease_ttl),
        }),
    );
    let (followed_tx, followed) = tokio::sync::watch::channel(Followed::default());
    let sessions = SessionMirror::new(
        sessions_kv,
        keys.clone(),
        state.session_ttl,
        state.clock.clone(),
        metrics.session_records_refused.clone(),
    );
    let handle = ClusterHandle {
        role: role.clone(),
        js: js.clone(),
        lease: lease_kv.clone(),
        members: members_kv.clone(),
        assignment: assignment_kv.clone(),
        sessions: sessions.clone(),
        followed: followed.clone(),
    };
    let mut tasks: Vec<(&'static str, Task)> = Vec::new();
    tasks.push((
        "cluster-buckets",
        Box::pin(lease::keep_buckets(
            js.clone(),
            vec![
                (LEASE_BUCKET, config.lease_ttl),
                (MEMBERS_BUCKET, members::FORGET_AFTER),
                (SESSIONS_BUCKET, session_ttl),
                (ASSIGNMENT_BUCKET, Duration::ZERO),
            ],
            replicas,
        )),
    ));

    let log = state.store.log.clone();
    tasks.push((
        "cluster-follow",
        Box::pin(follow::follow(follow::Follower {
            js: js.clone(),
            log: log.clone(),
            position: state.store.outbox_state.clone(),
            writer: writer.clone(),
            keys: keys.clone(),
            repairer: repairer.clone(),
            followed: followed_tx,
        })),
    ));
    tasks.push((
        "cluster-repair",
        Box::pin(repair_while_writer(js.clone(), role.clone(), repairer)),
    ));
    tasks.push((
        "cluster-forward",
        Box::pin(forward::serve(
            client.clone(),
            config.node_id.clone(),
            writer.clone(),
            keys.clone(),
        )),
    ));
    tasks.push((
        "cluster-lease-watch",
        Box::pin(lease::watch_holder(lease_kv.clone(), role.clone())),
    ));
    tasks.push((
        "cluster-lease-hold",
        Box::pin(lease::hold(lease_kv, role.clone(), config.clone())),
    ));
    tasks.push((
        "cluster-lead",
        Box::pin(super::lead::lead(
            role.clone(),
            super::lead::Leading {
                js: js.clone(),
                followed,
                log: log.clone(),
                writer: writer.clone(),
                keys: keys.clone(),
                outbox: outbox.in_cluster(),
                members: members_kv.clone(),
                node_id: config.node_id.clone(),
            },
        )),
    ));
    tasks.push((
        "cluster-members",
        Box::pin(members::report(
            members_kv.clone(),
            role.clone(),
            config.node_id.clone(),
            writer.head(),
            state.serving.clone(),
        )),
    ));
    tasks.push((
        "cluster-assign-partitions",
        Box::pin(partitions::keep_assigned(
            assignment_kv.clone(),
            members_kv.clone(),
            role.clone(),
            enspace_core::record_batch::PARTITIONS,
        )),
    ));
    let (to_index_tx, to_index) = tokio::sync::watch::channel(Default::default());
    tasks.push((
        "cluster-follow-partitions",
        Box::pin(partitions::follow(
            assignment_kv,
            members_kv,
            config.node_id.clone(),
            state.serving.clone(),
            to_index_tx,
        )),
    ));
    tasks.push((
        "cluster-session-mirror",
        Box::pin(sessions.copy_forever(state.store.sessions.clone())),
    ));
    let speaker = role.clone();
    tasks.push((
        "cluster-heartbeat",
        Box::pin(crate::heartbeat::heartbeat(
            client.clone(),
            log,
            keys.clone(),
            config.node_id.clone(),
            move || match speaker.part() {
                Part::Writer(term) if speaker.is_writer() => Some(term),
                _ => None,
            },
        )),
    ));
    Ok(Joined {
        handle,
        tasks,
        to_index,
    })
}

/// Deletes the foreign messages noted in the token events stream, at most
/// once per repair interval, while this process is the writer.
async fn repair_while_writer(js: jetstream::Context, role: Role, repairer: Repairer) {
    let mut tick = tokio::time::interval(crate::outbox::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if role.is_writer()
            && let Err(e) = repairer.repair_if_due(&js).await
        {
            tracing::warn!(error = %e, "cannot repair the token events stream yet");
        }
    }
}
