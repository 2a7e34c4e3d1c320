//! Task `notices-publish`: empties `notices_to_share` into the notices
//! stream, each entry removed once JetStream acknowledged it (and only if
//! it was not written again meanwhile). Woken when something is queued,
//! and looks every second anyway; after a failure it makes the stream again
//! (should it have been deleted) and retries with a backoff.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use enspace_store::StoreError;
use enspace_store::keyring::Keyring;
use ulid::Ulid;

use super::super::Notifications;
use super::super::store::ToShare;
use crate::metrics::NotificationMetrics;

/// How often the queue is looked at when nothing wakes the publisher.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The longest a publish waits for JetStream's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Publisher {
    pub notifications: Notifications,
    pub js: jetstream::Context,
    pub keys: Keyring,
    pub stream: jetstream::stream::Config,
    pub metrics: NotificationMetrics,
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot publish notice {id}: {error}")]
    Nats { id: Ulid, error: String },
}

/// Publishes what is queued, forever.
pub(crate) async fn publish_forever(publisher: Publisher) {
    let mut backoff =
        enspace_core::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let Some(sharing) = publisher.notifications.sharing.get() else {
        return;
    };
    loop {
        match publish_queued(&publisher).await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot share notices yet; retrying");
                backoff.wait().await;
                if let Err(e) =
                    enspace_nats::ensure_stream(&publisher.js, publisher.stream.clone()).await
                {
                    tracing::debug!(error = %e, "cannot make the notices stream yet");
                }
                continue;
            }
        }
        tokio::select! {
            () = sharing.wake.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// One pass over the queue.
async fn publish_queued(publisher: &Publisher) -> Result<(), PublishError> {
    let tree = publisher.notifications.store.to_share.clone();
    let queued: Vec<_> = tree
        .iter()
        .collect::<Result<_, sled::Error>>()
        .map_err(StoreError::from)?;
    for (key, value) in queued {
        let Ok(id) = <[u8; 16]>::try_from(key.as_ref()).map(Ulid::from_bytes) else {
            forget(&tree, &key, &value, "a key that is no notification id")?;
            continue;
        };
        let notice: ToShare = match rmp_serde::from_slice(&value) {
            Ok(notice) => notice,
            Err(_) => {
                forget(&tree, &key, &value, "an entry that does not decode")?;
                continue;
            }
        };
        let payload = super::seal(&notice, &publisher.keys.current())
            .map_err(|e| StoreError::Corrupt(format!("notice {id} cannot be encoded: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.to_string().as_str());
        let nats = |error: String| PublishError::Nats { id, error };
        let ack = publisher
            .js
            .publish_with_headers(enspace_nats::NOTICES_SUBJECT, headers, payload.into())
            .await
            .map_err(|e| nats(e.to_string()))?;
        tokio::time::timeout(ACK_TIMEOUT, ack)
            .await
            .map_err(|_| nats("no acknowledgement in time".into()))?
            .map_err(|e| nats(e.to_string()))?;
        // Removed only as published: an entry written again meanwhile
        // stays for the next pass.
        let _ = tree
            .compare_and_swap(&key, Some(&value), None as Option<&[u8]>)
            .map_err(StoreError::from)?;
        publisher.metrics.notices_published.inc();
        tell_published(publisher);
    }
    tell_published(publisher);
    Ok(())
}

fn tell_published(publisher: &Publisher) {
    if let Some(sharing) = publisher.notifications.sharing.get() {
        sharing.tell_published();
    }
}

/// Drops an entry that can never be published (logged, never its bytes).
fn forget(tree: &sled::Tree, key: &[u8], value: &[u8], what: &str) -> Result<(), StoreError> {
    tracing::error!(
        tree = "notices_to_share",
        "dropped {what} from the notices to share"
    );
    let _ = tree.compare_and_swap(key, Some(value), None as Option<&[u8]>)?;
    Ok(())
}
