//! The writer lease: the key `writer` of the KV bucket
//! [`LEASE_BUCKET`](super::LEASE_BUCKET), which expires after the lease's
//! time to live (the bucket's `max_age`) unless its holder renews it.
//!
//! - A process without the lease tries to create the key every
//!   [`POLL`]; creation succeeds only when no live entry exists, so one
//!   process wins. Its term is the entry's revision, which only grows.
//! - The holder renews every quarter of the time to live with an update
//!   that names the revision it holds: one whose lease expired and was
//!   taken cannot renew. A holder that could not renew for three quarters
//!   of the time to live stops writing before anyone else may start.
//! - Winning makes the process [`Part::Preparing`]; `lead.rs` catches it
//!   up with the stream and makes it the writer.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;

use super::{ClusterConfig, LeaseHolder, Part, Role};

/// The lease's key in its bucket.
pub const LEASE_KEY: &str = "writer";
/// How often a process without the lease tries to take it.
pub const POLL: Duration = Duration::from_millis(100);

/// Opens (creating or updating) a KV bucket of this cluster. Never lowers
/// the replicas another process gave it.
pub async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, async_nats::Error> {
    let existing = match js.get_key_value(name).await {
        Ok(store) => store
            .status()
            .await
            .ok()
            .map(|s| s.info.config.num_replicas),
        Err(_) => None,
    };
    Ok(js
        .create_or_update_key_value(kv::Config {
            bucket: name.to_owned(),
            history: 1,
            max_age,
            num_replicas: replicas.max(existing.unwrap_or(1)).clamp(1, 5),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?)
}

/// The lease bucket's time to live as another process set it, if it
/// differs from `lease_ttl`: processes of one cluster must agree on it, or
/// one renews less often than the lease lasts.
pub async fn other_lease_ttl(js: &jetstream::Context, lease_ttl: Duration) -> Option<Duration> {
    let store = js.get_key_value(super::LEASE_BUCKET).await.ok()?;
    let max_age = store.status().await.ok()?.max_age();
    (max_age != lease_ttl).then_some(max_age)
}

fn encode(holder: &LeaseHolder) -> bytes::Bytes {
    serde_json::to_vec(holder).unwrap_or_default().into()
}

/// Holds, renews and takes the lease, forever.
pub async fn hold(kv: kv::Store, role: Role, config: ClusterConfig) {
    let renew_every = config.lease_ttl / 4;
    let give_up_after = config.lease_ttl - renew_every;
    // (revision held, term, when the last successful renewal was sent)
    let mut held: Option<(u64, u64, Instant)> = None;
    loop {
        match held {
            Some((revision, term, renewed)) => {
                if matches!(role.part(), Part::Follower) {
                    // Given up by `lead`: another process holds more of the
                    // history. Free the lease at once rather than let it run out.
                    tracing::warn!(term, "giving up the writer lease");
                    let _ = tokio::time::timeout(
                        renew_every,
                        kv.delete_expect_revision(LEASE_KEY, Some(revision)),
                    )
                    .await;
                    held = None;
                    // Leave the lease to the process that holds more.
                    tokio::time::sleep(config.lease_ttl).await;
                    continue;
                }
                if renewed.elapsed() >= give_up_after {
                    tracing::warn!(
                        term,
                        "could not renew the writer lease in time; no longer the writer"
                    );
                    role.set(Part::Follower);
                    held = None;
                    continue;
                }
                let sent = Instant::now();
                let holder = LeaseHolder {
                    node_id: config.node_id.clone(),
                    term,
                };
                match tokio::time::timeout(
                    renew_every,
                    kv.update(LEASE_KEY, encode(&holder), revision),
                )
                .await
                {
                    Ok(Ok(next)) => {
                        role.renewed(sent, give_up_after);
                        held = Some((next, term, sent));
                    }
                    Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        tracing::warn!(error = %e, term, "lost the writer lease");
                        role.set(Part::Follower);
                        held = None;
                    }
                    // NATS may be electing the bucket's leader: keep trying
                    // until the lease would have run out.
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, term, "cannot renew the writer lease yet")
                    }
                    Err(_) => tracing::warn!(term, "renewing the writer lease timed out"),
                }
                tokio::time::sleep(renew_every.saturating_sub(sent.elapsed())).await;
            }
            None => {
                let sent = Instant::now();
                let holder = LeaseHolder {
                    node_id: config.node_id.clone(),
                    term: 0,
                };
                if let Ok(Ok(revision)) =
                    tokio::time::timeout(renew_every, kv.create(LEASE_KEY, encode(&holder))).await
                {
                    tracing::info!(term = revision, "took the writer lease (term {revision})");
                    role.renewed(sent, give_up_after);
                    role.set_holder(Some(LeaseHolder {
                        node_id: config.node_id.clone(),
                        term: revision,
                    }));
                    role.set(Part::Preparing(revision));
                    held = Some((revision, revision, sent));
                    continue;
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Keeps the cluster's buckets in place, forever: a NATS store that was lost
/// takes them with it, and nobody could take the lease or sign in again.
pub async fn keep_buckets(
    js: jetstream::Context,
    buckets: Vec<(&'static str, Duration)>,
    replicas: usize,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (name, max_age) in &buckets {
            if js.get_key_value(*name).await.is_err()
                && let Err(e) = bucket(&js, name, *max_age, replicas).await
            {
                tracing::warn!(error = %e, bucket = name, "cannot make the bucket again");
            }
        }
    }
}

/// The holder a lease entry names (its term is the revision it was taken
/// at).
pub fn holder_of(entry: &kv::Entry) -> Option<LeaseHolder> {
    match entry.operation {
        kv::Operation::Put => serde_json::from_slice::<LeaseHolder>(&entry.value)
            .ok()
            .map(|h| LeaseHolder {
                term: if h.term == 0 { entry.revision } else { h.term },
                node_id: h.node_id,
            }),
        kv::Operation::Delete | kv::Operation::Purge => None,
    }
}

/// Who holds the lease now, as the bucket says (not the watch, which may
/// lag after a NATS server is lost).
pub async fn holder_now(kv: &kv::Store) -> Result<Option<LeaseHolder>, async_nats::Error> {
    Ok(kv.entry(LEASE_KEY).await?.as_ref().and_then(holder_of))
}

/// Follows who holds the lease, for forwarding, forever.
pub async fn watch_holder(kv: kv::Store, role: Role) {
    let mut backoff =
        enspace_core::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match kv.watch_with_history(LEASE_KEY).await {
            Ok(mut entries) => {
                backoff.reset();
                while let Some(entry) = entries.next().await {
                    let Ok(entry) = entry else { break };
                    role.set_holder(holder_of(&entry));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the writer lease"),
        }
        backoff.wait().await;
    }
}
