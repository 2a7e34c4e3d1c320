//! Verifying a bearer token against the local replica: format and checksum
//! (no allocation), SHA-256, one lookup, revocation, expiry, scope,
//! workspace. No I/O. The replica's memory for the token is fetched while
//! the format is checked, so the check costs next to nothing.

use std::sync::Arc;

use enspace_core::secret::{PAT_LEN, check_pat_format};
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

    /// The set as a bit mask (read 1, write 2, delete 4).
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    pub(crate) fn from_bits(bits: u8) -> Self {
        Scopes(bits & 7)
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
    // The scheme is the text before the first space, so the header must
    // start with `bearer ` in any case; tested as bytes, without a search.
    const SCHEME: &[u8] = b"bearer ";
    let header = header?;
    let scheme = header.as_bytes().get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    header.get(SCHEME.len()..).map(str::trim)
}

/// The SHA-256 of a presented token, as [`SecretHash::of`] computes it. A
/// PAT is [`PAT_LEN`] bytes, which with SHA-256's padding make exactly one
/// block, so the padding is laid down directly and the block compressed
/// once, without the streaming hasher's buffering.
pub fn token_hash(presented: &str) -> SecretHash {
    const INITIAL: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    const _: () = assert!(PAT_LEN < 56, "a PAT and its padding fit one block");
    let bytes = presented.as_bytes();
    if bytes.len() != PAT_LEN {
        return SecretHash::of(presented);
    }
    let mut block = [0u8; 64];
    block[..PAT_LEN].copy_from_slice(bytes);
    block[PAT_LEN] = 0x80;
    block[56..].copy_from_slice(&(PAT_LEN as u64 * 8).to_be_bytes());
    let mut state = INITIAL;
    sha2::compress256(&mut state, &[block.into()]);
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    SecretHash(digest)
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
    // Nothing of the wrong length is hashed or looked up.
    if presented.len() != PAT_LEN
        && let Err(e) = check_pat_format(presented)
    {
        return reject(Rejection::Malformed(e), None);
    }
    // The format check runs while the replica's cache line for the hash is
    // on its way from memory; no token that fails it is looked up.
    let hash = token_hash(presented);
    let facts = match replica.lookup_after(hash.as_bytes(), || check_pat_format(presented)) {
        Err(e) => return reject(Rejection::Malformed(e), None),
        Ok(None) => return reject(Rejection::Unknown, None),
        Ok(Some(facts)) => facts,
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

#[cfg(test)]
mod tests {
    use enspace_core::events::{TokenCreated, TokenRevoked};
    use enspace_core::{EventEnvelope, Expiration, PatSecret, TokenEvent};

    use super::*;

    #[test]
    fn bearer_takes_the_token_after_the_scheme_in_any_case() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bEaReR  abc \t")), Some("abc"));
        assert_eq!(bearer(Some("bearer ")), Some(""));
        assert_eq!(bearer(None), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearerx abc")), None);
        assert_eq!(bearer(Some(" Bearer abc")), None);
        assert_eq!(bearer(Some("Beare€ abc")), None);
    }

    #[test]
    fn token_hash_is_sha256_of_the_token() {
        for _ in 0..1000 {
            let secret = PatSecret::generate();
            assert!(token_hash(secret.expose()) == secret.hash());
        }
        for other in [
            "",
            "ens_pat_short",
            &"x".repeat(PAT_LEN + 1),
            &"y".repeat(100),
        ] {
            assert!(token_hash(other) == SecretHash::of(other));
        }
    }

    fn envelope(seq: u64, event: TokenEvent) -> EventEnvelope {
        EventEnvelope {
            seq,
            id: Ulid::new(),
            at: jiff::Timestamp::now(),
            actor: "alice".into(),
            token_id: Ulid::new(),
            event,
        }
    }

    fn created(secret: &PatSecret, scopes: Vec<Scope>, expires_at_ms: i64) -> TokenEvent {
        TokenEvent::TokenCreated(TokenCreated {
            user_id: "alice".into(),
            description: "test".into(),
            expiration: Expiration::OneMonth,
            scopes,
            workspaces: vec!["acme".into()],
            expires_at: Some(jiff::Timestamp::from_millisecond(expires_at_ms).expect("ts")),
            secret_hash: secret.hash().to_hex(),
        })
    }

    #[test]
    fn verify_returns_each_rejection() {
        let replica = TokenReplica::new();
        let good = PatSecret::generate();
        let revoked = PatSecret::generate();
        let expired = PatSecret::generate();
        replica.apply(&envelope(1, created(&good, vec![Scope::Read], 2_000)));
        replica.apply(&envelope(2, created(&revoked, vec![Scope::Read], 2_000)));
        replica.apply(&envelope(
            3,
            TokenEvent::TokenRevoked(TokenRevoked {
                user_id: "alice".into(),
                secret_hash: revoked.hash().to_hex(),
                reason: Default::default(),
            }),
        ));
        replica.apply(&envelope(4, created(&expired, vec![Scope::Read], 1_000)));
        let run = |header: Option<&str>, scope, ws| {
            let verdict = verify(&replica, header, 1_000, scope, ws);
            (verdict.rejection, verdict.token.map(|t| t.token_id))
        };
        let bearer_of = |s: &PatSecret| format!("Bearer {}", s.expose());

        let (rejection, token) = run(Some(&bearer_of(&good)), Scope::Read, Some("acme"));
        assert_eq!(rejection, None);
        assert!(token.is_some());
        assert_eq!(run(None, Scope::Read, None).0, Some(Rejection::Missing));
        assert_eq!(
            run(Some("Bearer ghp_x"), Scope::Read, None).0,
            Some(Rejection::Malformed(SecretParseError::MissingPrefix))
        );
        assert_eq!(
            run(Some(&format!("{}0", bearer_of(&good))), Scope::Read, None).0,
            Some(Rejection::Malformed(SecretParseError::BadLength))
        );
        let mut typo = bearer_of(&good).into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert_eq!(
            run(Some(&typo), Scope::Read, None),
            (
                Some(Rejection::Malformed(SecretParseError::BadChecksum)),
                None
            )
        );
        let mut bad_char = bearer_of(&good);
        bad_char.replace_range(20..21, "-");
        assert_eq!(
            run(Some(&bad_char), Scope::Read, None).0,
            Some(Rejection::Malformed(SecretParseError::BadCharacter))
        );
        let unknown = bearer_of(&PatSecret::generate());
        assert_eq!(
            run(Some(&unknown), Scope::Read, None),
            (Some(Rejection::Unknown), None)
        );
        let (rejection, token) = run(Some(&bearer_of(&revoked)), Scope::Read, None);
        assert_eq!(rejection, Some(Rejection::Revoked));
        assert!(token.is_some(), "a denied call with a known token names it");
        assert_eq!(
            run(Some(&bearer_of(&expired)), Scope::Read, None).0,
            Some(Rejection::Expired)
        );
        assert_eq!(
            run(Some(&bearer_of(&good)), Scope::Write, None).0,
            Some(Rejection::InsufficientScope(Scope::Write))
        );
        assert_eq!(
            run(Some(&bearer_of(&good)), Scope::Read, Some("globex")).0,
            Some(Rejection::WorkspaceNotAllowed)
        );
    }
}
