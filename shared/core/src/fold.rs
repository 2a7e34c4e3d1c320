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

use ulid::Ulid;

use crate::events::{EventEnvelope, TokenCreated, TokenEvent};
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
    },
    /// Nothing: a repeated or conflicting creation, a revocation of an
    /// unknown or already revoked token, a malformed hash.
    Nothing,
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
                Some((id, false)) if id == envelope.token_id => Change::Revoke { hash },
                _ => Change::Nothing,
            }
        }
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
    match change(&One(state.as_ref()), envelope) {
        Change::Create { hash, created } => Some(created_view(envelope, created, hash)),
        Change::Revoke { .. } => state.map(|mut view| {
            view.revoked_at = Some(envelope.at);
            view
        }),
        Change::Nothing => state,
    }
}

/// What a secret hash verifies as once a sequence is folded.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unknown,
    Active { token_id: Ulid, user_id: String },
    Revoked { token_id: Ulid },
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
    use crate::events::TokenRevoked;
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
        })
    };
    let revoke = |hash: &str| {
        TokenEvent::TokenRevoked(TokenRevoked {
            user_id: "alice".into(),
            secret_hash: hash.into(),
            reason: Default::default(),
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
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The reference fold: a map by id, with `apply`'s rules plus the
    /// hash index.
    #[derive(Default)]
    struct Reference {
        by_id: HashMap<Ulid, TokenView>,
        by_hash: HashMap<[u8; 32], Ulid>,
    }

    impl Known for Reference {
        fn id_known(&self, id: Ulid) -> bool {
            self.by_id.contains_key(&id)
        }
        fn by_hash(&self, hash: &SecretHash) -> Option<(Ulid, bool)> {
            let id = self.by_hash.get(&hash.0)?;
            let v = self.by_id.get(id)?;
            Some((v.id, v.revoked_at.is_some()))
        }
    }

    #[test]
    fn the_reference_fold_meets_every_case() {
        for case in cases() {
            let mut fold = Reference::default();
            for e in &case.events {
                match change(&fold, e) {
                    Change::Create { hash, created } => {
                        fold.by_hash.insert(hash.0, e.token_id);
                        fold.by_id
                            .insert(e.token_id, created_view(e, created, hash));
                    }
                    Change::Revoke { .. } => {
                        if let Some(v) = fold.by_id.get_mut(&e.token_id) {
                            v.revoked_at = Some(e.at);
                        }
                    }
                    Change::Nothing => {}
                }
            }
            for (hash, want) in &case.expect {
                let got = match fold.by_hash.get(&hash.0).and_then(|id| fold.by_id.get(id)) {
                    None => Outcome::Unknown,
                    Some(v) if v.revoked_at.is_some() => Outcome::Revoked { token_id: v.id },
                    Some(v) => Outcome::Active {
                        token_id: v.id,
                        user_id: v.user_id.clone(),
                    },
                };
                assert_eq!(&got, want, "{}", case.name);
            }
        }
    }

    #[test]
    fn apply_keeps_the_first_creation_and_the_first_revocation() {
        let case = &cases()[2];
        let state = case.events.iter().fold(None, apply);
        let view = state.expect("created");
        assert_eq!(view.user_id, "alice");
        assert!(view.revoked_at.is_some());
    }
}
