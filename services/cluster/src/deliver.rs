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
//! The answer to a command that makes a token (a creation, a rotation) says
//! it happened exactly when it did: if no writer gave a final answer within
//! the command's time but one may have carried it out, this process waits
//! until no writer can still store it (its time, and then the time a
//! decided group may take to reach the stream), catches up with the stream
//! and looks for the token. Found: the command happened, and is answered as
//! such; not found: it did not and never will. (A revocation or a policy
//! whose answer was lost is answered `503`: trying it again does no harm.)

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use enspace_core::TokenView;
use enspace_store::keyring::Keyring;
use futures::future::BoxFuture;
use jiff::Timestamp;
use ulid::Ulid;

use super::commit::ACK_TIMEOUT;
use super::forward::{self, Asker, Heard, Inbox};
use super::{Role, catch_up, lease};
use enspace_store::commands::{Command, CommandError};
use enspace_store::writer::{Deliver, Writer};
use enspace_store::{EventLog, Projections};

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
/// How long it leaves that to the follower before getting the events
/// itself (the follower may be on a NATS server that died).
const FOLLOWER_FIRST: Duration = Duration::from_millis(100);
/// After a command's time: how long a writer that decided it just in time
/// may still take to store it.
const IN_FLIGHT: Duration = ACK_TIMEOUT.saturating_add(Duration::from_millis(500));
/// How long, after that, the stream is asked what happened (it may be
/// electing a leader: JetStream takes up to about 10 s).
const MOST_ASKING: Duration = Duration::from_secs(15);

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
    pub keys: Keyring,
    /// With a short request timeout.
    pub js: jetstream::Context,
    pub log: EventLog,
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
    Done(Box<Answer>),
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
            Tried::Done(answer) => return *answer,
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
    if command.makes().is_none() {
        // A revocation or a policy: recorded or not, trying it again does
        // no harm, and what it did is not told by a secret hash.
        return Err(unavailable(
            "no writer answered in time; it may have been recorded, and may be tried again",
        ));
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
            answer => Tried::Done(Box::new(answer)),
        };
    }
    let Some(holder) = d.role.holder().filter(|h| h.node_id != d.node_id) else {
        // Nobody holds the lease, or this process does and is not writing
        // yet: wait for that to change.
        return Tried::NotDone;
    };
    let sealed = match &this.sealed {
        Some(sealed) => sealed,
        None => match forward::seal_as(this.id, command, this.valid_until, &d.keys.current()) {
            Ok(sealed) => this.sealed.insert(sealed),
            Err(e) => return Tried::Done(Box::new(Err(e))),
        },
    };
    let inbox = match &mut this.inbox {
        Some(inbox) => inbox,
        None => match Inbox::open(&d.asker.client).await {
            Ok(inbox) => this.inbox.insert(inbox),
            Err(_) => return Tried::NotDone,
        },
    };
    let heard = d
        .asker
        .ask(inbox, &holder.node_id, this.id, sealed, TRY)
        .await;
    let reply = match heard {
        Heard::Answer(reply) => *reply,
        Heard::NoResponders => return Tried::NotDone,
        Heard::Nothing => return Tried::Unknown,
    };
    match reply {
        Ok(answer) => {
            if !holds(d, writer, answer.head).await {
                tracing::warn!(
                    writer_head = answer.head,
                    "answering a forwarded command before this process's log holds it"
                );
            }
            Tried::Done(Box::new(Ok(answer.view)))
        }
        Err(CommandError::NotWriter) => Tried::NotDone,
        Err(e @ (CommandError::Unavailable(_) | CommandError::Store(_))) => {
            tracing::debug!(error = %e, writer = holder.node_id, "a forwarded command was not recorded yet");
            Tried::Unknown
        }
        Err(e) => Tried::Done(Box::new(Err(e))),
    }
}

/// Waits until this process's log holds `target`: the follower's doing,
/// or after a moment this process's own.
async fn holds(d: &Delivery, writer: &Writer, target: u64) -> bool {
    let mut head = writer.head();
    let reached = tokio::time::timeout(CATCH_UP_TIMEOUT, async {
        let followed = matches!(
            tokio::time::timeout(FOLLOWER_FIRST, head.wait_for(|h| *h >= target)).await,
            Ok(Ok(_))
        );
        if followed {
            return true;
        }
        if let Err(e) = catch_up::fetch_until(&d.js, &d.log, writer, &d.keys, Some(target)).await {
            tracing::debug!(error = %e, "cannot fetch the events the log lacks");
        }
        head.wait_for(|h| *h >= target).await.is_ok()
    })
    .await;
    reached.unwrap_or(false)
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
    // The stream may still be electing a leader: ask until it answers.
    let asked_until = Instant::now() + MOST_ASKING;
    loop {
        if let Ok(last) = crate::log_recovery::stream_last(&d.js).await
            && holds(d, writer, last).await
        {
            break;
        }
        if Instant::now() >= asked_until {
            tracing::warn!(
                "a write whose answer was lost is answered 503, and the token events stream cannot tell whether it was recorded"
            );
            return Err(unavailable(
                "no writer answered in time; whether it was recorded cannot be told yet",
            ));
        }
        tokio::time::sleep(LOOK_AGAIN).await;
    }
    let Some(hash) = command.makes() else {
        return Err(unavailable("no process could record it in time"));
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
