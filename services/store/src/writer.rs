//! The single writer. Commands arrive on a channel; the writer decides each
//! one against the current state, appends the resulting events to the log
//! with the next `seq` and the chained hash, folds them into the
//! projections, and flushes once for the whole group before answering any
//! of it. Appends are serialised here, so `seq` has no gaps and the chain
//! never forks; grouping lets many concurrent creations share one flush.
//!
//! In a cluster of control-plane processes ([`Commit`]) only the process
//! holding the writer lease decides commands, and a group's events count
//! only once the token events stream has stored them: they are persisted
//! here after the stream's acknowledgement, never before, so a deposed
//! writer (whose appends the stream refuses) holds nothing the stream lacks.
//! Every other process appends the stream's events as they come
//! ([`Writer::replicate`]), through this same thread.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use enspace_core::events::{SigningKeyRotated, StoredEvent, TokenEventRef};
use enspace_core::{Clock, EventEnvelope, TokenEvent, TokenView, WorkspacePolicy};
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use ulid::Ulid;

use super::event_log::encode_seq;
use super::{Store, StoreError};
use crate::commands::{Command, CommandError, Target, decide};
use crate::counters::EventCounters;

/// Most commands decided and flushed together.
const MAX_GROUP: usize = 1024;
const QUEUE: usize = 4096;

/// The token the command is about after it, if it is about one.
type Answer = Result<Option<TokenView>, CommandError>;
type Reply = oneshot::Sender<Answer>;

/// An event another process committed, read from the token events stream
/// with its signature already checked.
#[derive(Debug, Clone)]
pub struct Replicated {
    pub envelope: EventEnvelope,
    pub stored: StoredEvent,
    pub signature: [u8; 64],
    /// Its stream sequence.
    pub at: u64,
}

/// A command, the time after which it must not be decided (a forwarded
/// one's), and where its answer goes.
type Asked = (Command, Option<Timestamp>, Reply);

enum Message {
    /// Boxed: a command (a creation with its fences above all) is far
    /// larger than the other message, and one allocation per command is
    /// nothing beside its flush.
    Command(Box<Asked>),
    Replicate(Vec<Replicated>, oneshot::Sender<Result<u64, StoreError>>),
}

/// What the stream stored of a group: the first `count` events, with their
/// signatures, the last of them at stream sequence `at`; `error` says why
/// the rest were not.
pub struct Stored {
    pub count: usize,
    pub signatures: Vec<(u64, [u8; 64])>,
    pub at: u64,
    pub error: Option<CommandError>,
}

/// The cluster's side of committing (see the module's documentation).
pub trait Commit: Send + Sync {
    /// Whether this process may decide commands now.
    fn is_writer(&self) -> bool;
    /// The key id the signatures of [`Commit::store`] are made with.
    fn key_id(&self) -> String;
    /// Stores the group's events in the token events stream, in order,
    /// each only right after the one before it. Called on the writer thread.
    fn store(&self, events: &[&StoredEvent], envelopes: &[EventEnvelope]) -> Stored;
}

/// How a cluster's process has a command decided (see
/// `cluster/deliver.rs` of the control plane).
pub trait Deliver: Send + Sync {
    /// Has whichever process writes (this one included) decide `command`,
    /// through `writer` when it is this one; resolves once this process
    /// holds the result.
    fn deliver(
        &self,
        command: Command,
        writer: Writer,
    ) -> futures::future::BoxFuture<'static, Answer>;
}

type CommitCell = Arc<OnceLock<Arc<dyn Commit>>>;
type DeliverCell = Arc<OnceLock<Arc<dyn Deliver>>>;

/// The key id and signatures of events the stream holds already, and the
/// stream sequence of the last of them.
type InStream<'a> = (&'a str, &'a [(u64, [u8; 64])], u64);

/// Called with every group of events once it is durable, before any of the
/// group's commands is answered.
pub type CommitHook = Box<dyn Fn(&[EventEnvelope]) + Send + Sync>;
type Hooks = Arc<std::sync::RwLock<Vec<CommitHook>>>;

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Message>,
    head: watch::Receiver<u64>,
    hooks: Hooks,
    commit: CommitCell,
    deliver: DeliverCell,
}

impl Writer {
    /// Starts the writer thread over an opened store.
    pub fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        counters: EventCounters,
    ) -> Result<Self, StoreError> {
        let (seq, hash) = store.log.head()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (head_tx, head) = watch::channel(seq);
        let hooks = Hooks::default();
        let commit = CommitCell::default();
        counters.event_log_length.set(seq as i64);
        let state = WriterState {
            store,
            clock,
            counters,
            seq,
            hash,
            ulids: ulid::Generator::new(),
            head_tx,
            hooks: hooks.clone(),
            commit: commit.clone(),
        };
        std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer: {e}")))?;
        Ok(Writer {
            tx,
            head,
            hooks,
            commit,
            deliver: DeliverCell::default(),
        })
    }

    /// Makes this writer one of a cluster's: commands are decided only
    /// while `commit` says this process is the writer, and `deliver` takes
    /// them to whichever process writes. Set once, before serving.
    pub fn join_cluster(&self, commit: Arc<dyn Commit>, deliver: Arc<dyn Deliver>) {
        let _ = self.commit.set(commit);
        let _ = self.deliver.set(deliver);
    }

    /// Decides and durably records a command about a token; answers the
    /// token's state after it. In a cluster, a process that is not the
    /// writer forwards it.
    pub async fn execute(&self, command: Command) -> Result<TokenView, CommandError> {
        self.record(command)
            .await?
            .ok_or(CommandError::TokenNotFound)
    }

    /// Decides and durably records any command; answers the state of the
    /// token it is about, if it is about one. In a cluster, whichever
    /// process writes decides it.
    pub async fn record(&self, command: Command) -> Answer {
        match self.deliver.get() {
            Some(deliver) => deliver.deliver(command, self.clone()).await,
            None => self.execute_here(command).await,
        }
    }

    /// Decides `command` on this process, which must be the writer.
    pub async fn execute_here(&self, command: Command) -> Answer {
        self.execute_until(command, None).await
    }

    /// Decides `command` on this process, which must be the writer, unless
    /// `deadline` has passed by the time it would be decided.
    pub async fn execute_until(&self, command: Command, deadline: Option<Timestamp>) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Message::Command(Box::new((command, deadline, reply))))
            .await
            .map_err(|_| CommandError::Store("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| CommandError::Store("the writer has stopped".into()))?
    }

    /// Appends events the stream holds (another process committed them)
    /// after the log's head; events the log holds already are compared and
    /// skipped. Answers the head after them.
    pub async fn replicate(&self, events: Vec<Replicated>) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Corrupt("the writer has stopped".into());
        self.tx
            .send(Message::Replicate(events, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `hook` on every group of events once it is durable and before
    /// its commands are answered (the embedded API node's replica uses it,
    /// so a revocation is in force there before `DELETE` answers).
    pub fn on_commit(&self, hook: impl Fn(&[EventEnvelope]) + Send + Sync + 'static) {
        if let Ok(mut hooks) = self.hooks.write() {
            hooks.push(Box::new(hook));
        }
    }

    /// The `seq` of the last durable event, updated after every flush.
    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }
}

struct WriterState {
    store: Store,
    clock: Arc<dyn Clock>,
    counters: EventCounters,
    seq: u64,
    hash: [u8; 32],
    ulids: ulid::Generator,
    head_tx: watch::Sender<u64>,
    hooks: Hooks,
    commit: CommitCell,
}

impl WriterState {
    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut next = None;
        loop {
            let first = match next.take() {
                Some(message) => message,
                None => match rx.blocking_recv() {
                    Some(message) => message,
                    None => break,
                },
            };
            match first {
                Message::Replicate(events, reply) => {
                    let _ = reply.send(self.replicate(events));
                }
                Message::Command(asked) => {
                    let mut group = vec![*asked];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(Message::Command(asked)) => group.push(*asked),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(group);
                }
            }
        }
        if let Err(e) = self.store.db.flush() {
            tracing::error!(error = %e, "final flush of the event store failed");
        }
    }

    fn commit(&mut self, group: Vec<Asked>) {
        let commit = self.commit.get().cloned();
        if let Some(commit) = &commit
            && !commit.is_writer()
        {
            for (_, _, reply) in group {
                let _ = reply.send(Err(CommandError::NotWriter));
            }
            return;
        }
        let (start_seq, start_hash) = (self.seq, self.hash);
        let mut overlay: HashMap<Ulid, Option<TokenView>> = HashMap::new();
        let mut appended: Vec<EventEnvelope> = Vec::new();
        let mut stored_events: Vec<StoredEvent> = Vec::new();
        // Each answer with how many of the group's events it depends on.
        let mut answers: Vec<(Reply, Answer, usize)> = Vec::new();
        let mut policies: HashMap<String, WorkspacePolicy> = HashMap::new();

        for (mut command, deadline, reply) in group {
            if deadline.is_some_and(|deadline| Timestamp::now() > deadline) {
                let late =
                    CommandError::Unavailable("its time passed before it was decided".into());
                answers.push((reply, Err(late), appended.len()));
                continue;
            }
            // Carried out already (a copy of a command whose answer was
            // lost): the first answer again, nothing recorded twice.
            match self.made_already(&command, &overlay) {
                Ok(None) => {}
                Ok(Some(answer)) => {
                    answers.push((reply, answer, appended.len()));
                    continue;
                }
                Err(e) => {
                    answers.push((
                        reply,
                        Err(CommandError::Store(e.to_string())),
                        appended.len(),
                    ));
                    continue;
                }
            }
            // The writer names new tokens, so ids sort in creation order.
            match &mut command {
                Command::CreateToken(create) => create.token_id = self.new_id(),
                Command::RotateToken(rotate) => rotate.successor = self.new_id(),
                _ => {}
            }
            let found = self.target(&command, &overlay).and_then(|token_id| {
                let current = self.state_of(token_id, &overlay)?;
                for workspace in command.workspaces(current.as_ref()) {
                    if !policies.contains_key(workspace) {
                        let policy = self.store.projections.policy(workspace)?;
                        policies.insert(workspace.clone(), policy);
                    }
                }
                Ok((token_id, current))
            });
            let (token_id, current) = match found {
                Ok(found) => found,
                Err(e) => {
                    let depends = appended.len();
                    answers.push((reply, Err(CommandError::Store(e.to_string())), depends));
                    continue;
                }
            };
            if let Command::RotateEventKey(rotated) = &command
                && let Err(e) = self.rotation_in_force(rotated, &appended)
            {
                answers.push((reply, Err(e), appended.len()));
                continue;
            }
            let now = self.clock.now();
            let policy = |workspace: &str| policies.get(workspace).cloned().unwrap_or_default();
            let decision = match decide(&command, token_id, current.as_ref(), &policy, now) {
                Ok(decision) => decision,
                Err(e) => {
                    answers.push((reply, Err(e), appended.len()));
                    continue;
                }
            };
            overlay.entry(token_id).or_insert(current);
            for (event_token, event) in decision.events {
                if let TokenEvent::WorkspacePolicySet(set) = &event {
                    policies.insert(set.workspace.clone(), set.policy());
                }
                // The decision's own token is in the overlay by now, and a
                // new one is in no tree: this read cannot fail.
                let state = self.state_of(event_token, &overlay).unwrap_or_default();
                let envelope = EventEnvelope {
                    seq: self.seq + 1,
                    id: self.new_id(),
                    at: now,
                    actor: command.actor().to_owned(),
                    token_id: event_token,
                    event,
                };
                let stored = StoredEvent::new(self.hash, &envelope);
                self.seq = envelope.seq;
                self.hash = stored.hash;
                overlay.insert(event_token, enspace_core::fold::apply(state, &envelope));
                appended.push(envelope);
                stored_events.push(stored);
            }
            let answer = match decision.answer {
                Some(id) => overlay
                    .get(&id)
                    .cloned()
                    .flatten()
                    .map(Some)
                    .ok_or(CommandError::TokenNotFound),
                None => Ok(None),
            };
            answers.push((reply, answer, appended.len()));
        }

        let mut signatures = Vec::new();
        let mut at = 0;
        if let Some(commit) = &commit
            && !appended.is_empty()
        {
            let refs: Vec<&StoredEvent> = stored_events.iter().collect();
            let stored = commit.store(&refs, &appended);
            if stored.count < appended.len() {
                let why = stored
                    .error
                    .unwrap_or_else(|| CommandError::Unavailable("not stored".into()));
                appended.truncate(stored.count);
                stored_events.truncate(stored.count);
                (self.seq, self.hash) = stored_events.last().map_or((start_seq, start_hash), |s| {
                    (start_seq + stored.count as u64, s.hash)
                });
                answers = answers
                    .into_iter()
                    .map(|(reply, answer, depends)| {
                        if depends > stored.count {
                            (reply, Err(why.clone()), depends)
                        } else {
                            (reply, answer, depends)
                        }
                    })
                    .collect();
            }
            signatures = stored.signatures;
            at = stored.at;
        }
        let mut batch = sled::Batch::default();
        for (envelope, stored) in appended.iter().zip(&stored_events) {
            batch.insert(&encode_seq(envelope.seq)[..], stored.to_bytes());
        }

        if !appended.is_empty() {
            let kept = commit
                .as_ref()
                .map(|c| (c.key_id(), signatures.as_slice(), at));
            let kept = kept.as_ref().map(|(k, s, at)| (k.as_str(), *s, *at));
            if let Err(e) = self.persist(batch, &appended, kept) {
                tracing::error!(error = %e, "appending to the event log failed");
                // Nothing of this group is acknowledged; start over from what is on disk.
                (self.seq, self.hash) = self.store.log.head().unwrap_or((start_seq, start_hash));
                if let Err(e) = self.store.projections.catch_up(&self.store.log) {
                    tracing::error!(error = %e, "folding the projections again failed");
                }
                for (reply, _, _) in answers {
                    let _ = reply.send(Err(CommandError::Store(e.to_string())));
                }
                return;
            }
            self.committed(&appended);
        }
        for (reply, answer, _) in answers {
            let _ = reply.send(answer);
        }
    }

    fn new_id(&mut self) -> Ulid {
        self.ulids.generate().unwrap_or_else(|_| Ulid::new())
    }

    /// The id of the token `command` is about: its own, or the one holding
    /// its secret hash (in this group's changes, or in the projections).
    fn target(
        &self,
        command: &Command,
        overlay: &HashMap<Ulid, Option<TokenView>>,
    ) -> Result<Ulid, StoreError> {
        match command.target() {
            Target::Id(id) => Ok(id),
            Target::Hash(hash) => {
                let in_group = overlay
                    .values()
                    .flatten()
                    .find(|view| view.secret_hash == *hash);
                match in_group {
                    Some(view) => Ok(view.id),
                    None => Ok(self
                        .store
                        .projections
                        .token_by_hash(hash)?
                        .map_or(Ulid::nil(), |view| view.id)),
                }
            }
        }
    }

    /// The token `command` makes, if it was made already: a token holding
    /// its secret hash (in this group's changes, or in the projections).
    fn made_already(
        &self,
        command: &Command,
        overlay: &HashMap<Ulid, Option<TokenView>>,
    ) -> Result<Option<Answer>, StoreError> {
        let Some(hash) = command.makes() else {
            return Ok(None);
        };
        let in_group = overlay
            .values()
            .flatten()
            .find(|view| view.secret_hash == *hash)
            .cloned();
        let found = match in_group {
            Some(view) => Some(view),
            None => self.store.projections.token_by_hash(hash)?,
        };
        Ok(found.map(|view| {
            if command.made(&view) {
                Ok(Some(view))
            } else {
                Err(CommandError::DuplicateToken)
            }
        }))
    }

    /// Refuses a key rotation that does not start from the key in force
    /// (another rotation came first): the log's keys form one chain.
    fn rotation_in_force(
        &self,
        rotated: &SigningKeyRotated,
        group: &[EventEnvelope],
    ) -> Result<(), CommandError> {
        let in_group = group.iter().rev().find_map(EventEnvelope::key_rotation);
        let last = match in_group {
            Some(r) => Some(r.key_id.clone()),
            None => self
                .store
                .projections
                .key_rotations()
                .map_err(|e| CommandError::Store(e.to_string()))?
                .pop()
                .map(|(_, r)| r.key_id),
        };
        match last {
            Some(in_force) if in_force != rotated.previous_key_id => {
                Err(CommandError::Unavailable(format!(
                    "the event key in force is {in_force}, not {}: rotate again",
                    rotated.previous_key_id
                )))
            }
            _ => Ok(()),
        }
    }

    /// A token's state with this group's changes so far.
    fn state_of(
        &self,
        token_id: Ulid,
        overlay: &HashMap<Ulid, Option<TokenView>>,
    ) -> Result<Option<TokenView>, StoreError> {
        match overlay.get(&token_id) {
            Some(view) => Ok(view.clone()),
            None => self.store.projections.token(token_id),
        }
    }

    /// Counts what was committed and tells the hooks and the head's watchers.
    fn committed(&self, appended: &[EventEnvelope]) {
        for (_, event) in appended.iter().filter_map(EventEnvelope::token_event) {
            match event {
                TokenEventRef::Created(_) => self.counters.tokens_created.inc(),
                TokenEventRef::Revoked(_) => self.counters.tokens_revoked.inc(),
                TokenEventRef::Rotated(_) => self.counters.tokens_rotated.inc(),
            };
        }
        self.counters.event_log_length.set(self.seq as i64);
        if let Ok(hooks) = self.hooks.read() {
            for hook in hooks.iter() {
                hook(appended);
            }
        }
        self.head_tx.send_replace(self.seq);
    }
}

mod persist;
