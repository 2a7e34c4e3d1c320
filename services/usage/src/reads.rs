//! Reads of the request index for a token, answered by a process that
//! serves the token's partition.
//!
//! A process indexes only the partitions it serves ([`Ownership`]; all of
//! them when it is alone). [`UsageReads`] is what the HTTP routes read
//! through: a read of a token this process serves is answered from the
//! local index (on a blocking thread); any other is one request over NATS
//! to `enspace.control.usage.<partition>`, which every process serving that
//! partition subscribes to in queue group `usage` ([`serve_queries`]), so
//! one of them answers, from its index, exactly what it would answer
//! itself. Each HTTP request makes at most one such round trip per
//! partition: a route's reads of one token travel as one [`Query`] (the
//! stats with their drops; the audit timeline's days, insights and drops),
//! and `last_used` of many tokens asks each foreign partition once (in
//! slices of [`wire::MAX_TOKENS`]), all at the same time.
//!
//! When no process serving the partition answers within the timeout
//! (none listens, none in time, NATS is not there), the read fails with
//! [`ReadError::Unavailable`], which a route answers `503`
//! `request_logs_unavailable` with `Retry-After`: never a partial or empty
//! answer that looks complete. The subjects are under `enspace.control.>`,
//! which only the control plane's NATS account reaches.

mod serve;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use enspace_core::record_batch::partition_of;
use futures::StreamExt;
use jiff::Timestamp;
use ulid::Ulid;

use crate::IndexError;
use crate::index::{RequestIndex, Upper, key_ms};
use crate::insights::Summary;
use crate::ownership::Ownership;
pub use serve::serve_queries;
pub use wire::{Answer, Page, Query, Refusal, Stats, Timeline, TimelineQuery};

/// How long a forwarded read waits for its answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// What `Retry-After` says when no process answered a read.
pub const RETRY_AFTER_SECS: u64 = 2;
/// The pause before asking again while no process serves a partition.
pub const ASK_AGAIN: Duration = Duration::from_millis(100);

/// Why a read of the request index failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// This process's index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// No process serving the partition answered: none listens, none in
    /// time, or this process has no NATS connection.
    #[error("no process serving partition {partition} of the request logs answered: {why}")]
    Unavailable { partition: u32, why: String },
    /// The process that answered did not answer the read.
    #[error(
        "the process serving partition {partition} of the request logs refused a read: {refusal}"
    )]
    Refused { partition: u32, refusal: Refusal },
    /// What came back is not an answer to the read.
    #[error("an answer from partition {partition} of the request logs could not be read: {why}")]
    BadAnswer { partition: u32, why: String },
}

/// A failure of an index, here or where the read was answered, is a `500`
/// (as it would be where the index is); anything else of a forwarded read
/// is a `503` `request_logs_unavailable` with `Retry-After`. The cause goes
/// to the log, never to the client.
impl From<ReadError> for enspace_http::ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Index(e) => enspace_http::ApiError::internal(e),
            ReadError::Refused {
                refusal: Refusal::Index,
                ..
            } => enspace_http::ApiError::internal(e),
            e => {
                tracing::warn!(error = %e, "a read of the request logs failed: {e}");
                enspace_http::ApiError::service_unavailable(
                    "request_logs_unavailable",
                    RETRY_AFTER_SECS,
                    "the request logs of this token cannot be read right now; try again after the time in Retry-After",
                )
            }
        }
    }
}

/// The request index, read through whichever process serves each token.
#[derive(Clone)]
pub struct UsageReads {
    index: RequestIndex,
    ownership: Ownership,
    nats: Arc<OnceLock<async_nats::Client>>,
    timeout: Duration,
}

impl UsageReads {
    /// Reads of `index`, answered here for the partitions `ownership`
    /// serves; the others need [`connect`](Self::connect).
    pub fn new(index: RequestIndex, ownership: Ownership) -> Self {
        UsageReads {
            index,
            ownership,
            nats: Arc::default(),
            timeout: READ_TIMEOUT,
        }
    }

    /// Waits `timeout` (not [`READ_TIMEOUT`]) for a forwarded read.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// From now on forwards reads of other partitions over `client` (the
    /// first connection given stays).
    pub fn connect(&self, client: async_nats::Client) {
        let _ = self.nats.set(client);
    }

    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    /// `RequestIndex::query`: up to `limit` records of `token` from
    /// `from_ms` below `upper`, newest first.
    pub async fn page(
        &self,
        token: Ulid,
        from_ms: u64,
        upper: Upper,
        limit: usize,
    ) -> Result<Page, ReadError> {
        let query = Query::Page {
            token,
            from_ms,
            upper,
            limit,
        };
        match self.read(token, query).await? {
            (_, Answer::Page(page)) => Ok(page),
            (partition, other) => Err(mismatch(partition, &other)),
        }
    }

    /// `RequestIndex::stats` of `token`, and its records dropped in
    /// `[from_ms, to_ms)`.
    pub async fn stats(
        &self,
        token: Ulid,
        from_ms: u64,
        to_ms: u64,
        bucket_ms: u64,
    ) -> Result<Stats, ReadError> {
        let query = Query::Stats {
            token,
            from_ms,
            to_ms,
            bucket_ms,
        };
        match self.read(token, query).await? {
            (_, Answer::Stats(stats)) => Ok(stats),
            (partition, other) => Err(mismatch(partition, &other)),
        }
    }

    /// `RequestIndex::insights` of `token` from `cutoff_ms` on.
    pub async fn insights(&self, token: Ulid, cutoff_ms: u64) -> Result<Summary, ReadError> {
        match self
            .read(token, Query::Insights { token, cutoff_ms })
            .await?
        {
            (_, Answer::Insights(summary)) => Ok(*summary),
            (partition, other) => Err(mismatch(partition, &other)),
        }
    }

    /// The audit timeline's reads of one token.
    pub async fn timeline(&self, query: TimelineQuery) -> Result<Timeline, ReadError> {
        match self.read(query.token, Query::Timeline(query)).await? {
            (_, Answer::Timeline(timeline)) => Ok(*timeline),
            (partition, other) => Err(mismatch(partition, &other)),
        }
    }

    /// When each of `tokens` was last used: the ones served here read here,
    /// the others asked of their partitions, all at once.
    pub async fn last_used(
        &self,
        tokens: &[Ulid],
    ) -> Result<HashMap<Ulid, Option<Timestamp>>, ReadError> {
        let mut local = Vec::new();
        let mut foreign: BTreeMap<u32, Vec<Ulid>> = BTreeMap::new();
        for token in tokens {
            let partition = partition_of(token);
            if self.ownership.serves(partition) {
                local.push(*token);
            } else {
                foreign.entry(partition).or_default().push(*token);
            }
        }
        let asked = foreign.into_iter().flat_map(|(partition, tokens)| {
            tokens
                .chunks(wire::MAX_TOKENS)
                .map(|slice| (partition, slice.to_vec()))
                .collect::<Vec<_>>()
        });
        let asked = futures::future::try_join_all(asked.map(|(partition, tokens)| async move {
            match self.ask(partition, &Query::LastUsed { tokens }).await? {
                Answer::LastUsed(used) => Ok(used),
                other => Err(mismatch(partition, &other)),
            }
        }));
        let index = self.index.clone();
        let here = async move {
            if local.is_empty() {
                return Ok(Vec::new());
            }
            spawn_read(move || last_used_ms(&index, &local)).await
        };
        let (here, asked) = futures::future::try_join(here, asked).await?;
        Ok(here
            .into_iter()
            .chain(asked.into_iter().flatten())
            .map(|(token, ms)| (token, ms.and_then(time)))
            .collect())
    }

    /// `query` of `token`, here or where its partition is served; with the
    /// partition.
    async fn read(&self, token: Ulid, query: Query) -> Result<(u32, Answer), ReadError> {
        let partition = partition_of(&token);
        query
            .check()
            .map_err(|refusal| ReadError::Refused { partition, refusal })?;
        if self.ownership.serves(partition) {
            let index = self.index.clone();
            let answer = spawn_read(move || answer(&index, &query)).await?;
            return Ok((partition, answer));
        }
        Ok((partition, self.ask(partition, &query).await?))
    }

    /// Asks a process serving `partition`, and waits for its answer. While
    /// no process serves it (a cluster starting, a partition's owners just
    /// gone, one handing it over) it asks again every [`ASK_AGAIN`], until
    /// the read's timeout: a read then waits a moment rather than failing.
    async fn ask(&self, partition: u32, query: &Query) -> Result<Answer, ReadError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let result = self.ask_once(partition, query, deadline).await;
            let again = matches!(
                &result,
                Err(ReadError::Unavailable { .. })
                    | Err(ReadError::Refused {
                        refusal: Refusal::NotServed { .. },
                        ..
                    })
            );
            if !again || tokio::time::Instant::now() + ASK_AGAIN >= deadline {
                return result;
            }
            tokio::time::sleep(ASK_AGAIN).await;
        }
    }

    /// Asks once, waiting for the answer until `deadline`.
    async fn ask_once(
        &self,
        partition: u32,
        query: &Query,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, ReadError> {
        let unavailable = |why: String| ReadError::Unavailable { partition, why };
        let bad = |why: String| ReadError::BadAnswer { partition, why };
        let Some(client) = self.nats.get() else {
            return Err(unavailable("this process has no NATS connection".into()));
        };
        let payload = wire::encode_query(query).map_err(|e| bad(e.to_string()))?;
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unavailable(format!("cannot listen for the answer: {e}")))?;
        client
            .publish_with_reply(
                enspace_nats::usage_query_subject(partition),
                inbox,
                payload.into(),
            )
            .await
            .map_err(|e| unavailable(format!("cannot send the read: {e}")))?;
        let mut parts = wire::Parts::default();
        loop {
            let message = match tokio::time::timeout_at(deadline, replies.next()).await {
                Err(_) => {
                    return Err(unavailable(format!(
                        "no answer within {} ms",
                        self.timeout.as_millis()
                    )));
                }
                Ok(None) => return Err(unavailable("the NATS connection closed".into())),
                Ok(Some(message)) => message,
            };
            if let Some(status) = message.status {
                // `503`: nobody listens on the partition's subject.
                return Err(unavailable(format!("NATS answered status {status}")));
            }
            let Some(whole) = parts
                .add(&message.payload)
                .map_err(|e| bad(e.to_string()))?
            else {
                continue;
            };
            return match wire::decode_reply(&whole).map_err(|e| bad(e.to_string()))? {
                Ok(answer) => Ok(answer),
                Err(refusal) => Err(ReadError::Refused { partition, refusal }),
            };
        }
    }
}

/// The answer to `query` from `index` (blocking: sled reads).
pub fn answer(index: &RequestIndex, query: &Query) -> Result<Answer, IndexError> {
    Ok(match query {
        Query::Page {
            token,
            from_ms,
            upper,
            limit,
        } => {
            let (records, next) = index.query(*token, *from_ms, *upper, *limit)?;
            Answer::Page(Page { records, next })
        }
        Query::Stats {
            token,
            from_ms,
            to_ms,
            bucket_ms,
        } => Answer::Stats(Stats {
            buckets: index.stats(*token, *from_ms, *to_ms, *bucket_ms)?,
            dropped: index.drops.dropped(*token, *from_ms, *to_ms)?,
        }),
        Query::Insights { token, cutoff_ms } => {
            Answer::Insights(Box::new(index.insights(*token, *cutoff_ms)?))
        }
        Query::Timeline(t) => Answer::Timeline(Box::new(Timeline {
            days: index.stats(t.token, t.from_ms, t.to_ms, crate::index::DAY_MS)?,
            summary: index.insights(t.token, t.from_ms)?,
            leak: t
                .leak_ms
                .map(|ms| index.insights(t.token, ms))
                .transpose()?,
            dropped: index.drops.dropped(t.token, t.from_ms, t.to_ms)?,
        })),
        Query::LastUsed { tokens } => Answer::LastUsed(last_used_ms(index, tokens)?),
    })
}

/// Each token's last use, in ms.
fn last_used_ms(
    index: &RequestIndex,
    tokens: &[Ulid],
) -> Result<Vec<(Ulid, Option<u64>)>, IndexError> {
    tokens
        .iter()
        .map(|token| Ok((*token, index.last_used(*token)?.map(key_ms))))
        .collect()
}

/// Runs a read of the index on a blocking thread.
async fn spawn_read<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, ReadError> {
    match tokio::task::spawn_blocking(read).await {
        Ok(done) => Ok(done?),
        Err(e) => Err(IndexError::Corrupt(format!("request index read task failed: {e}")).into()),
    }
}

fn mismatch(partition: u32, answer: &Answer) -> ReadError {
    let kind = match answer {
        Answer::Page(_) => "a page",
        Answer::Stats(_) => "stats",
        Answer::Insights(_) => "insights",
        Answer::Timeline(_) => "a timeline",
        Answer::LastUsed(_) => "last uses",
    };
    ReadError::BadAnswer {
        partition,
        why: format!("{kind} answered another read"),
    }
}

fn time(ms: u64) -> Option<Timestamp> {
    Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}
