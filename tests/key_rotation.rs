//! The event signing key can be rotated without a restart anywhere: the
//! rotation is an event signed by the old key naming the new one. API nodes
//! pinned to the old key, the other control-plane processes and auditors
//! follow it from the log, and from then on only the new key counts. A lost
//! key is never replaced silently: the break is an event, and only whoever
//! is given the new key explicitly accepts it.

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use enspace_core::{EventSigner, PatSecret, fixtures};
use serde_json::Value;

use crate::support::app::ApiClient;
use crate::support::cluster::{converge, pair, writer};
use crate::support::distributed::{
    api_node, body, metric, revoke, status, wait_ready, wait_status,
};
use crate::support::process::{audit, binary};
use crate::support::{NatsServer, TestApp, create_body, eventually};

/// `POST /v1/event-key/rotate` with `bearer` as the internal key.
async fn rotate(api: &ApiClient, bearer: Option<&str>) -> reqwest::Response {
    let mut request = api.client.post(api.url("/v1/event-key/rotate"));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.expect("rotate")
}

/// `enspace event-key …`: (exit code, stdout, stderr).
fn event_key_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .arg("event-key")
        .args(args)
        .output()
        .expect("run enspace event-key");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `enspace audit export` of a stopped service's data directory.
fn export(data: &std::path::Path) -> String {
    let (code, out) = audit(&["export", "--data", data.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    out
}

/// Both verifiers (offline and the Python script) on `export`, trusting
/// `keys` (base64): the offline one is given them as the JSON
/// `GET /v1/event-key` serves when `json` is given, else the first key.
fn verify(export: &str, keys: &[&str], json: Option<&Value>) -> [(i32, String); 2] {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, export).expect("write");
    let file = file.to_str().expect("utf-8");
    let given = json.map_or_else(|| keys[0].to_owned(), Value::to_string);
    let offline = audit(&["verify", "--export", file, "--event-key", &given]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/verify_export.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(file)
        .args(keys)
        .output()
        .expect("run python3 (tests/run installs cryptography)");
    let python = (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    );
    [offline, python]
}

fn lines(export: &str) -> Vec<Value> {
    export
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn key_of(json: &Value) -> &str {
    json["key"].as_str().expect("key")
}

#[tokio::test]
async fn a_rotation_hands_over_to_a_new_key_that_signs_every_later_event_and_auditors_follow_it() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    app.create_token(&alice, &create_body("before")).await;
    let before: Value = app.event_key().await;

    // Only the internal key rotates: no key, a wrong one, a user's session.
    for bearer in [None, Some("not-the-key"), Some(alice.as_str())] {
        let refused = rotate(&app, bearer).await;
        assert_eq!(refused.status(), 401, "{bearer:?}");
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = refused.json().await.expect("problem");
        assert_eq!(problem["code"], "invalid_internal_key");
    }
    assert_eq!(app.event_key().await, before, "nothing rotated");

    let rotated = rotate(&app, Some("test-internal-key")).await;
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.expect("json");
    let seq = rotated["seq"].as_u64().expect("seq");
    let now = &rotated["event_key"];
    assert_ne!(now["key_id"], before["key_id"], "a new key");
    assert_eq!(now["previous"][0]["key_id"], before["key_id"]);
    assert_eq!(now["previous"][0]["first_seq"], 1);
    assert_eq!(
        now["previous"][0]["last_seq"], seq,
        "the old key signs its hand-over"
    );
    assert_eq!(
        app.event_key().await,
        *now,
        "GET /v1/event-key serves the new key"
    );
    app.create_token(&alice, &create_body("after")).await;
    let (data, clock) = app.stop().await;

    let exported = export(data.path());
    let all = lines(&exported);
    assert_eq!(all[0]["event_keys"].as_array().map(Vec::len), Some(2));
    let at = |s: u64| &all[s as usize];
    assert_eq!(at(seq)["type"], "signing_key_rotated");
    assert_eq!(at(seq)["key_id"], before["key_id"], "signed by the old key");
    assert_eq!(at(seq)["data"]["key_id"], now["key_id"]);
    assert_eq!(
        at(seq + 1)["key_id"],
        now["key_id"],
        "later events by the new key"
    );
    let count = all.len() - 1;
    // From the key the auditor had before: the rotation is followed.
    for (code, out) in verify(&exported, &[key_of(&before)], None) {
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with(&format!("ok: {count} events")), "{out}");
    }
    // With the list GET /v1/event-key serves now.
    let (old, new) = (key_of(&before), key_of(now));
    for (code, out) in verify(&exported, &[old, new], Some(now)) {
        assert_eq!(code, 0, "{out}");
    }
    // The new key alone does not vouch for what the old one signed.
    for (code, out) in verify(&exported, &[new], None) {
        assert_eq!(code, 1, "{out}");
        assert!(out.starts_with("broken: seq 1:"), "{out}");
    }

    // The rotation outlives a restart: the new key still signs.
    let app = TestApp::spawn_with(data, clock).await;
    assert_eq!(app.event_key().await, *now);
}

#[tokio::test]
async fn a_lost_key_is_recorded_as_a_break_that_only_a_verifier_given_the_new_key_accepts() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    app.create_token(&alice, &create_body("before the loss"))
        .await;
    let lost: Value = app.event_key().await;
    let (data, clock) = app.stop().await;
    let dir = data.path().to_str().expect("utf-8").to_owned();

    // The key file gone: no silent new key, but the way out named.
    std::fs::remove_file(data.path().join("event-signing.key")).expect("lose the key");
    let refused = enspace_tokens::ControlPlane::start(enspace_tokens::ControlPlaneConfig::new(
        data.path(),
        std::sync::Arc::new(clock.clone()),
    ))
    .await;
    let why = refused.err().map(|e| format!("{e:#}")).expect("refused");
    assert!(why.contains("--lost-key"), "{why}");
    assert!(
        !data.path().join("event-signing.key").exists(),
        "no key made behind the operator's back"
    );

    // A wrong key named as the lost one is refused.
    let other = EventSigner::generate().public().to_base64();
    let (code, _, err) = event_key_cli(&[
        "rotate",
        "--data",
        &dir,
        "--lost-key",
        "--previous-key",
        &other,
    ]);
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = event_key_cli(&[
        "rotate",
        "--data",
        &dir,
        "--lost-key",
        "--previous-key",
        key_of(&lost),
    ]);
    assert_eq!(code, 0, "{err}");
    let now: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(now["previous"][0]["key_id"], lost["key_id"]);
    assert_eq!(now["previous"][0]["lost_after"], true);
    let break_seq = now["previous"][0]["last_seq"].as_u64().expect("seq") + 1;

    let app = TestApp::spawn_with(data, clock).await;
    assert_eq!(app.event_key().await, now);
    let alice = app.login("alice").await;
    app.create_token(&alice, &create_body("after the loss"))
        .await;
    let (data, _) = app.stop().await;
    let exported = export(data.path());
    let all = lines(&exported);
    assert_eq!(all[break_seq as usize]["data"]["previous_lost"], true);
    assert_eq!(
        all[break_seq as usize]["key_id"], now["key_id"],
        "signed by the new key"
    );

    // Trusting the old key alone, the break is where it stops.
    for (code, out) in verify(&exported, &[key_of(&lost)], None) {
        assert_eq!(code, 1, "{out}");
        assert!(
            out.starts_with(&format!("broken: seq {break_seq}:")),
            "{out}"
        );
        assert!(out.contains("lost"), "{out}");
    }
    // Given the new key explicitly, the whole log verifies.
    for (code, out) in verify(&exported, &[key_of(&lost), key_of(&now)], Some(&now)) {
        assert_eq!(code, 0, "{out}");
    }
}

#[tokio::test]
async fn a_stopped_service_rotates_its_key_from_the_command_line() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    app.create_token(&alice, &create_body("one")).await;
    let before: Value = app.event_key().await;
    let (data, clock) = app.stop().await;
    let dir = data.path().to_str().expect("utf-8").to_owned();
    let (code, out, err) = event_key_cli(&["rotate", "--data", &dir]);
    assert_eq!(code, 0, "{err}");
    let now: Value = serde_json::from_str(&out).expect("json");
    assert_ne!(now["key_id"], before["key_id"]);
    assert_eq!(now["previous"][0]["key_id"], before["key_id"]);
    let (code, out, _) = event_key_cli(&["--data", &dir]);
    assert_eq!(code, 0);
    let printed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        printed["key_id"], now["key_id"],
        "the key file holds the new key"
    );
    assert_eq!(
        printed["previous"][0]["key_id"], before["key_id"],
        "the printed JSON (what nodes pin) lists the key kept beside it"
    );
    let old_kept = data
        .path()
        .join("event-keys")
        .join(format!("{}.key", before["key_id"].as_str().expect("id")));
    assert!(old_kept.exists(), "the old key kept beside it");

    let app = TestApp::spawn_with(data, clock).await;
    assert_eq!(app.event_key().await, now);
    let alice = app.login("alice").await;
    app.create_token(&alice, &create_body("two")).await;
    let (data, _) = app.stop().await;
    for (code, out) in verify(&export(data.path()), &[key_of(&before)], None) {
        assert_eq!(code, 0, "{out}");
    }
}

/// Event `seq` (a read token of alice's with `secret`), chained after
/// `prev` and signed by `signer`, with the headers the control plane's
/// events carry.
fn event_after(
    seq: u64,
    prev: [u8; 32],
    signer: &EventSigner,
    secret: &PatSecret,
) -> (Vec<u8>, async_nats::HeaderMap) {
    let payload = fixtures::created(seq, &secret.hash()).build().encode();
    let hash = enspace_core::events::chain_hash(&prev, &payload);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        enspace_nats::SIGNATURE_HEADER,
        base64::engine::general_purpose::STANDARD
            .encode(signer.sign_event(&hash))
            .as_str(),
    );
    headers.insert(enspace_nats::PREV_HASH_HEADER, hex::encode(prev).as_str());
    (payload, headers)
}

/// The seq and chain hash of the last event in the token events stream.
async fn stream_head(js: &async_nats::jetstream::Context) -> (u64, [u8; 32]) {
    let stream = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("stream");
    let last = stream
        .get_last_raw_message_by_subject(enspace_nats::TOKEN_EVENTS_SUBJECTS)
        .await
        .expect("last event");
    let envelope = enspace_core::EventEnvelope::decode(&last.payload).expect("an event");
    let prev = enspace_nats::prev_hash_of(Some(&last.headers)).expect("prev hash");
    (
        envelope.seq,
        enspace_core::events::chain_hash(&prev, &last.payload),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_a_follower_follow_a_rotation_without_restart_and_the_old_key_then_signs_nothing()
 {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let writing = writer(&[&a, &b]).await;
    let (writer_member, follower) = if writing == a.node_id {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let old_signer = enspace_tokens::signing_key::load(&a.key)
        .expect("read")
        .expect("the shared key");
    // The node pins the key the members started with.
    let node_process = api_node(&nats.url(), "node", &[]);
    let node = ApiClient::from_base(&node_process.base);
    let alice = writer_member.api.login("alice").await;
    let (first, first_secret) = writer_member
        .api
        .create_token(&alice, &body("before"))
        .await;
    wait_ready(&node).await;
    wait_status(&node, &first_secret, 200, Duration::from_secs(10)).await;

    // Rotated through the follower: forwarded to the writer like any write.
    let rotated = rotate(&follower.api, Some("test-internal-key")).await;
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.expect("json");
    let new_id = rotated["event_key"]["key_id"].clone();
    assert_ne!(new_id.as_str(), Some(old_signer.public().key_id()));
    for member in [&a, &b] {
        eventually(
            Duration::from_secs(10),
            "every member serves the new key",
            || async { (member.api.event_key().await["key_id"] == new_id).then_some(()) },
        )
        .await;
    }

    // Later events, signed by the new key, reach the node and the follower.
    let follower_session = follower.api.login("alice").await;
    let (_, second_secret) = follower
        .api
        .create_token(&follower_session, &body("after"))
        .await;
    wait_status(&node, &second_secret, 200, Duration::from_secs(10)).await;
    revoke(&writer_member.api, &alice, &first).await;
    wait_status(&node, &first_secret, 401, Duration::from_secs(10)).await;
    converge(&a, &b).await;

    // Whoever kept the old key cannot sign the next event any more.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let (head, hash) = stream_head(&js).await;
    let refused_before = metric(
        &node,
        "enspace_token_events_refused_total{reason=\"bad_signature\"}",
    )
    .await;
    let forged_secret = PatSecret::generate();
    let (payload, headers) = event_after(head + 1, hash, &old_signer, &forged_secret);
    js.publish_with_headers(
        enspace_nats::token_event_subject("01OLDKEY"),
        headers,
        payload.into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    eventually(
        Duration::from_secs(10),
        "the old key's event refused",
        || async {
            let refused = metric(
                &node,
                "enspace_token_events_refused_total{reason=\"bad_signature\"}",
            )
            .await;
            (refused > refused_before).then_some(())
        },
    )
    .await;
    assert_eq!(status(&node, forged_secret.expose()).await, 401);
    // And the writer still writes: the old key's message is not another
    // writer's event.
    let (_, third_secret) = writer_member
        .api
        .create_token(&alice, &body("still writing"))
        .await;
    wait_status(&node, &third_secret, 200, Duration::from_secs(10)).await;
    assert_eq!(status(&node, forged_secret.expose()).await, 401);
    converge(&a, &b).await;
}
