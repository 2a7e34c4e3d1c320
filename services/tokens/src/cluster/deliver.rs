//! A command reaching any process goes to whichever process writes, this
//! one included, as soon as one does: during an election it waits for the
//! lease to change hands (or this process to become the writer) rather
//! than a fixed time, up to the command's time (its budget: the lease's
//! time to live and a little more, at most [`MOST_BUDGET`]).
//!
//! Each command gets an id once, and every try carries the same id and
//! time: the writer carries out each id at most once and never after its
//! time ([`super::once`], [`super::forward`]), and a writer that did not see
//! the first try still recognises a token-making command that was carried
//! out by its secret hash, which the forwarding process chose (see
//! [`Command::makes`]). So a try whose answer was lost (timed out, or
//! answered by someone else first) is simply tried again, possibly with
//! another writer.
//!
//! The answer says the command happened exactly when it did: if no writer
//! gave a final answer within the command's time but one may have carried
//! it out, this process waits until no writer can still store it (its time,
//! and then the time a decided group may take to reach the stream), catches
//! up with the stream and looks for what it made. Found: the command
//! happened, and is answered as such; not found: it did not and never will.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use enspace_core::{EventSigner, TokenView};
use futures::future::BoxFuture;
use jiff::Timestamp;
use ulid::Ulid;

use super::commit::ACK_TIMEOUT;
use super::forward::{self, Asker, Heard, Inbox};
use super::{Role, lease};
use crate::commands::{Command, CommandError};
use crate::store::Projections;
use crate::store::writer::{Deliver, Writer};

/// The longest a command waits for a writer.
pub const MOST_BUDGET: Duration = Duration::from_secs(5);
/// How long one try waits for the writer's answer before trying again (a
/// try that reaches the writer while an earlier one is being decided waits
/// for that one's answer).
const TRY: Duration = Duration::from_secs(1);
/// How often a command waiting for a writer looks again, besides whenever
/// the lease changes hands.
const LOOK_AGAIN: Duration = Duration::from_millis(250);
/// How long reading the lease's holder from its bucket may take.
const READ_LEASE: Duration = Duration::from_millis(300);
/// How long the forwarding process waits for its own log to hold the
/// result before answering anyway (its next read waits at the barrier).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// After a command's time: how long a writer that decided it just in time
/// may still take to store it.
const IN_FLIGHT: Duration = ACK_TIMEOUT.saturating_add(Duration::from_millis(500));

type Answer = Result<Option<TokenView>, CommandError>;

fn unavailable(why: impl std::fmt::Display) -> CommandError {
    CommandError::Unavailable(why.to_string())
}

/// How long a command may wait for a writer, given the lease's time to live.
pub fn budget(lease_ttl: Duration) -> Duration {
    (lease_ttl + Duration::from_millis(1500)).min(MOST_BUDGET)
}

/// What delivering a command needs; cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    pub node_id: String,
    pub role: Role,
    /// The lease bucket, read when the holder this process knows of does
    /// not write (its watch may lag after a NATS server is lost).
    pub lease: kv::Store,
    pub asker: Asker,
    pub signer: Arc<EventSigner>,
    pub js: jetstream::Context,
    pub projections: Projections,
    pub budget: Duration,
}

impl Deliver for Delivery {
    fn deliver(&self, command: Command, writer: Writer) -> BoxFuture<'static, Answer> {
        let d = self.clone();
        Box::pin(async move { deliver(&d, &writer, command).await })
    }
}

/// One command on its way, with what its tries share.
struct Delivering {
    id: Ulid,
    valid_until: Timestamp,
    sealed: Option<Vec<u8>>,
    inbox: Option<Inbox>,
    /// Whether a try may have been carried out without this process
    /// hearing so.
    maybe_done: bool,
}

enum Tried {
    Done(Answer),
    /// Not carried out by this try (no writer, or not this one).
    NotDone,
    /// Perhaps carried out; no final answer.
    Unknown,
}

async fn deliver(d: &Delivery, writer: &Writer, command: Command) -> Answer {
    let started = Instant::now();
    let deadline = started + d.budget;
    let valid_until = Timestamp::now()
        .checked_add(d.budget)
        .map_err(unavailable)?;
    let mut this = Delivering {
        id: Ulid::new(),
        valid_until,
        sealed: None,
        inbox: None,
        maybe_done: false,
    };
    let mut part = d.role.watch();
    let mut holder = d.role.watch_holder();
    loop {
        part.borrow_and_update();
        holder.borrow_and_update();
        match try_once(d, writer, &command, &mut this).await {
            Tried::Done(answer) => return answer,
            Tried::NotDone => {}
            Tried::Unknown => this.maybe_done = true,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if !d.role.is_writer()
            && let Ok(Ok(now)) = tokio::time::timeout(READ_LEASE, lease::holder_now(&d.lease)).await
        {
            // Wakes the wait below at once if the lease changed hands.
            d.role.set_holder(now);
        }
        // Until the lease changes hands, this process's part changes, or a
        // while has passed.
        tokio::select! {
            _ = part.changed() => {}
            _ = holder.changed() => {}
            () = tokio::time::sleep(LOOK_AGAIN.min(left)) => {}
        }
    }
    if !this.maybe_done {
        return Err(unavailable("no process could record it in time"));
    }
    settle(d, writer, &command, this.valid_until).await
}

/// One try: here if this process writes, else with the lease holder.
async fn try_once(
    d: &Delivery,
    writer: &Writer,
    command: &Command,
    this: &mut Delivering,
) -> Tried {
    if d.role.is_writer() {
        return match writer
            .execute_until(command.clone(), Some(this.valid_until))
            .await
        {
            Err(CommandError::NotWriter) => Tried::NotDone,
            Err(CommandError::Unavailable(_) | CommandError::Store(_)) => Tried::Unknown,
            answer => Tried::Done(answer),
        };
    }
    let Some(holder) = d.role.holder().filter(|h| h.node_id != d.node_id) else {
        // Nobody holds the lease, or this process does and is not writing
        // yet: wait for that to change.
        return Tried::NotDone;
    };
    let sealed = match &this.sealed {
        Some(sealed) => sealed,
        None => match forward::seal_as(this.id, command, this.valid_until, &d.signer) {
            Ok(sealed) => this.sealed.insert(sealed),
            Err(e) => return Tried::Done(Err(e)),
        },
    };
    let inbox = match &mut this.inbox {
        Some(inbox) => inbox,
        None => match Inbox::open(&d.asker.client).await {
            Ok(inbox) => this.inbox.insert(inbox),
            Err(_) => return Tried::NotDone,
        },
    };
    match d
        .asker
        .ask(inbox, &holder.node_id, this.id, sealed, TRY)
        .await
    {
        Heard::Answer(Ok(answer)) => {
            let mut head = writer.head();
            let reached =
                tokio::time::timeout(CATCH_UP_TIMEOUT, head.wait_for(|h| *h >= answer.head)).await;
            if !matches!(reached, Ok(Ok(_))) {
                tracing::warn!(
                    writer_head = answer.head,
                    "answering a forwarded command before this process's log holds it"
                );
            }
            Tried::Done(Ok(answer.view))
        }
        Heard::Answer(Err(CommandError::NotWriter)) | Heard::NoResponders => Tried::NotDone,
        Heard::Answer(Err(e @ (CommandError::Unavailable(_) | CommandError::Store(_)))) => {
            tracing::debug!(error = %e, writer = holder.node_id, "a forwarded command was not recorded yet");
            Tried::Unknown
        }
        Heard::Answer(Err(e)) => Tried::Done(Err(e)),
        Heard::Nothing => Tried::Unknown,
    }
}

/// No final answer came within the command's time, but a writer may have
/// carried it out: once no writer can still store it, what the stream holds
/// says whether it happened.
async fn settle(
    d: &Delivery,
    writer: &Writer,
    command: &Command,
    valid_until: Timestamp,
) -> Answer {
    let left = valid_until.duration_since(Timestamp::now());
    let after = Duration::try_from(left)
        .unwrap_or(Duration::ZERO)
        .saturating_add(IN_FLIGHT);
    tokio::time::sleep(after).await;
    let caught_up = tokio::time::timeout(CATCH_UP_TIMEOUT, async {
        let last = crate::restore::stream_last(&d.js).await.ok()?;
        let mut head = writer.head();
        head.wait_for(|h| *h >= last).await.ok().map(drop)
    })
    .await;
    let unknown =
        || unavailable("no writer answered in time; whether it was recorded cannot be told yet");
    if !matches!(caught_up, Ok(Some(()))) {
        return Err(unknown());
    }
    let Some(hash) = command.makes() else {
        // Not a command that makes a token: it was recorded or not, and
        // trying it again does no harm (a revocation, a policy).
        return Err(unknown());
    };
    match d.projections.token_by_hash(hash) {
        Ok(Some(view)) if command.made(&view) => {
            tracing::info!(token.id = %view.id, "a command whose answer was lost was carried out");
            Ok(Some(view))
        }
        Ok(_) => Err(unavailable("no process could record it in time")),
        Err(e) => Err(CommandError::Store(e.to_string())),
    }
}
