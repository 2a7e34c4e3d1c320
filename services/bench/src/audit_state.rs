//! Auditors' point-in-time questions over a long log: `state_at` (what
//! `GET /v1/audit/state` answers) by workspace, by user and unfiltered
//! (first page), and `changes_between` over an hour, on a store of a
//! million events; beside them, in the same run, one read of the whole log
//! (what a replay from the start pays before folding anything).

use std::time::Instant;

use enspace_core::SecretHash;
use enspace_core::audit_state::StateFilter;
use enspace_core::events::{GENESIS_HASH, StoredEvent, TokenEvent, TokenRevoked, TokenRotated};
use enspace_core::token::{Expiration, RevokeReason, Scope};
use enspace_store::Store;
use jiff::{SignedDuration, Timestamp};
use ulid::Ulid;

use crate::verdict::Verdict;

#[derive(clap::Args)]
pub struct Args {
    /// Events in the log.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Rounds of each query; each figure is the slowest.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// What a point-in-time query may take, at most.
const TARGET_MS: f64 = 1_000.0;
const USERS: u64 = 1_000;
const WORKSPACES: u64 = 200;

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let made = Instant::now();
    let start: Timestamp = "2026-01-01T00:00:00Z".parse()?;
    let store = Store::open(dir.path())?;
    fill(&store, args.events, start)?;
    println!(
        "enspace-bench audit-state: a log of {} events (a creation, revocation or rotation a second) made in {:.1} s",
        args.events,
        made.elapsed().as_secs_f64()
    );
    let middle = start + SignedDuration::from_secs(args.events as i64 / 2);

    let cold = Instant::now();
    store.audit.catch_up(&store.log)?;
    let index_ms = cold.elapsed().as_secs_f64() * 1e3;

    let mut read_ms: f64 = 0.0;
    let mut worst = [0f64; 4];
    let mut answered = [0usize; 4];
    let key_dir = tempfile::tempdir()?;
    let (keys, _) = enspace_store::keyring::Keyring::open(&store, &key_dir.path().join("k"))?;
    for _ in 0..args.rounds {
        let t = Instant::now();
        let mut after = 0;
        loop {
            let page = store.log.read_after(after, 4096)?;
            let Some(last) = page.last() else { break };
            after = last.envelope.seq;
        }
        read_ms = read_ms.max(t.elapsed().as_secs_f64() * 1e3);

        let filters = [
            StateFilter {
                workspace: Some("ws-7".into()),
                user: None,
            },
            StateFilter {
                workspace: None,
                user: Some("user-42".into()),
            },
            StateFilter::default(),
        ];
        for (i, filter) in filters.iter().enumerate() {
            let t = Instant::now();
            let page = store.state_at(middle, filter, None, 1000)?;
            worst[i] = worst[i].max(t.elapsed().as_secs_f64() * 1e3);
            answered[i] = page.tokens.len();
        }
        let t = Instant::now();
        let changes = store.changes_between(
            middle,
            middle + SignedDuration::from_hours(1),
            0,
            1000,
            &keys,
        )?;
        worst[3] = worst[3].max(t.elapsed().as_secs_f64() * 1e3);
        answered[3] = changes.groups.len();
    }
    println!("  read the whole log once (baseline)           {read_ms:>8.1} ms");
    println!("  bring the time index up to the log (once)    {index_ms:>8.1} ms");
    let names = [
        "state at the middle, one workspace",
        "state at the middle, one user",
        "state at the middle, everyone (first 1000)",
        "changes over an hour at the middle",
    ];
    for (i, name) in names.iter().enumerate() {
        println!(
            "  {name:<44} {:>8.1} ms   {:.3} of the baseline   ({} answered)",
            worst[i],
            worst[i] / read_ms,
            answered[i]
        );
    }
    let slowest = worst.iter().copied().fold(0.0, f64::max);
    let verdict = Verdict::new(args.rounds, 0, 1, slowest < TARGET_MS);
    println!(
        "  target: every query < {TARGET_MS:.0} ms over {} events (slowest {slowest:.1} ms): {verdict}",
        args.events
    );
    Ok(())
}

/// Appends `n` events a second apart from `start` and folds them: creations
/// for 1,000 users over 200 workspaces, and among them a revocation every
/// fourth event and a rotation every seventh of a token made earlier.
fn fill(store: &Store, n: u64, start: Timestamp) -> anyhow::Result<()> {
    let mut prev = GENESIS_HASH;
    let mut made: Vec<(Ulid, SecretHash, String)> = Vec::new();
    let mut seq = 0u64;
    while seq < n {
        let mut batch = sled::Batch::default();
        let mut envelopes = Vec::new();
        for _ in 0..4096 {
            if seq == n {
                break;
            }
            seq += 1;
            let at = start + SignedDuration::from_secs(seq as i64);
            let earlier =
                (!made.is_empty()).then(|| made[(seq as usize * 7919) % made.len()].clone());
            let envelope = match (seq % 7, seq % 4, earlier) {
                (0, _, Some((id, hash, user))) => enspace_core::EventEnvelope {
                    seq,
                    id: Ulid::new(),
                    at,
                    actor: user.clone(),
                    token_id: id,
                    event: TokenEvent::TokenRotated(TokenRotated {
                        user_id: user,
                        secret_hash: hash.to_hex(),
                        replaced_by: Ulid::new(),
                        expires_at: at + SignedDuration::from_hours(1),
                        self_rotated: false,
                    }),
                },
                (_, 0, Some((id, hash, user))) => enspace_core::EventEnvelope {
                    seq,
                    id: Ulid::new(),
                    at,
                    actor: user.clone(),
                    token_id: id,
                    event: TokenEvent::TokenRevoked(TokenRevoked {
                        user_id: user,
                        secret_hash: hash.to_hex(),
                        reason: RevokeReason::User,
                        url: None,
                    }),
                },
                _ => {
                    let hash = SecretHash::of(&format!("secret-{seq}"));
                    let user = format!("user-{}", seq % USERS);
                    let mut envelope = enspace_core::fixtures::created(seq, &hash)
                        .user(&user)
                        .scopes(&[Scope::Read, Scope::Write])
                        .expiring(Expiration::OneYear, at)
                        .build();
                    if let TokenEvent::TokenCreated(c) = &mut envelope.event {
                        c.workspaces = vec![format!("ws-{}", seq % WORKSPACES)];
                    }
                    envelope.at = at;
                    made.push((envelope.token_id, hash, user));
                    envelope
                }
            };
            let stored = StoredEvent::new(prev, &envelope);
            prev = stored.hash;
            batch.insert(
                &enspace_store::event_log::encode_seq(seq),
                stored.to_bytes(),
            );
            envelopes.push(envelope);
        }
        store.log.tree().apply_batch(batch)?;
        store.projections.apply(&envelopes)?;
    }
    store.db.flush()?;
    Ok(())
}
