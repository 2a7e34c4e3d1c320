//! What travels on `enspace.control.usage.<partition>`: a [`Query`], one
//! read of the request index that an HTTP request makes (all of them for
//! one token, or for [`Query::LastUsed`] the tokens of one partition), and
//! its [`Reply`]. Both are MessagePack with field names
//! (`rmp_serde::to_vec_named`), so that a field added later does not break
//! a process still on the older layout.
//!
//! A reply may be larger than NATS carries in one message (a page of a
//! thousand long records; the client IPs of a token sprayed from many
//! addresses): it is cut by [`split`] into parts of at most the server's
//! payload limit, each led by its index and the number of parts (u32 BE
//! each), published in order to the asker's inbox and put back together by
//! [`Parts`].

use enspace_core::RequestRecord;
use enspace_core::record_batch::partition_of;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::index::{Bucket, HOUR_MS, Position, Upper};
use crate::insights::Summary;

/// Most records a page may ask for.
pub const MAX_PAGE: usize = 1000;
/// Most buckets a stats or timeline read may cover (a year of hours).
pub const MAX_BUCKETS: u64 = 24 * 366;
/// Most tokens one [`Query::LastUsed`] may name (more are asked in several).
pub const MAX_TOKENS: usize = 5000;
/// Most parts a reply may be cut in: what the shipped `deploy/nats.conf`
/// lets the control plane send in answer to one message
/// (`allow_responses.max`).
pub const MAX_PARTS: u32 = 1024;
/// Most bytes a reply may total.
pub const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;
/// A part's index and the number of parts, before its bytes.
const PART_HEADER: usize = 8;
/// Room left in a message for what NATS adds (the subject, the reply).
const PART_SLACK: usize = 1024;

/// One read of the request index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// `RequestIndex::query`: up to `limit` records, newest first.
    Page {
        token: Ulid,
        from_ms: u64,
        upper: Upper,
        limit: usize,
    },
    /// `RequestIndex::stats` and the records dropped in the window.
    Stats {
        token: Ulid,
        from_ms: u64,
        to_ms: u64,
        bucket_ms: u64,
    },
    /// `RequestIndex::insights` from `cutoff_ms` on.
    Insights { token: Ulid, cutoff_ms: u64 },
    /// What the audit timeline reads.
    Timeline(TimelineQuery),
    /// `RequestIndex::last_used` of tokens of one partition.
    LastUsed { tokens: Vec<Ulid> },
}

/// The audit timeline's reads of one token: counts per day and the records
/// dropped over `[from_ms, to_ms)`, insights from `from_ms`, and insights
/// from the leak (`leak_ms`) when the token leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineQuery {
    pub token: Ulid,
    pub from_ms: u64,
    pub to_ms: u64,
    pub leak_ms: Option<u64>,
}

/// A page of records, and where the next one starts when more remain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub records: Vec<RequestRecord>,
    pub next: Option<Position>,
}

/// Counts per bucket, and the records API nodes dropped in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub buckets: Vec<Bucket>,
    pub dropped: u64,
}

/// The answer to a [`TimelineQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub days: Vec<Bucket>,
    pub summary: Summary,
    pub leak: Option<Summary>,
    pub dropped: u64,
}

/// The answer to a [`Query`], of the same variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Page(Page),
    Stats(Stats),
    Insights(Box<Summary>),
    Timeline(Box<Timeline>),
    /// Each token asked of and its last use (ms), in the order asked.
    LastUsed(Vec<(Ulid, Option<u64>)>),
}

/// Why a process did not answer a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The query could not be read.
    #[error("the query could not be read")]
    Unreadable,
    /// A token of the query is not of the partition it was asked on.
    #[error("a token of the query is not of the partition asked")]
    WrongPartition,
    /// The query asks for more than a read may.
    #[error("the query is out of bounds")]
    OutOfBounds,
    /// The process does not (any more) serve the partition.
    #[error("partition {partition} is not served here")]
    NotServed { partition: u32 },
    /// The answer is larger than a reply may be.
    #[error("the answer is too large")]
    TooLarge,
    /// The index failed to read (the cause is in that process's log).
    #[error("the index failed to read")]
    Index,
}

pub type Reply = Result<Answer, Refusal>;

impl Query {
    /// The partition of the query's tokens; `None` when it names none or
    /// tokens of several.
    pub fn partition(&self) -> Option<u32> {
        match self {
            Query::Page { token, .. }
            | Query::Stats { token, .. }
            | Query::Insights { token, .. }
            | Query::Timeline(TimelineQuery { token, .. }) => Some(partition_of(token)),
            Query::LastUsed { tokens } => {
                let first = partition_of(tokens.first()?);
                tokens
                    .iter()
                    .all(|t| partition_of(t) == first)
                    .then_some(first)
            }
        }
    }

    /// Whether the query stays within what one read may ask.
    pub fn check(&self) -> Result<(), Refusal> {
        let buckets = |from_ms: u64, to_ms: u64, bucket_ms: u64| {
            if bucket_ms < HOUR_MS || from_ms >= to_ms {
                return true;
            }
            let first = from_ms - from_ms % bucket_ms;
            (to_ms - first).div_ceil(bucket_ms) <= MAX_BUCKETS
        };
        let within = match self {
            Query::Page { limit, .. } => *limit <= MAX_PAGE,
            Query::Stats {
                from_ms,
                to_ms,
                bucket_ms,
                ..
            } => buckets(*from_ms, *to_ms, *bucket_ms),
            Query::Insights { .. } => true,
            Query::Timeline(t) => buckets(t.from_ms, t.to_ms, crate::index::DAY_MS),
            Query::LastUsed { tokens } => tokens.len() <= MAX_TOKENS,
        };
        within.then_some(()).ok_or(Refusal::OutOfBounds)
    }
}

pub fn encode_query(query: &Query) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(query)
}

/// A query as received: anything that is not one is [`Refusal::Unreadable`].
pub fn decode_query(bytes: &[u8]) -> Result<Query, Refusal> {
    rmp_serde::from_slice(bytes).map_err(|_| Refusal::Unreadable)
}

pub fn encode_reply(reply: &Reply) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(reply)
}

/// What went wrong putting a reply back together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReply {
    #[error("a reply part is shorter than its header")]
    Truncated,
    #[error("reply part {got} came when part {expected} was due")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("a reply claims {0} parts")]
    TooManyParts(u32),
    #[error("a reply is over {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    #[error("a reply could not be read")]
    Unreadable,
}

pub fn decode_reply(bytes: &[u8]) -> Result<Reply, BadReply> {
    rmp_serde::from_slice(bytes).map_err(|_| BadReply::Unreadable)
}

/// `bytes` cut into parts that fit messages of `max_payload` bytes; `None`
/// when it would take more than [`MAX_PARTS`] (or is over
/// [`MAX_REPLY_BYTES`]).
pub fn split(bytes: &[u8], max_payload: usize) -> Option<Vec<Vec<u8>>> {
    if bytes.len() > MAX_REPLY_BYTES {
        return None;
    }
    let size = max_payload
        .saturating_sub(PART_HEADER + PART_SLACK)
        .max(PART_SLACK);
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(size).collect()
    };
    let count = u32::try_from(chunks.len())
        .ok()
        .filter(|n| *n <= MAX_PARTS)?;
    Some(
        chunks
            .into_iter()
            .zip(0u32..)
            .map(|(chunk, index)| {
                let mut part = Vec::with_capacity(PART_HEADER + chunk.len());
                part.extend_from_slice(&index.to_be_bytes());
                part.extend_from_slice(&count.to_be_bytes());
                part.extend_from_slice(chunk);
                part
            })
            .collect(),
    )
}

/// A reply's parts as they arrive, in order.
#[derive(Debug, Default)]
pub struct Parts {
    count: Option<u32>,
    next: u32,
    bytes: Vec<u8>,
}

impl Parts {
    /// Takes the next part; the whole reply once its last part is in.
    pub fn add(&mut self, part: &[u8]) -> Result<Option<Vec<u8>>, BadReply> {
        let (header, body) = part
            .split_at_checked(PART_HEADER)
            .ok_or(BadReply::Truncated)?;
        let (index, count) = header.split_at(4);
        let index = u32::from_be_bytes(index.try_into().map_err(|_| BadReply::Truncated)?);
        let count = u32::from_be_bytes(count.try_into().map_err(|_| BadReply::Truncated)?);
        if count == 0 || count > MAX_PARTS {
            return Err(BadReply::TooManyParts(count));
        }
        if index != self.next || self.count.is_some_and(|known| known != count) {
            return Err(BadReply::OutOfOrder {
                expected: self.next,
                got: index,
            });
        }
        if self.bytes.len() + body.len() > MAX_REPLY_BYTES {
            return Err(BadReply::TooLarge);
        }
        self.count = Some(count);
        self.next += 1;
        self.bytes.extend_from_slice(body);
        Ok((self.next == count).then(|| std::mem::take(&mut self.bytes)))
    }
}

#[cfg(test)]
mod tests;
