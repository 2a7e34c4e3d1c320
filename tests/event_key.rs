//! No trust on first use by default: an API node needs the control plane's
//! event key (`--event-key` or `--event-key-file`); pinning the first key
//! heard takes `--trust-first-event-key`, warns, and still refuses anything
//! another key signed afterwards.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use enspace_core::signing::Heartbeat;
use enspace_core::{EventSigner, PatSecret, Scope, fixtures};
use serde_json::Value;

use crate::support::app::ApiClient;
use crate::support::distributed::{
    api_node, body, metric, revoke, status, token_service, wait_ready, wait_status,
};
use crate::support::process::binary;
use crate::support::{NatsServer, eventually};

#[test]
fn an_api_node_without_an_event_key_refuses_to_start_and_names_the_flag() {
    let output = Command::new(binary())
        .args(["api-node", "--nats-url", "nats://127.0.0.1:1"])
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("ENSPACE_EVENT_KEY")
        .env_remove("ENSPACE_EVENT_KEY_FILE")
        .env_remove("ENSPACE_TRUST_FIRST_EVENT_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--event-key"), "{stderr}");
    assert!(stderr.contains("--trust-first-event-key"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "refused before listening"
    );
}

#[tokio::test]
async fn event_key_create_makes_the_key_once_and_a_node_reads_it_from_event_key_file() {
    let keys = tempfile::tempdir().expect("key dir");
    let public = tempfile::tempdir().expect("public dir");
    let key = keys.path().join("event-signing.key");
    let out = public.path().join("event-key.json");
    let (key, out) = (key.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    let run = || {
        let output = Command::new(binary())
            .args([
                "event-key",
                "--create",
                "--event-signing-key",
                key,
                "--out",
                out,
            ])
            .output()
            .expect("run");
        assert!(output.status.success(), "{output:?}");
        let printed: Value = serde_json::from_slice(&output.stdout).expect("json");
        printed
    };
    let made = run();
    assert_eq!(run(), made, "made once, then read");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out).expect("written")).expect("json");
    assert_eq!(written, made);

    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats.url(), &["--event-signing-key", key]);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let served: Value = svc.event_key().await;
    assert_eq!(served, made, "the control plane signs with the key made");
    let node_process = api_node(&nats.url(), "node", &["--event-key-file", out]);
    let node = ApiClient::from_base(&node_process.base);
    let alice = svc.login("alice").await;
    let (_, secret) = svc.create_token(&alice, &body("through the file")).await;
    wait_ready(&node).await;
    wait_status(&node, &secret, 200, Duration::from_secs(5)).await;
}

/// Event 2 (alice's read token on acme with the forger's own secret),
/// chained on the real event 1 and signed by `forger`, with the headers
/// the control plane's events carry.
fn forged_event_2(
    first_payload: &[u8],
    forger: &EventSigner,
) -> (Vec<u8>, async_nats::HeaderMap, [u8; 32], PatSecret) {
    let secret = PatSecret::generate();
    let envelope = fixtures::created(2, &secret.hash())
        .scopes(&[Scope::Read])
        .build();
    let payload = envelope.encode();
    let first =
        enspace_core::events::chain_hash(&enspace_core::events::GENESIS_HASH, first_payload);
    let hash = enspace_core::events::chain_hash(&first, &payload);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        enspace_nats::SIGNATURE_HEADER,
        base64::engine::general_purpose::STANDARD
            .encode(forger.sign_event(&hash))
            .as_str(),
    );
    headers.insert(enspace_nats::PREV_HASH_HEADER, hex::encode(first).as_str());
    (payload, headers, first, secret)
}

#[tokio::test]
async fn a_node_trusting_the_first_key_warns_and_still_refuses_what_another_key_signs_after() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats.url(), &[]);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let (real, real_secret) = svc.create_token(&alice, &body("real")).await;
    let node_process = api_node(&nats.url(), "node", &["--trust-first-event-key"]);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&node).await;
    wait_status(&node, &real_secret, 200, Duration::from_secs(5)).await;
    let logs = node_process.logs();
    assert!(
        logs.contains("WARN") && logs.contains("--trust-first-event-key"),
        "{logs}"
    );

    // Once pinned, a forger's event and heartbeats go nowhere.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let first = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("stream")
        .get_raw_message(1)
        .await
        .expect("event 1");
    let forger = EventSigner::generate();
    let (payload, headers, first_hash, forged_secret) = forged_event_2(&first.payload, &forger);
    js.publish_with_headers(
        enspace_nats::token_event_subject("01FORGED"),
        headers,
        payload.clone().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let beat = Heartbeat {
        v: Heartbeat::VERSION,
        writer: "forger".into(),
        seq: 2,
        hash: enspace_core::events::chain_hash(&first_hash, &payload),
        first_hash,
        at_ms: jiff::Timestamp::now().as_millisecond(),
        key: *forger.public().as_bytes(),
        term: u64::MAX / 2,
        beat: 1,
    };
    client
        .publish(enspace_nats::HEARTBEAT_SUBJECT, beat.sign(&forger).into())
        .await
        .expect("publish");
    eventually(Duration::from_secs(5), "the forgeries refused", || async {
        let bad = metric(
            &node,
            "enspace_token_events_refused_total{reason=\"bad_signature\"}",
        )
        .await;
        let beats = metric(
            &node,
            "enspace_token_events_refused_total{reason=\"heartbeat_invalid\"}",
        )
        .await;
        (bad >= 1.0 && beats >= 1.0).then_some(())
    })
    .await;
    assert_eq!(status(&node, forged_secret.expose()).await, 401);
    revoke(&svc, &alice, &real).await;
    wait_status(&node, &real_secret, 401, Duration::from_secs(5)).await;
    assert_eq!(status(&node, forged_secret.expose()).await, 401);
}
