//! The one set of rules by which events become token state. The control
//! plane's projections (keyed by token id, in sled) and every API node's
//! replica (keyed by secret hash, in memory) both ask [`change`] what an
//! event does, so they cannot disagree; [`cases`] is a table of event
//! sequences with the outcome each must fold to, run against both.
//!
//! - `token_created` makes a token, unless its token id or its secret hash
//!   is known already (the first creation wins), or its secret hash is not
//!   64 hex digits; then it changes nothing.
//! - `token_revoked` revokes the token with its token id, if that token's
//!   secret hash is the one the event names, the first time only; for an
//!   unknown token, or another token's hash, it changes nothing.
//! - `token_rotated` moves the expiry of the live token with its token id
//!   and secret hash to the event's `expires_at`, if that is earlier (so
//!   applying it again, or late, changes nothing), and links the successor
//!   the first time; for a revoked, unknown or other token, nothing.
//! - `workspace_policy_set` changes no token (a policy binds new tokens):
//!   it is a workspace's event, and folds to a [`WorkspaceChange`].
//!
//! A view folded after the token projections does not ask the rules again
//! (it does not hold what they ask): [`folded`] gives back an event's
//! `Change` from what the projections recorded of it.

use ulid::Ulid;

use jiff::Timestamp;

use crate::events::{EventEnvelope, TokenCreated, TokenEvent, TokenRevoked, TokenRotated};
use crate::policy::WorkspacePolicy;
use crate::secret::SecretHash;
use crate::token::TokenView;

/// What a fold knows, as far as the rules need it.
pub trait Known {
    /// Whether a token with this id exists.
    fn id_known(&self, id: Ulid) -> bool;
    /// The token with this secret hash: its id and whether it is revoked.
    fn by_hash(&self, hash: &SecretHash) -> Option<(Ulid, bool)>;
}

/// What one event does.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<'a> {
    Create {
        hash: SecretHash,
        created: &'a TokenCreated,
    },
    Revoke {
        hash: SecretHash,
        revoked: &'a TokenRevoked,
    },
    /// The token stops working at `rotated.expires_at` if not before.
    Rotate {
        hash: SecretHash,
        rotated: &'a TokenRotated,
    },
    /// A workspace's event (its aggregate is a workspace): no token changes.
    Workspace(WorkspaceChange<'a>),
    /// Nothing: a repeated or conflicting creation, a revocation of an
    /// unknown or already revoked token, a malformed hash.
    Nothing,
}

/// What a workspace's event does.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkspaceChange<'a> {
    /// The workspace's token policy is now `policy` (it binds new tokens).
    PolicySet {
        workspace: &'a str,
        policy: WorkspacePolicy,
    },
}

pub fn change<'a>(known: &impl Known, envelope: &'a EventEnvelope) -> Change<'a> {
    match &envelope.event {
        TokenEvent::TokenCreated(created) => {
            let Some(hash) = SecretHash::from_hex(&created.secret_hash) else {
                return Change::Nothing;
            };
            if known.id_known(envelope.token_id) || known.by_hash(&hash).is_some() {
                return Change::Nothing;
            }
            Change::Create { hash, created }
        }
        TokenEvent::TokenRevoked(revoked) => {
            let Some(hash) = SecretHash::from_hex(&revoked.secret_hash) else {
                return Change::Nothing;
            };
            match known.by_hash(&hash) {
                Some((id, false)) if id == envelope.token_id => Change::Revoke { hash, revoked },
                _ => Change::Nothing,
            }
        }
        TokenEvent::WorkspacePolicySet(set) => Change::Workspace(WorkspaceChange::PolicySet {
            workspace: &set.workspace,
            policy: set.policy(),
        }),
        // Which key signs the log changes nothing of tokens.
        TokenEvent::SigningKeyRotated(_) => Change::Nothing,
        TokenEvent::TokenRotated(rotated) => {
            let Some(hash) = SecretHash::from_hex(&rotated.secret_hash) else {
                return Change::Nothing;
            };
            match known.by_hash(&hash) {
                Some((id, false)) if id == envelope.token_id => Change::Rotate { hash, rotated },
                _ => Change::Nothing,
            }
        }
    }
}

impl Change<'_> {
    /// Whether the event changed its token: a creation, revocation or
    /// rotation the rules let through. What a fold records, per event, for
    /// [`folded`].
    pub fn changes_token(&self) -> bool {
        matches!(
            self,
            Change::Create { .. } | Change::Revoke { .. } | Change::Rotate { .. }
        )
    }
}

/// What an event already folded did, from what the fold that folded it
/// recorded: whether it changed its token ([`Change::changes_token`]). A
/// view folded after the token projections (the token cap, notifications)
/// reads its changes through this, so it follows the same rules without
/// holding what they ask, and reads the same `Change` when it catches up
/// from the log long after the projections folded the event.
pub fn folded(envelope: &EventEnvelope, changed_token: bool) -> Change<'_> {
    /// What was known just before an event with that outcome: for a
    /// change, nothing of a new token, and its live self for any other;
    /// for nothing, a token that was there already and not this one.
    struct Recorded {
        changed: bool,
        creation: bool,
        token: Ulid,
    }
    impl Known for Recorded {
        fn id_known(&self, _: Ulid) -> bool {
            !self.changed
        }
        fn by_hash(&self, _: &SecretHash) -> Option<(Ulid, bool)> {
            match (self.changed, self.creation) {
                (true, true) => None,
                (true, false) => Some((self.token, false)),
                (false, _) => Some((Ulid::nil(), true)),
            }
        }
    }
    let known = Recorded {
        changed: changed_token,
        creation: matches!(envelope.event, TokenEvent::TokenCreated(_)),
        token: envelope.token_id,
    };
    change(&known, envelope)
}

/// The earlier of a token's expiry and a rotation's end of overlap.
pub fn earlier(expires_at: Option<Timestamp>, rotated_until: Timestamp) -> Timestamp {
    expires_at.map_or(rotated_until, |at| at.min(rotated_until))
}

/// The state after `change` (which `envelope` made) of the token `state`.
pub fn update(
    state: Option<TokenView>,
    envelope: &EventEnvelope,
    change: &Change<'_>,
) -> Option<TokenView> {
    match change {
        Change::Create { hash, created } => Some(created_view(envelope, created, *hash)),
        Change::Revoke { revoked, .. } => state.map(|mut view| {
            view.revoked_at = Some(envelope.at);
            view.revoked_reason = Some(revoked.reason);
            view.leak_url = revoked.url.clone();
            view
        }),
        Change::Rotate { rotated, .. } => state.map(|mut view| {
            view.expires_at = Some(earlier(view.expires_at, rotated.expires_at));
            view.replaced_by.get_or_insert(rotated.replaced_by);
            view
        }),
        Change::Workspace(_) | Change::Nothing => state,
    }
}

/// The state a creation makes.
pub fn created_view(
    envelope: &EventEnvelope,
    created: &TokenCreated,
    hash: SecretHash,
) -> TokenView {
    TokenView {
        id: envelope.token_id,
        user_id: created.user_id.clone(),
        description: created.description.clone(),
        expiration: created.expiration,
        scopes: created.scopes.clone(),
        workspaces: created.workspaces.clone(),
        created_at: envelope.at,
        expires_at: created.expires_at,
        revoked_at: None,
        secret_hash: hash,
        replaces: created.replaces,
        replaced_by: None,
        revoked_reason: None,
        leak_url: None,
        allowed_cidrs: created.allowed_cidrs.clone(),
        not_before: created.not_before,
        self_rotate: created.self_rotate,
        decoy: created.decoy,
    }
}

/// One token's fold, for callers that hold that token's state alone (the
/// writer answering a command). Whether another token has the same hash is
/// not known here; the writer never makes such an event.
pub fn apply(state: Option<TokenView>, envelope: &EventEnvelope) -> Option<TokenView> {
    struct One<'a>(Option<&'a TokenView>);
    impl Known for One<'_> {
        fn id_known(&self, _: Ulid) -> bool {
            self.0.is_some()
        }
        fn by_hash(&self, hash: &SecretHash) -> Option<(Ulid, bool)> {
            let v = self.0.filter(|v| v.secret_hash == *hash)?;
            Some((v.id, v.revoked_at.is_some()))
        }
    }
    let change = change(&One(state.as_ref()), envelope);
    update(state, envelope, &change)
}

/// What a secret hash verifies as once a sequence is folded.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unknown,
    /// Active, and never expiring.
    Active {
        token_id: Ulid,
        user_id: String,
    },
    /// Active until `at_ms` (milliseconds since the epoch).
    Until {
        token_id: Ulid,
        at_ms: i64,
    },
    Revoked {
        token_id: Ulid,
    },
}

/// A sequence of events and what each named secret hash folds to.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub events: Vec<EventEnvelope>,
    pub expect: Vec<(SecretHash, Outcome)>,
}

/// The table both folds are tested against.
#[cfg(any(test, feature = "test-util"))]
pub fn cases() -> Vec<Case> {
    use crate::token::{Expiration, Scope};

    let at: jiff::Timestamp =
        jiff::Timestamp::from_millisecond(1_780_000_000_000).unwrap_or_default();
    let h = |i: u8| SecretHash([i; 32]);
    let id = |i: u8| Ulid::from_parts(1_780_000_000_000, u128::from(i));
    let mut seq = 0u64;
    let mut envelope = |token: Ulid, event: TokenEvent| {
        seq += 1;
        EventEnvelope {
            seq,
            id: Ulid::from_parts(1_780_000_000_000, 1000 + u128::from(seq)),
            at,
            actor: "alice".into(),
            token_id: token,
            event,
        }
    };
    let create = |user: &str, hash: &str| {
        TokenEvent::TokenCreated(TokenCreated {
            user_id: user.into(),
            description: "fold".into(),
            expiration: Expiration::Never,
            scopes: vec![Scope::Read],
            workspaces: vec!["acme".into()],
            expires_at: None,
            secret_hash: hash.into(),
            replaces: None,
            allowed_cidrs: Vec::new(),
            not_before: None,
            self_rotate: false,
            decoy: false,
        })
    };
    let revoke = |hash: &str| {
        TokenEvent::TokenRevoked(TokenRevoked {
            user_id: "alice".into(),
            secret_hash: hash.into(),
            reason: Default::default(),
            url: None,
        })
    };
    let active = |i: u8, user: &str| Outcome::Active {
        token_id: id(i),
        user_id: user.into(),
    };
    let revoked = |i: u8| Outcome::Revoked { token_id: id(i) };
    let hex = |i: u8| h(i).to_hex();

    let mut out = Vec::new();
    let mut case = |name, events: Vec<(Ulid, TokenEvent)>, expect| {
        out.push(Case {
            name,
            events: events.into_iter().map(|(t, e)| envelope(t, e)).collect(),
            expect,
        });
    };
    case(
        "a creation makes an active token",
        vec![(id(1), create("alice", &hex(1)))],
        vec![(h(1), active(1, "alice")), (h(2), Outcome::Unknown)],
    );
    case(
        "a revocation revokes it",
        vec![(id(1), create("alice", &hex(1))), (id(1), revoke(&hex(1)))],
        vec![(h(1), revoked(1))],
    );
    case(
        "a repeated creation of the same id changes nothing, even after a revocation",
        vec![
            (id(1), create("alice", &hex(1))),
            (id(1), revoke(&hex(1))),
            (id(1), create("alice", &hex(1))),
            (id(1), create("mallory", &hex(9))),
        ],
        vec![(h(1), revoked(1)), (h(9), Outcome::Unknown)],
    );
    case(
        "a second token with a known secret hash changes nothing",
        vec![
            (id(1), create("alice", &hex(1))),
            (id(2), create("mallory", &hex(1))),
        ],
        vec![(h(1), active(1, "alice"))],
    );
    case(
        "a creation with a malformed hash makes nothing",
        vec![
            (id(1), create("alice", "not hex")),
            (id(1), create("alice", &hex(1))),
        ],
        vec![(h(1), active(1, "alice"))],
    );
    case(
        "a revocation before the creation changes nothing",
        vec![(id(1), revoke(&hex(1))), (id(1), create("alice", &hex(1)))],
        vec![(h(1), active(1, "alice"))],
    );
    case(
        "a revocation naming another token's hash changes nothing",
        vec![
            (id(1), create("alice", &hex(1))),
            (id(2), create("alice", &hex(2))),
            (id(2), revoke(&hex(1))),
        ],
        vec![(h(1), active(1, "alice")), (h(2), active(2, "alice"))],
    );
    case(
        "a revocation is idempotent",
        vec![
            (id(1), create("alice", &hex(1))),
            (id(1), revoke(&hex(1))),
            (id(1), revoke(&hex(1))),
        ],
        vec![(h(1), revoked(1))],
    );
    let rotate = |hash: &str, by: u8, until_ms: i64| {
        TokenEvent::TokenRotated(TokenRotated {
            user_id: "alice".into(),
            secret_hash: hash.into(),
            replaced_by: id(by),
            expires_at: Timestamp::from_millisecond(until_ms).unwrap_or_default(),
            self_rotated: false,
        })
    };
    let until = |i: u8, at_ms: i64| Outcome::Until {
        token_id: id(i),
        at_ms,
    };
    case(
        "a rotation ends the old token at the overlap's end",
        vec![
            (id(1), create("alice", &hex(1))),
            (id(2), create("alice", &hex(2))),
            (id(1), rotate(&hex(1), 2, 1_780_003_600_000)),
        ],
        vec![
            (h(1), until(1, 1_780_003_600_000)),
            (h(2), active(2, "alice")),
        ],
    );
    case(
        "a rotation only ever moves the end earlier",
        vec![
            (id(1), create("alice", &hex(1))),
            (id(1), rotate(&hex(1), 2, 1_780_000_000_000)),
            (id(1), rotate(&hex(1), 3, 1_790_000_000_000)),
        ],
        vec![(h(1), until(1, 1_780_000_000_000))],
    );
    case(
        "a rotation of a revoked, unknown or other token changes nothing",
        vec![
            (id(1), create("alice", &hex(1))),
            (id(1), revoke(&hex(1))),
            (id(1), rotate(&hex(1), 2, 1_780_000_000_000)),
            (id(3), create("alice", &hex(3))),
            (id(3), rotate(&hex(1), 2, 1_780_000_000_000)),
            (id(4), rotate(&hex(4), 2, 1_780_000_000_000)),
        ],
        vec![
            (h(1), revoked(1)),
            (h(3), active(3, "alice")),
            (h(4), Outcome::Unknown),
        ],
    );
    out
}

/// What `view` verifies as, in the terms of [`Outcome`].
#[cfg(any(test, feature = "test-util"))]
pub fn outcome_of(view: Option<&TokenView>) -> Outcome {
    match view {
        None => Outcome::Unknown,
        Some(v) if v.revoked_at.is_some() => Outcome::Revoked { token_id: v.id },
        Some(v) => match v.expires_at {
            Some(at) => Outcome::Until {
                token_id: v.id,
                at_ms: at.as_millisecond(),
            },
            None => Outcome::Active {
                token_id: v.id,
                user_id: v.user_id.clone(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Reference;

    #[test]
    fn the_reference_fold_meets_every_case_and_what_it_records_gives_back_each_change() {
        for case in cases() {
            let mut fold = Reference::default();
            for e in &case.events {
                let change = fold.fold(e);
                assert_eq!(folded(e, change.changes_token()), change, "{}", case.name);
            }
            for (hash, want) in &case.expect {
                let view = fold.by_hash.get(&hash.0).and_then(|id| fold.by_id.get(id));
                assert_eq!(&outcome_of(view), want, "{}", case.name);
            }
        }
    }

    #[test]
    fn a_workspace_policy_is_the_workspace_s_change_and_no_token_s() {
        let set = crate::events::WorkspacePolicySet {
            workspace: "acme".into(),
            max_lifetime: Some(crate::token::Expiration::SixMonths),
            require_expiration: true,
        };
        let envelope = EventEnvelope {
            seq: 1,
            id: Ulid::from_parts(1_780_000_000_000, 9),
            at: Timestamp::from_millisecond(1_780_000_000_000).unwrap_or_default(),
            actor: "bob".into(),
            token_id: Ulid::nil(),
            event: TokenEvent::WorkspacePolicySet(set.clone()),
        };
        assert_eq!(
            envelope.aggregate(),
            crate::events::Aggregate::Workspace("acme")
        );
        let change = change(&Reference::default(), &envelope);
        assert_eq!(
            change,
            Change::Workspace(WorkspaceChange::PolicySet {
                workspace: "acme",
                policy: set.policy(),
            })
        );
        assert_eq!(update(None, &envelope, &change), None);
        assert_eq!(folded(&envelope, change.changes_token()), change);
    }

    #[test]
    fn apply_keeps_the_first_creation_and_the_first_revocation() {
        let case = &cases()[2];
        let state = case.events.iter().fold(None, apply);
        let view = state.expect("created");
        assert_eq!(view.user_id, "alice");
        assert!(view.revoked_at.is_some());
    }

    #[test]
    fn a_rotation_links_the_first_successor_and_a_revocation_keeps_its_reason() {
        let case = &cases()[9];
        let view = case.events.iter().fold(None, apply).expect("created");
        assert_eq!(
            view.replaced_by,
            Some(Ulid::from_parts(1_780_000_000_000, 2))
        );
        let mut revocation = cases()[1].events.clone();
        if let TokenEvent::TokenRevoked(r) = &mut revocation[1].event {
            r.reason = crate::token::RevokeReason::Leaked;
            r.url = Some("https://example.com/paste".into());
        }
        let view = revocation.iter().fold(None, apply).expect("created");
        assert_eq!(
            view.revoked_reason,
            Some(crate::token::RevokeReason::Leaked)
        );
        assert_eq!(view.leak_url.as_deref(), Some("https://example.com/paste"));
    }
}
