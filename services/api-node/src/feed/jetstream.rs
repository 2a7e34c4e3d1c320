//! Feeding the replica from JetStream, trusting nothing it reads (an API
//! node in its own process, or `enspace serve` with NATS).
//!
//! - Events come from the token events stream through an ordered consumer,
//!   from the first `seq` the node lacks. Each is placed on the chain the
//!   node holds and applied only with a valid signature by the pinned event
//!   key (see [`crate::chain`]); anything else is refused and counted.
//! - The key in force follows the log's rotations from the first pinned
//!   key ([`enspace_core::KeyChain`]); a break after a lost key is taken
//!   only to a key pinned explicitly.
//! - The control plane's signed heartbeat (core NATS, once a second) names
//!   the head of its log, signed by the key in force after it. It pins the
//!   key when none was given, keeps the
//!   node's [`Freshness`], restarts a feed that stopped moving, and reveals
//!   a replaced history.
//! - A stream that was reset (NATS store lost, stream deleted and refilled
//!   from the log) is simply followed again from where the node is: the
//!   stream is always a prefix of the one log, so the node keeps serving
//!   from its copy, which has every revocation it saw, until the stream
//!   extends it. A different history (same key, other first event) is
//!   rebuilt into a new replica beside the old one, which serves until the
//!   new one has caught up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use enspace_core::Backoff;
use enspace_core::signing::Heartbeat;
use enspace_core::{EventKey, KeyChain};
use futures::StreamExt;
use tokio::sync::{Notify, watch};

use crate::beats::BeatOrder;
use crate::chain::{self, Candidate, Chain, Refusal};
use crate::freshness::Freshness;
use crate::metrics::NodeMetrics;
use crate::replica::TokenReplica;

/// Events checked with one signature while catching up.
const CATCH_UP_RUN: usize = 1024;
/// Heartbeats remembered while the copy is behind them.
const MAX_PENDING_BEATS: usize = 256;
const MIN_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(1);

/// What the feed shares with its heartbeat listener.
pub struct Feed {
    js: jetstream::Context,
    client: async_nats::Client,
    replica: Arc<TokenReplica>,
    freshness: Arc<Freshness>,
    metrics: NodeMetrics,
    /// The keys at the live chain's head; none before a key is pinned.
    key: watch::Sender<Option<KeyChain>>,
    /// The keys pinned, oldest first: the chain starts from the first.
    pinned: Mutex<Vec<EventKey>>,
    /// Restarts the consumer (NATS reconnected, or the feed stalled).
    kick: Arc<Notify>,
    rebuild: AtomicBool,
    shared: Mutex<Shared>,
}

struct Shared {
    chain: Chain,
    /// Heartbeats ahead of the chain: (their head, when received).
    beats: VecDeque<(u64, Instant)>,
    order: BeatOrder,
    /// The chain's seq when the last heartbeat found it behind.
    behind_at: Option<u64>,
}

impl Feed {
    /// `kick` is notified by the NATS connection on every reconnect.
    pub fn new(
        js: jetstream::Context,
        client: async_nats::Client,
        replica: Arc<TokenReplica>,
        freshness: Arc<Freshness>,
        metrics: NodeMetrics,
        pinned: Vec<EventKey>,
        kick: Arc<Notify>,
    ) -> Arc<Self> {
        let start = pinned
            .first()
            .map(|first| KeyChain::trusting(first.clone(), pinned.iter().cloned()));
        Arc::new(Feed {
            js,
            client,
            replica,
            freshness,
            metrics,
            key: watch::Sender::new(start),
            pinned: Mutex::new(pinned),
            kick,
            rebuild: AtomicBool::new(false),
            shared: Mutex::new(Shared {
                chain: Chain::default(),
                beats: VecDeque::new(),
                order: BeatOrder::default(),
                behind_at: None,
            }),
        })
    }

    /// Runs the heartbeat listener and the event feed, forever.
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(self.clone().listen_heartbeats());
        let gauge = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                gauge
                    .metrics
                    .staleness
                    .set(gauge.freshness.staleness_seconds());
            }
        });
        self.follow().await;
    }

    fn refuse(&self, refusal: Refusal, detail: &str) {
        self.metrics.refused(refusal.label());
        tracing::warn!(reason = refusal.label(), "refused a token event: {detail}");
    }

    fn chain(&self) -> Chain {
        self.shared.lock().map(|s| s.chain).unwrap_or_default()
    }

    async fn listen_heartbeats(self: Arc<Self>) {
        let mut backoff = Backoff::new(MIN_RETRY, MAX_RETRY);
        loop {
            match self.client.subscribe(enspace_nats::HEARTBEAT_SUBJECT).await {
                Ok(mut beats) => {
                    backoff.reset();
                    while let Some(message) = beats.next().await {
                        self.heartbeat(&message.payload, Instant::now());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to heartbeats; retrying"),
            }
            backoff.wait().await;
        }
    }

    fn heartbeat(&self, payload: &[u8], received: Instant) {
        let pinned = self.key.borrow().as_ref().map(|k| k.current().clone());
        let (beat, key) = match Heartbeat::open(payload, pinned.as_ref()) {
            Ok(opened) => opened,
            Err(e) => {
                self.metrics.refused("heartbeat_invalid");
                tracing::warn!(error = %e, "refused a heartbeat");
                return;
            }
        };
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        if let Err(refused) = shared
            .order
            .admit(&beat, jiff::Timestamp::now().as_millisecond())
        {
            drop(shared);
            self.metrics.refused(refused.label());
            if refused == crate::beats::Refused::Future {
                tracing::warn!(
                    writer = beat.writer,
                    at_ms = beat.at_ms,
                    "refused a heartbeat stamped far after this node's clock"
                );
            }
            return;
        }
        if pinned.is_none() {
            tracing::warn!(
                key.id = key.key_id(),
                "pinned event key {} from the first heartbeat heard (--trust-first-event-key): \
                 whoever could publish it first is trusted; pass --event-key instead",
                key.key_id()
            );
            if let Ok(mut pinned) = self.pinned.lock() {
                *pinned = vec![key.clone()];
            }
            self.key.send_replace(Some(KeyChain::new(key)));
        }
        let chain = shared.chain;
        let other_history = (chain.seq >= 1 && beat.seq >= 1 && beat.first_hash != chain.first)
            || (beat.seq == chain.seq && beat.hash != chain.hash);
        if other_history {
            drop(shared);
            if !self.rebuild.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    seq = beat.seq,
                    "the control plane's log is another history than this node's copy; rebuilding"
                );
                self.kick.notify_one();
            }
            return;
        }
        if beat.seq <= chain.seq {
            shared.behind_at = None;
            drop(shared);
            self.freshness.confirm(received);
            return;
        }
        if shared.beats.len() == MAX_PENDING_BEATS {
            shared.beats.pop_front();
        }
        shared.beats.push_back((beat.seq, received));
        // Behind, and no further than a second ago: the feed has stalled.
        let stalled = shared.behind_at == Some(chain.seq);
        shared.behind_at = Some(chain.seq);
        drop(shared);
        if stalled {
            tracing::info!(
                held = chain.seq,
                head = beat.seq,
                "token events feed behind the heartbeat; restarting it"
            );
            self.kick.notify_one();
        }
    }

    async fn follow(self: Arc<Self>) {
        let mut key_rx = self.key.subscribe();
        let mut backoff = Backoff::new(MIN_RETRY, MAX_RETRY);
        loop {
            let Some(key) = key_rx.borrow_and_update().clone() else {
                if key_rx.changed().await.is_err() {
                    return;
                }
                continue;
            };
            match self.follow_once(&key).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(error = %e, held = self.chain().seq, "token events feed interrupted; retrying");
                    tokio::select! {
                        _ = backoff.wait() => {}
                        _ = self.kick.notified() => {}
                    }
                }
            }
        }
    }

    /// Follows the stream from the first event not held, until the consumer
    /// ends or the feed is kicked.
    async fn follow_once(&self, live: &KeyChain) -> Result<(), async_nats::Error> {
        let rebuilding = self.rebuild.load(Ordering::Acquire);
        let (target, mut chain, mut keys) = if rebuilding {
            let pinned = self.pinned.lock().map(|p| p.clone()).unwrap_or_default();
            let first = pinned.first().unwrap_or(live.current()).clone();
            let keys = KeyChain::trusting(first, pinned);
            (Arc::new(TokenReplica::new()), Chain::default(), keys)
        } else {
            (self.replica.clone(), self.chain(), live.clone())
        };
        let stream = self
            .js
            .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
            .await?;
        let last = stream.get_info().await?.state.last_sequence;
        if last <= chain.seq && !rebuilding {
            self.freshness.set_caught_up(true);
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: chain.seq + 1,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut run: Vec<(Candidate, bytes::Bytes)> = Vec::new();
        let mut tentative = chain;
        loop {
            let message = tokio::select! {
                _ = self.kick.notified() => return Ok(()),
                message = messages.next() => match message {
                    Some(message) => message?,
                    None => return Ok(()),
                },
            };
            let info = message.info()?;
            let (stream_seq, pending) = (info.stream_sequence, info.pending);
            let headers = message.headers.as_ref();
            let signature = enspace_nats::signature_of(headers);
            let prev = enspace_nats::prev_hash_of(headers);
            let mut placed = tentative.place(&message.payload, signature.clone(), prev);
            if matches!(placed, Err(Refusal::Replayed)) && tentative.seq > chain.seq {
                // It may be the real event in the place of an unchecked one
                // before it (a foreign message claiming its seq): check the
                // run so far, then place it again.
                let applied =
                    self.apply_run(std::mem::take(&mut run), &mut keys, &target, &mut chain);
                tentative = chain;
                if !rebuilding {
                    self.advance(chain, &keys);
                }
                if let Err(Refusal::OtherHistory) = applied {
                    self.rebuild.store(true, Ordering::Release);
                    return Ok(());
                }
                placed = tentative.place(&message.payload, signature.clone(), prev);
            }
            match placed {
                Ok(candidate) => {
                    tentative.extend(&candidate);
                    run.push((candidate, message.payload.clone()));
                }
                // Signed by the key, past the next event: events are missing.
                Err(Refusal::Gap)
                    if chain::authentic(&keys, &message.payload, &signature, prev) =>
                {
                    self.refuse(
                        Refusal::Gap,
                        &format!("stream message {stream_seq} skips events"),
                    );
                    return Err(format!("events missing before stream message {stream_seq}").into());
                }
                // Claims a later seq, signed by nobody we trust: foreign.
                Err(Refusal::Gap) => self.refuse(
                    Refusal::BadSignature,
                    &format!("stream message {stream_seq}"),
                ),
                Err(refusal) => self.refuse(refusal, &format!("stream message {stream_seq}")),
            }
            let caught_up = pending == 0 || stream_seq >= last;
            if run.len() >= CATCH_UP_RUN || caught_up {
                let applied =
                    self.apply_run(std::mem::take(&mut run), &mut keys, &target, &mut chain);
                tentative = chain;
                if !rebuilding {
                    self.advance(chain, &keys);
                }
                if let Err(Refusal::OtherHistory) = applied {
                    self.rebuild.store(true, Ordering::Release);
                    return Ok(());
                }
            }
            if caught_up {
                if rebuilding {
                    self.finish_rebuild(&target, chain, &keys);
                    return Ok(());
                }
                self.freshness.set_caught_up(true);
            }
        }
    }

    /// [`chain::apply_run`], with the refusal counted and logged.
    fn apply_run(
        &self,
        run: Vec<(Candidate, bytes::Bytes)>,
        keys: &mut KeyChain,
        target: &TokenReplica,
        chain: &mut Chain,
    ) -> Result<(), Refusal> {
        chain::apply_run(&run, keys, target, chain).map_err(|(refusal, seq)| {
            self.refuse(refusal, &format!("event {seq}"));
            refusal
        })
    }

    /// The live chain moved to `chain` (with `keys` at its head): confirm
    /// the heartbeats it reached.
    fn advance(&self, chain: Chain, keys: &KeyChain) {
        let rotated = self
            .key
            .borrow()
            .as_ref()
            .is_none_or(|k| k.current() != keys.current());
        if rotated {
            tracing::warn!(
                key.id = keys.current().key_id(),
                seq = chain.seq,
                "the event key is now {}",
                keys.current().key_id()
            );
        }
        self.key.send_replace(Some(keys.clone()));
        self.metrics.head_seq.set(chain.seq as i64);
        self.metrics.replica_tokens.set(self.replica.len() as i64);
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        shared.chain = chain;
        let mut confirmed = None;
        while let Some(&(seq, received)) = shared.beats.front() {
            if seq > chain.seq {
                break;
            }
            confirmed = Some(received);
            shared.beats.pop_front();
        }
        drop(shared);
        if let Some(received) = confirmed {
            self.freshness.confirm(received);
        }
    }

    fn finish_rebuild(&self, rebuilt: &TokenReplica, chain: Chain, keys: &KeyChain) {
        self.replica.replace_with(rebuilt);
        if let Ok(mut shared) = self.shared.lock() {
            shared.beats.clear();
            shared.behind_at = None;
        }
        self.rebuild.store(false, Ordering::Release);
        self.advance(chain, keys);
        self.freshness.set_caught_up(true);
        tracing::warn!(seq = chain.seq, "token state rebuilt from the stream");
    }
}
