//! Answering reads of the partitions this process serves: one queue
//! subscription (group `usage`) on `enspace.control.usage.<partition>` for
//! each partition [`Ownership`] says it serves, made when it starts serving
//! it and dropped when it stops. Each query is answered from the local
//! index on a blocking thread, at most [`MAX_IN_FLIGHT`] at a time; one that
//! cannot be read, names a token of another partition, asks too much, or
//! arrives after the partition stopped being served gets a [`Refusal`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use enspace_core::Backoff;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};

use super::wire::{self, Refusal, Reply};
use crate::index::RequestIndex;
use crate::ownership::Ownership;

/// Queries answered at the same time, at most, by one process.
pub const MAX_IN_FLIGHT: usize = 64;

/// What answering a partition's queries needs.
#[derive(Clone)]
struct Server {
    client: async_nats::Client,
    index: RequestIndex,
    ownership: Ownership,
    in_flight: Arc<Semaphore>,
}

/// Answers the queries of every partition `ownership` serves, following
/// it, until `ownership` is dropped (or the task is aborted, which ends
/// every subscription).
pub async fn serve_queries(client: async_nats::Client, index: RequestIndex, ownership: Ownership) {
    let server = Server {
        client,
        index,
        ownership: ownership.clone(),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    };
    let mut served = ownership.watch();
    // Dropped with this task: every subscription ends with it.
    let mut tasks = JoinSet::new();
    let mut running: HashMap<u32, AbortHandle> = HashMap::new();
    loop {
        let now = served.borrow_and_update().clone();
        running.retain(|partition, task| {
            let keep = now.contains(*partition);
            if !keep {
                task.abort();
                tracing::info!(
                    partition,
                    "no longer answering reads of request-log partition {partition}"
                );
            }
            keep
        });
        for partition in now.partitions() {
            running
                .entry(partition)
                .or_insert_with(|| tasks.spawn(server.clone().serve_partition(partition)));
        }
        while tasks.try_join_next().is_some() {}
        if served.changed().await.is_err() {
            return;
        }
    }
}

impl Server {
    /// Subscribes to `partition`'s queries and answers them, subscribing
    /// again should the subscription end.
    async fn serve_partition(self, partition: u32) {
        let subject = enspace_nats::usage_query_subject(partition);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match self
                .client
                .queue_subscribe(subject.clone(), enspace_nats::USAGE_QUERIES_QUEUE.into())
                .await
            {
                Ok(mut queries) => {
                    tracing::info!(
                        partition,
                        "answering reads of request-log partition {partition} on {subject}"
                    );
                    backoff.reset();
                    while let Some(message) = queries.next().await {
                        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                            return;
                        };
                        let server = self.clone();
                        tokio::spawn(async move {
                            server.answer(partition, message).await;
                            drop(permit);
                        });
                    }
                    tracing::warn!(
                        partition,
                        "the subscription to {subject} ended; subscribing again"
                    );
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "cannot subscribe to {subject}; retrying");
                }
            }
            backoff.wait().await;
        }
    }

    /// Answers one query message, in as many parts as it takes.
    async fn answer(&self, partition: u32, message: async_nats::Message) {
        let Some(inbox) = message.reply else {
            return;
        };
        let reply = self.reply(partition, &message.payload).await;
        let max_payload = self.client.server_info().max_payload;
        let parts = match wire::encode_reply(&reply) {
            Ok(bytes) => wire::split(&bytes, max_payload),
            Err(e) => {
                tracing::error!(partition, error = %e, "cannot encode the answer to a read");
                None
            }
        };
        let parts = match parts {
            Some(parts) => parts,
            None => {
                tracing::error!(partition, "the answer to a read is too large to send");
                let refused = wire::encode_reply(&Err(Refusal::TooLarge))
                    .ok()
                    .and_then(|bytes| wire::split(&bytes, max_payload));
                let Some(refused) = refused else {
                    return;
                };
                refused
            }
        };
        for part in parts {
            if let Err(e) = self.client.publish(inbox.clone(), part.into()).await {
                tracing::warn!(partition, error = %e, "cannot send the answer to a read");
                return;
            }
        }
    }

    /// The reply to `payload`, asked on `partition`'s subject.
    async fn reply(&self, partition: u32, payload: &[u8]) -> Reply {
        let query = wire::decode_query(payload).inspect_err(|_| {
            tracing::warn!(
                partition,
                bytes = payload.len(),
                "refused an unreadable read of request-log partition {partition}"
            );
        })?;
        if query.partition() != Some(partition) {
            tracing::warn!(
                partition,
                "refused a read naming a token of another partition than {partition}"
            );
            return Err(Refusal::WrongPartition);
        }
        if !self.ownership.serves(partition) {
            return Err(Refusal::NotServed { partition });
        }
        query.check()?;
        let index = self.index.clone();
        match tokio::task::spawn_blocking(move || super::answer(&index, &query)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                tracing::error!(partition, error = %e, "a read of the request index failed");
                Err(Refusal::Index)
            }
            Err(e) => {
                tracing::error!(partition, error = %e, "a read of the request index failed");
                Err(Refusal::Index)
            }
        }
    }
}
