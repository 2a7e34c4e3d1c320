//! Verifying a bearer token against the local replica: format and checksum
//! (no allocation), SHA-256, one lookup, revocation, expiry, scope,
//! workspace. No I/O.

use std::sync::Arc;

use enspace_core::secret::check_pat_format;
use enspace_core::{Scope, SecretHash, SecretParseError};
use ulid::Ulid;

use crate::replica::{TokenFacts, TokenReplica};

/// A set of scopes in one byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    fn bit(scope: Scope) -> u8 {
        match scope {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Delete => 4,
        }
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & Self::bit(scope) != 0
    }

    /// In the order read, write, delete.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |acc, s| acc | Self::bit(s)))
    }
}

/// The identity of a verified token, handed to handlers as an extractor.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub token_id: Ulid,
    pub user_id: Arc<str>,
    pub scopes: Scopes,
    pub workspaces: Arc<[String]>,
}

impl From<TokenFacts> for VerifiedToken {
    fn from(facts: TokenFacts) -> Self {
        VerifiedToken {
            token_id: facts.token_id,
            user_id: facts.user_id,
            scopes: facts.scopes,
            workspaces: facts.workspaces,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Missing,
    Malformed(SecretParseError),
    Unknown,
    Expired,
    Revoked,
    InsufficientScope(Scope),
    WorkspaceNotAllowed,
}

impl Rejection {
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Malformed(SecretParseError::BadChecksum) => "bad_checksum",
            Rejection::Malformed(_) => "malformed",
            Rejection::Unknown => "unknown",
            Rejection::Expired => "expired",
            Rejection::Revoked => "revoked",
            Rejection::InsufficientScope(_) => "insufficient_scope",
            Rejection::WorkspaceNotAllowed => "workspace_not_allowed",
        }
    }
}

/// A verification's result: the rejection, if any, and the token it
/// resolved to, if any (a denied call with a known token is still logged).
pub struct Verdict {
    pub token: Option<VerifiedToken>,
    pub rejection: Option<Rejection>,
}

/// The value of an `Authorization: Bearer …` header, if that is what it is.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn verify(
    replica: &TokenReplica,
    authorization: Option<&str>,
    now_ms: i64,
    needed: Scope,
    workspace: Option<&str>,
) -> Verdict {
    let reject = |rejection, token| Verdict {
        token,
        rejection: Some(rejection),
    };
    let Some(presented) = bearer(authorization) else {
        return reject(Rejection::Missing, None);
    };
    if let Err(e) = check_pat_format(presented) {
        return reject(Rejection::Malformed(e), None);
    }
    let Some(facts) = replica.lookup(SecretHash::of(presented).as_bytes()) else {
        return reject(Rejection::Unknown, None);
    };
    let rejection = if facts.revoked {
        Some(Rejection::Revoked)
    } else if facts.expires_at_ms <= now_ms {
        Some(Rejection::Expired)
    } else if !facts.scopes.contains(needed) {
        Some(Rejection::InsufficientScope(needed))
    } else if workspace.is_some_and(|ws| !facts.workspaces.iter().any(|w| w == ws)) {
        Some(Rejection::WorkspaceNotAllowed)
    } else {
        None
    };
    Verdict {
        token: Some(facts.into()),
        rejection,
    }
}
