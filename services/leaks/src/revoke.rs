//! Revoking a reported token: what both kinds of leak report do once they
//! have a string that may be a token.

use enspace_core::secret::check_pat_format;
use enspace_core::{SecretHash, TokenView};

use enspace_store::commands::{Command, CommandError};
use enspace_store::writer::Writer;

/// What a report found.
#[derive(Debug)]
pub enum Finding {
    /// An active token, now revoked with reason `leaked`.
    Revoked(Box<TokenView>),
    /// Not a well-formed ENSPACE token, no such token, or one already
    /// revoked or expired: nothing changed.
    NotActive,
}

/// Revokes the token whose secret is `reported`, if it is active. A string
/// that is not a well-formed ENSPACE token is looked up nowhere. Errors are
/// the store's or the cluster's: nothing was decided, try again.
pub async fn revoke_leaked(
    writer: &Writer,
    reported: &str,
    url: Option<String>,
) -> Result<Finding, CommandError> {
    if check_pat_format(reported).is_err() {
        return Ok(Finding::NotActive);
    }
    let secret_hash = SecretHash::of(reported);
    match writer
        .execute(Command::RevokeLeaked { secret_hash, url })
        .await
    {
        Ok(view) => {
            tracing::info!(token.id = %view.id, user.id = %view.user_id,
                "revoked token {}: reported leaked", view.id);
            Ok(Finding::Revoked(Box::new(view)))
        }
        Err(CommandError::TokenNotFound | CommandError::TokenInactive(_)) => Ok(Finding::NotActive),
        Err(e) => Err(e),
    }
}
