//! Reading request records from `ENSPACE_REQUESTS` as any client would:
//! a message is a batch (header `Enspace-Record-Count`) or, as nodes
//! published before batches, one record.

use async_nats::jetstream::{self, stream::Stream};
use enspace_core::RequestRecord;
use enspace_core::record_batch;

/// The records one stored message carries (none for a drop count).
pub fn records_in(message: &jetstream::message::StreamMessage) -> Vec<RequestRecord> {
    if message.subject.ends_with(".dropped") {
        return Vec::new();
    }
    match message.headers.get(record_batch::COUNT_HEADER) {
        Some(count) => record_batch::decode(&message.subject, count.as_str(), &message.payload)
            .expect("a batch of records"),
        None => vec![RequestRecord::from_msgpack(&message.payload).expect("a record")],
    }
}

/// Every record the stream holds, in the order stored.
pub async fn stream_records(stream: &mut Stream) -> Vec<RequestRecord> {
    let state = stream.info().await.expect("info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await {
            out.extend(records_in(&message));
        }
    }
    out
}
