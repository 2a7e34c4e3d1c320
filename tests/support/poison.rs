//! Foreign messages in the token events stream, put there by a raw client
//! on a plain `nats-server -js` (standing for whatever might put them
//! there: a misconfigured client, a JetStream PubAck aimed at the stream's
//! subjects, a replayed publish), and what the stream holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use enspace_core::{EventEnvelope, SecretHash, fixtures};
use futures::StreamExt;

/// The kinds of foreign message, in turn.
pub const KINDS: usize = 4;

/// Publishes foreign message number `n` (of kind `n % KINDS`) into the
/// token events stream and waits until the stream stored it; answers its
/// stream sequence.
pub async fn publish_foreign(js: &jetstream::Context, n: usize) -> u64 {
    let subject = enspace_nats::token_event_subject("01FOREIGN");
    let (headers, payload): (HeaderMap, Vec<u8>) = match n % KINDS {
        0 => (HeaderMap::new(), b"not an event".to_vec()),
        // What JetStream answers a publish with, aimed at the stream.
        1 => (
            HeaderMap::new(),
            br#"{"stream":"ENSPACE_REQUESTS","seq":42}"#.to_vec(),
        ),
        // A copy of the first event, signature and all (without its
        // message id, which the duplicate window would catch).
        2 => {
            let stream = js
                .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
                .await
                .expect("stream");
            let first = stream
                .get_first_raw_message_by_subject("enspace.token-events.>", 1)
                .await
                .expect("a first message");
            let mut headers = HeaderMap::new();
            for name in [
                enspace_nats::SIGNATURE_HEADER,
                enspace_nats::KEY_ID_HEADER,
                enspace_nats::PREV_HASH_HEADER,
            ] {
                if let Some(value) = first.headers.get(name) {
                    headers.insert(name, value.as_str());
                }
            }
            (headers, first.payload.to_vec())
        }
        // An unsigned event claiming a seq far ahead.
        _ => (
            HeaderMap::new(),
            fixtures::created(1_000_000 + n as u64, &SecretHash([7; 32]))
                .build()
                .encode(),
        ),
    };
    js.publish_with_headers(subject, headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence
}

/// A raw client publishing a foreign message every `every` until dropped.
pub struct Poisoner {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<usize>>,
}

impl Poisoner {
    pub async fn start(nats_url: &str, every: Duration) -> Self {
        let client = async_nats::connect(nats_url).await.expect("connect");
        let js = jetstream::new(client);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                publish_foreign(&js, n).await;
                n += 1;
                tokio::time::sleep(every).await;
            }
            n
        });
        Poisoner {
            stop,
            task: Some(task),
        }
    }

    /// Stops; answers how many foreign messages were published.
    pub async fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.take() {
            Some(task) => task.await.expect("poisoner"),
            None => 0,
        }
    }
}

impl Drop for Poisoner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the stream holds: its identity (creation time), and each message's
/// payload and whether it decodes as an event.
pub struct Contents {
    pub created: i128,
    pub messages: Vec<(u64, Vec<u8>, Option<EventEnvelope>)>,
}

impl Contents {
    /// The seqs of the events in the stream, in stream order.
    pub fn event_seqs(&self) -> Vec<u64> {
        self.messages
            .iter()
            .filter_map(|(_, _, e)| e.as_ref().map(|e| e.seq))
            .collect()
    }
}

pub async fn contents(nats_url: &str) -> Contents {
    let client = async_nats::connect(nats_url).await.expect("connect");
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("stream");
    let info = stream.info().await.expect("info").clone();
    let mut messages = Vec::new();
    if info.state.messages > 0 {
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig::default())
            .await
            .expect("consumer");
        let mut delivered = consumer.messages().await.expect("messages");
        // The last ones may be deleted while they are read: then nothing
        // more comes.
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_secs(2), delivered.next()).await
        {
            let message = message.expect("message");
            let info = message.info().expect("info");
            let (at, pending) = (info.stream_sequence, info.pending);
            let event = EventEnvelope::decode(&message.payload).ok();
            messages.push((at, message.payload.to_vec(), event));
            if pending == 0 {
                break;
            }
        }
    }
    Contents {
        created: info.created.unix_timestamp_nanos(),
        messages,
    }
}
