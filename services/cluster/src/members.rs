//! Each process says, once a second, how far its log is, in the KV bucket
//! [`MEMBERS_BUCKET`](super::MEMBERS_BUCKET) (entries expire after
//! [`FORGET_AFTER`] without news): `GET /v1/cluster` lists them beside the
//! lease holder.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::partitions::{self, Assignment, Serving};
use super::{Role, lease};

/// How often each process reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A process silent this long is no longer listed.
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

/// What one process reports.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    /// Its `--node-id`.
    pub node_id: String,
    /// `writer`, `preparing` or `follower`.
    pub role: String,
    /// The `seq` of the last event in its log.
    pub head_seq: u64,
    /// When it reported (RFC 3339).
    pub reported_at: String,
    /// The partitions of the request records it answers for (its index of
    /// them has caught up with the stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<Vec<u32>>,
}

/// The cluster as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The lease holder's node id, if any process holds the lease.
    pub writer: Option<String>,
    /// The lease's term: it grows with every new writer.
    pub term: Option<u64>,
    /// Every process that reported in the last ten seconds, by node id.
    pub members: Vec<Member>,
    /// Which processes own each partition of the request records (absent
    /// until the writer first assigns them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
}

/// Reports this process's part, head and the partitions it serves, forever.
pub async fn report(
    kv: kv::Store,
    role: Role,
    node_id: String,
    head: watch::Receiver<u64>,
    serving: Serving,
) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let member = Member {
            node_id: node_id.clone(),
            role: role.part().as_str().to_owned(),
            head_seq: *head.borrow(),
            reported_at: jiff::Timestamp::now().to_string(),
            serving: Some(serving()),
        };
        let Ok(bytes) = serde_json::to_vec(&member) else {
            continue;
        };
        if let Err(e) = kv.put(&node_id, bytes.into()).await {
            tracing::debug!(error = %e, "cannot report this process to the cluster");
        }
    }
}

/// The live process other than `node_id` whose log reaches furthest, as
/// they last reported (`None` if none reported or the bucket cannot be read).
pub async fn highest_other(members_kv: &kv::Store, node_id: &str) -> Option<(String, u64)> {
    let keys: Vec<String> = members_kv.keys().await.ok()?.try_collect().await.ok()?;
    let mut highest: Option<(String, u64)> = None;
    for key in keys.into_iter().filter(|k| k != node_id) {
        if let Ok(Some(value)) = members_kv.get(&key).await
            && let Ok(member) = serde_json::from_slice::<Member>(&value)
            && highest.as_ref().is_none_or(|(_, h)| member.head_seq > *h)
        {
            highest = Some((member.node_id, member.head_seq));
        }
    }
    highest
}

/// Every member's last report, by node id.
pub async fn live(members_kv: &kv::Store) -> Result<Vec<Member>, async_nats::Error> {
    Ok(reports(members_kv)
        .await?
        .into_iter()
        .map(|(member, _)| member)
        .collect())
}

/// Every member's last report with its revision in the bucket (it changes
/// with every report), by node id.
pub async fn reports(members_kv: &kv::Store) -> Result<Vec<(Member, u64)>, async_nats::Error> {
    let mut keys: Vec<String> = match members_kv.keys().await {
        Ok(keys) => keys.try_collect().await?,
        Err(e) => return Err(e.into()),
    };
    keys.sort();
    let mut members = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(entry) = members_kv.entry(&key).await?
            && entry.operation == kv::Operation::Put
            && let Ok(member) = serde_json::from_slice::<Member>(&entry.value)
        {
            members.push((member, entry.revision));
        }
    }
    Ok(members)
}

/// Reads the lease, every member's report and the partition assignment.
pub async fn view(
    lease_kv: &kv::Store,
    members_kv: &kv::Store,
    assignment_kv: &kv::Store,
) -> Result<ClusterView, async_nats::Error> {
    let holder = lease::holder_now(lease_kv).await?;
    Ok(ClusterView {
        writer: holder.as_ref().map(|h| h.node_id.clone()),
        term: holder.map(|h| h.term),
        members: live(members_kv).await?,
        assignment: partitions::read(assignment_kv).await?,
    })
}
