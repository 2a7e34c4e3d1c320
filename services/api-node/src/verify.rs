//! Verifying a bearer token against the local replica: format and checksum
//! (no allocation), SHA-256, one lookup, revocation, expiry, fences
//! (`not_before`, then the client address, read only for a token that has
//! address ranges), scope, workspace. No I/O. The replica's memory for the
//! token is fetched while the format is checked, so the check costs next to
//! nothing.

use std::net::IpAddr;
use std::sync::Arc;

use enspace_core::fence::Refusal;
use enspace_core::secret::{PAT_LEN, check_pat_format};
use enspace_core::{Scope, SecretHash, SecretParseError};
use ulid::Ulid;

use crate::replica::{TokenFacts, TokenReplica};
use crate::scopes::Scopes;

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
    /// A decoy's secret: answered exactly as [`Rejection::Unknown`], but
    /// the call is recorded under the decoy so its owner is told.
    Decoy,
    Expired,
    Revoked,
    /// Before the token's `not_before`.
    NotYetValid,
    /// From an address outside the token's `allowed_cidrs`.
    AddressNotAllowed,
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
            Rejection::Decoy => "decoy",
            Rejection::Expired => "expired",
            Rejection::Revoked => "revoked",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::AddressNotAllowed => "address_not_allowed",
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

/// Verifies `authorization` at `now_ms` for a call needing `needed` (in
/// `workspace`); `client` gives the client's address, asked only of a
/// token with address ranges.
pub fn verify(
    replica: &TokenReplica,
    authorization: Option<&str>,
    now_ms: i64,
    needed: Scope,
    workspace: Option<&str>,
    client: impl FnOnce() -> Option<IpAddr>,
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
    // A fenced token's fences are judged where they are held; the client's
    // address is read only for one with address ranges.
    let fenced = |fence: &enspace_core::fence::Fence| {
        fence.check(fence.needs_address().then(client).flatten(), now_ms)
    };
    let (facts, fence) =
        match replica.lookup_after(hash.as_bytes(), || check_pat_format(presented), fenced) {
            Err(e) => return reject(Rejection::Malformed(e), None),
            Ok(None) => return reject(Rejection::Unknown, None),
            Ok(Some(found)) => found,
        };
    // A decoy grants nothing and says nothing: it has no scope, so it is
    // told apart only where a call is refused (never on an allowed call's
    // path); a revoked one is simply unknown (its owner no longer wants to
    // hear of it).
    let rejection = if facts.revoked {
        if facts.decoy {
            return reject(Rejection::Unknown, None);
        }
        Some(Rejection::Revoked)
    } else if facts.expires_at_ms <= now_ms {
        Some(Rejection::Expired)
    } else if let Err(refusal) = fence {
        Some(match refusal {
            Refusal::NotYetValid => Rejection::NotYetValid,
            Refusal::AddressNotAllowed => Rejection::AddressNotAllowed,
        })
    } else if !facts.scopes.contains(needed) {
        if facts.decoy {
            return reject(Rejection::Decoy, Some(facts.into()));
        }
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
    use enspace_core::{EventEnvelope, PatSecret, fixtures};

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

    fn created(
        seq: u64,
        secret: &PatSecret,
        scopes: &[Scope],
        expires_at_ms: i64,
    ) -> EventEnvelope {
        fixtures::created(seq, &secret.hash())
            .scopes(scopes)
            .expires_at(jiff::Timestamp::from_millisecond(expires_at_ms).expect("ts"))
            .build()
    }

    #[test]
    fn verify_returns_each_rejection() {
        let replica = TokenReplica::new();
        let good = PatSecret::generate();
        let revoked = PatSecret::generate();
        let expired = PatSecret::generate();
        replica.apply(&created(1, &good, &[Scope::Read], 2_000));
        let made = created(2, &revoked, &[Scope::Read], 2_000);
        replica.apply(&made);
        replica.apply(&fixtures::revoked(3, made.token_id, &revoked.hash()));
        replica.apply(&created(4, &expired, &[Scope::Read], 1_000));
        let run = |header: Option<&str>, scope, ws| {
            let verdict = verify(&replica, header, 1_000, scope, ws, || None);
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

    #[test]
    fn a_decoy_is_refused_as_unknown_but_named_and_a_revoked_decoy_is_just_unknown() {
        let replica = TokenReplica::new();
        let decoy = PatSecret::generate();
        let created = fixtures::created(1, &decoy.hash()).decoy().build();
        replica.apply(&created);
        let header = format!("Bearer {}", decoy.expose());
        let verdict = verify(&replica, Some(&header), 0, Scope::Read, None, || None);
        assert_eq!(verdict.rejection, Some(Rejection::Decoy));
        assert_eq!(
            verdict.token.map(|t| t.token_id),
            Some(created.token_id),
            "the use is recorded under the decoy"
        );
        replica.apply(&fixtures::revoked(2, created.token_id, &decoy.hash()));
        let verdict = verify(&replica, Some(&header), 0, Scope::Read, None, || None);
        assert_eq!(verdict.rejection, Some(Rejection::Unknown));
        assert!(verdict.token.is_none());
        // A decoy's event naming scopes and a workspace grants nothing.
        let armed = PatSecret::generate();
        replica.apply(
            &fixtures::created(3, &armed.hash())
                .decoy()
                .scopes(&[Scope::Read, Scope::Write, Scope::Delete])
                .workspaces(&["acme"])
                .build(),
        );
        let header = format!("Bearer {}", armed.expose());
        for scope in [Scope::Read, Scope::Write, Scope::Delete] {
            let verdict = verify(&replica, Some(&header), 0, scope, Some("acme"), || None);
            assert_eq!(verdict.rejection, Some(Rejection::Decoy), "{scope:?}");
        }
    }

    #[test]
    fn verify_refuses_a_fenced_token_before_not_before_and_from_outside_its_ranges() {
        let replica = TokenReplica::new();
        let fenced = PatSecret::generate();
        let plain = PatSecret::generate();
        replica.apply(
            &fixtures::created(1, &fenced.hash())
                .allowed_cidrs(&["192.0.2.0/24", "2001:db8::/32"])
                .not_before(jiff::Timestamp::from_millisecond(5_000).expect("ts"))
                .build(),
        );
        replica.apply(&fixtures::created(2, &plain.hash()).build());
        let header = format!("Bearer {}", fenced.expose());
        let run = |now_ms, client: Option<&str>| {
            let ip = client.map(|c| c.parse::<IpAddr>().expect("ip"));
            verify(&replica, Some(&header), now_ms, Scope::Read, None, || ip).rejection
        };
        assert_eq!(run(4_999, Some("192.0.2.9")), Some(Rejection::NotYetValid));
        assert_eq!(run(5_000, Some("192.0.2.9")), None);
        assert_eq!(run(5_000, Some("2001:db8::1")), None);
        assert_eq!(run(5_000, Some("::ffff:192.0.2.9")), None);
        assert_eq!(
            run(5_000, Some("198.51.100.1")),
            Some(Rejection::AddressNotAllowed)
        );
        assert_eq!(run(5_000, None), Some(Rejection::AddressNotAllowed));
        // A token without ranges never asks for the address.
        let plain = format!("Bearer {}", plain.expose());
        let verdict = verify(&replica, Some(&plain), 0, Scope::Read, None, || {
            panic!("the address is not needed")
        });
        assert_eq!(verdict.rejection, None);
    }
}
