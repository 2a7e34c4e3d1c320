//! Membership reconciliation at start-up: a token whose owner has left the
//! directory, or has left one of the token's workspaces, stops working.
//!
//! Tokens are never edited, so a token that lost only some of its
//! workspaces is revoked as a whole (its owner can create a new one for the
//! workspaces they still belong to). Each revocation is a `token_revoked`
//! event with reason `membership_removed` and actor `system`, so the audit
//! log says why it happened and every API node learns it like any other
//! revocation.

use enspace_core::TokenStatus;
use enspace_core::token::RevokeReason;
use futures::future::join_all;
use ulid::Ulid;

use enspace_accounts::directory::Directory;
use enspace_store::StoreError;
use enspace_store::commands::{Command, CommandError, SYSTEM_ACTOR};
use enspace_store::projections::Projections;
use enspace_store::writer::Writer;

/// Revocations handed to the writer at once (it commits them together).
const CHUNK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot read the tokens: {0}")]
    Store(#[from] StoreError),
    #[error("cannot revoke token {token_id}: {source}")]
    Revoke {
        token_id: Ulid,
        source: CommandError,
    },
}

/// A token that must go, and why (for the log).
struct Stale {
    token_id: Ulid,
    user_id: String,
    why: String,
}

/// What reconciling the tokens with the directory reads and writes.
#[derive(Clone)]
pub struct Membership {
    pub projections: Projections,
    pub directory: std::sync::Arc<Directory>,
    pub writer: Writer,
    pub clock: std::sync::Arc<dyn enspace_core::Clock>,
}

/// Compares every active token with the directory and revokes those whose
/// owner is gone or no longer belongs to one of their workspaces. Returns
/// how many were revoked. Run once the store is open and the writer started.
pub async fn reconcile(state: &Membership) -> Result<usize, ReconcileError> {
    let now = state.clock.now();
    let mut stale = Vec::new();
    for view in state.projections.all_tokens() {
        let view = view?;
        if view.status(now) != TokenStatus::Active {
            continue;
        }
        let why = match state.directory.user(&view.user_id) {
            None => Some("its owner is no longer in the directory".to_owned()),
            Some(user) => view
                .workspaces
                .iter()
                .find(|ws| !user.belongs_to(ws))
                .map(|ws| format!("its owner no longer belongs to workspace {ws}")),
        };
        if let Some(why) = why {
            stale.push(Stale {
                token_id: view.id,
                user_id: view.user_id,
                why,
            });
        }
    }
    for chunk in stale.chunks(CHUNK) {
        let revocations = chunk.iter().map(|s| {
            state.writer.execute(Command::RevokeToken {
                token_id: s.token_id,
                actor: SYSTEM_ACTOR.to_owned(),
                reason: RevokeReason::MembershipRemoved,
            })
        });
        for (s, result) in chunk.iter().zip(join_all(revocations).await) {
            result.map_err(|source| ReconcileError::Revoke {
                token_id: s.token_id,
                source,
            })?;
            tracing::info!(
                token.id = %s.token_id,
                user.id = %s.user_id,
                reason = RevokeReason::MembershipRemoved.as_str(),
                "revoked token {} of {}: {}",
                s.token_id,
                s.user_id,
                s.why
            );
        }
    }
    if !stale.is_empty() {
        tracing::warn!(
            tokens = stale.len(),
            "revoked {} tokens whose owners left the directory or a workspace",
            stale.len()
        );
    }
    Ok(stale.len())
}
