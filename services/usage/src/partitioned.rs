//! The request-log indexer of a process of a cluster: it indexes only the
//! partitions it is given (see `enspace_cluster::partitions`), each through
//! a durable consumer of its own (`<durable>-p<partition>`, filtered on
//! `enspace.requests.<partition>`), all of them into one batching loop, so
//! that a process owning many partitions still makes one flush per batch.
//! Counts of dropped records are few and every process keeps them all
//! (`<durable>-drops`).
//!
//! When the partitions to index change, the loop writes and acks what it
//! received and starts again with the new set; a partition it stops
//! indexing keeps its consumer for [`INACTIVE_THRESHOLD`] (taken back
//! within that time, it resumes where it was; after, it is read again
//! from the stream's start, and the index skips what it already holds).
//!
//! A partition is served (queries for its tokens answered here, see
//! [`Ownership`]) once its index has caught up: its consumer had nothing
//! left to deliver up to some stream sequence, and its acks have reached
//! that sequence since.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use enspace_core::record::DroppedRecords;
use enspace_core::record_batch::partition_subject;
use tokio::sync::watch;

use super::Indexer;
use super::jetstream::{ACK_WAIT, MAX_ACK_PENDING, Source, index_until, pull, records_stream};
use crate::ownership::Ownership;

/// How long a partition's consumer outlives its last pull.
pub const INACTIVE_THRESHOLD: Duration = Duration::from_secs(3600);
/// How often a partition not yet served is checked for having caught up.
pub const CATCH_UP_CHECK: Duration = Duration::from_millis(250);

/// The durable consumer of one partition.
pub fn partition_consumer(durable: &str, partition: u32) -> consumer::pull::Config {
    indexer_consumer(
        format!("{durable}-p{partition}"),
        format!("request-log indexer of enspace tokens, partition {partition}"),
        partition_subject(partition),
    )
}

/// The durable consumer of every node's counts of dropped records.
pub fn drops_consumer(durable: &str) -> consumer::pull::Config {
    indexer_consumer(
        format!("{durable}-drops"),
        "request-log indexer of enspace tokens, drop counts".to_owned(),
        format!("enspace.requests.*.{}", DroppedRecords::SUBJECT_SUFFIX),
    )
}

fn indexer_consumer(name: String, description: String, filter: String) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name),
        description: Some(description),
        filter_subject: filter,
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        inactive_threshold: INACTIVE_THRESHOLD,
        ..Default::default()
    }
}

/// Indexes the partitions `to_index` names, forever, reconnecting with a
/// backoff after any failure, and tells `ownership` which it serves.
pub async fn consume_partitions(
    indexer: Indexer,
    js: jetstream::Context,
    source: Source,
    mut to_index: watch::Receiver<BTreeSet<u32>>,
    ownership: Ownership,
) {
    let mut backoff =
        enspace_core::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    // Consumers whose index is known to have caught up.
    let mut caught_up: BTreeSet<u32> = BTreeSet::new();
    // The consumer the process indexed everything through before
    // partitions: nothing reads it any more.
    if let Ok(stream) = js.get_stream(enspace_nats::REQUESTS_STREAM).await {
        let _ = stream.delete_consumer(&source.durable).await;
    }
    loop {
        let wanted = to_index.borrow_and_update().clone();
        caught_up.retain(|p| wanted.contains(p));
        ownership.set(caught_up.clone());
        let run = consume(
            &indexer,
            &js,
            &source,
            &wanted,
            &mut caught_up,
            &ownership,
            to_index.clone(),
        );
        match run.await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::warn!(error = %e, "request-log indexer interrupted; resuming");
                backoff.wait().await;
            }
        }
    }
}

/// One run over the partitions `wanted`, until they change.
async fn consume(
    indexer: &Indexer,
    js: &jetstream::Context,
    source: &Source,
    wanted: &BTreeSet<u32>,
    caught_up: &mut BTreeSet<u32>,
    ownership: &Ownership,
    mut to_index: watch::Receiver<BTreeSet<u32>>,
) -> Result<(), async_nats::Error> {
    let stream = records_stream(indexer, js, source).await?;
    // All at once: with replicated streams each consumer is a group of its
    // own to elect, and one after the other 16 took 17 s on three servers.
    let opened = futures::future::try_join_all(wanted.iter().map(|&p| {
        let stream = &stream;
        async move {
            let consumer = stream
                .create_consumer(partition_consumer(&source.durable, p))
                .await?;
            let messages = pull(&consumer).await?;
            Ok::<_, async_nats::Error>((p, consumer, messages))
        }
    }));
    let drops = async {
        let drops = stream
            .create_consumer(drops_consumer(&source.durable))
            .await?;
        pull(&drops).await
    };
    let (opened, drops) = futures::future::try_join(opened, drops).await?;
    let mut streams = Vec::with_capacity(opened.len() + 1);
    let mut consumers = BTreeMap::new();
    for (p, consumer, messages) in opened {
        streams.push(messages);
        consumers.insert(p, consumer);
    }
    streams.push(drops);
    tracing::info!(partitions = ?wanted, "indexing request-record partitions {wanted:?}");
    let messages = futures::stream::select_all(streams);
    let changed = async {
        // Ends when the partitions to index change; if nobody can change
        // them any more, these stay.
        if to_index.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let catching_up = watch_catch_up(consumers, caught_up, ownership);
    tokio::select! {
        done = index_until(indexer, messages, changed) => done,
        () = catching_up => Ok(()),
    }
}

/// Marks each partition served once its consumer has caught up, forever.
async fn watch_catch_up(
    mut consumers: BTreeMap<u32, consumer::Consumer<consumer::pull::Config>>,
    caught_up: &mut BTreeSet<u32>,
    ownership: &Ownership,
) {
    // The stream sequence each partition had delivered everything up to.
    let mut marks: BTreeMap<u32, u64> = BTreeMap::new();
    let mut tick = tokio::time::interval(CATCH_UP_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut changed = false;
        for (p, consumer) in consumers.iter_mut() {
            if caught_up.contains(p) {
                continue;
            }
            let Ok(info) = consumer.info().await else {
                continue;
            };
            match marks.get(p) {
                Some(&mark) if info.ack_floor.stream_sequence >= mark => {
                    caught_up.insert(*p);
                    changed = true;
                }
                Some(_) => {}
                None if info.num_pending == 0 => {
                    let mark = info.delivered.stream_sequence;
                    if info.ack_floor.stream_sequence >= mark {
                        caught_up.insert(*p);
                        changed = true;
                    } else {
                        marks.insert(*p, mark);
                    }
                }
                None => {}
            }
        }
        if changed {
            tracing::info!(partitions = ?caught_up, "serving request-record partitions {caught_up:?}");
            ownership.set(caught_up.clone());
        }
    }
}
