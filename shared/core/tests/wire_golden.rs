//! The wire, pinned: a fixed sequence of events (every type, a workspace
//! policy among them) signed by a fixed key, exported as `enspace audit
//! export` writes it, must come out byte for byte as
//! `fixtures/golden_export.ndjson`, which was written before the envelope
//! learned of aggregates. Logs on disk and in JetStream hold these bytes,
//! their hashes and signatures: whatever changes in the code, events already
//! written decode to the same thing, encode to the same bytes and verify.

use base64::Engine;
use enspace_core::audit_export::{self, EXPORT_KIND, ExportHead, ExportHeader};
use enspace_core::events::{
    GENESIS_HASH, TokenCreated, TokenRevoked, TokenRotated, WorkspacePolicySet,
};
use enspace_core::token::RevokeReason;
use enspace_core::{
    Aggregate, AuditEvent, EventEnvelope, EventSigner, Expiration, Scope, StoredEvent, TokenEvent,
};
use sha2::{Digest, Sha256};
use ulid::Ulid;

const FIXTURE: &str = include_str!("fixtures/golden_export.ndjson");

/// SHA-256 of the fixture, so that rewriting it shows in review.
const FIXTURE_SHA256: &str = "a1fd48ec92d0b85720d930564baa131e26624e17d7dbce4dc8cfe8d6588564eb";

fn at(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or_default()
}

fn hash_hex(i: u8) -> String {
    hex::encode([i; 32])
}

/// The sequence: two tokens, a workspace policy (on the nil token id, as
/// written before aggregates), a rotation, a leak revocation, another policy.
fn sequence() -> Vec<EventEnvelope> {
    let a = Ulid::from_parts(1_780_000_000_000, 1);
    let b = Ulid::from_parts(1_780_000_000_000, 2);
    let id = |n: u128| Ulid::from_parts(1_780_000_001_000, n);
    let events: Vec<(Ulid, &str, TokenEvent)> = vec![
        (
            a,
            "alice",
            TokenEvent::TokenCreated(TokenCreated {
                user_id: "alice".into(),
                description: "deploy “prod”".into(),
                expiration: Expiration::ThreeMonths,
                scopes: vec![Scope::Read, Scope::Write],
                workspaces: vec!["acme".into()],
                expires_at: Some(at(1_787_776_000_123)),
                secret_hash: hash_hex(1),
                replaces: None,
                allowed_cidrs: Vec::new(),
                not_before: None,
                self_rotate: false,
                decoy: false,
            }),
        ),
        (
            Ulid::nil(),
            "bob",
            TokenEvent::WorkspacePolicySet(WorkspacePolicySet {
                workspace: "acme".into(),
                max_lifetime: Some(Expiration::SixMonths),
                require_expiration: true,
            }),
        ),
        (
            b,
            "alice",
            TokenEvent::TokenCreated(TokenCreated {
                user_id: "alice".into(),
                description: "successor".into(),
                expiration: Expiration::OneMonth,
                scopes: vec![Scope::Read],
                workspaces: vec![],
                expires_at: Some(at(1_782_592_000_000)),
                secret_hash: hash_hex(2),
                replaces: Some(a),
                allowed_cidrs: Vec::new(),
                not_before: None,
                self_rotate: false,
                decoy: false,
            }),
        ),
        (
            a,
            "alice",
            TokenEvent::TokenRotated(TokenRotated {
                user_id: "alice".into(),
                secret_hash: hash_hex(1),
                replaced_by: b,
                expires_at: at(1_780_086_400_000),
                self_rotated: false,
            }),
        ),
        (
            b,
            enspace_core::SYSTEM_ACTOR,
            TokenEvent::TokenRevoked(TokenRevoked {
                user_id: "alice".into(),
                secret_hash: hash_hex(2),
                reason: RevokeReason::Leaked,
                url: Some("https://example.com/leak".into()),
            }),
        ),
        (
            Ulid::nil(),
            "bob",
            TokenEvent::WorkspacePolicySet(WorkspacePolicySet {
                workspace: "acme".into(),
                max_lifetime: None,
                require_expiration: false,
            }),
        ),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, (token_id, actor, event))| {
            let n = i as u64 + 1;
            EventEnvelope {
                seq: n,
                id: id(n.into()),
                at: at(1_780_000_001_000 + 1000 * n as i64),
                actor: actor.into(),
                token_id,
                event,
            }
        })
        .collect()
}

fn signer() -> EventSigner {
    EventSigner::from_seed(&[42; 32])
}

/// An export of `events`, as `enspace audit export` writes one.
fn export(events: &[EventEnvelope]) -> String {
    let signer = signer();
    let mut prev = GENESIS_HASH;
    let mut lines = Vec::new();
    for envelope in events {
        let stored = StoredEvent::new(prev, envelope);
        prev = stored.hash;
        lines.push(
            serde_json::to_string(&AuditEvent::new(envelope, &stored, &signer)).unwrap_or_default(),
        );
    }
    let header = ExportHeader {
        export: EXPORT_KIND.into(),
        version: 1,
        event_keys: vec![signer.public().to_json()],
        head: ExportHead {
            seq: events.len() as u64,
            hash: hex::encode(prev),
        },
    };
    let mut out = serde_json::to_string(&header).unwrap_or_default();
    out.push('\n');
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn the_fixture_is_the_one_written_before_aggregates() {
    assert_eq!(
        hex::encode(Sha256::digest(FIXTURE.as_bytes())),
        FIXTURE_SHA256
    );
}

#[test]
fn the_sequence_exports_byte_for_byte_as_the_fixture() {
    let made = export(&sequence());
    assert_eq!(made, FIXTURE);
}

#[test]
fn the_fixture_verifies_with_its_key() {
    let verified =
        audit_export::verify(FIXTURE.as_bytes(), std::slice::from_ref(signer().public()))
            .expect("the golden export verifies");
    assert_eq!(verified.count, 6);
}

#[test]
fn every_stored_payload_decodes_and_encodes_to_the_same_bytes() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let expected = sequence();
    for (line, want) in FIXTURE.lines().skip(1).zip(&expected) {
        let event: AuditEvent = serde_json::from_str(line).expect("an audit event");
        let payload = b64.decode(&event.payload).expect("base64");
        let envelope = EventEnvelope::decode(&payload).expect("decodes");
        assert_eq!(&envelope, want, "seq {}", event.seq);
        assert_eq!(envelope.encode(), payload, "seq {} re-encodes", event.seq);
        // Policies written on the nil token id read as the workspace's.
        let aggregate = match event.kind.as_str() {
            "workspace_policy_set" => Aggregate::Workspace("acme"),
            _ => Aggregate::Token(event.token_id),
        };
        assert_eq!(envelope.aggregate(), aggregate, "seq {}", event.seq);
        // What an audit line says of an old event is what it said then.
        let stored = StoredEvent {
            prev_hash: hex::decode(&event.prev_hash)
                .expect("hex")
                .try_into()
                .expect("32"),
            hash: hex::decode(&event.hash)
                .expect("hex")
                .try_into()
                .expect("32"),
            payload: payload.clone(),
        };
        let again = AuditEvent::new(&envelope, &stored, &signer());
        assert_eq!(again, event, "seq {} audits the same", event.seq);
    }
}

/// A creation with fences: both fields by name in `data`, decoded back as
/// written. Pinned by the SHA-256 of its payload, so the encoding of fenced
/// events, once in logs, cannot drift either; a creation without fences
/// carries neither field (the fixture above still re-encodes byte for byte).
#[test]
fn a_fenced_creation_carries_its_ranges_and_not_before_by_name() {
    let mut envelope = sequence().remove(0);
    let TokenEvent::TokenCreated(created) = &mut envelope.event else {
        panic!("the first event is a creation");
    };
    created.allowed_cidrs = vec!["192.0.2.0/24".into(), "2001:db8::/32".into()];
    created.not_before = Some(at(1_780_100_000_000));
    let payload = envelope.encode();
    assert_eq!(EventEnvelope::decode(&payload).expect("decodes"), envelope);
    let as_json: serde_json::Value = rmp_serde::from_slice(&payload).expect("messagepack");
    assert_eq!(
        as_json["data"]["allowed_cidrs"],
        serde_json::json!(["192.0.2.0/24", "2001:db8::/32"])
    );
    assert_eq!(as_json["data"]["not_before"], "2026-05-30T00:13:20Z");
    assert_eq!(
        hex::encode(Sha256::digest(&payload)),
        "a805058968b9ff1a853126287677ab08af6fd221299b62bd915c31646156e059"
    );
    let plain = &sequence()[0];
    let as_json: serde_json::Value = rmp_serde::from_slice(&plain.encode()).expect("messagepack");
    assert!(as_json["data"].get("allowed_cidrs").is_none());
    assert!(as_json["data"].get("not_before").is_none());
}

/// A self-rotating creation and a rotation by the token itself: each flag
/// by name in `data`, decoded back as written, pinned by its payload's
/// SHA-256; without the flag neither event carries it.
#[test]
fn a_self_rotating_creation_and_a_self_rotation_carry_their_flag_by_name() {
    let mut events = sequence();
    let mut envelope = events.remove(0);
    let TokenEvent::TokenCreated(created) = &mut envelope.event else {
        panic!("the first event is a creation");
    };
    created.self_rotate = true;
    let payload = envelope.encode();
    assert_eq!(EventEnvelope::decode(&payload).expect("decodes"), envelope);
    let as_json: serde_json::Value = rmp_serde::from_slice(&payload).expect("messagepack");
    assert_eq!(as_json["data"]["self_rotate"], true);
    assert_eq!(
        hex::encode(Sha256::digest(&payload)),
        "f1d595a11d97da3da7864f313f32573ac46829b0312b0e6e537cc9aa2dc84298"
    );
    let mut rotation = sequence()
        .into_iter()
        .find(|e| matches!(e.event, TokenEvent::TokenRotated(_)))
        .expect("the sequence rotates a token");
    let TokenEvent::TokenRotated(rotated) = &mut rotation.event else {
        unreachable!()
    };
    rotated.self_rotated = true;
    let payload = rotation.encode();
    assert_eq!(EventEnvelope::decode(&payload).expect("decodes"), rotation);
    let as_json: serde_json::Value = rmp_serde::from_slice(&payload).expect("messagepack");
    assert_eq!(as_json["data"]["self_rotated"], true);
    assert_eq!(
        hex::encode(Sha256::digest(&payload)),
        "509a41ce182df45f352895d87d105b2fb25363c41a876dd67e57a2a3ee063b6c"
    );
    for plain in sequence() {
        let as_json: serde_json::Value =
            rmp_serde::from_slice(&plain.encode()).expect("messagepack");
        assert!(as_json["data"].get("self_rotate").is_none());
        assert!(as_json["data"].get("self_rotated").is_none());
    }
}
