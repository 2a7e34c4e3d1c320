//! The hash-chained event log as auditors see it: through the
//! API, through `enspace audit export`, and `enspace audit verify` catching
//! a changed, removed or reordered event in a stopped store.

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::process::audit;
use enspace_store::tamper::Tamper;

use crate::support::{TestApp, create_body};

/// Checks a run of audit events the way an outside auditor would, with
/// nothing but SHA-256, base64, hex and MessagePack: consecutive `seq` from
/// 1, `prev_hash` the previous `hash` (zeros first), `hash = SHA-256(prev ‖
/// payload)`, and the payload saying what the JSON says. Returns the head hash.
fn verify_independently(events: &[Value]) -> String {
    let mut prev = [0u8; 32];
    for (i, event) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(event["seq"], seq, "seq is gap-free from 1");
        let prev_hash = hex::decode(event["prev_hash"].as_str().expect("prev_hash")).expect("hex");
        assert_eq!(prev_hash, prev, "prev_hash of seq {seq}");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(event["payload"].as_str().expect("payload"))
            .expect("base64");
        let mut h = Sha256::new();
        h.update(prev);
        h.update(&payload);
        let hash: [u8; 32] = h.finalize().into();
        assert_eq!(hex::encode(hash), event["hash"], "hash of seq {seq}");
        let decoded: Value = rmp_serde::from_slice(&payload).expect("payload is MessagePack");
        for field in ["seq", "id", "type", "at", "actor", "token_id", "data"] {
            assert_eq!(
                decoded[field], event[field],
                "payload's {field} of seq {seq}"
            );
        }
        prev = hash;
    }
    hex::encode(prev)
}

/// A log of `n` creations by alice and bob, every third revoked; the
/// service stopped. Returns the data dir and the events as the API showed them.
async fn stopped_log(n: usize) -> (tempfile::TempDir, Vec<Value>) {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    for i in 0..n {
        let who = if i % 2 == 0 { &alice } else { &bob };
        let (token, _) = app
            .create_token(who, &create_body(&format!("token {i}")))
            .await;
        if i % 3 == 2 {
            let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
            assert_eq!(app.delete(who, &path).await.status(), 204);
        }
    }
    let audra = app.login("audra").await;
    let page: Value = app
        .get(&audra, "/v1/audit/events?limit=1000")
        .await
        .json()
        .await
        .expect("json");
    let events = page["events"].as_array().expect("array").clone();
    let (data, _) = app.stop().await;
    (data, events)
}

fn data_arg(data: &tempfile::TempDir) -> &str {
    data.path().to_str().expect("utf-8 path")
}

/// Changes the stored events of a stopped store, then lets go of it.
fn tamper(data: &tempfile::TempDir, change: impl FnOnce(&Tamper)) {
    change(&Tamper::open(data.path()).expect("open the stopped store"));
}

fn assert_broken_at(data: &tempfile::TempDir, seq: u64) {
    let (code, out) = audit(&["verify", "--data", data_arg(data)]);
    assert_eq!(code, 1, "verify fails: {out}");
    assert!(
        out.contains(&format!("seq {seq}:")),
        "verify names seq {seq}: {out}"
    );
}

#[tokio::test]
async fn audit_events_form_a_chain_anyone_can_verify_without_our_code() {
    let (_data, events) = stopped_log(6).await;
    assert_eq!(events.len(), 8);
    assert_eq!(events[0]["prev_hash"], "0".repeat(64));
    verify_independently(&events);
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "token_created",
            "token_created",
            "token_created",
            "token_revoked",
            "token_created",
            "token_created",
            "token_created",
            "token_revoked"
        ]
    );
    let actors: Vec<&str> = events
        .iter()
        .map(|e| e["actor"].as_str().expect("actor"))
        .collect();
    assert_eq!(
        actors,
        [
            "alice", "bob", "alice", "alice", "bob", "alice", "bob", "bob"
        ]
    );
}

#[tokio::test]
async fn verify_passes_on_an_intact_log_with_its_count_and_head_hash() {
    let (data, events) = stopped_log(5).await;
    let head = verify_independently(&events);
    let (code, out) = audit(&["verify", "--data", data_arg(&data)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{} events", events.len())), "{out}");
    assert!(
        out.contains(&head),
        "verify prints the head hash {head}: {out}"
    );
}

#[tokio::test]
async fn verify_passes_on_an_empty_log() {
    let app = TestApp::spawn().await;
    let (data, _) = app.stop().await;
    let (code, out) = audit(&["verify", "--data", data_arg(&data)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 events"), "{out}");
}

#[tokio::test]
async fn verify_refuses_a_directory_without_a_store() {
    let empty = tempfile::tempdir().expect("temp dir");
    let (code, out) = audit(&["verify", "--data", data_arg(&empty)]);
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("ok:"), "{out}");
    let missing = empty.path().join("nowhere");
    let (code, _) = audit(&["verify", "--data", missing.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(!missing.exists(), "verify creates nothing");
}

#[tokio::test]
async fn export_is_ndjson_in_seq_order_equal_to_the_api_and_verifiable_independently() {
    let (data, events) = stopped_log(7).await;
    let (code, out) = audit(&["export", "--data", data_arg(&data)]);
    assert_eq!(code, 0);
    assert!(out.ends_with('\n'));
    let mut exported: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    let header = exported.remove(0);
    assert_eq!(header["head"]["seq"], events.len() as u64);
    assert_eq!(exported, events);
    let head = verify_independently(&exported);
    let (_, verified) = audit(&["verify", "--data", data_arg(&data)]);
    assert!(verified.contains(&head), "{verified}");
}

#[tokio::test]
async fn export_of_an_empty_log_is_its_header_alone() {
    let app = TestApp::spawn().await;
    let (data, _) = app.stop().await;
    let (code, out) = audit(&["export", "--data", data_arg(&data)]);
    assert_eq!(code, 0);
    let header: Value = serde_json::from_str(out.trim_end()).expect("one JSON line");
    assert_eq!(header["head"], json!({"seq": 0, "hash": "0".repeat(64)}));
}

#[tokio::test]
async fn verify_names_the_seq_of_an_event_whose_payload_byte_changed() {
    let (data, _) = stopped_log(5).await;
    tamper(&data, |events| {
        let mut value = events.event(3).expect("read").expect("seq 3");
        let last = value.len() - 1;
        value[last] ^= 0x01;
        events.put_event(3, &value).expect("write");
    });
    assert_broken_at(&data, 3);
}

#[tokio::test]
async fn verify_names_the_seq_of_an_event_whose_description_was_rewritten() {
    let (data, _) = stopped_log(5).await;
    tamper(&data, |events| {
        let value = events.event(2).expect("read").expect("seq 2");
        let at = value
            .windows(7)
            .position(|w| w == b"token 1")
            .expect("description in the payload");
        let mut forged = value.clone();
        forged[at + 6] = b'9'; // "token 1" → "token 9", same length, valid MessagePack
        events.put_event(2, &forged).expect("write");
    });
    assert_broken_at(&data, 2);
}

#[tokio::test]
async fn verify_names_the_seq_of_an_event_whose_stored_hash_changed() {
    let (data, _) = stopped_log(4).await;
    tamper(&data, |events| {
        let mut value = events.event(4).expect("read").expect("seq 4");
        value[32] ^= 0x80; // first byte of its own hash
        events.put_event(4, &value).expect("write");
    });
    assert_broken_at(&data, 4);
}

#[tokio::test]
async fn verify_names_the_first_event_of_a_log_whose_first_event_changed() {
    let (data, _) = stopped_log(3).await;
    tamper(&data, |events| {
        let mut value = events.event(1).expect("read").expect("seq 1");
        value[70] ^= 0x01;
        events.put_event(1, &value).expect("write");
    });
    assert_broken_at(&data, 1);
}

#[tokio::test]
async fn verify_names_the_seq_of_a_removed_event() {
    let (data, _) = stopped_log(5).await;
    tamper(&data, |events| {
        assert!(events.remove_event(4).expect("remove"), "seq 4 existed");
    });
    assert_broken_at(&data, 4);
}

#[tokio::test]
async fn verify_names_the_first_seq_of_reordered_events() {
    let (data, _) = stopped_log(5).await;
    tamper(&data, |events| {
        let two = events.event(2).expect("read").expect("seq 2");
        let five = events.event(5).expect("read").expect("seq 5");
        events.put_event(2, &five).expect("write");
        events.put_event(5, &two).expect("write");
    });
    assert_broken_at(&data, 2);
}

#[tokio::test]
async fn a_rewritten_event_with_a_recomputed_hash_breaks_the_chain_at_the_next_seq() {
    let (data, _) = stopped_log(5).await;
    tamper(&data, |events| {
        let value = events.event(3).expect("read").expect("seq 3");
        let (prev, rest) = value.split_at(32);
        let mut payload = rest[32..].to_vec();
        let at = payload
            .windows(7)
            .position(|w| w == b"token 2")
            .expect("description");
        payload[at + 6] = b'8';
        let mut h = Sha256::new();
        h.update(prev);
        h.update(&payload);
        let hash: [u8; 32] = h.finalize().into();
        let forged = [prev, &hash[..], &payload].concat();
        events.put_event(3, &forged).expect("write");
    });
    // Seq 3 is self-consistent now; seq 4 no longer chains onto it.
    assert_broken_at(&data, 4);
}

#[tokio::test]
async fn export_of_a_tampered_log_fails_independent_verification() {
    let (data, events) = stopped_log(3).await;
    tamper(&data, |events| {
        let mut value = events.event(2).expect("read").expect("seq 2");
        let last = value.len() - 1;
        value[last] ^= 0x01;
        events.put_event(2, &value).expect("write");
    });
    let (_, out) = audit(&["export", "--data", data_arg(&data)]);
    let exported: Vec<Value> = out
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_ne!(
        exported, events,
        "the export shows the stored bytes as they are"
    );
    let caught = std::panic::catch_unwind(|| verify_independently(&exported));
    assert!(caught.is_err(), "an outside auditor notices");
}

#[tokio::test]
async fn the_audit_api_and_the_token_history_show_the_same_events() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("one")).await;
    let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
    assert_eq!(app.delete(&alice, &path).await.status(), 204);
    let history: Value = app
        .get(&alice, &format!("{path}/events"))
        .await
        .json()
        .await
        .expect("json");
    let audra = app.login("audra").await;
    let all: Value = app
        .get(&audra, "/v1/audit/events")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(history["events"], all["events"]);
    assert_eq!(all["next_after"], json!(null));
}
