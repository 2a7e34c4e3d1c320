//! Feeding the replica from JetStream: an ordered consumer over the token
//! events stream, from the start at boot and from the next unseen message
//! after any failure. The node is ready once it has folded every event the
//! stream held when it (re)started following; while NATS is away it keeps
//! serving from its copy and resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use enspace_core::EventEnvelope;
use futures::StreamExt;
use tokio::sync::watch;

use crate::replica::TokenReplica;

pub async fn follow_jetstream(
    js: jetstream::Context,
    replica: Arc<TokenReplica>,
    ready: watch::Sender<bool>,
) {
    let mut next_seq = 1u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow_once(&js, &replica, &ready, &mut next_seq).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, next_seq, "token events feed interrupted; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn follow_once(
    js: &jetstream::Context,
    replica: &TokenReplica,
    ready: &watch::Sender<bool>,
    next_seq: &mut u64,
) -> Result<(), async_nats::Error> {
    let stream = enspace_nats::ensure_stream(js, enspace_nats::token_events_config()).await?;
    let target = stream.get_info().await?.state.last_sequence;
    if target < *next_seq {
        ready.send_replace(true);
    }
    let deliver_policy = if *next_seq <= 1 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: *next_seq,
        }
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let info = message.info()?;
        let (stream_seq, pending) = (info.stream_sequence, info.pending);
        match EventEnvelope::decode(&message.payload) {
            Ok(envelope) => replica.apply(&envelope),
            Err(e) => tracing::error!(error = %e, stream_seq, "undecodable token event skipped"),
        }
        *next_seq = stream_seq + 1;
        if stream_seq >= target || pending == 0 {
            ready.send_replace(true);
        }
    }
    Ok(())
}
