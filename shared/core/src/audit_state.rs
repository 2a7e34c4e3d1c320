//! What auditors ask of the log: every token's state at a moment, and what
//! changed between two moments. A token's state at a moment is its events up
//! to that moment folded by the service's own fold ([`crate::fold`]): there
//! is no second set of rules.

use std::collections::HashMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::events::{AuditEvent, EventEnvelope, TokenEvent};
use crate::fold::{self, Known};
use crate::secret::SecretHash;
use crate::token::{RevokeReason, Scope, TokenView};

/// Where a token stood at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditStatus {
    /// It worked.
    Active,
    /// A successor replaced it and it still worked, until the end of the
    /// overlap (`expires_at`).
    Rotated,
    /// Past its expiry (for a rotated token, the end of the overlap).
    Expired,
    /// Revoked (`revoked_reason` says why).
    Revoked,
}

/// One token as it stood at a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenAtMoment {
    #[schema(value_type = String)]
    pub id: Ulid,
    pub user_id: String,
    pub description: String,
    pub scopes: Vec<Scope>,
    pub workspaces: Vec<String>,
    pub status: AuditStatus,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it stops (stopped) working by itself; null for never.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_reason: Option<RevokeReason>,
    /// The successor that replaced it, when one had by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub replaced_by: Option<Ulid>,
    /// The client address ranges its calls had to come from; absent for
    /// anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    /// When it started (starts) working, if not at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_before: Option<Timestamp>,
    /// It may rotate itself; absent when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_rotate: bool,
    /// A decoy: it never granted anything (no scopes, no workspaces); absent
    /// on every real token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decoy: bool,
}

impl TokenAtMoment {
    /// `view`, the token folded up to `at`, as it stood at `at`.
    pub fn of(view: &TokenView, at: Timestamp) -> Self {
        let status = if view.revoked_at.is_some() {
            AuditStatus::Revoked
        } else if view.expires_at.is_some_and(|e| e <= at) {
            AuditStatus::Expired
        } else if view.replaced_by.is_some() {
            AuditStatus::Rotated
        } else {
            AuditStatus::Active
        };
        TokenAtMoment {
            id: view.id,
            user_id: view.user_id.clone(),
            description: view.description.clone(),
            scopes: view.scopes.clone(),
            workspaces: view.workspaces.clone(),
            status,
            created_at: view.created_at,
            expires_at: view.expires_at,
            revoked_at: view.revoked_at,
            revoked_reason: view.revoked_reason,
            replaced_by: view.replaced_by,
            allowed_cidrs: view.allowed_cidrs.clone(),
            not_before: view.not_before,
            self_rotate: view.self_rotate,
            decoy: view.decoy,
        }
    }
}

/// Which tokens a state query keeps: those of a user, those that may reach
/// a workspace, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateFilter {
    pub workspace: Option<String>,
    pub user: Option<String>,
}

impl StateFilter {
    pub fn keeps(&self, view: &TokenView) -> bool {
        self.user.as_ref().is_none_or(|u| *u == view.user_id)
            && self
                .workspace
                .as_ref()
                .is_none_or(|w| view.has_workspace(w))
    }
}

/// One token's events (in seq order) folded up to `at`: its state then, or
/// `None` if it did not exist yet.
pub fn token_at<'a>(
    events: impl IntoIterator<Item = &'a EventEnvelope>,
    at: Timestamp,
) -> Option<TokenView> {
    events
        .into_iter()
        .filter(|e| e.at <= at)
        .fold(None, fold::apply)
}

/// The whole log folded up to a moment, event by event in seq order, with
/// the rules that span tokens (the first creation of a secret hash wins):
/// what `enspace audit state` computes from an export.
#[derive(Debug, Default)]
pub struct Replay {
    tokens: HashMap<Ulid, TokenView>,
    /// Keyed by the hash's bytes.
    by_hash: HashMap<[u8; 32], Ulid>,
}

impl Known for Replay {
    fn id_known(&self, id: Ulid) -> bool {
        self.tokens.contains_key(&id)
    }
    fn by_hash(&self, hash: &SecretHash) -> Option<(Ulid, bool)> {
        let id = *self.by_hash.get(&hash.0)?;
        let revoked = self.tokens.get(&id).is_some_and(|v| v.revoked_at.is_some());
        Some((id, revoked))
    }
}

impl Replay {
    /// Folds `envelope` if it happened by `at`.
    pub fn apply_until(&mut self, envelope: &EventEnvelope, at: Timestamp) {
        if envelope.at > at {
            return;
        }
        let change = fold::change(self, envelope);
        if let fold::Change::Create { hash, .. } = &change {
            self.by_hash.insert(hash.0, envelope.token_id);
        }
        let state = self.tokens.remove(&envelope.token_id);
        if let Some(view) = fold::update(state, envelope, &change) {
            self.tokens.insert(envelope.token_id, view);
        }
    }

    /// The tokens `filter` keeps, as they stood at `at`, by id.
    pub fn tokens(&self, filter: &StateFilter, at: Timestamp) -> Vec<TokenAtMoment> {
        let mut out: Vec<TokenAtMoment> = self
            .tokens
            .values()
            .filter(|v| filter.keeps(v))
            .map(|v| TokenAtMoment::of(v, at))
            .collect();
        out.sort_by_key(|t| t.id);
        out
    }
}

/// Events between two moments, grouped by what they did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeGroups {
    /// `token_created`.
    pub created: Vec<AuditEvent>,
    /// `token_revoked`.
    pub revoked: Vec<AuditEvent>,
    /// `token_rotated`.
    pub rotated: Vec<AuditEvent>,
    /// `workspace_policy_set`.
    pub policies: Vec<AuditEvent>,
    /// `signing_key_rotated`: the log's signing key changed.
    #[serde(default)]
    pub event_keys: Vec<AuditEvent>,
}

impl ChangeGroups {
    /// Files `event` (made from `envelope`) under what it did.
    pub fn add(&mut self, envelope: &EventEnvelope, event: AuditEvent) {
        match envelope.event {
            TokenEvent::TokenCreated(_) => self.created.push(event),
            TokenEvent::TokenRevoked(_) => self.revoked.push(event),
            TokenEvent::TokenRotated(_) => self.rotated.push(event),
            TokenEvent::WorkspacePolicySet(_) => self.policies.push(event),
            TokenEvent::SigningKeyRotated(_) => self.event_keys.push(event),
        }
    }

    pub fn len(&self) -> usize {
        self.created.len()
            + self.revoked.len()
            + self.rotated.len()
            + self.policies.len()
            + self.event_keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{TokenRevoked, TokenRotated};
    use crate::fixtures;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap_or_default()
    }

    fn at(mut e: EventEnvelope, ms: i64) -> EventEnvelope {
        e.at = ts(ms);
        e
    }

    #[test]
    fn a_token_stands_as_its_events_up_to_the_moment_fold() {
        let hash = SecretHash([7; 32]);
        let created = at(fixtures::created(1, &hash).build(), 1_000);
        let token = created.token_id;
        let mut rotated = created.clone();
        rotated.seq = 2;
        rotated.at = ts(2_000);
        rotated.event = TokenEvent::TokenRotated(TokenRotated {
            user_id: "alice".into(),
            secret_hash: hash.to_hex(),
            replaced_by: Ulid::from_parts(2, 2),
            expires_at: ts(3_000),
            self_rotated: false,
        });
        let mut revoked = created.clone();
        revoked.seq = 3;
        revoked.at = ts(4_000);
        revoked.event = TokenEvent::TokenRevoked(TokenRevoked {
            user_id: "alice".into(),
            secret_hash: hash.to_hex(),
            reason: RevokeReason::Leaked,
            url: None,
        });
        let events = [created, rotated, revoked];
        let status = |ms| token_at(&events, ts(ms)).map(|v| TokenAtMoment::of(&v, ts(ms)).status);
        assert_eq!(status(999), None);
        assert_eq!(status(1_000), Some(AuditStatus::Active));
        assert_eq!(status(2_500), Some(AuditStatus::Rotated));
        assert_eq!(status(3_000), Some(AuditStatus::Expired));
        let revoked_then = token_at(&events, ts(4_000)).map(|v| TokenAtMoment::of(&v, ts(4_000)));
        assert_eq!(
            revoked_then.map(|t| (t.id, t.status, t.revoked_reason)),
            Some((token, AuditStatus::Revoked, Some(RevokeReason::Leaked)))
        );
    }

    #[test]
    fn the_replay_and_one_tokens_fold_agree_on_every_case_of_the_shared_table() {
        for case in fold::cases() {
            let end = Timestamp::MAX;
            let mut replay = Replay::default();
            for e in &case.events {
                replay.apply_until(e, end);
            }
            for (id, view) in &replay.tokens {
                let own: Vec<&EventEnvelope> =
                    case.events.iter().filter(|e| e.token_id == *id).collect();
                assert_eq!(
                    token_at(own, end).as_ref(),
                    Some(view),
                    "{}: token {id}",
                    case.name
                );
            }
            for (hash, want) in &case.expect {
                let view = replay
                    .by_hash
                    .get(&hash.0)
                    .and_then(|id| replay.tokens.get(id));
                assert_eq!(&fold::outcome_of(view), want, "{}", case.name);
            }
        }
    }
}
