//! Publishes an API node's request records to JetStream: one
//! message per record on `enspace.requests.<token_id>`, payload the record's
//! MessagePack, `Nats-Msg-Id` the record id, so that a retried publish is
//! dropped by the stream's duplicate window.
//!
//! The request path only pushes into the [`RecordQueue`]; this task drains
//! it with many publish acks in flight. Each record is published with its
//! own reply subject under one inbox that this task subscribes to once, so
//! an ack costs one message on one subscription: no per-record future,
//! timer, channel or inbox of its own. The [`Window`] matches acks to
//! records. A record whose ack reports an error, or does not come within
//! the ack timeout, goes back to the front of the queue and is published
//! again; while NATS is away, or the stream is (the control plane makes and
//! keeps it: a node never makes or changes a stream), nothing is taken, so
//! the queue holds the records (up to its bound) until it is back. On
//! graceful shutdown the caller waits on [`RecordQueue::wait_idle`] with a
//! deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{HeaderMap, StatusCode, Subscriber};
use enspace_core::Backoff;
use enspace_core::RequestRecord;
use enspace_core::record::DroppedRecords;
use futures::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;

use crate::request_records::ack_window::Window;
use crate::request_records::queue::RecordQueue;

/// How long the publisher lets records gather after the first arrives,
/// unless [`LINGER_BATCH`] are already waiting. Records are never waited
/// on by a caller, so a few milliseconds cost nothing; at 15,000 records/s
/// they turn 15,000 wake-ups and writes a second into a few hundred.
const LINGER: Duration = Duration::from_millis(2);
const LINGER_BATCH: usize = 256;

/// Retries (of the ack subscription, publishing after a failure or while
/// the stream is missing) wait 50 ms, doubling to 2 s.
const MIN_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Publishes awaiting their ack at any time.
    pub max_in_flight: usize,
    /// How long to wait for one ack before publishing the record again.
    pub ack_timeout: Duration,
    /// The node's name in the counts of dropped records it reports.
    pub node: String,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            max_in_flight: 1024,
            ack_timeout: Duration::from_secs(5),
            node: "api-node".to_owned(),
        }
    }
}

pub struct Publisher {
    queue: Arc<RecordQueue>,
    published: Counter,
    dropped: Counter,
    config: PublisherConfig,
}

/// What the stream answered to one publish.
enum Answer {
    Stored,
    /// Nothing listens on the subject: the stream is gone.
    NoStream,
    Refused(String),
}

impl Publisher {
    /// `published` counts acknowledged records, `dropped` the (rare) record
    /// JetStream can never take (over the server's payload limit).
    pub fn new(
        queue: Arc<RecordQueue>,
        published: Counter,
        dropped: Counter,
        config: PublisherConfig,
    ) -> Self {
        Publisher {
            queue,
            published,
            dropped,
            config,
        }
    }

    /// Publishes forever.
    pub async fn run(self, client: async_nats::Client) {
        let js = async_nats::jetstream::new(client.clone());
        let mut backoff = Backoff::new(MIN_RETRY, MAX_RETRY);
        tokio::spawn(report_drops(
            self.queue.clone(),
            js.clone(),
            self.config.node.clone(),
            self.config.ack_timeout,
        ));
        let inbox = client.new_inbox();
        let acks = loop {
            match client.subscribe(format!("{inbox}.*")).await {
                Ok(acks) => break acks,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to publish acks; retrying");
                    backoff.wait().await;
                }
            }
        };
        self.drain(&client, &inbox, acks).await;
    }

    async fn drain(&self, client: &async_nats::Client, inbox: &str, mut acks: Subscriber) {
        let mut window = Window::new();
        let mut backoff = Backoff::new(MIN_RETRY, MAX_RETRY);
        let mut last_warning: Option<Instant> = None;
        let mut sweep = tokio::time::interval(self.config.ack_timeout / 4);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set when publishing failed or the stream is missing: wait (with
        // backoff) before publishing again.
        let mut paused = false;
        loop {
            let connected = client.connection_state() == State::Connected;
            if connected && !paused {
                self.fill(client, inbox, &mut window, &mut last_warning)
                    .await;
            }
            let room = window.len() < self.config.max_in_flight;
            tokio::select! {
                biased;
                Some(ack) = acks.next() => {
                    let mut next = Some(ack);
                    // Every ack already delivered, before publishing more.
                    while let Some(ack) = next {
                        if self.acked(&ack, inbox, &mut window, &mut last_warning) == Some(false) {
                            paused = true;
                        }
                        next = acks.next().now_or_never().flatten();
                    }
                    if !paused {
                        backoff.reset();
                    }
                }
                _ = sweep.tick() => {
                    let expired = window.expired(self.config.ack_timeout);
                    if !expired.is_empty() {
                        let n = expired.len();
                        self.retry(expired, &format!("{n} publish acks timed out"), &mut last_warning);
                    }
                }
                () = self.queue.arrived(), if connected && !paused && room => {
                    // Let more records arrive so that they go out together:
                    // one wake-up and one socket write per batch, not per
                    // record.
                    if self.queue.len() < LINGER_BATCH {
                        tokio::time::sleep(LINGER).await;
                    }
                }
                () = backoff.wait(), if paused || !connected => {
                    // The stream may be missing until the control plane
                    // makes it again: try again after the wait.
                    paused = false;
                }
            }
        }
    }

    /// Publishes queued records until the window is full or the queue empty.
    async fn fill(
        &self,
        client: &async_nats::Client,
        inbox: &str,
        window: &mut Window,
        last_warning: &mut Option<Instant>,
    ) {
        let sent = Instant::now();
        while window.len() < self.config.max_in_flight {
            let room = self.config.max_in_flight - window.len();
            let batch = self.queue.take(room.min(256));
            if batch.is_empty() {
                return;
            }
            for record in batch {
                let subject = enspace_nats::request_subject(&record.token_id.to_string());
                let mut headers = HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    record.id.to_string().as_str(),
                );
                let payload = record.to_msgpack().into();
                let seq = window.insert(record, sent);
                let reply = format!("{inbox}.{seq}");
                if let Err(e) = client
                    .publish_with_reply_and_headers(subject, reply, headers, payload)
                    .await
                {
                    let Some(record) = window.remove(seq) else {
                        continue;
                    };
                    if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded {
                        tracing::error!(record.id = %record.id, token.id = %record.token_id,
                            "request record {} is over the NATS payload limit; dropped", record.id);
                        self.dropped.inc();
                        self.queue.settle(1);
                    } else {
                        // The connection is closing; the sweep retries the
                        // rest of what was sent but never answered.
                        self.retry(vec![record], &e.to_string(), last_warning);
                        return;
                    }
                }
            }
        }
    }

    /// Settles the record an ack answers. `Some(false)` when the stream
    /// refused it (it goes back to the queue), `None` for a stray ack.
    fn acked(
        &self,
        ack: &async_nats::Message,
        inbox: &str,
        window: &mut Window,
        last_warning: &mut Option<Instant>,
    ) -> Option<bool> {
        let seq = ack
            .subject
            .strip_prefix(inbox)?
            .strip_prefix('.')?
            .parse()
            .ok()?;
        let record = window.remove(seq)?;
        match answer(ack) {
            Answer::Stored => {
                self.published.inc();
                self.queue.settle(1);
                Some(true)
            }
            Answer::NoStream => {
                self.retry(
                    vec![record],
                    "no stream takes request records",
                    last_warning,
                );
                Some(false)
            }
            Answer::Refused(why) => {
                self.retry(vec![record], &why, last_warning);
                Some(false)
            }
        }
    }

    /// Puts records back to be published again; warns at most every 10 s.
    fn retry(&self, records: Vec<RequestRecord>, why: &str, last: &mut Option<Instant>) {
        self.queue.put_back(records);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                error = why,
                queue.len = self.queue.len(),
                "cannot publish request records to JetStream ({why}); holding {} records and retrying",
                self.queue.len()
            );
        }
    }
}

/// How often counts of dropped records are published.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Publishes the queue's counts of dropped records, forever, every second:
/// subject `enspace.requests.<token_id>.dropped`, `Nats-Msg-Id` the count's
/// id. A count that is not acknowledged is published again with the same id
/// (the stream, and the index, keep it once); new counts wait in the queue,
/// summed, until the earlier ones are through.
async fn report_drops(
    queue: Arc<RecordQueue>,
    js: async_nats::jetstream::Context,
    node: String,
    ack_timeout: Duration,
) {
    let mut unacknowledged: Vec<DroppedRecords> = Vec::new();
    let mut tick = tokio::time::interval(DROP_REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if unacknowledged.is_empty() {
            unacknowledged = queue.take_drops(&node);
        }
        let mut failed = Vec::new();
        for count in unacknowledged.drain(..) {
            let subject = format!(
                "{}.{}",
                enspace_nats::request_subject(&count.token_id.to_string()),
                DroppedRecords::SUBJECT_SUFFIX
            );
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                count.id.to_string().as_str(),
            );
            let published = async {
                js.publish_with_headers(subject, headers, count.to_msgpack().into())
                    .await?
                    .await
                    .map_err(async_nats::Error::from)
            };
            match tokio::time::timeout(ack_timeout, published).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, token.id = %count.token_id,
                        "cannot publish a count of dropped request records; retrying");
                    failed.push(count);
                }
                Err(_) => failed.push(count),
            }
        }
        unacknowledged = failed;
    }
}

/// Reads a JetStream publish ack: `{"stream":…,"seq":…}` when stored (a
/// duplicate included), `{"error":{…}}` when refused, or the server's
/// no-responders status when no stream listens on the subject.
fn answer(ack: &async_nats::Message) -> Answer {
    #[derive(Deserialize)]
    struct Ack {
        error: Option<AckError>,
        seq: Option<u64>,
    }
    #[derive(Deserialize)]
    struct AckError {
        #[serde(default)]
        description: String,
    }
    if ack.status == Some(StatusCode::NO_RESPONDERS) {
        return Answer::NoStream;
    }
    match serde_json::from_slice::<Ack>(&ack.payload) {
        Ok(Ack {
            error: None,
            seq: Some(_),
        }) => Answer::Stored,
        Ok(Ack { error: Some(e), .. }) => Answer::Refused(e.description),
        Ok(Ack { .. }) => Answer::Refused("an ack without a sequence".into()),
        Err(e) => Answer::Refused(format!("an unreadable ack: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &'static str, status: Option<StatusCode>) -> async_nats::Message {
        async_nats::Message {
            subject: "_INBOX.x.1".into(),
            reply: None,
            payload: payload.into(),
            headers: None,
            status,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn a_stored_or_duplicate_ack_is_stored() {
        for ack in [
            r#"{"stream":"ENSPACE_REQUESTS","seq":7}"#,
            r#"{"stream":"ENSPACE_REQUESTS","seq":7,"duplicate":true}"#,
        ] {
            assert!(matches!(answer(&message(ack, None)), Answer::Stored));
        }
    }

    #[test]
    fn an_error_a_no_responders_or_garbage_is_not_stored() {
        let error =
            r#"{"error":{"code":503,"err_code":10077,"description":"resource limits exceeded"}}"#;
        assert!(
            matches!(answer(&message(error, None)), Answer::Refused(why) if why == "resource limits exceeded")
        );
        assert!(matches!(
            answer(&message("", Some(StatusCode::NO_RESPONDERS))),
            Answer::NoStream
        ));
        assert!(matches!(answer(&message("{", None)), Answer::Refused(_)));
        assert!(matches!(answer(&message("{}", None)), Answer::Refused(_)));
    }
}
