//! Publishes an API node's request records to JetStream in batches: one
//! message per batch of records of one partition, on
//! `enspace.requests.<partition>` (see [`enspace_core::record_batch`]),
//! header `Enspace-Record-Count` the number of records, `Nats-Msg-Id` the
//! batch's id, payload a MessagePack array of the records. A batch is
//! bounded by [`PublisherConfig::max_batch_records`] and
//! [`PublisherConfig::max_batch_bytes`] (and the server's payload limit),
//! and gathers for at most [`PublisherConfig::linger`] after its first
//! record: at 15,000 records/s one message carries some hundred records,
//! so nats-server stores and acks a few hundred messages a second instead
//! of 15,000.
//!
//! The request path only pushes into the [`RecordQueue`]; this task drains
//! it with many publish acks in flight. Each batch is published with its
//! own reply subject under one inbox that this task subscribes to once, so
//! an ack costs one message on one subscription. The [`Window`] matches
//! acks to batches. A batch whose ack reports an error, or does not come
//! within the ack timeout, is published again as it was, with the same
//! `Nats-Msg-Id`, so that the stream's duplicate window drops it if the
//! first one was stored after all (and past the window, the index skips
//! records it already holds). While NATS is away, or the stream is (the
//! control plane makes and keeps it: a node never makes or changes a
//! stream), nothing is taken, so the queue holds the records (up to its
//! bound) until it is back. A record counts as acknowledged
//! (`enspace_request_records_published_total`) once the stream acked its
//! batch. On graceful shutdown the caller waits on
//! [`RecordQueue::wait_idle`] with a deadline.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{HeaderMap, StatusCode, Subscriber};
use bytes::Bytes;
use enspace_core::Backoff;
use enspace_core::RequestRecord;
use enspace_core::record::DroppedRecords;
use enspace_core::record_batch;
use futures::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use ulid::Ulid;

use crate::request_records::ack_window::Window;
use crate::request_records::queue::RecordQueue;

/// Default of [`PublisherConfig::linger`] (`--record-linger`).
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);

/// Default of [`PublisherConfig::max_batch_records`] (`--record-batch-max`).
pub const DEFAULT_BATCH_RECORDS: usize = 1000;

/// Retries (of the ack subscription, publishing after a failure or while
/// the stream is missing) wait 50 ms, doubling to 2 s.
const MIN_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Room left in a message for its headers and the protocol line, below the
/// server's payload limit.
const HEADROOM: usize = 1024;

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Batches awaiting their ack at any time.
    pub max_in_flight: usize,
    /// How long to wait for one ack before publishing the batch again.
    pub ack_timeout: Duration,
    /// The node's name in the counts of dropped records it reports.
    pub node: String,
    /// How long records gather after the first arrives, unless a full
    /// batch is already waiting (`--record-linger`).
    pub linger: Duration,
    /// Most records in one batch.
    pub max_batch_records: usize,
    /// Most bytes of records in one batch (also kept below the server's
    /// payload limit).
    pub max_batch_bytes: usize,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            max_in_flight: 64,
            ack_timeout: Duration::from_secs(5),
            node: "api-node".to_owned(),
            linger: DEFAULT_LINGER,
            max_batch_records: DEFAULT_BATCH_RECORDS,
            max_batch_bytes: 256 * 1024,
        }
    }
}

pub struct Publisher {
    queue: Arc<RecordQueue>,
    published: Counter,
    dropped: Counter,
    config: PublisherConfig,
}

/// One message's worth of records, as it is published (and published
/// again, unchanged, until the stream acks it).
struct Batch {
    id: Ulid,
    subject: String,
    records: usize,
    payload: Bytes,
}

impl Batch {
    fn new(partition: u32, encoded: &[Vec<u8>]) -> Self {
        Batch {
            id: Ulid::new(),
            subject: record_batch::partition_subject(partition),
            records: encoded.len(),
            payload: record_batch::encode(encoded).into(),
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            self.id.to_string().as_str(),
        );
        headers.insert(
            record_batch::COUNT_HEADER,
            self.records.to_string().as_str(),
        );
        headers
    }
}

/// What the stream answered to one publish.
enum Answer {
    Stored,
    /// Nothing listens on the subject: the stream is gone.
    NoStream,
    Refused(String),
}

/// What the drain loop keeps between turns.
struct Outbox {
    window: Window<Batch>,
    /// Batches to publish again, before any new one.
    retry: VecDeque<Batch>,
    last_warning: Option<Instant>,
}

impl Publisher {
    /// `published` counts acknowledged records, `dropped` the (rare) records
    /// JetStream can never take (a batch over the server's payload limit).
    pub fn new(
        queue: Arc<RecordQueue>,
        published: Counter,
        dropped: Counter,
        config: PublisherConfig,
    ) -> Self {
        let config = PublisherConfig {
            max_in_flight: config.max_in_flight.max(1),
            max_batch_records: config.max_batch_records.clamp(1, record_batch::MAX_RECORDS),
            max_batch_bytes: config.max_batch_bytes.max(1),
            ..config
        };
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
        let mut state = Outbox {
            window: Window::new(),
            retry: VecDeque::new(),
            last_warning: None,
        };
        let mut backoff = Backoff::new(MIN_RETRY, MAX_RETRY);
        let mut sweep = tokio::time::interval(self.config.ack_timeout / 4);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set when publishing failed or the stream is missing: wait (with
        // backoff) before publishing again.
        let mut paused = false;
        loop {
            let connected = client.connection_state() == State::Connected;
            if connected && !paused {
                self.fill(client, inbox, &mut state).await;
            }
            let room = state.window.len() < self.config.max_in_flight;
            tokio::select! {
                biased;
                Some(ack) = acks.next() => {
                    let mut next = Some(ack);
                    // Every ack already delivered, before publishing more.
                    while let Some(ack) = next {
                        if self.acked(&ack, inbox, &mut state) == Some(false) {
                            paused = true;
                        }
                        next = acks.next().now_or_never().flatten();
                    }
                    if !paused {
                        backoff.reset();
                    }
                }
                _ = sweep.tick() => {
                    let expired = state.window.expired(self.config.ack_timeout);
                    if !expired.is_empty() {
                        let n = expired.len();
                        self.retry(&mut state, expired, &format!("{n} publish acks timed out"));
                    }
                }
                () = self.queue.arrived(), if connected && !paused && room && state.retry.is_empty() => {
                    // Let more records arrive so that they go out together:
                    // one message per partition and linger, not per record.
                    if self.queue.len() < self.config.max_batch_records {
                        tokio::time::sleep(self.config.linger).await;
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

    /// Most bytes of records in one batch on this connection.
    fn max_bytes(&self, client: &async_nats::Client) -> usize {
        let server = client.server_info().max_payload;
        let limit = if server == 0 {
            self.config.max_batch_bytes
        } else {
            server.saturating_sub(HEADROOM).max(1)
        };
        self.config.max_batch_bytes.min(limit)
    }

    /// Publishes batches (those to retry first, then new ones from queued
    /// records) until the window is full or nothing is left.
    async fn fill(&self, client: &async_nats::Client, inbox: &str, state: &mut Outbox) {
        let max_bytes = self.max_bytes(client);
        while state.window.len() < self.config.max_in_flight {
            if let Some(batch) = state.retry.pop_front() {
                if !self.publish(client, inbox, state, batch).await {
                    return;
                }
                continue;
            }
            // Enough records to fill the window's room with full batches,
            // grouped by partition.
            let room = self.config.max_in_flight - state.window.len();
            let records = self.queue.take(
                room.saturating_mul(self.config.max_batch_records)
                    .min(16_384),
            );
            if records.is_empty() {
                return;
            }
            let mut batches = self.batches(records, max_bytes);
            while let Some(batch) = batches.pop_front() {
                if !self.publish(client, inbox, state, batch).await {
                    state.retry.extend(batches);
                    return;
                }
            }
        }
    }

    /// `records` as batches: by partition, each within the count and byte
    /// bounds.
    fn batches(&self, records: Vec<RequestRecord>, max_bytes: usize) -> VecDeque<Batch> {
        let mut partitions: BTreeMap<u32, Vec<RequestRecord>> = BTreeMap::new();
        for record in records {
            partitions
                .entry(record_batch::partition_of(&record.token_id))
                .or_default()
                .push(record);
        }
        let mut out = VecDeque::new();
        for (partition, records) in partitions {
            let mut encoded: Vec<Vec<u8>> = Vec::new();
            let mut bytes = 0;
            for record in records {
                let one = record.to_msgpack();
                if !encoded.is_empty()
                    && (encoded.len() >= self.config.max_batch_records
                        || bytes + one.len() > max_bytes)
                {
                    out.push_back(Batch::new(partition, &encoded));
                    encoded.clear();
                    bytes = 0;
                }
                bytes += one.len();
                encoded.push(one);
            }
            if !encoded.is_empty() {
                out.push_back(Batch::new(partition, &encoded));
            }
        }
        out
    }

    /// Publishes one batch into the window; `false` when the connection
    /// failed (the batch waits to be published again).
    async fn publish(
        &self,
        client: &async_nats::Client,
        inbox: &str,
        state: &mut Outbox,
        batch: Batch,
    ) -> bool {
        let (subject, headers, payload) = (
            batch.subject.clone(),
            batch.headers(),
            batch.payload.clone(),
        );
        let seq = state.window.insert(batch, Instant::now());
        let reply = format!("{inbox}.{seq}");
        let Err(e) = client
            .publish_with_reply_and_headers(subject, reply, headers, payload)
            .await
        else {
            return true;
        };
        let Some(batch) = state.window.remove(seq) else {
            return true;
        };
        if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded {
            // Batches are cut below the server's limit; only a server whose
            // limit shrank since the connection was made gets here.
            tracing::error!(batch.id = %batch.id, records = batch.records,
                "a batch of {} request records is over the NATS payload limit; dropped", batch.records);
            self.dropped.inc_by(batch.records as u64);
            self.queue.settle(batch.records);
            true
        } else {
            // The connection is closing; the sweep retries the rest of
            // what was sent but never answered.
            self.retry(state, vec![batch], &e.to_string());
            false
        }
    }

    /// Settles the batch an ack answers. `Some(false)` when the stream
    /// refused it (it is published again), `None` for a stray ack.
    fn acked(&self, ack: &async_nats::Message, inbox: &str, state: &mut Outbox) -> Option<bool> {
        let seq = ack
            .subject
            .strip_prefix(inbox)?
            .strip_prefix('.')?
            .parse()
            .ok()?;
        let batch = state.window.remove(seq)?;
        match answer(ack) {
            Answer::Stored => {
                self.published.inc_by(batch.records as u64);
                self.queue.settle(batch.records);
                Some(true)
            }
            Answer::NoStream => {
                self.retry(state, vec![batch], "no stream takes request records");
                Some(false)
            }
            Answer::Refused(why) => {
                self.retry(state, vec![batch], &why);
                Some(false)
            }
        }
    }

    /// Holds batches to be published again (first, as they were); warns at
    /// most every 10 s.
    fn retry(&self, state: &mut Outbox, batches: Vec<Batch>, why: &str) {
        let records: usize = batches.iter().map(|b| b.records).sum();
        state.retry.extend(batches);
        if state
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            state.last_warning = Some(Instant::now());
            let held = self.queue.len() + records;
            tracing::warn!(
                error = why,
                queue.len = self.queue.len(),
                retry.batches = state.retry.len(),
                "cannot publish request records to JetStream ({why}); holding {held} records and retrying",
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
    use enspace_core::record_batch::{PARTITIONS, decode, partition_of, subject_partition};

    fn publisher(max_batch_records: usize) -> Publisher {
        Publisher::new(
            Arc::new(RecordQueue::new(10, Counter::default())),
            Counter::default(),
            Counter::default(),
            PublisherConfig {
                max_batch_records,
                ..PublisherConfig::default()
            },
        )
    }

    fn record_of(token: Ulid) -> RequestRecord {
        let mut r = crate::request_records::queue::tests::record(200);
        r.token_id = token;
        r
    }

    #[test]
    fn batches_hold_one_partition_each_within_the_count_and_byte_bounds() {
        let tokens: Vec<Ulid> = (0..40u128).map(|n| Ulid::from(n << 64 | 7)).collect();
        let records: Vec<RequestRecord> = (0..2000).map(|n| record_of(tokens[n % 40])).collect();
        let one = records[0].to_msgpack().len();
        let max_bytes = one * 30 + 1;
        let batches = publisher(50).batches(records.clone(), max_bytes);
        let mut seen = 0;
        for batch in &batches {
            let p = subject_partition(&batch.subject).expect("a partition subject");
            assert!(p < PARTITIONS);
            assert!(batch.records <= 30, "the byte bound: {}", batch.records);
            assert!(batch.payload.len() <= max_bytes + 5);
            let decoded = decode(&batch.subject, &batch.records.to_string(), &batch.payload)
                .expect("a valid batch");
            assert!(decoded.iter().all(|r| partition_of(&r.token_id) == p));
            seen += decoded.len();
        }
        assert_eq!(seen, 2000, "every record in exactly one batch");
        let ids: std::collections::HashSet<Ulid> = batches.iter().map(|b| b.id).collect();
        assert_eq!(ids.len(), batches.len(), "one id per batch");
        // The count bound, when bytes allow more.
        let batches = publisher(7).batches(records, usize::MAX);
        assert!(batches.iter().all(|b| b.records <= 7));
        assert_eq!(batches.iter().map(|b| b.records).sum::<usize>(), 2000);
    }

    #[test]
    fn a_batch_carries_its_count_and_id_in_headers() {
        let batch = publisher(10).batches(vec![record_of(Ulid::new()); 3], usize::MAX);
        let batch = batch.front().expect("one batch");
        let headers = batch.headers();
        assert_eq!(
            headers.get(record_batch::COUNT_HEADER).map(|v| v.as_str()),
            Some("3")
        );
        assert_eq!(
            headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned()),
            Some(batch.id.to_string())
        );
    }

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
