//! Notifications one process of a cluster makes alone reach the others
//! (`enspace_notify::notices`), through real `enspace tokens --cluster`
//! processes: `GET /v1/notifications` lists the same notification, with
//! the same id, on every process, and the writer's webhook gets it once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::absence::after_marker;
use crate::support::cluster::{Member, by_id, other, pair, writer};
use crate::support::distributed::{api_node, wait_ready};
use crate::support::node::{RECORDS, wait_status};
use crate::support::webhook::{Receiver, SECRET};
use crate::support::{NatsServer, create_body, eventually};

const DECOY_HOOK: &str = "notification.decoy_used";

/// Both members post notifications to `receiver`.
fn webhook_flags(receiver: &Receiver) -> [&str; 4] {
    ["--webhook-url", &receiver.url, "--webhook-secret", SECRET]
}

/// Makes a decoy of alice's on `member`; answers its secret.
async fn make_decoy(member: &Member, alice: &str) -> String {
    let res = member
        .api
        .post_json(alice, "/v1/decoys", &json!({"description": "canary"}))
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    body["secret"].as_str().expect("secret").to_owned()
}

/// Presents `secret` to `member`'s introspection, as called from `ip`.
async fn introspect(member: &Member, secret: &str, ip: &str) {
    let answer = member
        .api
        .introspect(&[("token", secret), ("client_ip", ip)])
        .await;
    assert_eq!(answer, json!({"active": false}));
}

/// Alice's `decoy_used` notifications on `member` naming `ip`.
async fn decoy_notes(member: &Member, alice: &str, ip: &str) -> Vec<Value> {
    member
        .api
        .notifications(alice)
        .await
        .into_iter()
        .filter(|n| {
            n["kind"] == "decoy_used" && n["detail"].as_str().is_some_and(|d| d.contains(ip))
        })
        .collect()
}

/// Waits until `member` lists exactly one `decoy_used` naming `ip`.
async fn one_note(member: &Member, alice: &str, ip: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        &format!("{} lists the use from {ip}", member.node_id),
        || async {
            let mut notes = decoy_notes(member, alice, ip).await;
            (notes.len() == 1).then(|| notes.remove(0))
        },
    )
    .await
}

/// The webhook bodies of `decoy_used` once the one naming `marker_ip` came.
async fn hooks_after(receiver: &Receiver, marker_ip: &str) -> Vec<Value> {
    eventually(Duration::from_secs(20), "the marker's webhook", || async {
        let all = receiver.all(DECOY_HOOK);
        all.iter()
            .any(|b| {
                b["data"]["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(marker_ip))
            })
            .then_some(all)
    })
    .await
}

/// Presents the decoy `secret` to the API node `node`, as called from `ip`:
/// answered as an unknown token.
async fn use_decoy(node: &crate::support::app::ApiClient, secret: &str, ip: &str) {
    let res = node
        .client
        .get(node.url(RECORDS))
        .bearer_auth(secret)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .expect("read");
    assert_eq!(res.status(), 401);
}

fn delivered(hooks: &[Value], id: &Value) -> usize {
    hooks.iter().filter(|b| &b["data"]["id"] == id).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoy_presented_to_one_process_is_listed_by_the_other_with_its_id_and_delivered_once() {
    let nats = NatsServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &webhook_flags(&receiver)).await;
    let writing = writer(&[&a, &b]).await;
    let (the_writer, follower) = (by_id([&a, &b], &writing), other([&a, &b], &writing));
    let alice = the_writer.api.login("alice").await;
    let secret = make_decoy(the_writer, &alice).await;

    // Only the follower sees this use: only it makes the notification.
    introspect(follower, &secret, "192.0.2.77").await;
    let made = one_note(follower, &alice, "192.0.2.77").await;
    let kept = one_note(the_writer, &alice, "192.0.2.77").await;
    assert_eq!(kept, made, "the same notification, with the same id");

    // Delivered by the writer, once: a second use (the marker) is
    // delivered after it.
    let hooks = after_marker(
        "a second use",
        introspect(follower, &secret, "192.0.2.78"),
        || async {
            let hooks = hooks_after(&receiver, "192.0.2.78").await;
            Some(hooks)
        },
    )
    .await;
    assert_eq!(delivered(&hooks, &made["id"]), 1, "{hooks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoy_used_on_an_api_node_is_one_notification_with_one_id_on_every_process() {
    let nats = NatsServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &webhook_flags(&receiver)).await;
    let edge = api_node(&nats.url(), "edge-1", &["--trusted-proxies", "127.0.0.1"]);
    let node = crate::support::app::ApiClient::from_base(&edge.base);
    wait_ready(&node).await;
    let alice = a.api.login("alice").await;
    let secret = make_decoy(&a, &alice).await;
    // Once the node answers a token made after the decoy, it holds both.
    let (_, real) = a.api.create_token(&alice, &create_body("real")).await;
    wait_status(&node, &real, 200, Duration::from_secs(20)).await;

    let use_from = |ip: &'static str| use_decoy(&node, &secret, ip);
    use_from("198.51.100.20").await;
    let on_a = one_note(&a, &alice, "198.51.100.20").await;
    let on_b = one_note(&b, &alice, "198.51.100.20").await;
    assert_eq!(on_a, on_b, "the same notification, with the same id");

    let hooks = after_marker("a second use", use_from("198.51.100.21"), || async {
        Some(hooks_after(&receiver, "198.51.100.21").await)
    })
    .await;
    assert_eq!(delivered(&hooks, &on_a["id"]), 1, "{hooks:?}");
    // Still one on each process, whatever each made and was told.
    for member in [&a, &b] {
        assert_eq!(decoy_notes(member, &alice, "198.51.100.20").await.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoy_used_in_a_partition_the_writer_does_not_index_is_listed_everywhere_and_delivered_once()
 {
    let nats = NatsServer::start();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ([a, b, c], owners) =
        crate::partitioned_indexing::three(&nats, dir.path(), &webhook_flags(&receiver)).await;
    let edge = api_node(&nats.url(), "edge-1", &["--trusted-proxies", "127.0.0.1"]);
    let node = crate::support::app::ApiClient::from_base(&edge.base);
    wait_ready(&node).await;
    let alice = a.api.login("alice").await;
    // A decoy whose records the writer (cp-a) does not index: only cp-b
    // and cp-c see its use and make the notification.
    let secret = loop {
        let res = a
            .api
            .post_json(&alice, "/v1/decoys", &json!({"description": "canary"}))
            .await;
        assert_eq!(res.status(), 201, "at most 20 decoys; 1 in 3 is wanted");
        let body: Value = res.json().await.expect("json");
        let id: ulid::Ulid = body["decoy"]["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("ulid");
        let partition = enspace_core::record_batch::partition_of(&id) as usize;
        if !owners[partition].contains("cp-a") {
            break body["secret"].as_str().expect("secret").to_owned();
        }
    };
    let (_, real) = a.api.create_token(&alice, &create_body("real")).await;
    wait_status(&node, &real, 200, Duration::from_secs(20)).await;
    let use_from = |ip: &'static str| use_decoy(&node, &secret, ip);
    use_from("198.51.100.30").await;
    let on_a = one_note(&a, &alice, "198.51.100.30").await;
    for member in [&b, &c] {
        assert_eq!(
            one_note(member, &alice, "198.51.100.30").await,
            on_a,
            "the same notification, with the same id, on {}",
            member.node_id
        );
    }
    let hooks = after_marker("a second use", use_from("198.51.100.31"), || async {
        Some(hooks_after(&receiver, "198.51.100.31").await)
    })
    .await;
    assert_eq!(delivered(&hooks, &on_a["id"]), 1, "{hooks:?}");
}
