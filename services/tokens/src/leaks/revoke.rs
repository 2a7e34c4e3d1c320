//! Revoking a reported token: what both kinds of leak report do once they
//! have a string that may be a token.

use enspace_core::secret::check_pat_format;
use enspace_core::{SecretHash, TokenView};

use crate::commands::{Command, CommandError};
use crate::store::writer::Writer;

/// Longest leak URL recorded.
pub const MAX_LEAK_URL_LEN: usize = 2048;

/// What a report found.
#[derive(Debug)]
pub enum Finding {
    /// An active token, now revoked with reason `leaked`.
    Revoked(Box<TokenView>),
    /// Not a well-formed ENSPACE token, no such token, or one already
    /// revoked or expired: nothing changed.
    NotActive,
}

/// Whether `url` may be recorded as where a token leaked: `http` or
/// `https`, at most 2048 characters, no whitespace or control characters.
pub fn usable_leak_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"))
        && !rest.is_empty()
        && url.len() <= MAX_LEAK_URL_LEN
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_of_a_sane_length_are_recorded() {
        assert!(usable_leak_url(
            "https://github.com/acme/app/blob/main/.env"
        ));
        assert!(usable_leak_url("HTTP://example.com/paste/1"));
        assert!(!usable_leak_url("javascript:alert(1)"));
        assert!(!usable_leak_url("ftp://example.com/x"));
        assert!(!usable_leak_url("https://"));
        assert!(!usable_leak_url("https://example.com/a b"));
        assert!(!usable_leak_url("https://example.com/\u{7}"));
        let long = format!("https://example.com/{}", "a".repeat(MAX_LEAK_URL_LEN));
        assert!(!usable_leak_url(&long));
        let edge = format!("https://e.com/{}", "a".repeat(MAX_LEAK_URL_LEN - 14));
        assert_eq!(edge.len(), MAX_LEAK_URL_LEN);
        assert!(usable_leak_url(&edge));
    }
}
