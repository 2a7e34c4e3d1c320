//! The single writer. Commands arrive on a channel; the writer decides each
//! one against the current state, appends the resulting events to the log
//! with the next `seq` and the chained hash, folds them into the
//! projections, and flushes once for the whole group before answering any
//! of it. Appends are serialised here, so `seq` has no gaps and the chain
//! never forks; grouping lets many concurrent creations share one flush.

use std::collections::HashMap;
use std::sync::Arc;

use enspace_core::events::StoredEvent;
use enspace_core::{Clock, EventEnvelope, TokenView};
use tokio::sync::{mpsc, oneshot, watch};
use ulid::Ulid;

use super::event_log::encode_seq;
use super::{Store, StoreError};
use crate::commands::{Command, CommandError, decide};
use crate::metrics::Metrics;

/// Most commands decided and flushed together.
const MAX_GROUP: usize = 1024;
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<TokenView, CommandError>>;

/// Called with every group of events once it is durable, before any of the
/// group's commands is answered.
pub type CommitHook = Box<dyn Fn(&[EventEnvelope]) + Send + Sync>;
type Hooks = Arc<std::sync::RwLock<Vec<CommitHook>>>;

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<(Command, Reply)>,
    head: watch::Receiver<u64>,
    hooks: Hooks,
}

impl Writer {
    /// Starts the writer thread over an opened store.
    pub fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let (seq, hash) = store.log.head()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (head_tx, head) = watch::channel(seq);
        let hooks = Hooks::default();
        metrics.event_log_length.set(seq as i64);
        let state = WriterState {
            store,
            clock,
            metrics,
            seq,
            hash,
            ulids: ulid::Generator::new(),
            head_tx,
            hooks: hooks.clone(),
        };
        std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer: {e}")))?;
        Ok(Writer { tx, head, hooks })
    }

    /// Decides and durably records a command; answers the token's state after it.
    pub async fn execute(&self, command: Command) -> Result<TokenView, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((command, reply))
            .await
            .map_err(|_| CommandError::Store("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| CommandError::Store("the writer has stopped".into()))?
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
    metrics: Metrics,
    seq: u64,
    hash: [u8; 32],
    ulids: ulid::Generator,
    head_tx: watch::Sender<u64>,
    hooks: Hooks,
}

impl WriterState {
    fn run(mut self, mut rx: mpsc::Receiver<(Command, Reply)>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        if let Err(e) = self.store.db.flush() {
            tracing::error!(error = %e, "final flush of the event store failed");
        }
    }

    fn commit(&mut self, group: Vec<(Command, Reply)>) {
        let (start_seq, start_hash) = (self.seq, self.hash);
        let mut overlay: HashMap<Ulid, Option<TokenView>> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut appended: Vec<EventEnvelope> = Vec::new();
        let mut answers: Vec<(Reply, Result<TokenView, CommandError>)> = Vec::new();

        for (mut command, reply) in group {
            if let Command::CreateToken(create) = &mut command {
                // The writer names new tokens, so ids sort in creation order.
                create.token_id = self.ulids.generate().unwrap_or_else(|_| Ulid::new());
            }
            let token_id = command.token_id();
            let current = match overlay.get(&token_id) {
                Some(view) => view.clone(),
                None => match self.store.projections.token(token_id) {
                    Ok(view) => view,
                    Err(e) => {
                        answers.push((reply, Err(CommandError::Store(e.to_string()))));
                        continue;
                    }
                },
            };
            let now = self.clock.now();
            match decide(&command, current.as_ref(), now) {
                Ok(Some(event)) => {
                    let id = self.ulids.generate().unwrap_or_else(|_| Ulid::new());
                    let envelope = EventEnvelope {
                        seq: self.seq + 1,
                        id,
                        at: now,
                        actor: command.actor().to_owned(),
                        token_id,
                        event,
                    };
                    let stored = StoredEvent::new(self.hash, &envelope);
                    batch.insert(&encode_seq(envelope.seq)[..], stored.to_bytes());
                    self.seq = envelope.seq;
                    self.hash = stored.hash;
                    let next = enspace_core::fold::apply(current, &envelope);
                    overlay.insert(token_id, next.clone());
                    appended.push(envelope);
                    let answer = next.ok_or(CommandError::TokenNotFound);
                    answers.push((reply, answer));
                }
                Ok(None) => {
                    let answer = current.ok_or(CommandError::TokenNotFound);
                    answers.push((reply, answer));
                }
                Err(e) => answers.push((reply, Err(e))),
            }
        }

        if !appended.is_empty() {
            if let Err(e) = self.persist(batch, &appended) {
                tracing::error!(error = %e, "appending to the event log failed");
                // Nothing of this group is acknowledged; start over from what is on disk.
                (self.seq, self.hash) = self.store.log.head().unwrap_or((start_seq, start_hash));
                let _ = self.store.projections.catch_up(&self.store.log);
                for (reply, _) in answers {
                    let _ = reply.send(Err(CommandError::Store(e.to_string())));
                }
                return;
            }
            for envelope in &appended {
                match envelope.event {
                    enspace_core::TokenEvent::TokenCreated(_) => self.metrics.tokens_created.inc(),
                    enspace_core::TokenEvent::TokenRevoked(_) => self.metrics.tokens_revoked.inc(),
                };
            }
            self.metrics.event_log_length.set(self.seq as i64);
            if let Ok(hooks) = self.hooks.read() {
                for hook in hooks.iter() {
                    hook(&appended);
                }
            }
            self.head_tx.send_replace(self.seq);
        }
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
    }

    /// Appends, folds and flushes the group, then records the new head in
    /// the head file: only then is any of it acknowledged.
    fn persist(&self, batch: sled::Batch, appended: &[EventEnvelope]) -> Result<(), StoreError> {
        self.store.log.tree().apply_batch(batch)?;
        self.store.projections.apply(appended)?;
        self.store.db.flush()?;
        let mut head = self
            .store
            .head
            .lock()
            .map_err(|_| StoreError::Corrupt("the head file's lock is poisoned".into()))?;
        head.write(super::Head {
            seq: self.seq,
            hash: self.hash,
        })?;
        Ok(())
    }
}
