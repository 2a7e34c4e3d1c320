//! Commands and the decisions on them: the only place a request becomes an
//! event. `decide` is pure; the writer gives it the token's current state.

use enspace_core::events::{TokenCreated, TokenRevoked};
use enspace_core::token::RevokeReason;
use enspace_core::{Expiration, Scope, SecretHash, TokenEvent, TokenView};
use jiff::Timestamp;
use ulid::Ulid;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Command {
    CreateToken(CreateToken),
    RevokeToken {
        token_id: Ulid,
        actor: String,
        reason: RevokeReason,
    },
}

/// The actor of changes the service makes by itself (e.g. revocations after
/// a membership change), never a user's id: the directory refuses it.
pub const SYSTEM_ACTOR: &str = "system";

/// A validated creation request: every field already obeys the contract.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreateToken {
    pub token_id: Ulid,
    pub actor: String,
    pub description: String,
    pub expiration: Expiration,
    pub scopes: Vec<Scope>,
    pub workspaces: Vec<String>,
    pub secret_hash: SecretHash,
}

impl Command {
    pub fn token_id(&self) -> Ulid {
        match self {
            Command::CreateToken(c) => c.token_id,
            Command::RevokeToken { token_id, .. } => *token_id,
        }
    }

    pub fn actor(&self) -> &str {
        match self {
            Command::CreateToken(c) => &c.actor,
            Command::RevokeToken { actor, .. } => actor,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CommandError {
    #[error("no such token")]
    TokenNotFound,
    #[error("a token with this id exists already")]
    DuplicateToken,
    #[error("the event store failed: {0}")]
    Store(String),
    /// This process is not the cluster's writer (the command is forwarded).
    #[error("this process is not the writer")]
    NotWriter,
    /// The cluster cannot record changes right now (no writer, or the
    /// stream refused): nothing was recorded, try again.
    #[error("cannot record changes right now: {0}")]
    Unavailable(String),
}

/// Decides what a command records, given the token's state and the time.
/// `Ok(None)`: nothing to record (revoking a revoked token).
pub fn decide(
    command: &Command,
    current: Option<&TokenView>,
    now: Timestamp,
) -> Result<Option<TokenEvent>, CommandError> {
    match command {
        Command::CreateToken(c) => {
            if current.is_some() {
                return Err(CommandError::DuplicateToken);
            }
            Ok(Some(TokenEvent::TokenCreated(TokenCreated {
                user_id: c.actor.clone(),
                description: c.description.clone(),
                expiration: c.expiration,
                scopes: c.scopes.clone(),
                workspaces: c.workspaces.clone(),
                expires_at: c.expiration.expires_at(now),
                secret_hash: c.secret_hash.to_hex(),
            })))
        }
        Command::RevokeToken { actor, reason, .. } => match current {
            Some(view) if may_revoke(actor, *reason, view) => {
                Ok(view.revoked_at.is_none().then(|| {
                    TokenEvent::TokenRevoked(TokenRevoked {
                        user_id: view.user_id.clone(),
                        secret_hash: view.secret_hash.to_hex(),
                        reason: *reason,
                    })
                }))
            }
            _ => Err(CommandError::TokenNotFound),
        },
    }
}

/// A user revokes only their own tokens; the system revokes any token, but
/// only for a membership change.
fn may_revoke(actor: &str, reason: RevokeReason, view: &TokenView) -> bool {
    match reason {
        RevokeReason::MembershipRemoved => actor == SYSTEM_ACTOR,
        _ => view.user_id == actor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enspace_core::EventEnvelope;
    use enspace_core::fold::apply;

    fn now() -> Timestamp {
        "2026-01-31T09:00:00Z".parse().expect("ts")
    }

    fn create(actor: &str) -> Command {
        Command::CreateToken(CreateToken {
            token_id: Ulid::new(),
            actor: actor.into(),
            description: "ERP Integration".into(),
            expiration: Expiration::OneMonth,
            scopes: vec![Scope::Read],
            workspaces: vec!["acme".into()],
            secret_hash: SecretHash([1; 32]),
        })
    }

    /// Given these commands in order, the state they fold to.
    fn given(commands: &[Command]) -> Option<TokenView> {
        commands.iter().enumerate().fold(None, |state, (i, cmd)| {
            match decide(cmd, state.as_ref(), now()).expect("decides") {
                Some(event) => apply(
                    state,
                    &EventEnvelope {
                        seq: i as u64 + 1,
                        id: Ulid::new(),
                        at: now(),
                        actor: cmd.actor().into(),
                        token_id: cmd.token_id(),
                        event,
                    },
                ),
                None => state,
            }
        })
    }

    #[test]
    fn create_records_token_created_with_the_calendar_expiry() {
        let event = decide(&create("alice"), None, now()).expect("ok");
        let Some(TokenEvent::TokenCreated(c)) = event else {
            panic!("expected token_created, got {event:?}")
        };
        assert_eq!(c.user_id, "alice");
        assert_eq!(
            c.expires_at,
            Some("2026-02-28T09:00:00Z".parse().expect("ts"))
        );
        assert_eq!(c.secret_hash, SecretHash([1; 32]).to_hex());
    }

    #[test]
    fn create_with_an_existing_id_is_refused() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        assert_eq!(
            decide(&cmd, state.as_ref(), now()),
            Err(CommandError::DuplicateToken)
        );
    }

    #[test]
    fn revoke_by_the_owner_records_token_revoked() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let revoke = Command::RevokeToken {
            token_id: cmd.token_id(),
            actor: "alice".into(),
            reason: RevokeReason::User,
        };
        assert!(matches!(
            decide(&revoke, state.as_ref(), now()),
            Ok(Some(TokenEvent::TokenRevoked(_)))
        ));
    }

    #[test]
    fn revoking_a_revoked_token_records_nothing() {
        let cmd = create("alice");
        let revoke = Command::RevokeToken {
            token_id: cmd.token_id(),
            actor: "alice".into(),
            reason: RevokeReason::User,
        };
        let state = given(&[cmd, revoke.clone()]);
        assert!(state.as_ref().is_some_and(|s| s.revoked_at.is_some()));
        assert_eq!(decide(&revoke, state.as_ref(), now()), Ok(None));
    }

    #[test]
    fn revoking_someone_elses_or_an_unknown_token_is_not_found() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let by_bob = Command::RevokeToken {
            token_id: cmd.token_id(),
            actor: "bob".into(),
            reason: RevokeReason::User,
        };
        assert_eq!(
            decide(&by_bob, state.as_ref(), now()),
            Err(CommandError::TokenNotFound)
        );
        assert_eq!(
            decide(&by_bob, None, now()),
            Err(CommandError::TokenNotFound)
        );
    }

    fn revoke(token: &Command, actor: &str, reason: RevokeReason) -> Command {
        Command::RevokeToken {
            token_id: token.token_id(),
            actor: actor.into(),
            reason,
        }
    }

    #[test]
    fn the_system_revokes_any_token_for_a_membership_change_with_that_reason() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let by_system = revoke(&cmd, SYSTEM_ACTOR, RevokeReason::MembershipRemoved);
        let Ok(Some(TokenEvent::TokenRevoked(event))) = decide(&by_system, state.as_ref(), now())
        else {
            panic!("expected token_revoked")
        };
        assert_eq!(event.reason, RevokeReason::MembershipRemoved);
        assert_eq!(event.user_id, "alice", "the event names the owner");
    }

    #[test]
    fn the_system_cannot_revoke_for_another_reason_nor_a_user_for_membership() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        for command in [
            revoke(&cmd, SYSTEM_ACTOR, RevokeReason::User),
            revoke(&cmd, SYSTEM_ACTOR, RevokeReason::Admin),
            revoke(&cmd, "alice", RevokeReason::MembershipRemoved),
            revoke(&cmd, "bob", RevokeReason::MembershipRemoved),
        ] {
            assert_eq!(
                decide(&command, state.as_ref(), now()),
                Err(CommandError::TokenNotFound),
                "{command:?}"
            );
        }
    }

    #[test]
    fn the_owners_revocation_records_the_reason_it_was_given() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let Ok(Some(TokenEvent::TokenRevoked(event))) = decide(
            &revoke(&cmd, "alice", RevokeReason::User),
            state.as_ref(),
            now(),
        ) else {
            panic!("expected token_revoked")
        };
        assert_eq!(event.reason, RevokeReason::User);
    }
}
