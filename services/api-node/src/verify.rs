//! Verifying a bearer token against the local replica: parse, checksum,
//! SHA-256, one lookup, status and expiry, scope, workspace. No I/O.

use std::sync::Arc;

use enspace_core::{PatSecret, Scope, SecretParseError};
use ulid::Ulid;

use crate::replica::{TokenFacts, TokenReplica, scope_bit};

/// The identity of a verified token, handed to handlers as an extractor.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub token_id: Ulid,
    pub user_id: Arc<str>,
    pub scopes: Vec<Scope>,
    pub workspaces: Arc<[String]>,
}

impl VerifiedToken {
    fn from_facts(facts: &TokenFacts) -> Self {
        VerifiedToken {
            token_id: facts.token_id,
            user_id: facts.user_id.clone(),
            scopes: Scope::ALL
                .into_iter()
                .filter(|s| facts.scopes & scope_bit(*s) != 0)
                .collect(),
            workspaces: facts.workspaces.clone(),
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
    let secret: PatSecret = match presented.parse() {
        Ok(secret) => secret,
        Err(e) => return reject(Rejection::Malformed(e), None),
    };
    let Some(facts) = replica.lookup(secret.hash().as_bytes()) else {
        return reject(Rejection::Unknown, None);
    };
    let token = Some(VerifiedToken::from_facts(&facts));
    if facts.revoked {
        return reject(Rejection::Revoked, token);
    }
    if facts.expires_at_ms <= now_ms {
        return reject(Rejection::Expired, token);
    }
    if facts.scopes & scope_bit(needed) == 0 {
        return reject(Rejection::InsufficientScope(needed), token);
    }
    if let Some(ws) = workspace
        && !facts.workspaces.iter().any(|w| w == ws)
    {
        return reject(Rejection::WorkspaceNotAllowed, token);
    }
    Verdict {
        token,
        rejection: None,
    }
}
