//! The event log's events, their stored encoding and the hash chain.
//!
//! An event is stored as the MessagePack of its envelope (`to_vec_named`, so
//! fields are named and new fields can be added), and chained:
//! `hash = SHA-256(prev_hash ‖ payload)`, the first `prev_hash` being 32 zero
//! bytes. Anyone holding the payloads can check the chain without our code.

use base64::Engine;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::token::{Expiration, Scope};

/// The actor of changes the service makes by itself (e.g. revocations after
/// a membership change or a leak report), never a user's id: the directory
/// refuses it.
pub const SYSTEM_ACTOR: &str = "system";

/// Version of the envelope encoding; bump with an upcaster when it changes.
pub const ENVELOPE_VERSION: u16 = 1;
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// `token_created`: a token came into being (its `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreated {
    pub user_id: String,
    pub description: String,
    pub expiration: Expiration,
    pub scopes: Vec<Scope>,
    pub workspaces: Vec<String>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub expires_at: Option<Timestamp>,
    /// Hex SHA-256 of the secret; the secret itself is never recorded.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub secret_hash: String,
    /// The token this one replaces, when it was made by a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub replaces: Option<Ulid>,
    /// The client address ranges calls may come from (CIDRs in canonical
    /// form); absent when calls may come from anywhere. Absent on every
    /// event written before fences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 32)]
    pub allowed_cidrs: Vec<String>,
    /// When the token starts working; absent when it works at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_before: Option<Timestamp>,
    /// The token may rotate itself (`POST /v1/tokens/self/rotate`); absent
    /// when it may not, as on every event written before self-rotation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_rotate: bool,
    /// A decoy (`POST /v1/decoys`): a token that never grants anything,
    /// whose use is answered as an unknown token's and told to its owner;
    /// absent on every real token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decoy: bool,
}

/// `token_revoked`: a token was revoked (its `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRevoked {
    pub user_id: String,
    /// Hex SHA-256 of the revoked token's secret, so replicas keyed by it
    /// fold the revocation without an index from id to hash.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub secret_hash: String,
    #[serde(default)]
    pub reason: crate::token::RevokeReason,
    /// Where a leaked token was found, when the report said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `token_rotated`: a successor replaced a token, which keeps working only
/// until `expires_at` (the end of the overlap), if that is earlier than its
/// own expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRotated {
    pub user_id: String,
    /// Hex SHA-256 of the rotated token's secret, as on `token_revoked`.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub secret_hash: String,
    /// The successor's token id.
    #[schema(value_type = String)]
    pub replaced_by: Ulid,
    /// When the rotated token stops working.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// The token rotated itself (`POST /v1/tokens/self/rotate`); absent
    /// when its owner rotated it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_rotated: bool,
}

// Its aggregate is the workspace (`Aggregate::Workspace`); the doc comment
// below is the published schema's description, kept as it was.
/// `workspace_policy_set`: a workspace admin set the workspace's token
/// policy (its `data`; the envelope's `token_id` is the nil ULID, as the
/// event is about no token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePolicySet {
    pub workspace: String,
    /// The longest expiration allowed, or null for any.
    #[schema(value_type = Option<Expiration>, required = true)]
    pub max_lifetime: Option<Expiration>,
    /// Whether tokens must expire.
    pub require_expiration: bool,
}

/// `signing_key_rotated`: the log's events are signed from here on by
/// another event key (its `data`; the envelope's `token_id` is the nil
/// ULID). A rotation is signed by the previous key, which so hands over to
/// the new one: whoever trusted the previous key trusts the new one. When
/// the previous key's private half was lost (`previous_lost`), nobody can
/// sign with it: the event is signed by the new key instead, and is
/// accepted only by whoever was given the new key explicitly. Events after
/// it are signed by the new key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRotated {
    /// Base64 of the new Ed25519 public key.
    pub key: String,
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub key_id: String,
    /// Base64 of the key it replaces.
    pub previous_key: String,
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub previous_key_id: String,
    /// The previous key was lost: this event is signed by the new key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous_lost: bool,
}

impl SigningKeyRotated {
    /// The new key, if the event names a valid one.
    pub fn new_key(&self) -> Option<crate::EventKey> {
        crate::EventKey::from_base64(&self.key)
            .ok()
            .filter(|k| k.key_id() == self.key_id)
    }

    /// The previous key, if the event names a valid one.
    pub fn old_key(&self) -> Option<crate::EventKey> {
        crate::EventKey::from_base64(&self.previous_key)
            .ok()
            .filter(|k| k.key_id() == self.previous_key_id)
    }
}

impl WorkspacePolicySet {
    pub fn policy(&self) -> crate::policy::WorkspacePolicy {
        crate::policy::WorkspacePolicy {
            max_lifetime: self.max_lifetime,
            require_expiration: self.require_expiration,
        }
    }
}

/// Named as the event types are (`token_created`...).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq)]
pub enum TokenEvent {
    TokenCreated(TokenCreated),
    TokenRevoked(TokenRevoked),
    TokenRotated(TokenRotated),
    WorkspacePolicySet(WorkspacePolicySet),
    SigningKeyRotated(SigningKeyRotated),
}

impl TokenEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            TokenEvent::TokenCreated(_) => "token_created",
            TokenEvent::TokenRevoked(_) => "token_revoked",
            TokenEvent::TokenRotated(_) => "token_rotated",
            TokenEvent::WorkspacePolicySet(_) => "workspace_policy_set",
            TokenEvent::SigningKeyRotated(_) => "signing_key_rotated",
        }
    }

    pub fn data_json(&self) -> serde_json::Value {
        match self {
            TokenEvent::TokenCreated(d) => serde_json::to_value(d),
            TokenEvent::TokenRevoked(d) => serde_json::to_value(d),
            TokenEvent::TokenRotated(d) => serde_json::to_value(d),
            TokenEvent::WorkspacePolicySet(d) => serde_json::to_value(d),
            TokenEvent::SigningKeyRotated(d) => serde_json::to_value(d),
        }
        .unwrap_or(serde_json::Value::Null)
    }
}

/// What an event is about: one token, or one workspace. Told by the
/// event's type, not by a field of the wire: a workspace event keeps the nil
/// ULID in `token_id`, as every one written before aggregates does, so
/// events already in logs, streams and audit exports read as workspace
/// events with their bytes, hashes and signatures unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate<'a> {
    Token(Ulid),
    Workspace(&'a str),
    /// The log itself: which key signs it.
    EventKey,
}

/// A token's event, borrowed from its envelope: what consumers of tokens
/// match on ([`EventEnvelope::token_event`]), so that a workspace's event,
/// new or old, asks nothing of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenEventRef<'a> {
    Created(&'a TokenCreated),
    Revoked(&'a TokenRevoked),
    Rotated(&'a TokenRotated),
}

/// What one log entry records, besides its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    pub seq: u64,
    pub id: Ulid,
    pub at: Timestamp,
    pub actor: String,
    pub token_id: Ulid,
    pub event: TokenEvent,
}

/// The stored and published form of an event, as its MessagePack decodes
/// (named fields): what a consumer of the token events stream in another
/// language reads. Documentation only: [`EventEnvelope::encode`] writes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EventEnvelopeWire {
    /// The envelope encoding's version, 1.
    #[schema(minimum = 1, maximum = 1)]
    v: u16,
    /// The event's place in the log, from 1, without gaps.
    #[schema(minimum = 1)]
    seq: u64,
    /// The event's id (a ULID), also the stream message's `Nats-Msg-Id`.
    #[schema(value_type = String)]
    id: Ulid,
    /// `token_created`, `token_revoked`, `token_rotated`,
    /// `workspace_policy_set` or `signing_key_rotated`; says which `data`
    /// follows.
    #[schema(
        rename = "type",
        value_type = String,
        pattern = "^(token_created|token_revoked|token_rotated|workspace_policy_set|signing_key_rotated)$"
    )]
    kind: String,
    /// When it was recorded (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// The user (or `system`) whose command it records.
    actor: String,
    #[schema(value_type = String)]
    token_id: Ulid,
    data: EventData,
}

/// An event's fields, by its `type`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::enum_variant_names)]
enum EventData {
    TokenCreated(TokenCreated),
    TokenRevoked(TokenRevoked),
    TokenRotated(TokenRotated),
    WorkspacePolicySet(WorkspacePolicySet),
    SigningKeyRotated(SigningKeyRotated),
}

#[derive(Serialize)]
struct WireOut<'a, D> {
    v: u16,
    seq: u64,
    id: Ulid,
    #[serde(rename = "type")]
    kind: &'static str,
    at: Timestamp,
    actor: &'a str,
    token_id: Ulid,
    data: &'a D,
}

#[derive(Deserialize)]
struct WireHead {
    v: u16,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct WireIn<D> {
    seq: u64,
    id: Ulid,
    at: Timestamp,
    actor: String,
    token_id: Ulid,
    data: D,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not a valid event envelope: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u16),
}

impl EventEnvelope {
    /// The aggregate the event belongs to: consumers ask this, never
    /// whether `token_id` is nil.
    pub fn aggregate(&self) -> Aggregate<'_> {
        match &self.event {
            TokenEvent::WorkspacePolicySet(set) => Aggregate::Workspace(&set.workspace),
            TokenEvent::SigningKeyRotated(_) => Aggregate::EventKey,
            TokenEvent::TokenCreated(_)
            | TokenEvent::TokenRevoked(_)
            | TokenEvent::TokenRotated(_) => Aggregate::Token(self.token_id),
        }
    }

    /// The token and its event, when the aggregate is a token.
    pub fn token_event(&self) -> Option<(Ulid, TokenEventRef<'_>)> {
        let event = match &self.event {
            TokenEvent::TokenCreated(e) => TokenEventRef::Created(e),
            TokenEvent::TokenRevoked(e) => TokenEventRef::Revoked(e),
            TokenEvent::TokenRotated(e) => TokenEventRef::Rotated(e),
            TokenEvent::WorkspacePolicySet(_) | TokenEvent::SigningKeyRotated(_) => return None,
        };
        Some((self.token_id, event))
    }

    /// The key rotation, when the event is one.
    pub fn key_rotation(&self) -> Option<&SigningKeyRotated> {
        match &self.event {
            TokenEvent::SigningKeyRotated(rotated) => Some(rotated),
            _ => None,
        }
    }

    /// The exact bytes that are stored and hashed.
    pub fn encode(&self) -> Vec<u8> {
        fn wire<D: Serialize>(e: &EventEnvelope, data: &D) -> Vec<u8> {
            let out = WireOut {
                v: ENVELOPE_VERSION,
                seq: e.seq,
                id: e.id,
                kind: e.event.type_name(),
                at: e.at,
                actor: &e.actor,
                token_id: e.token_id,
                data,
            };
            // Serialising plain structs of strings and numbers cannot fail.
            rmp_serde::to_vec_named(&out).unwrap_or_default()
        }
        match &self.event {
            TokenEvent::TokenCreated(d) => wire(self, d),
            TokenEvent::TokenRevoked(d) => wire(self, d),
            TokenEvent::TokenRotated(d) => wire(self, d),
            TokenEvent::WorkspacePolicySet(d) => wire(self, d),
            TokenEvent::SigningKeyRotated(d) => wire(self, d),
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        fn body<D: serde::de::DeserializeOwned>(
            payload: &[u8],
            wrap: fn(D) -> TokenEvent,
        ) -> Result<EventEnvelope, DecodeError> {
            let w: WireIn<D> = rmp_serde::from_slice(payload)?;
            Ok(EventEnvelope {
                seq: w.seq,
                id: w.id,
                at: w.at,
                actor: w.actor,
                token_id: w.token_id,
                event: wrap(w.data),
            })
        }
        let head: WireHead = rmp_serde::from_slice(payload)?;
        if head.v != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedVersion(head.v));
        }
        match head.kind.as_str() {
            "token_created" => body(payload, TokenEvent::TokenCreated),
            "token_revoked" => body(payload, TokenEvent::TokenRevoked),
            "token_rotated" => body(payload, TokenEvent::TokenRotated),
            "workspace_policy_set" => body(payload, TokenEvent::WorkspacePolicySet),
            "signing_key_rotated" => body(payload, TokenEvent::SigningKeyRotated),
            _ => Err(DecodeError::UnknownType(head.kind)),
        }
    }
}

pub fn chain_hash(prev_hash: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(payload);
    h.finalize().into()
}

/// One entry of the log as stored: the payload and its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub payload: Vec<u8>,
}

impl StoredEvent {
    pub fn new(prev_hash: [u8; 32], envelope: &EventEnvelope) -> Self {
        let payload = envelope.encode();
        StoredEvent {
            prev_hash,
            hash: chain_hash(&prev_hash, &payload),
            payload,
        }
    }

    /// Stored form: `prev_hash ‖ hash ‖ payload`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.len());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 64 {
            return None;
        }
        let (prev, rest) = bytes.split_at(32);
        let (hash, payload) = rest.split_at(32);
        Some(StoredEvent {
            prev_hash: prev.try_into().ok()?,
            hash: hash.try_into().ok()?,
            payload: payload.to_vec(),
        })
    }
}

/// An event as auditors see it: `hash` = SHA-256(`prev_hash`
/// as 32 bytes ‖ the bytes of `payload`), `signature` = Ed25519 by the
/// event key `key_id` over `ENSPACE-EVENT-V1\0` ‖ `hash` (32 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    #[schema(minimum = 1)]
    pub seq: u64,
    pub id: Ulid,
    #[serde(rename = "type")]
    #[schema(example = "token_created")]
    pub kind: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: String,
    pub token_id: Ulid,
    /// The event's fields: a `TokenCreated`, `TokenRevoked`, `TokenRotated`,
    /// `WorkspacePolicySet` or `SigningKeyRotated`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Base64 of the exact stored bytes (MessagePack).
    #[schema(format = Byte)]
    pub payload: String,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub prev_hash: String,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
    /// Which event key signed it: the first 8 bytes of SHA-256 of the
    /// public key, in hex (`GET /v1/event-key` serves the key).
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub key_id: String,
    /// Base64 of the Ed25519 signature (64 bytes) over
    /// `ENSPACE-EVENT-V1\0` ‖ the 32 bytes of `hash`.
    #[schema(format = Byte)]
    pub signature: String,
}

impl AuditEvent {
    /// `envelope` as stored, signed by `signer` (signatures are
    /// deterministic: the same key signs an event with the same bytes
    /// whenever it is asked).
    pub fn new(
        envelope: &EventEnvelope,
        stored: &StoredEvent,
        signer: &crate::EventSigner,
    ) -> Self {
        let mut event = Self::unsigned(envelope, stored);
        event.key_id = signer.public().key_id().to_owned();
        event.signature =
            base64::engine::general_purpose::STANDARD.encode(signer.sign_event(&stored.hash));
        event
    }

    /// Everything but the signature: what the payload itself says.
    pub fn unsigned(envelope: &EventEnvelope, stored: &StoredEvent) -> Self {
        AuditEvent {
            seq: envelope.seq,
            id: envelope.id,
            kind: envelope.event.type_name().to_owned(),
            at: envelope.at,
            actor: envelope.actor.clone(),
            token_id: envelope.token_id,
            data: envelope.event.data_json(),
            payload: base64::engine::general_purpose::STANDARD.encode(&stored.payload),
            prev_hash: hex::encode(stored.prev_hash),
            hash: hex::encode(stored.hash),
            key_id: String::new(),
            signature: String::new(),
        }
    }
}

/// Where a chain check found the log broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event log broken at seq {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

/// Checks entries given in key order as `(seq from the key, stored bytes)`.
/// Returns the count and head hash, or the first `seq` that is wrong: a
/// changed payload, a changed hash, a missing or reordered entry.
pub fn verify_chain<I>(entries: I) -> Result<(u64, [u8; 32]), ChainBreak>
where
    I: IntoIterator<Item = (u64, Vec<u8>)>,
{
    let mut prev = GENESIS_HASH;
    let mut expected = 1u64;
    for (key_seq, bytes) in entries {
        let broken = |reason: &str| ChainBreak {
            seq: expected.min(key_seq),
            reason: reason.to_owned(),
        };
        if key_seq != expected {
            return Err(broken("missing event"));
        }
        let stored = StoredEvent::from_bytes(&bytes).ok_or_else(|| broken("truncated entry"))?;
        if stored.prev_hash != prev {
            return Err(broken("prev_hash does not match the previous event's hash"));
        }
        if chain_hash(&prev, &stored.payload) != stored.hash {
            return Err(broken("hash does not match prev_hash and payload"));
        }
        let envelope =
            EventEnvelope::decode(&stored.payload).map_err(|e| broken(&e.to_string()))?;
        if envelope.seq != key_seq {
            return Err(broken("event is stored out of order"));
        }
        prev = stored.hash;
        expected += 1;
    }
    Ok((expected - 1, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(seq: u64) -> EventEnvelope {
        crate::fixtures::created(seq, &crate::SecretHash([7; 32]))
            .scopes(&[Scope::Read, Scope::Write])
            .expiring(
                Expiration::ThreeMonths,
                "2026-11-28T10:00:00.123Z".parse().expect("ts"),
            )
            .build()
    }

    fn chain(n: u64) -> Vec<(u64, Vec<u8>)> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let stored = StoredEvent::new(prev, &created(seq));
                prev = stored.hash;
                (seq, stored.to_bytes())
            })
            .collect()
    }

    #[test]
    fn envelope_round_trips_through_messagepack() {
        let e = created(3);
        assert_eq!(EventEnvelope::decode(&e.encode()).expect("decodes"), e);
        let revoked = EventEnvelope {
            event: TokenEvent::TokenRevoked(TokenRevoked {
                user_id: "alice".into(),
                secret_hash: hex::encode([7u8; 32]),
                reason: crate::token::RevokeReason::Leaked,
                url: Some("https://example.com/leak".into()),
            }),
            ..created(4)
        };
        assert_eq!(
            EventEnvelope::decode(&revoked.encode()).expect("decodes"),
            revoked
        );
    }

    #[test]
    fn an_intact_chain_verifies_with_its_count_and_head() {
        let entries = chain(5);
        let head = StoredEvent::from_bytes(&entries[4].1).expect("entry").hash;
        assert_eq!(verify_chain(entries), Ok((5, head)));
    }

    #[test]
    fn a_changed_payload_byte_names_its_seq() {
        let mut entries = chain(5);
        let last = entries[2].1.len() - 1;
        entries[2].1[last] ^= 1;
        assert_eq!(verify_chain(entries).expect_err("broken").seq, 3);
    }

    #[test]
    fn a_removed_event_names_the_missing_seq() {
        let mut entries = chain(5);
        entries.remove(1);
        assert_eq!(verify_chain(entries).expect_err("broken").seq, 2);
    }

    #[test]
    fn swapped_events_name_the_first_misplaced_seq() {
        let mut entries = chain(5);
        let (a, b) = (entries[1].1.clone(), entries[3].1.clone());
        entries[1].1 = b;
        entries[3].1 = a;
        assert_eq!(verify_chain(entries).expect_err("broken").seq, 2);
    }
}
