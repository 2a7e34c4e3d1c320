//! Reading a range of the token events stream in order, skipping what was
//! deleted: a few messages one request each (the next message at or after a
//! sequence), more through an ordered consumer.

use std::ops::ControlFlow;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use futures::StreamExt;

/// Ranges up to this long are read one message at a time.
const SMALL: u64 = 64;
/// How long a message of the range may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

/// One message of the stream.
pub struct Message {
    /// Its stream sequence.
    pub at: u64,
    pub payload: Bytes,
    pub headers: Option<HeaderMap>,
}

#[derive(Debug, thiserror::Error)]
#[error("reading the token events stream failed: {0}")]
pub struct ScanError(pub String);

fn failed(e: impl std::fmt::Display) -> ScanError {
    ScanError(e.to_string())
}

/// The first message at or after `at`, if any.
async fn next_at(stream: &Stream, at: u64) -> Result<Option<Message>, ScanError> {
    match stream.get_first_raw_message_by_subject(">", at).await {
        Ok(m) => Ok(Some(Message {
            at: m.sequence,
            payload: m.payload,
            headers: Some(m.headers),
        })),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(failed(e)),
    }
}

/// Hands every message from sequence `from` to `to` (both included) to
/// `visit`, in order, until it breaks; answers what it broke with.
pub async fn scan<B, E: From<ScanError>>(
    stream: &Stream,
    from: u64,
    to: u64,
    mut visit: impl FnMut(Message) -> Result<ControlFlow<B>, E>,
) -> Result<Option<B>, E> {
    let from = from.max(1);
    if from > to {
        return Ok(None);
    }
    // The first message that is there: an ordered consumer started on a
    // range whose messages were all deleted would wait forever.
    let Some(first) = next_at(stream, from).await? else {
        return Ok(None);
    };
    if first.at > to {
        return Ok(None);
    }
    if to - first.at < SMALL {
        let mut message = first;
        loop {
            let at = message.at;
            if let ControlFlow::Break(b) = visit(message)? {
                return Ok(Some(b));
            }
            if at >= to {
                return Ok(None);
            }
            match next_at(stream, at + 1).await? {
                Some(next) if next.at <= to => message = next,
                _ => return Ok(None),
            }
        }
    }
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: first.at,
            },
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    let mut messages = consumer.messages().await.map_err(failed)?;
    let mut read = first.at - 1;
    loop {
        let message = match tokio::time::timeout(WAIT, messages.next()).await {
            Ok(Some(message)) => message.map_err(failed)?,
            Ok(None) => return Err(ScanError("the stream ended early".into()).into()),
            // Nothing more to deliver: the rest of the range was deleted
            // meanwhile (a repair), or the consumer is stuck.
            Err(_) => match next_at(stream, read + 1).await? {
                Some(next) if next.at <= to => {
                    return Err(ScanError("the stream stopped delivering".into()).into());
                }
                _ => return Ok(None),
            },
        };
        let info = message.info().map_err(failed)?;
        let (at, pending) = (info.stream_sequence, info.pending);
        if at > to {
            return Ok(None);
        }
        let message = Message {
            at,
            payload: message.payload.clone(),
            headers: message.headers.clone(),
        };
        read = at;
        if let ControlFlow::Break(b) = visit(message)? {
            return Ok(Some(b));
        }
        if at >= to || pending == 0 {
            return Ok(None);
        }
    }
}
