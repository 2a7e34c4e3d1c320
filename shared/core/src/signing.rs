//! The event signing key: the control plane signs every event it publishes
//! and a signed heartbeat every second; API nodes pin the public key and
//! refuse anything it does not verify.
//!
//! What is signed (Ed25519, RFC 8032):
//! - an event: `ENSPACE-EVENT-V1\0` ‖ the event's chain hash, where the
//!   chain hash is `SHA-256(prev_hash ‖ payload)` as in the audit log. The
//!   signature so covers the exact stored bytes and the event's place in the
//!   chain: a valid event cannot be replayed at another position, and
//!   verifying the signature of event `n` after checking the hash chain up
//!   to it vouches for every event before it as well.
//! - a heartbeat: `ENSPACE-HEARTBEAT-V1\0` ‖ its MessagePack payload.
//! - between control-plane processes: a forwarded command
//!   (`ENSPACE-COMMAND-V1\0`), the writer's answer to one
//!   (`ENSPACE-ANSWER-V1\0`), a session record (`ENSPACE-SESSION-V1\0`)
//!   and a notification shared with the others (`ENSPACE-NOTICE-V1\0`),
//!   each followed by its bytes: a signature made for one of them never
//!   verifies as another.
//!
//! The key id is the first 8 bytes of the SHA-256 of the public key, in hex.

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const EVENT_DOMAIN: &[u8] = b"ENSPACE-EVENT-V1\0";
const HEARTBEAT_DOMAIN: &[u8] = b"ENSPACE-HEARTBEAT-V1\0";
/// Commands one control-plane process forwards to the writer.
const COMMAND_DOMAIN: &[u8] = b"ENSPACE-COMMAND-V1\0";
/// The writer's answers to forwarded commands.
const ANSWER_DOMAIN: &[u8] = b"ENSPACE-ANSWER-V1\0";
/// Session records shared between control-plane processes.
const SESSION_DOMAIN: &[u8] = b"ENSPACE-SESSION-V1\0";
/// Notifications shared between control-plane processes.
const NOTICE_DOMAIN: &[u8] = b"ENSPACE-NOTICE-V1\0";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub const SIGNATURE_LEN: usize = 64;

/// The private half, kept by the control plane only. `Debug` prints the key
/// id, never the key.
#[derive(Clone)]
pub struct EventSigner {
    key: SigningKey,
    public: EventKey,
}

impl std::fmt::Debug for EventSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventSigner({})", self.public.key_id())
    }
}

/// A pinned public key.
#[derive(Clone, PartialEq, Eq)]
pub struct EventKey {
    key: VerifyingKey,
    key_id: String,
}

impl std::fmt::Debug for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventKey({})", self.key_id)
    }
}

/// `GET /v1/event-key` and `enspace event-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventKeyJson {
    #[schema(example = "Ed25519")]
    pub alg: String,
    /// Base64 of the 32-byte Ed25519 public key.
    pub key: String,
    /// Hex of the first 8 bytes of the public key's SHA-256.
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub key_id: String,
    /// The keys that signed the log before this one, oldest first, each
    /// with the events it signed: trust them as you trust this one (each
    /// handed over to the next with a signed `signing_key_rotated` event,
    /// or was declared lost, `lost_after`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<EarlierKeyJson>,
}

/// A key that signed the log before the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlierKeyJson {
    #[schema(example = "Ed25519")]
    pub alg: String,
    pub key: String,
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub key_id: String,
    /// The first event it signed (0: not known here, as when
    /// `enspace event-key` lists the keys kept beside the key file).
    pub first_seq: u64,
    /// The last event it signed (its hand-over to the next key, unless that
    /// key followed its loss; 0: not known here).
    pub last_seq: u64,
    /// Its private half was declared lost after `last_seq`: the next key
    /// took over without its signature.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost_after: bool,
}

impl EventKeyJson {
    /// Every key it names, oldest first (the current one last).
    pub fn keys(&self) -> Result<Vec<EventKey>, KeyError> {
        let mut keys = self
            .previous
            .iter()
            .map(|k| EventKey::from_base64(&k.key))
            .collect::<Result<Vec<_>, _>>()?;
        keys.push(EventKey::from_base64(&self.key)?);
        Ok(keys)
    }
}

/// The keys a text names: the JSON `GET /v1/event-key` serves (the current
/// key and the earlier ones), or one base64 key. Oldest first.
pub fn keys_from_text(text: &str) -> Result<Vec<EventKey>, KeyError> {
    let text = text.trim();
    match serde_json::from_str::<EventKeyJson>(text) {
        Ok(json) => json.keys(),
        Err(_) => EventKey::from_base64(text).map(|k| vec![k]),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not base64")]
    NotBase64,
    #[error("the key is not 32 bytes")]
    WrongLength,
    #[error("the key is not a valid Ed25519 public key")]
    Invalid,
}

impl EventSigner {
    /// A new key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_seed(&seed)
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public = EventKey::new(key.verifying_key());
        EventSigner { key, public }
    }

    /// The seed, for the key file.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn public(&self) -> &EventKey {
        &self.public
    }

    pub fn sign_event(&self, chain_hash: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(&event_message(chain_hash)).to_bytes()
    }

    /// Signs a command forwarded to the writer (its MessagePack bytes).
    pub fn sign_command(&self, payload: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.sign_in(COMMAND_DOMAIN, payload)
    }

    /// Signs the writer's answer to a forwarded command.
    pub fn sign_answer(&self, payload: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.sign_in(ANSWER_DOMAIN, payload)
    }

    /// Signs a session record shared with the other control-plane processes.
    pub fn sign_session(&self, payload: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.sign_in(SESSION_DOMAIN, payload)
    }

    /// Signs a notification shared with the other control-plane processes.
    pub fn sign_notice(&self, payload: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.sign_in(NOTICE_DOMAIN, payload)
    }

    fn sign_in(&self, domain: &[u8], payload: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut message = domain.to_vec();
        message.extend_from_slice(payload);
        self.key.sign(&message).to_bytes()
    }

    pub fn sign_heartbeat(&self, payload: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut message = HEARTBEAT_DOMAIN.to_vec();
        message.extend_from_slice(payload);
        self.key.sign(&message).to_bytes()
    }
}

fn event_message(chain_hash: &[u8; 32]) -> [u8; 17 + 32] {
    let mut message = [0u8; 17 + 32];
    message[..17].copy_from_slice(EVENT_DOMAIN);
    message[17..].copy_from_slice(chain_hash);
    message
}

impl EventKey {
    fn new(key: VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        EventKey {
            key,
            key_id: hex::encode(&digest[..8]),
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::WrongLength)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self::new)
            .map_err(|_| KeyError::Invalid)
    }

    /// From the base64 `key` of [`EventKeyJson`].
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = B64.decode(text.trim()).map_err(|_| KeyError::NotBase64)?;
        Self::from_bytes(&bytes)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.key.as_bytes())
    }

    pub fn to_json(&self) -> EventKeyJson {
        EventKeyJson {
            alg: "Ed25519".into(),
            key: self.to_base64(),
            key_id: self.key_id.clone(),
            previous: Vec::new(),
        }
    }

    pub fn verify_event(&self, chain_hash: &[u8; 32], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.key
            .verify(&event_message(chain_hash), &signature)
            .is_ok()
    }

    /// Whether every `(chain_hash, signature)` is this key's signature of
    /// that event, checked together: Ed25519 batch verification, several
    /// times cheaper per signature than one by one. A batch that fails says
    /// only that some signature in it is bad; [`verify_event`] names which.
    ///
    /// [`verify_event`]: Self::verify_event
    pub fn verify_events(&self, events: &[([u8; 32], &[u8])]) -> bool {
        let mut messages = Vec::with_capacity(events.len());
        let mut signatures = Vec::with_capacity(events.len());
        for (hash, signature) in events {
            let Ok(signature) = Signature::from_slice(signature) else {
                return false;
            };
            messages.push(event_message(hash));
            signatures.push(signature);
        }
        let messages: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
        let keys = vec![self.key; events.len()];
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
    }

    pub fn verify_command(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.verify_in(COMMAND_DOMAIN, payload, signature)
    }

    pub fn verify_answer(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.verify_in(ANSWER_DOMAIN, payload, signature)
    }

    pub fn verify_session(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.verify_in(SESSION_DOMAIN, payload, signature)
    }

    pub fn verify_notice(&self, payload: &[u8], signature: &[u8]) -> bool {
        self.verify_in(NOTICE_DOMAIN, payload, signature)
    }

    fn verify_in(&self, domain: &[u8], payload: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        let mut message = domain.to_vec();
        message.extend_from_slice(payload);
        self.key.verify(&message, &signature).is_ok()
    }

    pub fn verify_heartbeat(&self, payload: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        let mut message = HEARTBEAT_DOMAIN.to_vec();
        message.extend_from_slice(payload);
        self.key.verify(&message, &signature).is_ok()
    }
}

/// What the control plane says every second on the heartbeat subject: the
/// head of its committed log (`seq`, `hash`), the hash of its first event
/// (which names the history: two logs with different first events are
/// different histories), its term and the heartbeat's sequence in it (which
/// order heartbeats), and its public key so that a node without a pinned
/// key can pin one. Sent as MessagePack (named fields), signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u16,
    /// The control-plane process that sent it.
    pub writer: String,
    pub seq: u64,
    #[serde(with = "serde_bytes32")]
    pub hash: [u8; 32],
    #[serde(with = "serde_bytes32")]
    pub first_hash: [u8; 32],
    /// When it was sent, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[serde(with = "serde_bytes32")]
    pub key: [u8; 32],
    /// The sender's term: the cluster's lease term, or a single process's
    /// start counter; only grows. 0 in heartbeats of version 1.
    #[serde(default)]
    pub term: u64,
    /// This heartbeat's sequence within its term, from 1.
    #[serde(default)]
    pub beat: u64,
}

/// A heartbeat with its signature, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedHeartbeat {
    #[serde(with = "serde_bytes_vec")]
    body: Vec<u8>,
    #[serde(with = "serde_bytes_vec")]
    sig: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("the heartbeat is not valid MessagePack")]
    Malformed,
    #[error("the heartbeat's signature does not verify")]
    BadSignature,
    #[error("the heartbeat's key is not a valid Ed25519 key")]
    BadKey,
}

impl Heartbeat {
    pub const VERSION: u16 = 2;

    /// What orders heartbeats: (term, sequence in the term). A version 1
    /// heartbeat, which has no term, is ordered by its time, below every
    /// heartbeat with a term.
    pub fn order(&self) -> (u64, u64) {
        if self.term == 0 {
            (0, self.at_ms.max(0) as u64)
        } else {
            (self.term, self.beat)
        }
    }

    pub fn at(&self) -> Option<Timestamp> {
        Timestamp::from_millisecond(self.at_ms).ok()
    }

    /// The signed wire form.
    pub fn sign(&self, signer: &EventSigner) -> Vec<u8> {
        let body = rmp_serde::to_vec_named(self).unwrap_or_default();
        let sig = signer.sign_heartbeat(&body).to_vec();
        rmp_serde::to_vec_named(&SignedHeartbeat { body, sig }).unwrap_or_default()
    }

    /// Decodes a signed heartbeat and checks it against `pinned`, or, with
    /// no key pinned, against the key it carries (which the caller may then
    /// pin). Returns the heartbeat and the key that verified it.
    pub fn open(
        bytes: &[u8],
        pinned: Option<&EventKey>,
    ) -> Result<(Self, EventKey), HeartbeatError> {
        let signed: SignedHeartbeat =
            rmp_serde::from_slice(bytes).map_err(|_| HeartbeatError::Malformed)?;
        let beat: Heartbeat =
            rmp_serde::from_slice(&signed.body).map_err(|_| HeartbeatError::Malformed)?;
        let key = match pinned {
            Some(key) => key.clone(),
            None => EventKey::from_bytes(&beat.key).map_err(|_| HeartbeatError::BadKey)?,
        };
        if !key.verify_heartbeat(&signed.body, &signed.sig) {
            return Err(HeartbeatError::BadSignature);
        }
        Ok((beat, key))
    }
}

mod serde_bytes32 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let v = super::serde_bytes_vec::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

mod serde_bytes_vec {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_signature_verifies_only_for_its_hash_and_key() {
        let signer = EventSigner::generate();
        let hash = [7u8; 32];
        let sig = signer.sign_event(&hash);
        assert!(signer.public().verify_event(&hash, &sig));
        assert!(!signer.public().verify_event(&[8u8; 32], &sig));
        assert!(!EventSigner::generate().public().verify_event(&hash, &sig));
        assert!(!signer.public().verify_event(&hash, &sig[..63]));
    }

    #[test]
    fn a_signature_made_for_one_domain_never_verifies_in_another() {
        let signer = EventSigner::generate();
        let key = signer.public();
        let bytes = b"the same bytes";
        let command = signer.sign_command(bytes);
        let answer = signer.sign_answer(bytes);
        let session = signer.sign_session(bytes);
        let notice = signer.sign_notice(bytes);
        for (sig, as_command, as_answer, as_session, as_notice) in [
            (&command, true, false, false, false),
            (&answer, false, true, false, false),
            (&session, false, false, true, false),
            (&notice, false, false, false, true),
        ] {
            assert_eq!(key.verify_command(bytes, sig), as_command);
            assert_eq!(key.verify_answer(bytes, sig), as_answer);
            assert_eq!(key.verify_session(bytes, sig), as_session);
            assert_eq!(key.verify_notice(bytes, sig), as_notice);
        }
        assert!(!key.verify_session(b"other bytes", &session));
        assert!(
            !EventSigner::generate()
                .public()
                .verify_session(bytes, &session)
        );
    }

    #[test]
    fn a_key_round_trips_through_base64_and_keeps_its_id() {
        let signer = EventSigner::from_seed(&[3; 32]);
        let key = EventKey::from_base64(&signer.public().to_base64()).expect("key");
        assert_eq!(&key, signer.public());
        assert_eq!(key.key_id().len(), 16);
        assert_eq!(
            EventKey::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        );
        assert_eq!(EventKey::from_base64("AAAA"), Err(KeyError::WrongLength));
    }

    #[test]
    fn a_version_1_heartbeat_without_a_term_opens_and_is_ordered_by_its_time() {
        #[derive(Serialize)]
        struct V1 {
            v: u16,
            writer: String,
            seq: u64,
            #[serde(with = "serde_bytes32")]
            hash: [u8; 32],
            #[serde(with = "serde_bytes32")]
            first_hash: [u8; 32],
            at_ms: i64,
            #[serde(with = "serde_bytes32")]
            key: [u8; 32],
        }
        let signer = EventSigner::generate();
        let body = rmp_serde::to_vec_named(&V1 {
            v: 1,
            writer: "old".into(),
            seq: 3,
            hash: [1; 32],
            first_hash: [2; 32],
            at_ms: 1_700_000_000_000,
            key: *signer.public().as_bytes(),
        })
        .expect("encode");
        let sig = signer.sign_heartbeat(&body).to_vec();
        let wire = rmp_serde::to_vec_named(&SignedHeartbeat { body, sig }).expect("encode");
        let (beat, _) = Heartbeat::open(&wire, Some(signer.public())).expect("opens");
        assert_eq!((beat.term, beat.beat), (0, 0));
        assert_eq!(beat.order(), (0, 1_700_000_000_000));
    }

    #[test]
    fn a_heartbeat_opens_with_its_key_and_not_with_another() {
        let signer = EventSigner::generate();
        let beat = Heartbeat {
            v: Heartbeat::VERSION,
            writer: "tokens-1".into(),
            seq: 42,
            hash: [1; 32],
            first_hash: [2; 32],
            at_ms: 1_700_000_000_000,
            key: *signer.public().as_bytes(),
            term: 3,
            beat: 9,
        };
        let wire = beat.sign(&signer);
        let (opened, key) = Heartbeat::open(&wire, None).expect("self-signed");
        assert_eq!(opened, beat);
        assert_eq!(&key, signer.public());
        assert!(Heartbeat::open(&wire, Some(signer.public())).is_ok());
        let other = EventSigner::generate();
        assert_eq!(
            Heartbeat::open(&wire, Some(other.public())).map(|_| ()),
            Err(HeartbeatError::BadSignature)
        );
        // A heartbeat that names another key than the one that signed it.
        let forged = Heartbeat {
            key: *other.public().as_bytes(),
            ..beat
        }
        .sign(&signer);
        assert_eq!(
            Heartbeat::open(&forged, None).map(|_| ()),
            Err(HeartbeatError::BadSignature)
        );
        assert_eq!(
            Heartbeat::open(b"junk", None).map(|_| ()),
            Err(HeartbeatError::Malformed)
        );
    }
}
