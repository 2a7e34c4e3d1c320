//! Publishes an API node's request records to JetStream (contract §7): one
//! message per record on `enspace.requests.<token_id>`, payload the record's
//! MessagePack, `Nats-Msg-Id` the record id, so that a retried publish is
//! dropped by the stream's duplicate window.
//!
//! The request path only pushes into the [`RecordQueue`]; this task drains
//! it with many publish acks in flight. A record whose ack fails or times
//! out goes back to the front of the queue and is published again; while
//! NATS is away nothing is taken, so the queue holds the records (up to its
//! bound) until the connection returns. On graceful shutdown the caller
//! waits on [`RecordQueue::wait_idle`] with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::connection::State;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, context::PublishError};
use enspace_core::RequestRecord;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prometheus_client::metrics::counter::Counter;

use crate::record_queue::RecordQueue;

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Publishes awaiting their ack at any time.
    pub max_in_flight: usize,
    /// How long to wait for one ack before publishing the record again.
    pub ack_timeout: Duration,
    /// How long the stream keeps records (its `max_age`).
    pub retention: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            max_in_flight: 1024,
            ack_timeout: Duration::from_secs(5),
            retention: enspace_nats::DEFAULT_REQUEST_RETENTION,
        }
    }
}

pub struct Publisher {
    queue: Arc<RecordQueue>,
    published: Counter,
    dropped: Counter,
    config: PublisherConfig,
}

type Acked = (
    RequestRecord,
    Result<jetstream::publish::PublishAck, PublishError>,
);

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

    /// A JetStream context for publishing with this configuration's ack timeout.
    pub fn context(&self, client: async_nats::Client) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(self.config.ack_timeout)
            .max_ack_inflight(self.config.max_in_flight.max(1) * 2)
            .build(client)
    }

    /// Creates or updates the stream, then publishes forever.
    pub async fn run(self, client: async_nats::Client) {
        let js = self.context(client.clone());
        let mut backoff = Backoff::new();
        loop {
            match enspace_nats::ensure_stream(
                &js,
                enspace_nats::requests_config(self.config.retention),
            )
            .await
            {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the request records stream; retrying");
                    backoff.wait().await;
                }
            }
        }
        self.drain(&client, &js).await;
    }

    async fn drain(&self, client: &async_nats::Client, js: &jetstream::Context) {
        let mut in_flight: FuturesUnordered<futures::future::BoxFuture<'static, Acked>> =
            FuturesUnordered::new();
        let mut backoff = Backoff::new();
        let mut last_warning: Option<Instant> = None;
        loop {
            let connected = client.connection_state() == State::Connected;
            let mut failed = false;
            if connected {
                'fill: while in_flight.len() < self.config.max_in_flight {
                    let room = self.config.max_in_flight - in_flight.len();
                    let mut batch = self.queue.take(room.min(256)).into_iter();
                    if batch.len() == 0 {
                        break;
                    }
                    while let Some(record) = batch.next() {
                        match publish(js, &record).await {
                            Ok(ack) => in_flight.push(Box::pin(async move { (record, ack.await) })),
                            Err(e) => {
                                let mut rest = vec![record];
                                rest.extend(batch);
                                self.failed(rest, &e, &mut last_warning);
                                failed = true;
                                break 'fill;
                            }
                        }
                    }
                }
            }
            if in_flight.is_empty() {
                if failed || !connected {
                    // NATS is away (or refusing): the queue holds the records.
                    backoff.wait().await;
                } else {
                    backoff.reset();
                    self.queue.arrived().await;
                }
                continue;
            }
            tokio::select! {
                Some((record, result)) = in_flight.next() => match result {
                    Ok(_) => {
                        backoff.reset();
                        self.published.inc();
                        self.queue.settle(1);
                    }
                    Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        tracing::error!(record.id = %record.id, token.id = %record.token_id,
                            "request record {} is over the NATS payload limit; dropped", record.id);
                        self.dropped.inc();
                        self.queue.settle(1);
                    }
                    Err(e) => self.failed(vec![record], &e, &mut last_warning),
                },
                () = self.queue.arrived(), if connected && !failed
                    && in_flight.len() < self.config.max_in_flight => {}
                () = tokio::time::sleep(Duration::from_millis(100)), if !connected || failed => {}
            }
        }
    }

    /// Puts records back to be published again; warns at most every 10 s.
    fn failed(
        &self,
        records: Vec<RequestRecord>,
        error: &PublishError,
        last: &mut Option<Instant>,
    ) {
        self.queue.put_back(records);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                error = %error,
                queue.len = self.queue.len(),
                "cannot publish request records to JetStream; holding {} records and retrying",
                self.queue.len()
            );
        }
    }
}

async fn publish(
    js: &jetstream::Context,
    record: &RequestRecord,
) -> Result<PublishAckFuture, PublishError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        record.id.to_string().as_str(),
    );
    let subject = enspace_nats::request_subject(&record.token_id.to_string());
    js.publish_with_headers(subject, headers, record.to_msgpack().into())
        .await
}

/// 50 ms doubling to 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(50))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}
