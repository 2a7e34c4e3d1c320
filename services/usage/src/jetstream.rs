//! The request-log indexer's JetStream path: the durable pull consumer
//! `request-indexer` on `ENSPACE_REQUESTS`, explicit acks. (Without NATS,
//! [`super::embedded`] drains the API node's queue instead.)
//!
//! Receiving and writing overlap: while one batch is being written and
//! flushed on a blocking thread, the next accumulates (up to [`MAX_BATCH`]),
//! so the slower of the two sets the pace and batches grow under load; a
//! batch that is not full waits until [`MIN_WRITE_INTERVAL`] has passed
//! since the previous one started, so that flushes stay few. A
//! batch's messages are acked only after its flush. A message is a batch
//! of records (`Enspace-Record-Count`, see [`enspace_core::record_batch`])
//! or, as nodes published before batches, one record. A message that can
//! never decode, or a batch that is wrong anywhere (its count, a record
//! of another partition), is terminated (`AckKind::Term`) whole and logged; if the index
//! cannot be written, the batch is nak'ed with a delay. A crash between the
//! flush and the acks means a redelivery, which the index skips (its keys
//! are the records' identities), so nothing is lost or counted twice.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use enspace_core::RequestRecord;
use enspace_core::record::DroppedRecords;
use enspace_core::record_batch;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{Indexer, Ingested, MAX_BATCH, MIN_WRITE_INTERVAL};
use crate::IndexError;

/// Messages asked for per pull request.
pub const PULL_BATCH: usize = 1000;
/// Bytes asked for per pull request, at most: a message is a batch of up
/// to hundreds of records, so the messages the client buffers are bounded
/// by bytes too (above the largest message NATS carries, 1 MiB by default).
pub const PULL_MAX_BYTES: usize = 16 * 1024 * 1024;
/// How long the server waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// Messages delivered and not yet acked, at most.
pub const MAX_ACK_PENDING: i64 = 20_000;

/// The consumer's settings; `create_consumer` creates it or brings an
/// existing one up to date.
/// The indexer's durable consumer, named `durable`: `request-indexer`, or
/// `request-indexer-<node id>` for each process of a cluster (each indexes
/// the whole stream into its own database).
pub fn consumer_config(durable: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(durable.to_owned()),
        description: Some("request-log indexer of enspace tokens".to_owned()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    }
}

/// Where the indexer consumes from: its durable consumer's name, the
/// replicas and most bytes of the stream should it create it, and, with two
/// NATS trust zones, the prefix of the API nodes' JetStream API that the
/// stream sources their records through (see [`enspace_nats::edge`]).
#[derive(Debug, Clone)]
pub struct Source {
    pub durable: String,
    pub replicas: usize,
    /// `--request-max-bytes`: the stream's `max_bytes`, or no bound.
    pub max_bytes: Option<u64>,
    pub edge_api: Option<String>,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            durable: enspace_nats::REQUEST_INDEXER.to_owned(),
            replicas: 1,
            max_bytes: None,
            edge_api: None,
        }
    }
}

/// Consumes forever, reconnecting with a backoff after any failure.
pub async fn consume_jetstream(indexer: Indexer, js: jetstream::Context, source: Source) {
    let mut backoff =
        enspace_core::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match consume(&indexer, &js, &source).await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::warn!(error = %e, "request-log indexer interrupted; resuming");
                backoff.wait().await;
            }
        }
    }
}

type Write = JoinHandle<(Vec<RequestRecord>, Result<Ingested, IndexError>)>;

/// A batch being written: its messages wait for the flush to be acked.
struct InFlight {
    messages: Vec<jetstream::Message>,
    write: Write,
}

async fn consume(
    indexer: &Indexer,
    js: &jetstream::Context,
    source: &Source,
) -> Result<(), async_nats::Error> {
    let stream = records_stream(indexer, js, source).await?;
    let consumer = stream
        .create_consumer(consumer_config(&source.durable))
        .await?;
    let messages = pull(&consumer).await?;
    index_until(indexer, messages, std::future::pending()).await
}

/// Makes the stream of request records (or brings it up to date).
pub(crate) async fn records_stream(
    indexer: &Indexer,
    js: &jetstream::Context,
    source: &Source,
) -> Result<jetstream::stream::Stream, async_nats::Error> {
    let retention = indexer.retention.unsigned_abs();
    let config = enspace_nats::with_replicas(
        enspace_nats::edge::records_config(retention, source.max_bytes, source.edge_api.as_deref()),
        source.replicas,
    );
    enspace_nats::ensure_stream(js, config).await
}

/// A consumer's messages, pulled in batches bounded by count and bytes.
pub(crate) async fn pull(
    consumer: &consumer::Consumer<consumer::pull::Config>,
) -> Result<consumer::pull::Stream, async_nats::Error> {
    Ok(consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .max_bytes_per_batch(PULL_MAX_BYTES)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?)
}

/// Indexes `messages` in batches until they end or fail, or until `stop`:
/// then what was received is written and acked before it returns.
pub(crate) async fn index_until<S, E>(
    indexer: &Indexer,
    mut messages: S,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), async_nats::Error>
where
    S: futures::Stream<Item = Result<jetstream::Message, E>> + Unpin,
    E: Into<async_nats::Error>,
{
    let mut stop = std::pin::pin!(stop);
    let mut pending: Vec<jetstream::Message> = Vec::new();
    let mut records: Vec<RequestRecord> = Vec::new();
    let mut writing: Option<InFlight> = None;
    let mut next_write = tokio::time::Instant::now();
    // Starts writing what has accumulated, if nothing is being written and
    // the batch is full or the interval has passed.
    let start = |writing: &mut Option<InFlight>,
                 pending: &mut Vec<jetstream::Message>,
                 records: &mut Vec<RequestRecord>,
                 next_write: &mut tokio::time::Instant| {
        let now = tokio::time::Instant::now();
        if writing.is_none()
            && !records.is_empty()
            && (records.len() >= MAX_BATCH || now >= *next_write)
        {
            *next_write = now + MIN_WRITE_INTERVAL;
            *writing = Some(InFlight {
                messages: std::mem::take(pending),
                write: indexer.spawn_ingest(std::mem::take(records)),
            });
        }
    };
    loop {
        start(&mut writing, &mut pending, &mut records, &mut next_write);
        let waiting = writing.is_none() && !records.is_empty();
        let written = async {
            match writing.as_mut() {
                Some(in_flight) => (&mut in_flight.write).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = messages.next(), if records.len() < MAX_BATCH => match next {
                Some(Ok(message)) if is_drop_count(&message) => drop_count(indexer, message).await?,
                Some(Ok(message)) => match records_of(&message) {
                    Ok(batch) => {
                        records.extend(batch);
                        pending.push(message);
                    }
                    Err(e) => {
                        indexer.metrics.undecodable.inc();
                        tracing::error!(error = %e, subject = %message.subject,
                            "refused a request-record message ({e}); terminated, none of its records indexed");
                        message.ack_with(AckKind::Term).await?;
                    }
                },
                Some(Err(e)) => {
                    finish(writing.take()).await?;
                    return Err(e.into());
                }
                None => {
                    finish(writing.take()).await?;
                    return Ok(());
                }
            },
            result = written => {
                let messages = writing.take().map(|w| w.messages).unwrap_or_default();
                // The next write starts before these acks go out, so that
                // the writer never waits for them.
                start(&mut writing, &mut pending, &mut records, &mut next_write);
                settle(messages, result.map(|(_, r)| r)).await?;
            }
            () = tokio::time::sleep_until(next_write), if waiting => {}
            () = &mut stop => {
                finish(writing.take()).await?;
                if !records.is_empty() {
                    let write = indexer.spawn_ingest(std::mem::take(&mut records));
                    finish(Some(InFlight { messages: pending, write })).await?;
                }
                return Ok(());
            }
        }
    }
}

/// The records a message carries: a batch (header `Enspace-Record-Count`,
/// see [`enspace_core::record_batch`]), refused whole if anything in it is
/// wrong, or one record alone (what nodes published before batches).
fn records_of(message: &jetstream::Message) -> Result<Vec<RequestRecord>, String> {
    let count = message
        .headers
        .as_ref()
        .and_then(|h| h.get(record_batch::COUNT_HEADER));
    match count {
        Some(count) => record_batch::decode(&message.subject, count.as_str(), &message.payload)
            .map_err(|e| e.to_string()),
        None => RequestRecord::from_msgpack(&message.payload)
            .map(|record| vec![record])
            .map_err(|e| format!("not a request record: {e}")),
    }
}

/// Whether a message is an API node's count of dropped records
/// (`enspace.requests.<token_id>.dropped`) rather than a record.
fn is_drop_count(message: &jetstream::Message) -> bool {
    message
        .subject
        .strip_suffix(DroppedRecords::SUBJECT_SUFFIX)
        .is_some_and(|rest| rest.ends_with('.'))
}

/// Records a drop count and acks it; one that cannot decode is terminated,
/// one the index cannot take is nak'ed.
async fn drop_count(
    indexer: &Indexer,
    message: jetstream::Message,
) -> Result<(), async_nats::Error> {
    match DroppedRecords::from_msgpack(&message.payload) {
        Ok(count) => match indexer.record_drops(vec![count]).await {
            Ok(()) => message.ack().await?,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a count of dropped request records; will retry");
                nak(std::slice::from_ref(&message)).await?;
            }
        },
        Err(e) => {
            indexer.metrics.undecodable.inc();
            tracing::error!(error = %e, subject = %message.subject,
                "undecodable count of dropped request records terminated");
            message.ack_with(AckKind::Term).await?;
        }
    }
    Ok(())
}

/// Waits for a batch being written and acks (or naks) it.
async fn finish(writing: Option<InFlight>) -> Result<(), async_nats::Error> {
    match writing {
        Some(InFlight { messages, write }) => settle(messages, write.await.map(|(_, r)| r)).await,
        None => Ok(()),
    }
}

/// Acks a written batch; naks one the index could not take.
async fn settle(
    messages: Vec<jetstream::Message>,
    result: Result<Result<Ingested, IndexError>, tokio::task::JoinError>,
) -> Result<(), async_nats::Error> {
    match result {
        Ok(Ok(_)) => {
            for message in &messages {
                message.ack().await?;
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, records = messages.len(),
                "cannot write request records to the index; will retry");
            nak(&messages).await?;
        }
        Err(e) => {
            tracing::error!(error = %e, records = messages.len(), "index writer task failed");
            nak(&messages).await?;
        }
    }
    Ok(())
}

async fn nak(messages: &[jetstream::Message]) -> Result<(), async_nats::Error> {
    for message in messages {
        message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}
