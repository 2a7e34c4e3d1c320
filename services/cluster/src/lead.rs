//! Taking up writing: a process that won the writer lease
//! ([`Part::Preparing`]) catches up with the stream and becomes the writer,
//! unless another live process reports a longer log (after a lost stream,
//! refilling it from a shorter log would drop acknowledged events): then it
//! gives the lease up, and waits a lease's time before trying again.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use tokio::sync::watch;

use enspace_store::keyring::Keyring;

use super::{Part, Role, catch_up, members};
use crate::event_stream::Followed;
use crate::outbox::Outbox;
use enspace_store::EventLog;
use enspace_store::writer::Writer;

/// How long a new writer waits for its follower to read to the stream's end
/// before checking the stream against its log anyway.
const CATCH_UP: Duration = Duration::from_secs(3);
/// How long one question to the stream may take while preparing: short,
/// as one asked while NATS elects the stream's leader is never answered,
/// and the writes waiting for this process should not wait out its timeout
/// once there is a leader.
const ASK_TIMEOUT: Duration = Duration::from_millis(300);
/// The pause before preparing again after a failure.
const PREPARE_AGAIN: Duration = Duration::from_millis(50);
/// How long comparing the stream with the log (and refilling it) may take.
const REFILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any one JetStream request may take while preparing (the
/// client's default is 5 s, all of it lost for one sent during an election).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Makes a process that won the lease the writer, once its log holds
/// everything the stream does and the stream everything its log does.
/// What a process that won the lease needs to take up writing.
pub struct Leading {
    pub js: jetstream::Context,
    /// How far this process's follower has read the stream.
    pub followed: watch::Receiver<Followed>,
    pub log: EventLog,
    pub writer: Writer,
    /// The keys the stream's events are checked with.
    pub keys: Keyring,
    pub outbox: Outbox,
    pub members: kv::Store,
    pub node_id: String,
}

pub async fn lead(role: Role, leading: Leading) {
    let mut js = leading.js.clone();
    js.set_timeout(REQUEST_TIMEOUT);
    let leading = Leading { js, ..leading };
    let mut part = role.watch();
    // Failures in a row: the first is a warning, the rest (every
    // PREPARE_AGAIN while NATS elects a leader) only debug.
    let mut failed = 0u32;
    loop {
        let now = *part.borrow_and_update();
        if let Part::Preparing(term) = now {
            match prepare(&leading).await {
                Ok(()) => {
                    if failed > 0 {
                        tracing::info!(term, failed, "took up writing after {failed} tries");
                    }
                    failed = 0;
                    role.promote(term);
                }
                Err(Prepare::Behind { other, their_head }) => {
                    tracing::warn!(
                        other,
                        their_head,
                        term,
                        "another process holds more of the history; giving the lease up to it"
                    );
                    role.set(Part::Follower);
                }
                Err(Prepare::Failed(e)) => {
                    if failed == 0 {
                        tracing::warn!(error = %e, term, "cannot take up writing yet; retrying");
                    } else {
                        tracing::debug!(error = %e, term, "cannot take up writing yet; retrying");
                    }
                    failed = failed.saturating_add(1);
                    tokio::time::sleep(PREPARE_AGAIN).await;
                    continue;
                }
            }
        }
        if part.changed().await.is_err() {
            return;
        }
    }
}

enum Prepare {
    Behind { other: String, their_head: u64 },
    Failed(String),
}

impl From<String> for Prepare {
    fn from(e: String) -> Self {
        Prepare::Failed(e)
    }
}

async fn prepare(leading: &Leading) -> Result<(), Prepare> {
    let Leading {
        js,
        followed,
        log,
        writer,
        keys,
        outbox,
        members,
        node_id,
    } = leading;
    let deadline = Instant::now() + CATCH_UP;
    // While NATS elects a stream's leader, its requests wait out their
    // timeout: ask again sooner than that.
    let timed_out = |_| "the token events stream did not answer in time".to_owned();
    loop {
        let tip = tokio::time::timeout(ASK_TIMEOUT, crate::event_stream::tip(js))
            .await
            .map_err(timed_out)?
            .map_err(|e| e.to_string())?;
        if followed.borrow().reached(tip) || Instant::now() >= deadline {
            break;
        }
        // The follower may still be on a NATS server that died: get what
        // the log lacks directly.
        match catch_up::fetch_until(js, log, writer, keys, None).await {
            Ok(fetched) if fetched.to_end => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot fetch the events the log lacks yet");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let in_place = tokio::time::timeout(REFILL_TIMEOUT, outbox.check(js))
        .await
        .map_err(timed_out)??;
    if !in_place {
        // The stream lost events this log holds: it is about to be refilled
        // from this log. Only if no live process holds more; hear from all
        // of them first (their reports may have been lost with the stream).
        tokio::time::sleep(2 * members::REPORT_EVERY + Duration::from_millis(500)).await;
        let head = *writer.head().borrow();
        if let Some((other, their_head)) = members::highest_other(members, node_id).await
            && their_head > head
        {
            return Err(Prepare::Behind { other, their_head });
        }
    }
    Ok(tokio::time::timeout(REFILL_TIMEOUT, outbox.refill(js))
        .await
        .map_err(timed_out)??)
}
