//! The outbox: publishes every committed event to the token events stream,
//! in `seq` order, from a cursor kept in sled. An event committed but not yet
//! published when the process died is published on restart; a republished
//! one is dropped by JetStream (`Nats-Msg-Id` = the event id) or, past the
//! duplicate window, ignored by replicas (they skip events at or below a
//! token's last `seq`).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use tokio::sync::watch;

use crate::store::{EventLog, StoreError};

const CURSOR: &[u8] = b"published_seq";
const BATCH: usize = 512;

#[derive(Clone)]
pub struct Outbox {
    log: EventLog,
    cursor: sled::Tree,
    published: watch::Sender<u64>,
}

impl Outbox {
    pub fn open(db: &sled::Db, log: EventLog) -> Result<Self, StoreError> {
        let cursor = db.open_tree("outbox")?;
        let outbox = Outbox {
            log,
            cursor,
            published: watch::Sender::new(0),
        };
        outbox.published.send_replace(outbox.published_seq()?);
        Ok(outbox)
    }

    pub fn published_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.cursor.get(CURSOR)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("outbox cursor".into()))?,
            ),
            None => 0,
        })
    }

    /// The last `seq` JetStream has acknowledged.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Publishes forever: whatever is committed and not yet acknowledged.
    pub async fn run(self, js: jetstream::Context, mut head: watch::Receiver<u64>) {
        let mut backoff = Duration::from_millis(100);
        let mut stream_ready = false;
        loop {
            if !stream_ready {
                match enspace_nats::ensure_stream(&js, enspace_nats::token_events_config()).await {
                    Ok(_) => stream_ready = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot create the token events stream; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            match self.publish_pending(&js).await {
                Ok(0) => {
                    backoff = Duration::from_millis(100);
                    let published = *self.published.borrow();
                    if *head.borrow_and_update() <= published && head.changed().await.is_err() {
                        return;
                    }
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing token events failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Publishes one batch with every ack in flight; returns how many.
    async fn publish_pending(&self, js: &jetstream::Context) -> Result<usize, async_nats::Error> {
        let after = self.published_seq()?;
        let entries = self.log.read_after(after, BATCH)?;
        let Some(last) = entries.last().map(|e| e.envelope.seq) else {
            return Ok(0);
        };
        let mut acks = Vec::with_capacity(entries.len());
        for entry in &entries {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", entry.envelope.id.to_string().as_str());
            let subject = enspace_nats::token_event_subject(&entry.envelope.token_id.to_string());
            acks.push(
                js.publish_with_headers(subject, headers, entry.stored.payload.clone().into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        self.cursor.insert(CURSOR, &last.to_be_bytes())?;
        self.published.send_replace(last);
        Ok(entries.len())
    }
}
