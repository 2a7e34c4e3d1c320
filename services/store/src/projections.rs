//! Read models folded from the event log, each in its own tree:
//! `proj_tokens` (token id → token state), `proj_tokens_by_user`
//! (user ‖ 0 ‖ token id → ()), `proj_tokens_by_hash` (secret hash → token id),
//! `proj_events_by_token` (token id ‖ seq → ()),
//! `proj_tokens_by_workspace` (workspace ‖ 0 ‖ token id → ()),
//! `proj_policies` (workspace → its token policy), `proj_signing_keys`
//! (seq → the `signing_key_rotated` event there), `proj_token_changes`
//! (seq → token id, for each event that changed its token: what the views
//! folded after these read as the event's `Change`, [`Projections::changes`])
//! and `proj_meta` (`last_seq`: the last event folded in).
//!
//! They are folds that remember the last `seq` applied: applying an event
//! twice changes nothing, and any of them can be dropped and rebuilt from the
//! log. `enspace_core::fold::change` decides what every event does (the same
//! rules as the API nodes' replicas); this module only stores what it says.

use std::collections::HashMap;

use enspace_core::events::TokenEventRef;
use enspace_core::fold::{self, Change, Known, WorkspaceChange};
use enspace_core::{Aggregate, EventEnvelope, SecretHash, TokenView, WorkspacePolicy};
use ulid::Ulid;

use super::{EventLog, StoreError};

pub const PROJECTION_TREES: [&str; 9] = [
    "proj_tokens",
    "proj_tokens_by_user",
    "proj_tokens_by_hash",
    "proj_events_by_token",
    "proj_meta",
    "proj_tokens_by_workspace",
    "proj_policies",
    "proj_signing_keys",
    "proj_token_changes",
];
pub(crate) const LAST_SEQ: &[u8] = b"last_seq";
/// Present only after a graceful stop: the `last_seq` the projections were
/// whole at.
const CLEAN_AT: &[u8] = b"clean_at";

#[derive(Clone)]
pub struct Projections {
    tokens: sled::Tree,
    by_user: sled::Tree,
    by_hash: sled::Tree,
    by_token: sled::Tree,
    meta: sled::Tree,
    by_workspace: sled::Tree,
    policies: sled::Tree,
    signing_keys: sled::Tree,
    changes: sled::Tree,
}

/// `owner ‖ 0 ‖ token id`, the key of a token under a user or a workspace.
pub(crate) fn user_key(user_id: &str, token_id: Ulid) -> Vec<u8> {
    let mut key = Vec::with_capacity(user_id.len() + 17);
    key.extend_from_slice(user_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&token_id.to_bytes());
    key
}

/// What the fold rules ask, answered for one event beforehand: whether its
/// token id is known, which token holds its secret hash, and whether the
/// token with its id is revoked.
struct Facts {
    id_known: bool,
    hash_owner: Option<Ulid>,
    revoked: bool,
}

impl Facts {
    /// Nothing known: what a workspace's event is folded with.
    const NONE: Facts = Facts {
        id_known: false,
        hash_owner: None,
        revoked: false,
    };
}

impl Known for Facts {
    fn id_known(&self, _: Ulid) -> bool {
        self.id_known
    }
    fn by_hash(&self, _: &SecretHash) -> Option<(Ulid, bool)> {
        // `revoked` is the event's own token's; for another owner the
        // rules need only its id.
        self.hash_owner.map(|owner| (owner, self.revoked))
    }
}

fn event_hash(envelope: &EventEnvelope) -> Option<SecretHash> {
    let hex = match envelope.token_event()?.1 {
        TokenEventRef::Created(c) => &c.secret_hash,
        TokenEventRef::Revoked(r) => &r.secret_hash,
        TokenEventRef::Rotated(r) => &r.secret_hash,
    };
    SecretHash::from_hex(hex)
}

fn decode_view(bytes: &[u8]) -> Result<TokenView, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("token state: {e}")))
}

impl Projections {
    /// Opens the projection trees. If any of them is missing (dropped, or
    /// lost) while others survive, `last_seq` cannot be trusted for it, so
    /// all of them start from zero and `catch_up` folds the whole log again.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let existing = db.tree_names();
        let missing: Vec<&str> = PROJECTION_TREES
            .into_iter()
            .filter(|name| !existing.iter().any(|t| t.as_ref() == name.as_bytes()))
            .collect();
        let projections = Projections {
            tokens: db.open_tree(PROJECTION_TREES[0])?,
            by_user: db.open_tree(PROJECTION_TREES[1])?,
            by_hash: db.open_tree(PROJECTION_TREES[2])?,
            by_token: db.open_tree(PROJECTION_TREES[3])?,
            meta: db.open_tree(PROJECTION_TREES[4])?,
            by_workspace: db.open_tree(PROJECTION_TREES[5])?,
            policies: db.open_tree(PROJECTION_TREES[6])?,
            signing_keys: db.open_tree(PROJECTION_TREES[7])?,
            changes: db.open_tree(PROJECTION_TREES[8])?,
        };
        if !missing.is_empty() && missing.len() < PROJECTION_TREES.len() {
            tracing::warn!(
                ?missing,
                "projection trees missing; rebuilding every projection"
            );
            projections.clear()?;
        }
        Ok(projections)
    }

    fn clear(&self) -> Result<(), StoreError> {
        for tree in [
            &self.tokens,
            &self.by_user,
            &self.by_hash,
            &self.by_token,
            &self.meta,
            &self.by_workspace,
            &self.policies,
            &self.signing_keys,
            &self.changes,
        ] {
            tree.clear()?;
        }
        Ok(())
    }

    /// Records, durably, that the projections are whole at their
    /// `last_seq`: call after the last flush of a graceful stop.
    pub fn mark_clean(&self) -> Result<(), StoreError> {
        let last = self.last_seq()?;
        self.meta.insert(CLEAN_AT, &last.to_be_bytes())?;
        self.meta.flush()?;
        Ok(())
    }

    /// Whether the last stop was graceful and nothing was folded since;
    /// forgets it, durably, before anything else is folded. After a crash
    /// the trees may hold part of a group's writes (sled does not write
    /// several trees atomically), so only a clean stop is trusted.
    pub fn take_clean(&self) -> Result<bool, StoreError> {
        let clean = match self.meta.get(CLEAN_AT)? {
            Some(at) => at.as_ref() == self.last_seq()?.to_be_bytes(),
            None => false,
        };
        self.meta.remove(CLEAN_AT)?;
        self.meta.flush()?;
        Ok(clean)
    }

    /// Drops every projection, to be rebuilt from the log.
    pub fn rebuild_from_scratch(&self) -> Result<(), StoreError> {
        self.clear()
    }

    pub fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.meta.get(LAST_SEQ)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("last_seq".into()))?,
            ),
            None => 0,
        })
    }

    /// Folds every event the projections have not seen. If they claim to be
    /// ahead of the log (never trusted blindly), they are rebuilt from zero
    /// (`enspace_core::projection::catch_up`, the one catch-up loop).
    pub fn catch_up(&self, log: &EventLog) -> Result<u64, StoreError> {
        enspace_core::projection::catch_up(log, self)
    }

    /// [`catch_up`](Self::catch_up), telling `progress` how far it is.
    pub fn catch_up_with(
        &self,
        log: &EventLog,
        progress: &dyn enspace_core::progress::Progress,
    ) -> Result<u64, StoreError> {
        enspace_core::projection::catch_up_with(log, self, progress)
    }

    /// Folds events (in `seq` order) into every projection, then records the
    /// last `seq`. Events at or below `last_seq` are skipped.
    pub fn apply(&self, envelopes: &[EventEnvelope]) -> Result<(), StoreError> {
        let already = self.last_seq()?;
        let mut touched: HashMap<Ulid, Option<TokenView>> = HashMap::new();
        let mut by_user = sled::Batch::default();
        let mut by_hash = sled::Batch::default();
        let mut by_token = sled::Batch::default();
        let mut last = already;
        let mut by_workspace = sled::Batch::default();
        let mut policies = sled::Batch::default();
        let mut signing_keys = sled::Batch::default();
        let mut new_hashes: HashMap<[u8; 32], Ulid> = HashMap::new();
        let mut changes = sled::Batch::default();
        for envelope in envelopes.iter().filter(|e| e.seq > already) {
            last = envelope.seq;
            let token_id = match envelope.aggregate() {
                Aggregate::Token(id) => id,
                Aggregate::EventKey => {
                    if let Some(rotated) = envelope.key_rotation() {
                        let rotated = rmp_serde::to_vec_named(rotated)
                            .map_err(|e| StoreError::Corrupt(format!("encode key: {e}")))?;
                        signing_keys.insert(&envelope.seq.to_be_bytes()[..], rotated);
                    }
                    continue;
                }
                Aggregate::Workspace(_) => {
                    // A workspace's event: what it does asks nothing of tokens.
                    // Matched in full: a new workspace change does not
                    // compile until its read model is written here.
                    match fold::change(&Facts::NONE, envelope) {
                        Change::Workspace(WorkspaceChange::PolicySet { workspace, policy }) => {
                            let policy = rmp_serde::to_vec_named(&policy)
                                .map_err(|e| StoreError::Corrupt(format!("encode policy: {e}")))?;
                            policies.insert(workspace.as_bytes(), policy);
                        }
                        // No token's change comes of a workspace's event.
                        Change::Create { .. }
                        | Change::Revoke { .. }
                        | Change::Rotate { .. }
                        | Change::Nothing => {}
                    }
                    continue;
                }
            };
            let current = match touched.remove(&token_id) {
                Some(view) => view,
                None => self.token(token_id)?,
            };
            // A hash entry whose token is not in the projection is a remnant
            // of a fold cut short (the trees are written one after another):
            // it does not make the hash known.
            let hash_owner = match event_hash(envelope) {
                Some(hash) => match new_hashes.get(&hash.0) {
                    Some(id) => Some(*id),
                    None => match self.token_id_by_hash(&hash)? {
                        Some(owner) if owner == token_id => current.as_ref().map(|v| v.id),
                        Some(owner) => match touched.get(&owner) {
                            Some(view) => view.as_ref().map(|v| v.id),
                            None => self.token(owner)?.map(|v| v.id),
                        },
                        None => None,
                    },
                },
                None => None,
            };
            let known = Facts {
                id_known: current.is_some(),
                hash_owner,
                revoked: current.as_ref().is_some_and(|v| v.revoked_at.is_some()),
            };
            let change = fold::change(&known, envelope);
            if let Change::Create { hash, created } = &change {
                by_user.insert(user_key(&created.user_id, token_id), &[][..]);
                by_hash.insert(&hash.as_bytes()[..], &token_id.to_bytes()[..]);
                new_hashes.insert(hash.0, token_id);
                for workspace in &created.workspaces {
                    by_workspace.insert(user_key(workspace, token_id), &[][..]);
                }
            }
            if change.changes_token() {
                changes.insert(&envelope.seq.to_be_bytes()[..], &token_id.to_bytes()[..]);
            }
            let next = fold::update(current, envelope, &change);
            let mut event_key = token_id.to_bytes().to_vec();
            event_key.extend_from_slice(&envelope.seq.to_be_bytes());
            by_token.insert(event_key, &[][..]);
            touched.insert(token_id, next);
        }
        let mut tokens = sled::Batch::default();
        for (id, view) in touched {
            if let Some(view) = view {
                let bytes = rmp_serde::to_vec_named(&view)
                    .map_err(|e| StoreError::Corrupt(format!("encode token state: {e}")))?;
                tokens.insert(&id.to_bytes()[..], bytes);
            }
        }
        // First: a group folded again after a failure part way decides
        // each event as it did, from the state before the group.
        self.changes.apply_batch(changes)?;
        self.tokens.apply_batch(tokens)?;
        self.by_user.apply_batch(by_user)?;
        self.by_hash.apply_batch(by_hash)?;
        self.by_token.apply_batch(by_token)?;
        self.by_workspace.apply_batch(by_workspace)?;
        self.policies.apply_batch(policies)?;
        self.signing_keys.apply_batch(signing_keys)?;
        self.meta.insert(LAST_SEQ, &last.to_be_bytes())?;
        Ok(())
    }

    /// What each event after `after` (of `envelopes`, in `seq` order) did,
    /// as these projections decided it when they folded it
    /// (`enspace_core::fold::folded`): what a view folded after them (the
    /// token cap, notifications) reads instead of the raw events, also when
    /// it catches up long after. An event these projections have not
    /// folded yet is refused ([`StoreError::NotFolded`]).
    pub fn changes<'a>(
        &self,
        envelopes: &'a [EventEnvelope],
        after: u64,
    ) -> Result<Vec<(&'a EventEnvelope, Change<'a>)>, StoreError> {
        let folded = self.last_seq()?;
        envelopes
            .iter()
            .filter(|e| e.seq > after)
            .map(|envelope| {
                if envelope.seq > folded {
                    return Err(StoreError::NotFolded {
                        seq: envelope.seq,
                        folded,
                    });
                }
                let changed = match envelope.token_event() {
                    Some((token_id, _)) => self
                        .changes
                        .get(envelope.seq.to_be_bytes())?
                        .is_some_and(|id| id.as_ref() == token_id.to_bytes()),
                    None => false,
                };
                Ok((envelope, fold::folded(envelope, changed)))
            })
            .collect()
    }

    pub fn token(&self, id: Ulid) -> Result<Option<TokenView>, StoreError> {
        self.tokens
            .get(id.to_bytes())?
            .map(|bytes| decode_view(&bytes))
            .transpose()
    }

    pub fn token_by_hash(&self, hash: &SecretHash) -> Result<Option<TokenView>, StoreError> {
        match self.token_id_by_hash(hash)? {
            Some(id) => self.token(id),
            None => Ok(None),
        }
    }

    fn token_id_by_hash(&self, hash: &SecretHash) -> Result<Option<Ulid>, StoreError> {
        let Some(id) = self.by_hash.get(hash.as_bytes())? else {
            return Ok(None);
        };
        let id: [u8; 16] = id
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt("token id by hash".into()))?;
        Ok(Some(Ulid::from_bytes(id)))
    }

    /// The user's tokens, newest first.
    pub fn tokens_of_user(&self, user_id: &str) -> Result<Vec<TokenView>, StoreError> {
        let mut prefix = user_id.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.by_user.scan_prefix(&prefix).rev() {
            let (key, _) = item?;
            let id: [u8; 16] = key[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("tokens by user key".into()))?;
            if let Some(view) = self.token(Ulid::from_bytes(id))? {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// The tokens that can reach `workspace` (any status), newest first.
    pub fn tokens_in_workspace(&self, workspace: &str) -> Result<Vec<TokenView>, StoreError> {
        let mut prefix = workspace.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.by_workspace.scan_prefix(&prefix).rev() {
            let (key, _) = item?;
            let id: [u8; 16] = key[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("tokens by workspace key".into()))?;
            if let Some(view) = self.token(Ulid::from_bytes(id))? {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// The workspace's token policy (the default, none, until one is set).
    pub fn policy(&self, workspace: &str) -> Result<WorkspacePolicy, StoreError> {
        match self.policies.get(workspace.as_bytes())? {
            Some(bytes) => rmp_serde::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("workspace policy: {e}"))),
            None => Ok(WorkspacePolicy::default()),
        }
    }

    /// Every `signing_key_rotated` event with its seq, in order.
    pub fn key_rotations(
        &self,
    ) -> Result<Vec<(u64, enspace_core::events::SigningKeyRotated)>, StoreError> {
        self.signing_keys
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let seq: [u8; 8] = key
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("signing keys key".into()))?;
                let rotated = rmp_serde::from_slice(&value)
                    .map_err(|e| StoreError::Corrupt(format!("signing key rotation: {e}")))?;
                Ok((u64::from_be_bytes(seq), rotated))
            })
            .collect()
    }

    /// The `seq`s of a token's events, in order.
    pub fn event_seqs_of(&self, token_id: Ulid) -> Result<Vec<u64>, StoreError> {
        self.by_token
            .scan_prefix(token_id.to_bytes())
            .map(|item| {
                let (key, _) = item?;
                let seq: [u8; 8] = key[16..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("events by token key".into()))?;
                Ok(u64::from_be_bytes(seq))
            })
            .collect()
    }

    /// Every token's state with an id after `after` (all of them without
    /// one), in id order.
    pub fn tokens_after(
        &self,
        after: Option<Ulid>,
    ) -> impl Iterator<Item = Result<TokenView, StoreError>> + '_ {
        let start = after.map_or([0u8; 16], |id| {
            (u128::from(id).saturating_add(1)).to_be_bytes()
        });
        let skip_max = after.is_some_and(|id| u128::from(id) == u128::MAX);
        self.tokens
            .range(start..)
            .filter(move |_| !skip_max)
            .map(|item| {
                let (_, value) = item?;
                decode_view(&value)
            })
    }

    /// Every token's state (for replicas and introspection caches).
    pub fn all_tokens(&self) -> impl Iterator<Item = Result<TokenView, StoreError>> + '_ {
        self.tokens.iter().map(|item| {
            let (_, value) = item?;
            decode_view(&value)
        })
    }
}

impl Projections {
    /// Up to `limit` of the user's tokens, newest first, older than
    /// `before` when given; and the id to continue before when more remain.
    pub fn tokens_of_user_page(
        &self,
        user_id: &str,
        before: Option<Ulid>,
        limit: usize,
    ) -> Result<(Vec<TokenView>, Option<Ulid>), StoreError> {
        let mut prefix = user_id.as_bytes().to_vec();
        prefix.push(0);
        let upper = match before {
            Some(id) => user_key(user_id, id),
            None => {
                let mut end = prefix.clone();
                end.push(0xFF);
                end
            }
        };
        let mut out = Vec::with_capacity(limit.min(256));
        let mut more = false;
        for item in self.by_user.range(prefix.clone()..upper).rev() {
            let (key, _) = item?;
            let id: [u8; 16] = key[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("tokens by user key".into()))?;
            if out.len() == limit {
                more = true;
                break;
            }
            // Decoys are listed apart (`GET /v1/decoys`).
            if let Some(view) = self.token(Ulid::from_bytes(id))?.filter(|v| !v.decoy) {
                out.push(view);
            }
        }
        let next = match (more, out.last()) {
            (true, Some(last)) => Some(last.id),
            _ => None,
        };
        Ok((out, next))
    }
}

/// The token projections as the projection runner sees them: the writer
/// folds them inside each commit (`writer/persist.rs`), the runner's
/// catch-up brings them up to the log at start.
impl enspace_core::projection::Projection for Projections {
    type Error = StoreError;

    fn name(&self) -> &'static str {
        "tokens"
    }

    fn position(&self) -> Result<u64, StoreError> {
        self.last_seq()
    }

    fn apply(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        Projections::apply(self, events)
    }

    fn reset(&self) -> Result<(), StoreError> {
        self.clear()
    }
}

#[cfg(test)]
mod tests {
    use enspace_core::fold::{cases, outcome_of};

    use super::*;

    #[test]
    fn what_each_event_did_is_read_back_as_the_rules_decided_it_however_it_was_folded() {
        for case in cases() {
            let mut reference = enspace_core::fixtures::Reference::default();
            let want: Vec<Change<'_>> = case.events.iter().map(|e| reference.fold(e)).collect();
            let one_by_one =
                Projections::open(&sled::Config::new().temporary(true).open().expect("sled"))
                    .expect("open");
            for e in &case.events {
                one_by_one.apply(std::slice::from_ref(e)).expect("apply");
            }
            let all_at_once =
                Projections::open(&sled::Config::new().temporary(true).open().expect("sled"))
                    .expect("open");
            all_at_once.apply(&case.events).expect("apply");
            for fold in [&one_by_one, &all_at_once] {
                let got: Vec<Change<'_>> = fold
                    .changes(&case.events, 0)
                    .expect("changes")
                    .into_iter()
                    .map(|(_, change)| change)
                    .collect();
                assert_eq!(got, want, "{}", case.name);
                // From a position on: only the events after it.
                let after = fold
                    .changes(&case.events, case.events[0].seq)
                    .expect("changes");
                assert_eq!(after.len(), case.events.len() - 1, "{}", case.name);
            }
        }
    }

    #[test]
    fn what_an_event_not_folded_yet_did_is_not_told() {
        let case = &cases()[1];
        let projections =
            Projections::open(&sled::Config::new().temporary(true).open().expect("sled"))
                .expect("open");
        projections.apply(&case.events[..1]).expect("apply");
        let (folded, next) = (case.events[0].seq, case.events[1].seq);
        match projections.changes(&case.events, 0) {
            Err(StoreError::NotFolded { seq, folded: at }) => assert_eq!((seq, at), (next, folded)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_projections_fold_every_case_of_the_shared_table() {
        for case in cases() {
            let db = sled::Config::new().temporary(true).open().expect("sled");
            let projections = Projections::open(&db).expect("open");
            // One event at a time and all at once must agree.
            for e in &case.events {
                projections.apply(std::slice::from_ref(e)).expect("apply");
            }
            let all_at_once =
                Projections::open(&sled::Config::new().temporary(true).open().expect("sled"))
                    .expect("open");
            all_at_once.apply(&case.events).expect("apply");
            for fold in [&projections, &all_at_once] {
                for (hash, want) in &case.expect {
                    let got = outcome_of(fold.token_by_hash(hash).expect("read").as_ref());
                    assert_eq!(&got, want, "{}", case.name);
                }
            }
        }
    }
}
