//! The token events stream (`ENSPACE_TOKEN_EVENTS`) as its readers and its
//! writer see it. The rule every one of them keeps:
//!
//! - the control plane's events appear in `seq` order, each exactly once;
//! - anything else may sit between them (a foreign message: whatever put
//!   it there, a misconfigured client, a PubAck aimed at the stream's
//!   subjects, a replayed publish): every reader skips and counts it, and
//!   the writer deletes it, at most once per repair interval ([`repair`]);
//! - so event `n` is at a stream sequence `>= n`, and a reader that holds
//!   events up to `n` may start reading at stream sequence `n + 1`, skipping
//!   the events it holds.
//!
//! Appends are fenced by `Nats-Expected-Last-Sequence` naming the stream's
//! last sequence as the writer last read it (and, within a batch, by
//! `Nats-Expected-Last-Msg-Id` naming the event before): when the fence
//! fails, the writer reads what follows the last event it knows
//! ([`tail::walk`]). Foreign messages only: it appends after them. The next
//! event signed by the key: another writer appended, and it stops writing
//! as before. A stream that lost events (one missing, the NATS store lost,
//! the stream deleted) is still refilled from the log.

pub mod classify;
pub mod keys;
pub mod repair;
pub mod scan;
pub mod tail;

use async_nats::jetstream::{self, stream};

/// The stream's identity (when it was created, in nanoseconds since the
/// Unix epoch): a stream deleted and made again reuses sequences, so a
/// position or a mark holds only for the stream it was read from.
pub fn identity(info: &stream::Info) -> i128 {
    info.created.unix_timestamp_nanos()
}

/// The stream as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tip {
    pub stream: i128,
    /// Its last sequence (kept when the last message is deleted).
    pub last: u64,
    /// Messages it holds.
    pub messages: u64,
}

impl Tip {
    pub fn of(info: &stream::Info) -> Self {
        Tip {
            stream: identity(info),
            last: info.state.last_sequence,
            messages: info.state.messages,
        }
    }
}

/// The stream's tip, `None` when there is no stream.
pub async fn tip(js: &jetstream::Context) -> Result<Option<Tip>, async_nats::Error> {
    match js.get_stream(enspace_nats::TOKEN_EVENTS_STREAM).await {
        Ok(mut stream) => Ok(Some(Tip::of(stream.info().await?))),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// How far a process has read the stream: every message of stream
/// `stream` up to sequence `at`, events and foreign messages alike, is
/// processed (its log holds every event among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Followed {
    pub stream: i128,
    pub at: u64,
}

impl Followed {
    /// Whether everything the stream held at `tip` has been read (no
    /// stream: nothing to read).
    pub fn reached(&self, tip: Option<Tip>) -> bool {
        match tip {
            None => true,
            Some(tip) => tip.last == 0 || (self.stream == tip.stream && self.at >= tip.last),
        }
    }
}
