//! The event log's side of NATS.
//!
//! Every control plane with NATS: [`outbox`] publishes the log to the
//! token events stream, [`heartbeat`] tells API nodes how far it is,
//! [`log_recovery`] checks the stream against the log at start (or
//! restores the log from it), [`event_stream`] reads, classifies and
//! repairs what the stream holds, and [`edge`] keeps the streams API nodes
//! use.
//!
//! With `--cluster`, several control-plane processes share one NATS (or
//! NATS cluster), one writer at a time.
//!
//! - [`lease`]: the writer is whoever holds the key `writer` in the KV
//!   bucket `ENSPACE_CONTROL_LEASE`, whose entries expire after the lease's
//!   time to live unless renewed (revision-checked updates, so only the
//!   holder renews). A process that wins the lease first catches up with
//!   the token events stream, then writes.
//! - [`commit`]: the writer stores each group of events in the token events
//!   stream with `Nats-Expected-Last-Sequence` before its own sled log: a
//!   deposed writer's append is refused by the stream, so the chain cannot
//!   fork, and it holds nothing the stream lacks.
//! - [`follow`]: every process folds the stream into its own log and
//!   projections (chain hashes recomputed, signatures checked), and serves
//!   every read from them.
//! - [`forward`]: a command reaching another process is sent to the writer
//!   over NATS request/reply and answered once this process holds the
//!   result, so the caller reads its write on the next call wherever it lands.
//! - [`deliver`]: a command goes to whichever process writes, its own
//!   included, as soon as there is one; each carries an id the writer
//!   carries out at most once ([`once`]), and is answered `201` exactly when
//!   it happened.
//! - [`barrier`]: an authenticated read on a process that is not the writer
//!   first catches up with the stream, so it sees every change acknowledged
//!   anywhere.
//! - [`members`]: each process's head, for `GET /v1/cluster`.
//! - [`partitions`]: which processes index which partition of the request
//!   records (two owners each), kept by the writer in a KV bucket.
//! - [`session_mirror`]: sessions copied between processes through a KV bucket.
//!
//! Every process of a cluster signs with the same event signing key: API
//! nodes and followers check every event against it, whoever wrote it.

pub mod barrier;
pub mod catch_up;
pub mod commit;
pub mod deliver;
pub mod edge;
pub mod event_stream;
pub mod follow;
pub mod forward;
pub mod handle;
pub mod heartbeat;
pub mod lead;
pub mod lease;
pub mod log_recovery;
pub mod members;
pub mod once;
pub mod outbox;
pub mod partitions;
pub mod session_mirror;
pub mod start;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The KV bucket of the writer lease.
pub const LEASE_BUCKET: &str = "ENSPACE_CONTROL_LEASE";
/// The KV bucket where each process says how far it is.
pub const MEMBERS_BUCKET: &str = "ENSPACE_CONTROL_MEMBERS";
/// The KV bucket of sessions.
pub const SESSIONS_BUCKET: &str = "ENSPACE_SESSIONS";
/// Commands forwarded to the writer: `enspace.control.commands.<node id>`.
pub const COMMANDS_SUBJECT_PREFIX: &str = "enspace.control.commands.";

/// What the cluster's processes count.
#[derive(Clone, Default)]
pub struct ClusterMetrics {
    /// Session records in the sessions bucket that were not taken.
    pub session_records_refused: prometheus_client::metrics::counter::Counter,
    /// Reads that first asked the token events stream how far it is.
    pub read_barriers: prometheus_client::metrics::counter::Counter,
    /// Replies to a forwarded command that were not the writer's signed
    /// answer to it.
    pub forward_replies_ignored: prometheus_client::metrics::counter::Counter,
}

impl ClusterMetrics {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = ClusterMetrics::default();
        registry.register(
            "enspace_session_records_refused",
            "Session records in ENSPACE_SESSIONS ignored: unreadable, not signed by the event key, or lasting longer than a session",
            m.session_records_refused.clone(),
        );
        registry.register(
            "enspace_read_barriers",
            "Authenticated reads on a process that was not the writer that first asked the token events stream for its last event",
            m.read_barriers.clone(),
        );
        registry.register(
            "enspace_forward_replies_ignored",
            "Replies to a forwarded command that were not the writer's signed answer to it",
            m.forward_replies_ignored.clone(),
        );
        m
    }
}

/// How a process takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This process's id: a NATS subject token and KV key.
    pub node_id: String,
    /// How long the lease lasts without renewal: how long writes wait for a
    /// new writer after the old one dies.
    pub lease_ttl: Duration,
    /// Replicas of every `ENSPACE_` stream and bucket this process creates.
    pub replicas: usize,
}

impl ClusterConfig {
    /// Checks the node id can name a subject and a key.
    pub fn validate(&self) -> Result<(), String> {
        let ok = !self.node_id.is_empty()
            && self.node_id.len() <= 64
            && self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "the node id {:?} must be 1 to 64 letters, digits, '-' or '_' in a cluster",
                self.node_id
            ));
        }
        if self.lease_ttl < Duration::from_millis(500) {
            return Err("the lease must last at least 500ms".into());
        }
        Ok(())
    }
}

/// This process's part right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Follows the stream; forwards commands.
    Follower,
    /// Holds the lease (term), catching up before it writes.
    Preparing(u64),
    /// Holds the lease (term) and writes.
    Writer(u64),
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Follower => "follower",
            Part::Preparing(_) => "preparing",
            Part::Writer(_) => "writer",
        }
    }
}

/// Who holds the lease, as last seen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseHolder {
    pub node_id: String,
    pub term: u64,
}

/// This process's part and the lease holder it knows of, shared by the
/// lease loop, the commit path and the forwarder.
#[derive(Clone)]
pub struct Role {
    part: watch::Sender<Part>,
    holder: watch::Sender<Option<LeaseHolder>>,
    /// When the lease was last renewed (sent), and how long after that this
    /// process may still act as the writer; `None`: no lease is kept (tests).
    renewed: Arc<Mutex<Option<(Instant, Duration)>>>,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            part: watch::Sender::new(Part::Follower),
            holder: watch::Sender::new(None),
            renewed: Arc::default(),
        }
    }
}

impl Role {
    /// The part as last set. Whether this process may act as the writer
    /// right now is [`Role::is_writer`].
    pub fn part(&self) -> Part {
        *self.part.borrow()
    }

    /// Writer, and its lease renewed recently enough that nobody else can
    /// hold it: checked on every use, so a process resumed after a pause
    /// (SIGSTOP) past its lease neither writes nor skips the read barrier
    /// before its lease loop has run.
    pub fn is_writer(&self) -> bool {
        matches!(self.part(), Part::Writer(_))
            && self.renewed.lock().ok().is_some_and(|r| match *r {
                Some((at, valid_for)) => at.elapsed() < valid_for,
                None => true,
            })
    }

    /// Records a successful renewal sent at `at`, valid for `valid_for`.
    pub fn renewed(&self, at: Instant, valid_for: Duration) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = Some((at, valid_for));
        }
    }

    /// Preparing(term) becomes Writer(term), in one step: if the lease was
    /// lost meanwhile, nothing changes.
    pub fn promote(&self, term: u64) -> bool {
        self.part.send_if_modified(|now| {
            if *now == Part::Preparing(term) {
                tracing::info!(term, "cluster role: writer");
                *now = Part::Writer(term);
                true
            } else {
                false
            }
        })
    }

    pub fn watch(&self) -> watch::Receiver<Part> {
        self.part.subscribe()
    }

    pub fn set(&self, part: Part) {
        self.part.send_if_modified(|now| {
            let changed = *now != part;
            if changed {
                tracing::info!(
                    from = now.as_str(),
                    to = part.as_str(),
                    "cluster role: {}",
                    part.as_str()
                );
            }
            *now = part;
            changed
        });
    }

    /// The stream refused an append: while still holding the lease, catch
    /// up with the stream again before writing.
    pub fn fenced(&self) {
        self.part.send_if_modified(|now| match *now {
            Part::Writer(term) => {
                tracing::warn!(
                    term,
                    "the token events stream refused an append; catching up before writing again"
                );
                *now = Part::Preparing(term);
                true
            }
            _ => false,
        });
    }

    pub fn holder(&self) -> Option<LeaseHolder> {
        self.holder.borrow().clone()
    }

    /// Follows who holds the lease: a forwarded write waiting for a writer
    /// goes ahead as soon as one takes it.
    pub fn watch_holder(&self) -> watch::Receiver<Option<LeaseHolder>> {
        self.holder.subscribe()
    }

    pub fn set_holder(&self, holder: Option<LeaseHolder>) {
        self.holder.send_if_modified(|now| {
            let changed = *now != holder;
            *now = holder;
            changed
        });
    }
}
