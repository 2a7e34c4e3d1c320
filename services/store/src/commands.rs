//! Commands and the decisions on them: the only place a request becomes an
//! event. `decide` is pure; the writer gives it the state of the token the
//! command is about, and the time.

use enspace_core::events::{
    SigningKeyRotated, TokenCreated, TokenRevoked, TokenRotated, WorkspacePolicySet,
};
use enspace_core::token::{RevokeReason, TokenStatus};
use enspace_core::{Expiration, Scope, SecretHash, TokenEvent, TokenView, WorkspacePolicy};
use jiff::{SignedDuration, Timestamp};
use ulid::Ulid;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Command {
    CreateToken(CreateToken),
    RevokeToken {
        token_id: Ulid,
        actor: String,
        reason: RevokeReason,
    },
    RotateToken(RotateToken),
    /// Revoke the live token with this secret hash, reported as leaked
    /// (found at `url`); made by the service itself.
    RevokeLeaked {
        secret_hash: SecretHash,
        url: Option<String>,
    },
    /// A workspace admin revokes a token that can reach the workspace
    /// (whether `actor` administers it is the caller's to check).
    AdminRevoke {
        token_id: Ulid,
        actor: String,
        workspace: String,
    },
    /// A workspace admin sets the workspace's token policy.
    SetPolicy {
        workspace: String,
        actor: String,
        policy: WorkspacePolicy,
    },
    /// An operator rotates the event signing key (the writer checks that
    /// the rotation starts from the key in force).
    RotateEventKey(SigningKeyRotated),
}

pub use enspace_core::SYSTEM_ACTOR;

/// A validated creation request: every field already obeys the API's rules.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreateToken {
    pub token_id: Ulid,
    pub actor: String,
    pub description: String,
    pub expiration: Expiration,
    pub scopes: Vec<Scope>,
    pub workspaces: Vec<String>,
    pub secret_hash: SecretHash,
    /// Canonical CIDRs calls may come from; empty for anywhere.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// When the token starts working, if not at once.
    #[serde(default)]
    pub not_before: Option<Timestamp>,
    /// Whether the token may rotate itself.
    #[serde(default)]
    pub self_rotate: bool,
    /// Whether it is a decoy (no scopes, no workspaces, never granting).
    #[serde(default)]
    pub decoy: bool,
}

/// Replace `token_id` with a new token (`successor`, named by the writer)
/// of the same description, scopes and workspaces; the old one keeps
/// working for `overlap`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RotateToken {
    pub token_id: Ulid,
    pub successor: Ulid,
    pub actor: String,
    pub overlap: SignedDuration,
    /// The successor's expiration; the old token's when absent.
    pub expiration: Option<Expiration>,
    pub secret_hash: SecretHash,
    /// The token rotates itself (its own secret was the credential; the
    /// actor is still its owner).
    #[serde(default)]
    pub by_itself: bool,
}

/// Which token a command is about: by id, or by secret hash (a leak report
/// knows only the secret).
pub enum Target<'a> {
    Id(Ulid),
    Hash(&'a SecretHash),
}

impl Command {
    pub fn target(&self) -> Target<'_> {
        match self {
            Command::CreateToken(c) => Target::Id(c.token_id),
            Command::RevokeToken { token_id, .. } => Target::Id(*token_id),
            Command::RotateToken(r) => Target::Id(r.token_id),
            Command::RevokeLeaked { secret_hash, .. } => Target::Hash(secret_hash),
            Command::AdminRevoke { token_id, .. } => Target::Id(*token_id),
            // About no token: the nil id, whose state is always none.
            Command::SetPolicy { .. } | Command::RotateEventKey(_) => Target::Id(Ulid::nil()),
        }
    }

    pub fn actor(&self) -> &str {
        match self {
            Command::CreateToken(c) => &c.actor,
            Command::RevokeToken { actor, .. } => actor,
            Command::RotateToken(r) => &r.actor,
            Command::RevokeLeaked { .. } | Command::RotateEventKey(_) => SYSTEM_ACTOR,
            Command::AdminRevoke { actor, .. } | Command::SetPolicy { actor, .. } => actor,
        }
    }

    /// The secret hash of the token this command makes, if it makes one
    /// (the secret is made where the request arrived, and only its hash
    /// travels): a token holding it means the command was carried out,
    /// whichever writer did it.
    pub fn makes(&self) -> Option<&SecretHash> {
        match self {
            Command::CreateToken(c) => Some(&c.secret_hash),
            Command::RotateToken(r) => Some(&r.secret_hash),
            _ => None,
        }
    }

    /// Whether `view`, the token holding [`Command::makes`]'s hash, is the
    /// one this command made.
    pub fn made(&self, view: &TokenView) -> bool {
        match self {
            Command::CreateToken(c) => view.user_id == c.actor && view.replaces.is_none(),
            Command::RotateToken(r) => view.user_id == r.actor && view.replaces == Some(r.token_id),
            _ => false,
        }
    }

    /// The workspaces whose policy the decision needs.
    pub fn workspaces<'a>(&'a self, current: Option<&'a TokenView>) -> &'a [String] {
        match self {
            Command::CreateToken(c) => &c.workspaces,
            Command::RotateToken(_) => current.map_or(&[], |v| &v.workspaces),
            Command::SetPolicy { workspace, .. } => std::slice::from_ref(workspace),
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CommandError {
    #[error("no such token")]
    TokenNotFound,
    /// The token is revoked or expired (or, for a rotation, already
    /// replaced): nothing can be done with it.
    #[error("the token is not active: {0}")]
    TokenInactive(String),
    #[error("a token with this id exists already")]
    DuplicateToken,
    /// A workspace's policy forbids the token asked for.
    #[error("the policy of workspace `{workspace}` forbids it: {why}")]
    PolicyViolation { workspace: String, why: String },
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

/// What a command records: events, each on its token (the nil id for
/// none), and the token whose state answers the command, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub events: Vec<(Ulid, TokenEvent)>,
    pub answer: Option<Ulid>,
}

/// Decides what a command records, given the state of the token it is
/// about (`token_id`, found by [`Command::target`]), the policies of the
/// workspaces it names ([`Command::workspaces`]) and the time. No events:
/// nothing to record (revoking a revoked token).
pub fn decide(
    command: &Command,
    token_id: Ulid,
    current: Option<&TokenView>,
    policy: &dyn Fn(&str) -> WorkspacePolicy,
    now: Timestamp,
) -> Result<Decision, CommandError> {
    let one = |event: Option<TokenEvent>| Decision {
        events: event.map(|e| (token_id, e)).into_iter().collect(),
        answer: Some(token_id),
    };
    let allowed = |workspaces: &[String], expiration: Expiration| {
        workspaces.iter().try_for_each(|workspace| {
            policy(workspace)
                .allows(expiration)
                .map_err(|why| CommandError::PolicyViolation {
                    workspace: workspace.clone(),
                    why,
                })
        })
    };
    match command {
        Command::CreateToken(c) => {
            if current.is_some() {
                return Err(CommandError::DuplicateToken);
            }
            allowed(&c.workspaces, c.expiration)?;
            Ok(one(Some(TokenEvent::TokenCreated(TokenCreated {
                user_id: c.actor.clone(),
                description: c.description.clone(),
                expiration: c.expiration,
                scopes: c.scopes.clone(),
                workspaces: c.workspaces.clone(),
                expires_at: c.expiration.expires_at(now),
                secret_hash: c.secret_hash.to_hex(),
                replaces: None,
                allowed_cidrs: c.allowed_cidrs.clone(),
                not_before: c.not_before,
                self_rotate: c.self_rotate,
                decoy: c.decoy,
            }))))
        }
        Command::RevokeToken { actor, reason, .. } => match current {
            Some(view) if may_revoke(actor, *reason, view) => Ok(one(view
                .revoked_at
                .is_none()
                .then(|| revocation(view, *reason, None)))),
            _ => Err(CommandError::TokenNotFound),
        },
        Command::RevokeLeaked { url, .. } => {
            // A decoy found in the open is not revoked: it stays a tripwire.
            let view = current
                .filter(|v| !v.decoy)
                .ok_or(CommandError::TokenNotFound)?;
            active(view, now)?;
            Ok(one(Some(revocation(
                view,
                RevokeReason::Leaked,
                url.clone(),
            ))))
        }
        Command::RotateToken(r) => {
            let view = current
                .filter(|v| v.user_id == r.actor && !v.decoy)
                .ok_or(CommandError::TokenNotFound)?;
            active(view, now)?;
            if let Some(successor) = view.replaced_by {
                return Err(CommandError::TokenInactive(format!(
                    "it was rotated already; its successor is {successor}"
                )));
            }
            let until = now
                .checked_add(r.overlap)
                .map_err(|_| CommandError::Store("the overlap is out of range".into()))?;
            let expiration = r.expiration.unwrap_or(view.expiration);
            allowed(&view.workspaces, expiration)?;
            let created = TokenEvent::TokenCreated(TokenCreated {
                user_id: view.user_id.clone(),
                description: view.description.clone(),
                expiration,
                scopes: view.scopes.clone(),
                workspaces: view.workspaces.clone(),
                expires_at: expiration.expires_at(now),
                secret_hash: r.secret_hash.to_hex(),
                replaces: Some(view.id),
                // A successor is fenced as its predecessor was.
                allowed_cidrs: view.allowed_cidrs.clone(),
                not_before: view.not_before,
                // So does the right to rotate itself.
                self_rotate: view.self_rotate,
                decoy: false,
            });
            let rotated = TokenEvent::TokenRotated(TokenRotated {
                user_id: view.user_id.clone(),
                secret_hash: view.secret_hash.to_hex(),
                replaced_by: r.successor,
                expires_at: until,
                self_rotated: r.by_itself,
            });
            Ok(Decision {
                events: vec![(r.successor, created), (view.id, rotated)],
                answer: Some(r.successor),
            })
        }
        Command::AdminRevoke { workspace, .. } => match current {
            Some(view) if view.has_workspace(workspace) => Ok(one(view
                .revoked_at
                .is_none()
                .then(|| revocation(view, RevokeReason::Admin, None)))),
            _ => Err(CommandError::TokenNotFound),
        },
        Command::SetPolicy {
            workspace,
            policy: new,
            ..
        } if policy(workspace) == *new => Ok(Decision {
            events: Vec::new(),
            answer: None,
        }),
        Command::SetPolicy {
            workspace, policy, ..
        } => Ok(Decision {
            events: vec![(
                Ulid::nil(),
                TokenEvent::WorkspacePolicySet(WorkspacePolicySet {
                    workspace: workspace.clone(),
                    max_lifetime: policy.max_lifetime,
                    require_expiration: policy.require_expiration,
                }),
            )],
            answer: None,
        }),
        Command::RotateEventKey(rotated) => Ok(Decision {
            events: vec![(Ulid::nil(), TokenEvent::SigningKeyRotated(rotated.clone()))],
            answer: None,
        }),
    }
}

fn revocation(view: &TokenView, reason: RevokeReason, url: Option<String>) -> TokenEvent {
    TokenEvent::TokenRevoked(TokenRevoked {
        user_id: view.user_id.clone(),
        secret_hash: view.secret_hash.to_hex(),
        reason,
        url,
    })
}

/// Refuses a revoked or expired token.
fn active(view: &TokenView, now: Timestamp) -> Result<(), CommandError> {
    match view.status(now) {
        TokenStatus::Active => Ok(()),
        TokenStatus::Revoked => Err(CommandError::TokenInactive("it is revoked".into())),
        TokenStatus::Expired => Err(CommandError::TokenInactive("it has expired".into())),
    }
}

/// A user revokes only their own tokens, as `user`; the system revokes any
/// token, but only for a membership change. The other reasons have commands
/// of their own (`RevokeLeaked`, `AdminRevoke`) or come with a rotation.
fn may_revoke(actor: &str, reason: RevokeReason, view: &TokenView) -> bool {
    match reason {
        RevokeReason::MembershipRemoved => actor == SYSTEM_ACTOR,
        RevokeReason::User => view.user_id == actor,
        RevokeReason::Leaked | RevokeReason::Admin | RevokeReason::Rotated => false,
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
            allowed_cidrs: Vec::new(),
            not_before: None,
            self_rotate: false,
            decoy: false,
        })
    }

    fn no_policy(_: &str) -> WorkspacePolicy {
        WorkspacePolicy::default()
    }

    fn id_of(command: &Command) -> Ulid {
        match command.target() {
            Target::Id(id) => id,
            Target::Hash(_) => panic!("a command by hash"),
        }
    }

    /// What `command` decides about its own token, given `state`.
    fn decide_on(command: &Command, state: Option<&TokenView>) -> Result<Decision, CommandError> {
        let id = state.map_or_else(|| id_of(command), |s| s.id);
        decide(command, id, state, &no_policy, now())
    }

    /// The one event `command` records on `state`, if any.
    fn event_of(
        command: &Command,
        state: Option<&TokenView>,
    ) -> Result<Option<TokenEvent>, CommandError> {
        let decision = decide_on(command, state)?;
        assert!(decision.events.len() <= 1, "{decision:?}");
        Ok(decision.events.into_iter().next().map(|(_, e)| e))
    }

    /// Given these commands in order, the state of the first one's token.
    fn given(commands: &[Command]) -> Option<TokenView> {
        commands.iter().enumerate().fold(None, |state, (i, cmd)| {
            match event_of(cmd, state.as_ref()).expect("decides") {
                Some(event) => apply(
                    state,
                    &EventEnvelope {
                        seq: i as u64 + 1,
                        id: Ulid::new(),
                        at: now(),
                        actor: cmd.actor().into(),
                        token_id: id_of(cmd),
                        event,
                    },
                ),
                None => state,
            }
        })
    }

    #[test]
    fn create_records_token_created_with_the_calendar_expiry() {
        let event = event_of(&create("alice"), None).expect("ok");
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
            decide_on(&cmd, state.as_ref()),
            Err(CommandError::DuplicateToken)
        );
    }

    fn revoke(token: &Command, actor: &str, reason: RevokeReason) -> Command {
        Command::RevokeToken {
            token_id: id_of(token),
            actor: actor.into(),
            reason,
        }
    }

    #[test]
    fn revoke_by_the_owner_records_token_revoked() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        assert!(matches!(
            event_of(&revoke(&cmd, "alice", RevokeReason::User), state.as_ref()),
            Ok(Some(TokenEvent::TokenRevoked(_)))
        ));
    }

    #[test]
    fn revoking_a_revoked_token_records_nothing() {
        let cmd = create("alice");
        let revoke = revoke(&cmd, "alice", RevokeReason::User);
        let state = given(&[cmd, revoke.clone()]);
        assert!(state.as_ref().is_some_and(|s| s.revoked_at.is_some()));
        assert_eq!(event_of(&revoke, state.as_ref()), Ok(None));
    }

    #[test]
    fn revoking_someone_elses_or_an_unknown_token_is_not_found() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let by_bob = revoke(&cmd, "bob", RevokeReason::User);
        assert_eq!(
            decide_on(&by_bob, state.as_ref()),
            Err(CommandError::TokenNotFound)
        );
        assert_eq!(decide_on(&by_bob, None), Err(CommandError::TokenNotFound));
    }

    #[test]
    fn the_system_revokes_any_token_for_a_membership_change_with_that_reason() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let by_system = revoke(&cmd, SYSTEM_ACTOR, RevokeReason::MembershipRemoved);
        let Ok(Some(TokenEvent::TokenRevoked(event))) = event_of(&by_system, state.as_ref()) else {
            panic!("expected token_revoked")
        };
        assert_eq!(event.reason, RevokeReason::MembershipRemoved);
        assert_eq!(event.user_id, "alice", "the event names the owner");
    }

    #[test]
    fn the_system_cannot_revoke_for_another_reason_nor_a_user_for_any_but_user() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        for command in [
            revoke(&cmd, SYSTEM_ACTOR, RevokeReason::User),
            revoke(&cmd, SYSTEM_ACTOR, RevokeReason::Admin),
            revoke(&cmd, "alice", RevokeReason::MembershipRemoved),
            revoke(&cmd, "bob", RevokeReason::MembershipRemoved),
            revoke(&cmd, "alice", RevokeReason::Admin),
            revoke(&cmd, "alice", RevokeReason::Leaked),
            revoke(&cmd, "alice", RevokeReason::Rotated),
        ] {
            assert_eq!(
                decide_on(&command, state.as_ref()),
                Err(CommandError::TokenNotFound),
                "{command:?}"
            );
        }
    }

    #[test]
    fn the_owners_revocation_records_the_reason_it_was_given() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let Ok(Some(TokenEvent::TokenRevoked(event))) =
            event_of(&revoke(&cmd, "alice", RevokeReason::User), state.as_ref())
        else {
            panic!("expected token_revoked")
        };
        assert_eq!(event.reason, RevokeReason::User);
    }

    fn leaked(url: Option<&str>) -> Command {
        Command::RevokeLeaked {
            secret_hash: SecretHash([1; 32]),
            url: url.map(str::to_owned),
        }
    }

    #[test]
    fn a_leak_report_revokes_a_live_token_with_reason_leaked_and_the_url() {
        let state = given(&[create("alice")]);
        let Ok(Some(TokenEvent::TokenRevoked(event))) =
            event_of(&leaked(Some("https://gist.example/1")), state.as_ref())
        else {
            panic!("expected token_revoked")
        };
        assert_eq!(event.reason, RevokeReason::Leaked);
        assert_eq!(event.url.as_deref(), Some("https://gist.example/1"));
        assert_eq!(event.user_id, "alice");
    }

    #[test]
    fn a_leak_report_of_an_unknown_revoked_or_expired_token_records_nothing() {
        let id = Ulid::new();
        assert_eq!(
            decide(&leaked(None), id, None, &no_policy, now()),
            Err(CommandError::TokenNotFound)
        );
        let cmd = create("alice");
        let revoked = given(&[cmd.clone(), revoke(&cmd, "alice", RevokeReason::User)]);
        let state = revoked.as_ref().expect("state");
        assert!(matches!(
            decide(&leaked(None), state.id, Some(state), &no_policy, now()),
            Err(CommandError::TokenInactive(_))
        ));
        let mut expired = given(&[cmd]).expect("state");
        expired.expires_at = Some(now());
        assert!(matches!(
            decide(&leaked(None), expired.id, Some(&expired), &no_policy, now()),
            Err(CommandError::TokenInactive(_))
        ));
    }

    fn rotate(token: &Command, actor: &str, overlap: SignedDuration) -> Command {
        Command::RotateToken(RotateToken {
            token_id: id_of(token),
            successor: Ulid::new(),
            actor: actor.into(),
            overlap,
            expiration: None,
            secret_hash: SecretHash([2; 32]),
            by_itself: false,
        })
    }

    #[test]
    fn a_rotation_creates_a_copy_that_replaces_it_and_ends_the_old_one_after_the_overlap() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let rotation = rotate(&cmd, "alice", SignedDuration::from_hours(1));
        let Command::RotateToken(r) = &rotation else {
            unreachable!()
        };
        let decision = decide_on(&rotation, state.as_ref()).expect("decides");
        assert_eq!(decision.answer, Some(r.successor));
        let [
            (new_id, TokenEvent::TokenCreated(created)),
            (old_id, TokenEvent::TokenRotated(rotated)),
        ] = decision.events.as_slice()
        else {
            panic!("expected token_created then token_rotated: {decision:?}")
        };
        assert_eq!((*new_id, *old_id), (r.successor, id_of(&cmd)));
        assert_eq!(created.replaces, Some(id_of(&cmd)));
        assert_eq!(created.description, "ERP Integration");
        assert_eq!(created.scopes, vec![Scope::Read]);
        assert_eq!(created.workspaces, vec!["acme".to_owned()]);
        assert_eq!(created.expiration, Expiration::OneMonth);
        assert_eq!(created.secret_hash, SecretHash([2; 32]).to_hex());
        assert_eq!(rotated.replaced_by, r.successor);
        assert_eq!(rotated.expires_at, now() + SignedDuration::from_hours(1));
    }

    #[test]
    fn a_fenced_token_s_fences_are_recorded_and_its_successor_keeps_them() {
        let Command::CreateToken(mut fenced) = create("alice") else {
            unreachable!()
        };
        fenced.allowed_cidrs = vec!["192.0.2.0/24".into(), "2001:db8::/32".into()];
        fenced.not_before = Some(now() + SignedDuration::from_hours(2));
        let cmd = Command::CreateToken(fenced.clone());
        let state = given(std::slice::from_ref(&cmd)).expect("created");
        assert_eq!(state.allowed_cidrs, fenced.allowed_cidrs);
        assert_eq!(state.not_before, fenced.not_before);
        let rotation = rotate(&cmd, "alice", SignedDuration::ZERO);
        let decision = decide_on(&rotation, Some(&state)).expect("decides");
        let Some((_, TokenEvent::TokenCreated(successor))) = decision.events.first() else {
            panic!("expected token_created first: {decision:?}")
        };
        assert_eq!(successor.allowed_cidrs, fenced.allowed_cidrs);
        assert_eq!(successor.not_before, fenced.not_before);
    }

    #[test]
    fn a_self_rotating_token_s_successor_keeps_the_right_and_the_rotation_says_by_itself() {
        let Command::CreateToken(mut machine) = create("alice") else {
            unreachable!()
        };
        machine.self_rotate = true;
        let cmd = Command::CreateToken(machine);
        let state = given(std::slice::from_ref(&cmd)).expect("created");
        assert!(state.self_rotate);
        let Command::RotateToken(mut by_itself) = rotate(&cmd, "alice", SignedDuration::ZERO)
        else {
            unreachable!()
        };
        by_itself.by_itself = true;
        let decision = decide_on(&Command::RotateToken(by_itself), Some(&state)).expect("decides");
        let [
            (_, TokenEvent::TokenCreated(successor)),
            (_, TokenEvent::TokenRotated(rotated)),
        ] = decision.events.as_slice()
        else {
            panic!("expected token_created and token_rotated: {decision:?}")
        };
        assert!(successor.self_rotate);
        assert!(rotated.self_rotated);
        assert_eq!(rotated.user_id, "alice");
    }

    #[test]
    fn a_decoy_is_recorded_as_one_and_can_be_revoked_but_not_rotated_or_revoked_as_leaked() {
        let Command::CreateToken(mut decoy) = create("alice") else {
            unreachable!()
        };
        decoy.decoy = true;
        decoy.scopes.clear();
        decoy.workspaces.clear();
        let cmd = Command::CreateToken(decoy.clone());
        let state = given(std::slice::from_ref(&cmd)).expect("created");
        assert!(state.decoy);
        assert_eq!(
            decide_on(&rotate(&cmd, "alice", SignedDuration::ZERO), Some(&state)),
            Err(CommandError::TokenNotFound)
        );
        let leaked = Command::RevokeLeaked {
            secret_hash: decoy.secret_hash,
            url: None,
        };
        assert_eq!(
            decide_on(&leaked, Some(&state)),
            Err(CommandError::TokenNotFound)
        );
        let revoked =
            given(&[cmd.clone(), revoke(&cmd, "alice", RevokeReason::User)]).expect("revoked");
        assert!(revoked.revoked_at.is_some());
    }

    #[test]
    fn rotating_a_revoked_rotated_or_someone_elses_token_is_refused() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        assert_eq!(
            decide_on(&rotate(&cmd, "bob", SignedDuration::ZERO), state.as_ref()),
            Err(CommandError::TokenNotFound)
        );
        let revoked = given(&[cmd.clone(), revoke(&cmd, "alice", RevokeReason::User)]);
        assert!(matches!(
            decide_on(
                &rotate(&cmd, "alice", SignedDuration::ZERO),
                revoked.as_ref()
            ),
            Err(CommandError::TokenInactive(_))
        ));
        let mut rotated = state.expect("state");
        rotated.replaced_by = Some(Ulid::new());
        assert!(matches!(
            decide_on(&rotate(&cmd, "alice", SignedDuration::ZERO), Some(&rotated)),
            Err(CommandError::TokenInactive(_))
        ));
    }

    fn three_months_at_most(_: &str) -> WorkspacePolicy {
        WorkspacePolicy {
            max_lifetime: Some(Expiration::ThreeMonths),
            require_expiration: false,
        }
    }

    #[test]
    fn a_workspace_policy_refuses_a_longer_creation_or_rotation() {
        let Command::CreateToken(mut long) = create("alice") else {
            unreachable!()
        };
        long.expiration = Expiration::SixMonths;
        let long = Command::CreateToken(long);
        assert_eq!(
            decide(&long, id_of(&long), None, &three_months_at_most, now()),
            Err(CommandError::PolicyViolation {
                workspace: "acme".into(),
                why: "tokens may live at most 3m".into()
            })
        );
        let short = create("alice");
        assert!(decide(&short, id_of(&short), None, &three_months_at_most, now()).is_ok());
        let state = given(std::slice::from_ref(&short));
        let Command::RotateToken(mut rotation) = rotate(&short, "alice", SignedDuration::ZERO)
        else {
            unreachable!()
        };
        rotation.expiration = Some(Expiration::Never);
        let rotation = Command::RotateToken(rotation);
        assert!(matches!(
            decide(
                &rotation,
                id_of(&short),
                state.as_ref(),
                &three_months_at_most,
                now()
            ),
            Err(CommandError::PolicyViolation { .. })
        ));
    }

    #[test]
    fn an_admin_revokes_only_tokens_reaching_their_workspace_with_reason_admin() {
        let cmd = create("alice");
        let state = given(std::slice::from_ref(&cmd));
        let by_admin = |workspace: &str| Command::AdminRevoke {
            token_id: id_of(&cmd),
            actor: "bob".into(),
            workspace: workspace.into(),
        };
        let Ok(Some(TokenEvent::TokenRevoked(event))) = event_of(&by_admin("acme"), state.as_ref())
        else {
            panic!("expected token_revoked")
        };
        assert_eq!(event.reason, RevokeReason::Admin);
        assert_eq!(event.user_id, "alice");
        assert_eq!(
            decide_on(&by_admin("globex"), state.as_ref()),
            Err(CommandError::TokenNotFound)
        );
    }

    /// Which variant `command` is: a `match` with no wildcard, so a new
    /// variant does not compile until the lists of examples name it.
    fn variant(command: &Command) -> usize {
        match command {
            Command::CreateToken(_) => 0,
            Command::RevokeToken { .. } => 1,
            Command::RotateToken(_) => 2,
            Command::RevokeLeaked { .. } => 3,
            Command::AdminRevoke { .. } => 4,
            Command::SetPolicy { .. } => 5,
            Command::RotateEventKey(_) => 6,
        }
    }
    const VARIANTS: usize = 7;

    #[test]
    fn every_command_survives_the_forwarding_encoding() {
        let cmd = create("alice");
        let commands = [
            cmd.clone(),
            Command::RevokeToken {
                token_id: id_of(&cmd),
                actor: "alice".into(),
                reason: RevokeReason::User,
            },
            rotate(&cmd, "alice", SignedDuration::from_hours(24 * 30)),
            leaked(Some("https://gist.example/1")),
            Command::AdminRevoke {
                token_id: id_of(&cmd),
                actor: "bob".into(),
                workspace: "acme".into(),
            },
            Command::SetPolicy {
                workspace: "acme".into(),
                actor: "bob".into(),
                policy: WorkspacePolicy {
                    max_lifetime: Some(Expiration::ThreeMonths),
                    require_expiration: true,
                },
            },
            Command::RotateEventKey(enspace_core::key_chain::rotation(
                enspace_core::EventSigner::generate().public(),
                enspace_core::EventSigner::generate().public(),
                false,
            )),
        ];
        let mut seen: Vec<usize> = commands.iter().map(variant).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen,
            (0..VARIANTS).collect::<Vec<_>>(),
            "one example of every command"
        );
        for command in commands {
            let bytes = rmp_serde::to_vec_named(&command).expect("encode");
            let back: Command = rmp_serde::from_slice(&bytes).expect("decode");
            assert_eq!(format!("{back:?}"), format!("{command:?}"));
        }
    }
}
