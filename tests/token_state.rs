//! Revoked stays revoked: token state under faults, with real processes on
//! a real nats-server. A lost NATS store, a lost or damaged control-plane
//! disk, forged events, NATS away, and SIGKILL mid-write.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use crate::support::app::ApiClient;
use crate::support::distributed::{
    api_node, body, metric, revoke, status, token_service, wait_ready, wait_status,
};
use crate::support::process::audit;
use crate::support::{EnspaceProcess, NatsServer, eventually, files_under};

async fn signed_in(process: &EnspaceProcess) -> (ApiClient, String) {
    let svc = ApiClient::from_base(&process.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    (svc, alice)
}

#[tokio::test]
async fn after_the_nats_store_is_lost_a_revocation_reaches_a_running_node_and_a_new_node_accepts_older_tokens()
 {
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats.url(), &[]);
    let old = api_node(&nats.url(), "old", &[]);
    let (svc, alice) = signed_in(&service).await;
    let old_node = ApiClient::from_base(&old.base);
    wait_ready(&old_node).await;
    let (doomed, doomed_secret) = svc.create_token(&alice, &body("doomed")).await;
    let (_, kept_secret) = svc.create_token(&alice, &body("kept")).await;
    wait_status(&old_node, &kept_secret, 200, Duration::from_secs(5)).await;
    wait_status(&old_node, &doomed_secret, 200, Duration::from_secs(5)).await;

    nats.wipe_store_and_restart();
    revoke(&svc, &alice, &doomed).await;
    wait_status(&old_node, &doomed_secret, 401, Duration::from_secs(5)).await;
    let (_, later_secret) = svc.create_token(&alice, &body("made after the loss")).await;
    wait_status(&old_node, &later_secret, 200, Duration::from_secs(5)).await;
    assert_eq!(status(&old_node, &kept_secret).await, 200);

    let new = api_node(&nats.url(), "new", &[]);
    let new_node = ApiClient::from_base(&new.base);
    wait_ready(&new_node).await;
    assert_eq!(status(&new_node, &kept_secret).await, 200);
    assert_eq!(status(&new_node, &later_secret).await, 200);
    assert_eq!(status(&new_node, &doomed_secret).await, 401);
}

/// Every token of alice as listed, without `last_used_at` (which follows
/// the request log, not the token's history).
async fn snapshot(svc: &ApiClient, alice: &str) -> Value {
    let mut tokens = svc
        .get(alice, "/v1/tokens")
        .await
        .json::<Value>()
        .await
        .expect("json")["tokens"]
        .clone();
    for token in tokens.as_array_mut().into_iter().flatten() {
        if let Some(token) = token.as_object_mut() {
            token.remove("last_used_at");
        }
    }
    tokens
}

#[tokio::test]
async fn a_control_plane_on_a_wiped_data_dir_restores_every_token_and_the_same_chain_from_the_stream()
 {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("key dir");
    let key = keys.path().join("event-signing.key");
    let key_flag = ["--event-signing-key", key.to_str().expect("utf-8")];
    let mut service = token_service(data.path(), &nats.url(), &key_flag);
    let node = api_node(&nats.url(), "node", &[]);
    let (svc, alice) = signed_in(&service).await;
    let node_api = ApiClient::from_base(&node.base);
    let mut secrets = Vec::new();
    for i in 0..14 {
        let (token, secret) = svc.create_token(&alice, &body(&format!("t{i}"))).await;
        if i % 3 == 0 {
            revoke(&svc, &alice, &token).await;
        }
        secrets.push((secret, i % 3 == 0));
    }
    let listed = snapshot(&svc, &alice).await;
    wait_status(&node_api, &secrets[13].0, 200, Duration::from_secs(5)).await;
    service.terminate();
    let export = || {
        let mut args = vec!["export", "--data", data.path().to_str().expect("utf-8")];
        args.extend_from_slice(&key_flag);
        let (code, out) = audit(&args);
        assert_eq!(code, 0, "{out}");
        // The events, without the header (which names the head).
        out.split_once('\n').expect("a header line").1.to_owned()
    };
    let export_before = export();

    for path in std::fs::read_dir(data.path()).expect("data dir") {
        let path = path.expect("entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("wipe");
        } else {
            std::fs::remove_file(&path).expect("wipe");
        }
    }
    let mut service = token_service(data.path(), &nats.url(), &key_flag);
    let (svc, alice) = signed_in(&service).await;
    assert_eq!(
        snapshot(&svc, &alice).await,
        listed,
        "every token listed again"
    );
    // Still revocable, and the node still follows.
    let live = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["status"] == "active")
        .expect("a live token")
        .clone();
    revoke(&svc, &alice, &live).await;
    let index: usize = live["description"].as_str().expect("description")[1..]
        .parse()
        .expect("t<i>");
    let live_secret = &secrets[index].0;
    wait_status(&node_api, live_secret, 401, Duration::from_secs(5)).await;
    service.terminate();
    let export_after = export();
    assert!(
        export_after.starts_with(&export_before),
        "the restored chain is the one that was exported"
    );
    assert_eq!(
        export_after.lines().count(),
        export_before.lines().count() + 1
    );
    let (code, verified) = audit(&["verify", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{verified}");
}

/// Flips one byte in every copy of `needle` in the files under `dir`.
fn flip_every_copy(dir: &std::path::Path, needle: &[u8]) -> usize {
    let mut flipped = 0;
    for path in files_under(dir) {
        let mut bytes = std::fs::read(&path).expect("read");
        let mut changed = false;
        let mut at = 0;
        while let Some(i) = bytes[at..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + at)
        {
            bytes[i + needle.len() / 2] ^= 0x01;
            changed = true;
            flipped += 1;
            at = i + needle.len();
        }
        if changed {
            std::fs::write(&path, &bytes).expect("write");
        }
    }
    flipped
}

#[tokio::test]
async fn a_flipped_byte_in_an_event_never_brings_a_revoked_token_back() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut serve = EnspaceProcess::serve(data.path());
    let (svc, alice) = signed_in(&serve).await;
    let (first, first_secret) = svc.create_token(&alice, &body("first")).await;
    let (_, _second) = svc.create_token(&alice, &body("second")).await;
    revoke(&svc, &alice, &first).await;
    serve.terminate();
    let (_, export) = audit(&["export", "--data", data.path().to_str().expect("utf-8")]);
    let second: Value =
        serde_json::from_str(export.lines().nth(2).expect("header, event 1, event 2"))
            .expect("json");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(second["payload"].as_str().expect("payload"))
        .expect("base64");
    assert!(
        flip_every_copy(data.path(), &payload) > 0,
        "event 2 is on disk"
    );

    let (code, said) = audit(&["verify", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(code, 1, "verify must fail: {said}");
    // Starting either refuses, or serves without the revoked token.
    let started = std::process::Command::new(crate::support::process::binary())
        .args(["serve", "--data", data.path().to_str().expect("utf-8")])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = started;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (Some(status), child);
            }
            if Instant::now() > deadline {
                return (None, child);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("join");
    match output {
        (Some(status), child) => {
            assert!(!status.success());
            let out = child.wait_with_output().expect("output");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("missing")
                    || stderr.contains("corrupt")
                    || stderr.contains("differs"),
                "says why: {stderr}"
            );
        }
        (None, mut child) => {
            let _ = child.kill();
            panic!(
                "the control plane started on a log that lost a committed event ({first_secret:.12}…)"
            );
        }
    }
}

#[tokio::test]
async fn forged_unsigned_and_wrongly_signed_token_events_are_refused_by_every_node_and_counted() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats.url(), &[]);
    let (svc, alice) = signed_in(&service).await;
    let (a, b) = (
        api_node(&nats.url(), "a", &[]),
        api_node(&nats.url(), "b", &[]),
    );
    let nodes = [ApiClient::from_base(&a.base), ApiClient::from_base(&b.base)];
    let (real, real_secret) = svc.create_token(&alice, &body("real")).await;
    for node in &nodes {
        wait_ready(node).await;
        wait_status(node, &real_secret, 200, Duration::from_secs(5)).await;
    }

    // Anyone who can publish on NATS, with their own secret.
    let forger = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(forger);
    let key = enspace_core::EventSigner::generate();
    let mut forged_secrets = Vec::new();
    for signed in [false, true] {
        let secret = enspace_core::PatSecret::generate();
        // Alice's read-write token on acme: the next seq after the real
        // creation, the forger's own secret.
        let envelope = enspace_core::fixtures::created(2, &secret.hash())
            .scopes(&[enspace_core::Scope::Read, enspace_core::Scope::Write])
            .build();
        let token_id = envelope.token_id;
        let payload = envelope.encode();
        let mut headers = async_nats::HeaderMap::new();
        if signed {
            let hash = enspace_core::events::chain_hash(&[0; 32], &payload);
            headers.insert(
                enspace_nats::SIGNATURE_HEADER,
                base64::engine::general_purpose::STANDARD
                    .encode(key.sign_event(&hash))
                    .as_str(),
            );
        }
        js.publish_with_headers(
            enspace_nats::token_event_subject(&token_id.to_string()),
            headers,
            payload.into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
        forged_secrets.push(secret.expose().to_owned());
    }
    for node in &nodes {
        eventually(Duration::from_secs(5), "refusals counted", || async {
            let bad = metric(
                node,
                "enspace_token_events_refused_total{reason=\"bad_signature\"}",
            );
            let all = metric(node, "enspace_token_events_refused_total");
            (bad.await >= 1.0 && all.await >= 2.0).then_some(())
        })
        .await;
        for secret in &forged_secrets {
            assert_eq!(
                status(node, secret).await,
                401,
                "a forged token works nowhere"
            );
        }
    }
    // The stream is repaired and real changes still arrive.
    revoke(&svc, &alice, &real).await;
    for node in &nodes {
        wait_status(node, &real_secret, 401, Duration::from_secs(5)).await;
        for secret in &forged_secrets {
            assert_eq!(status(node, secret).await, 401);
        }
    }
}

#[tokio::test]
async fn a_node_cut_off_longer_than_max_staleness_answers_503_then_200_once_nats_returns() {
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats.url(), &[]);
    let (svc, alice) = signed_in(&service).await;
    let node = api_node(&nats.url(), "node", &["--max-staleness", "2s"]);
    let api = ApiClient::from_base(&node.base);
    wait_ready(&api).await;
    let (_, secret) = svc.create_token(&alice, &body("fresh")).await;
    wait_status(&api, &secret, 200, Duration::from_secs(5)).await;

    nats.stop();
    wait_status(&api, &secret, 503, Duration::from_secs(6)).await;
    let res = api
        .client
        .get(api.url(crate::support::distributed::RECORDS))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("call");
    assert_eq!(res.headers()["retry-after"], "1");
    crate::support::assert_problem(res, 503, "token_state_stale").await;
    let ready = api
        .client
        .get(api.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    eventually(Duration::from_secs(10), "the staleness gauge", || async {
        (metric(&api, "enspace_replica_staleness_seconds").await >= 2.0).then_some(())
    })
    .await;

    nats.restart();
    wait_status(&api, &secret, 200, Duration::from_secs(10)).await;
    wait_ready(&api).await;
}

#[tokio::test]
async fn a_revocation_made_while_nats_was_down_reaches_the_node_once_nats_is_back() {
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats.url(), &[]);
    let (svc, alice) = signed_in(&service).await;
    let node = api_node(&nats.url(), "node", &["--max-staleness", "none"]);
    let api = ApiClient::from_base(&node.base);
    wait_ready(&api).await;
    let (token, secret) = svc.create_token(&alice, &body("outage")).await;
    wait_status(&api, &secret, 200, Duration::from_secs(5)).await;

    nats.stop();
    revoke(&svc, &alice, &token).await;
    // Long enough for every client to back off as far as it will.
    for _ in 0..30 {
        assert_eq!(
            status(&api, &secret).await,
            200,
            "no staleness bound: old copy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nats.restart();
    let back = Instant::now();
    wait_status(&api, &secret, 401, Duration::from_secs(20)).await;
    let took = back.elapsed();
    eprintln!("revocation reached the node {took:?} after NATS returned");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test]
async fn sigkill_of_the_control_plane_in_a_loop_loses_no_acknowledged_change() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    // secret → (token id, acknowledged revoked)
    let mut acked: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for _round in 0..4 {
        let mut service = token_service(data.path(), &nats.url(), &[]);
        let (svc, alice) = signed_in(&service).await;
        let bob = svc.login("bob").await;
        let mut clients = Vec::new();
        for c in 0..4 {
            let svc = svc.clone();
            let session = if c % 2 == 0 {
                alice.clone()
            } else {
                bob.clone()
            };
            clients.push(tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let res = svc
                        .client
                        .post(svc.url("/v1/tokens"))
                        .bearer_auth(&session)
                        .json(&body("kill"))
                        .send()
                        .await;
                    let Ok(res) = res else { break };
                    if res.status() != 201 {
                        break;
                    }
                    let Ok(created) = res.json::<Value>().await else {
                        break;
                    };
                    let id = created["token"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let secret = created["secret"].as_str().unwrap_or_default().to_owned();
                    done.push((secret.clone(), id.clone(), false));
                    let res = svc
                        .client
                        .delete(svc.url(&format!("/v1/tokens/{id}")))
                        .bearer_auth(&session)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 204 => {
                            if let Some(last) = done.last_mut() {
                                last.2 = true;
                            }
                        }
                        _ => break,
                    }
                }
                done
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        service.kill();
        for client in clients {
            for (secret, id, revoked) in client.await.expect("client") {
                acked.insert(secret, (id, revoked));
            }
        }
    }
    assert!(acked.len() > 20, "only {} changes were made", acked.len());

    let mut service = token_service(data.path(), &nats.url(), &[]);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let mut listed = BTreeMap::new();
    for user in ["alice", "bob"] {
        let session = svc.login(user).await;
        for t in svc
            .get(&session, "/v1/tokens")
            .await
            .json::<Value>()
            .await
            .expect("json")["tokens"]
            .as_array()
            .expect("list")
        {
            listed.insert(
                t["id"].as_str().expect("id").to_owned(),
                t["status"].as_str().expect("status").to_owned(),
            );
        }
    }
    for (id, revoked) in acked.values() {
        let state = listed.get(id).map(String::as_str);
        assert!(state.is_some(), "acknowledged token {id} is lost");
        if *revoked {
            assert_eq!(
                state,
                Some("revoked"),
                "acknowledged revocation of {id} is lost"
            );
        }
    }
    let fresh = api_node(&nats.url(), "fresh", &[]);
    let node = ApiClient::from_base(&fresh.base);
    wait_ready(&node).await;
    for (secret, (id, _)) in &acked {
        let want = if listed[id] == "revoked" { 401 } else { 200 };
        assert_eq!(status(&node, secret).await, want, "node agrees on {id}");
    }
    service.terminate();
    let (code, said) = audit(&["verify", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{said}");
}

#[tokio::test]
async fn with_the_shipped_nats_permissions_everything_works_and_a_node_cannot_publish_token_events()
{
    let nats = NatsServer::shipped();
    let data = tempfile::tempdir().expect("temp dir");
    let tokens_url = nats.tokens_url();
    let node_url = nats.node_url();
    let service = token_service(data.path(), &tokens_url, &crate::support::nats::EDGE_FLAGS);
    let (svc, alice) = signed_in(&service).await;
    let node = api_node(&node_url, "node", &[]);
    let api = ApiClient::from_base(&node.base);
    wait_ready(&api).await;
    let (token, secret) = svc.create_token(&alice, &body("with auth")).await;
    wait_status(&api, &secret, 200, Duration::from_secs(5)).await;
    // The node's request record reaches the control plane's index.
    let id = token["id"].as_str().expect("id");
    eventually(Duration::from_secs(10), "the call's record indexed", || {
        svc.lists_a_call(&alice, &id)
    })
    .await;

    // With the node's credentials, a forged event goes nowhere.
    let as_node = enspace_nats::connect(&node_url, "test-node-user")
        .await
        .expect("node user connects");
    let js = async_nats::jetstream::new(as_node.clone());
    let forged = js
        .publish(
            enspace_nats::token_event_subject("01FORGED"),
            "forged".into(),
        )
        .await;
    let stored = match forged {
        Ok(ack) => tokio::time::timeout(Duration::from_secs(3), ack)
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false),
        Err(_) => false,
    };
    assert!(!stored, "a node's credentials published a token event");
    let as_tokens = enspace_nats::connect(&tokens_url, "test-tokens-user")
        .await
        .expect("tokens user connects");
    let state = async_nats::jetstream::new(as_tokens)
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("stream")
        .get_info()
        .await
        .expect("info")
        .state;
    assert_eq!(
        state.last_sequence, 1,
        "only the real creation is in the stream"
    );
    assert!(
        async_nats::connect(nats.url()).await.is_err(),
        "no anonymous access"
    );

    revoke(&svc, &alice, &token).await;
    wait_status(&api, &secret, 401, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_node_rebuilds_its_copy_when_the_control_plane_starts_a_new_history() {
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("key dir");
    let key = keys.path().join("event-signing.key");
    let key_flag = ["--event-signing-key", key.to_str().expect("utf-8")];
    let mut service = token_service(data.path(), &nats.url(), &key_flag);
    let (svc, alice) = signed_in(&service).await;
    let node = api_node(&nats.url(), "node", &[]);
    let api = ApiClient::from_base(&node.base);
    wait_ready(&api).await;
    let mut old = Vec::new();
    for i in 0..3 {
        let (_, secret) = svc.create_token(&alice, &body(&format!("old {i}"))).await;
        wait_status(&api, &secret, 200, Duration::from_secs(5)).await;
        old.push(secret);
    }

    // Everything lost but the key: a new history begins.
    service.kill();
    nats.wipe_store_and_restart();
    std::fs::remove_dir_all(data.path()).expect("wipe");
    let service = token_service(data.path(), &nats.url(), &key_flag);
    let (svc, alice) = signed_in(&service).await;
    let (_, new_secret) = svc.create_token(&alice, &body("new")).await;
    wait_status(&api, &new_secret, 200, Duration::from_secs(10)).await;
    for secret in &old {
        assert_eq!(
            status(&api, secret).await,
            401,
            "a token of the old history"
        );
    }
    drop(service);
}

/// Removes the last `n` events from a stopped service's log, as sled's
/// recovery does when it cuts a damaged tail.
fn cut_the_log(data: &std::path::Path, n: u64) {
    enspace_store::tamper::Tamper::open(data)
        .expect("open the stopped store")
        .cut_log(n)
        .expect("cut");
}

#[tokio::test]
async fn a_log_shorter_than_what_was_committed_refuses_to_start_and_restore_fills_it_from_the_stream()
 {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut service = token_service(data.path(), &nats.url(), &[]);
    let (svc, alice) = signed_in(&service).await;
    let (token, secret) = svc
        .create_token(&alice, &body("revoked, then cut off"))
        .await;
    revoke(&svc, &alice, &token).await;
    // Published before the stop.
    eventually(
        Duration::from_secs(5),
        "both events in the stream",
        || async {
            let client = enspace_nats::connect(&nats.url(), "test").await.ok()?;
            let stream = async_nats::jetstream::new(client)
                .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
                .await
                .ok()?;
            (stream.get_info().await.ok()?.state.last_sequence == 2).then_some(())
        },
    )
    .await;
    service.terminate();
    cut_the_log(data.path(), 1);

    let dir = data.path().to_str().expect("utf-8");
    let (code, said) = audit(&["verify", "--data", dir]);
    assert_eq!(code, 1);
    assert!(said.contains("events 2..=2 are missing"), "{said}");
    let refused = std::process::Command::new(crate::support::process::binary())
        .args([
            "tokens",
            "--data",
            dir,
            "--nats-url",
            &nats.url(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("events 2..=2 are missing"), "{stderr}");

    let restored = std::process::Command::new(crate::support::process::binary())
        .args(["restore", "--data", dir, "--nats-url", &nats.url()])
        .env("ENSPACE_PROGRESS_EVERY", "0")
        .output()
        .expect("run");
    let progress = String::from_utf8_lossy(&restored.stderr);
    assert!(restored.status.success(), "{progress}");
    assert!(String::from_utf8_lossy(&restored.stdout).contains("restored 1 events"));
    // Not on a terminal, it says how far it is on stderr.
    assert!(
        progress.contains("done: 2 events restored of 2"),
        "{progress}"
    );
    let (code, said) = audit(&["verify", "--data", dir]);
    assert_eq!(code, 0, "{said}");
    let service = token_service(data.path(), &nats.url(), &[]);
    let (svc, alice) = signed_in(&service).await;
    let id = token["id"].as_str().expect("id");
    let view: Value = svc
        .get(&alice, &format!("/v1/tokens/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(view["status"], "revoked");
    let node = api_node(&nats.url(), "node", &[]);
    let api = ApiClient::from_base(&node.base);
    wait_ready(&api).await;
    assert_eq!(status(&api, &secret).await, 401);
}

#[tokio::test]
async fn the_event_key_is_served_printed_offline_and_a_node_pinned_to_another_key_accepts_nothing()
{
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut service = token_service(data.path(), &nats.url(), &[]);
    let (svc, alice) = signed_in(&service).await;
    let served: Value = svc.event_key().await;
    assert_eq!(served["alg"], "Ed25519");
    assert_eq!(served["key_id"].as_str().map(str::len), Some(16));

    let other = enspace_core::EventSigner::generate().public().to_base64();
    let wrong = api_node(&nats.url(), "wrong", &["--event-key", &other]);
    let right = api_node(
        &nats.url(),
        "right",
        &["--event-key", served["key"].as_str().expect("key")],
    );
    let (wrong_api, right_api) = (
        ApiClient::from_base(&wrong.base),
        ApiClient::from_base(&right.base),
    );
    let (_, secret) = svc.create_token(&alice, &body("pinned")).await;
    wait_ready(&right_api).await;
    wait_status(&right_api, &secret, 200, Duration::from_secs(5)).await;
    eventually(Duration::from_secs(5), "the wrong node refuses", || async {
        (metric(&wrong_api, "enspace_token_events_refused_total").await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        status(&wrong_api, &secret).await,
        503,
        "never ready, never accepting"
    );
    assert!(wrong.logs().contains("pinned by --event-key"));

    service.terminate();
    let printed = std::process::Command::new(crate::support::process::binary())
        .args(["event-key", "--data", data.path().to_str().expect("utf-8")])
        .output()
        .expect("run");
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("json");
    assert_eq!(printed, served);
}
