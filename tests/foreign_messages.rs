//! Foreign messages in the token events stream (anything that is not the
//! next signed event of the chain, put there by a raw client on a plain
//! `nats-server -js`) never stop writes, revocations, reads or a restart,
//! single process or cluster; they are deleted at most once per repair
//! interval, and no signed event is lost.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::app::ApiClient;
use crate::support::cluster::{Member, audit_export, writer};
use crate::support::distributed::{
    api_node, body, metric, revoke, status, token_service, wait_ready, wait_status,
};
use crate::support::poison::{Poisoner, contents, publish_foreign};
use crate::support::process::audit;
use crate::support::{NatsServer, eventually};

const REPAIR_EVERY: Duration = Duration::from_secs(2);
const REPAIR_FLAG: [&str; 2] = ["--stream-repair-interval", "2s"];
const REPAIRS: &str = "enspace_token_stream_repairs_total";

/// Creates a token through `svc`, retrying while it answers 503 (a cluster
/// between writers).
async fn create(svc: &ApiClient, session: &str, what: &str) -> (Value, String) {
    eventually(
        Duration::from_secs(20),
        "a creation answered 201",
        || async {
            let res = svc.post_json(session, "/v1/tokens", &body(what)).await;
            if res.status() != 201 {
                assert_eq!(res.status(), 503, "a creation answered {}", res.status());
                return None;
            }
            let created: Value = res.json().await.ok()?;
            let secret = created["secret"].as_str()?.to_owned();
            Some((created["token"].clone(), secret))
        },
    )
    .await
}

/// Repairs counted by `svc`, checked against how many intervals passed.
async fn repairs_within(svcs: &[&ApiClient], since: Instant) -> f64 {
    let mut repairs = 0.0;
    for svc in svcs {
        repairs += metric(svc, REPAIRS).await;
    }
    let allowed = since.elapsed().as_secs_f64() / REPAIR_EVERY.as_secs_f64() + svcs.len() as f64;
    assert!(
        repairs <= allowed,
        "{repairs} repairs in {:?}: more than one per interval",
        since.elapsed()
    );
    repairs
}

/// Waits until the stream holds only events, `events` of them, in order.
async fn only_events_left(nats_url: &str, events: u64) {
    eventually(
        Duration::from_secs(30),
        "the foreign messages deleted",
        || async {
            let now = contents(nats_url).await;
            (now.messages.len() as u64 == events
                && now.event_seqs() == (1..=events).collect::<Vec<_>>())
            .then_some(())
        },
    )
    .await;
}

/// The audit export's payloads, as the stream must hold them.
fn exported_payloads(export: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    export
        .lines()
        .skip(1) // the header
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("json");
            base64::engine::general_purpose::STANDARD
                .decode(event["payload"].as_str().expect("payload"))
                .expect("base64")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_messages_never_stop_a_single_control_plane_and_are_deleted_at_most_once_per_interval()
 {
    let nats = NatsServer::start();
    let url = nats.url();
    let data = tempfile::tempdir().expect("temp dir");
    let mut service = token_service(data.path(), &url, &REPAIR_FLAG);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let node_process = api_node(&url, "node", &[]);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&node).await;
    let (mut token, mut secret) = create(&svc, &alice, "before").await;
    wait_status(&node, &secret, 200, Duration::from_secs(10)).await;
    let created_at = contents(&url).await.created;

    let started = Instant::now();
    let poisoner = Poisoner::start(&url, Duration::from_millis(150)).await;
    for i in 0..8 {
        let (next, next_secret) = create(&svc, &alice, &format!("while poisoned {i}")).await;
        revoke(&svc, &alice, &token).await;
        wait_status(&node, &secret, 401, Duration::from_secs(5)).await;
        wait_status(&node, &next_secret, 200, Duration::from_secs(5)).await;
        (token, secret) = (next, next_secret);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually(Duration::from_secs(10), "a repair", || async {
        (repairs_within(&[&svc], started).await >= 1.0).then_some(())
    })
    .await;
    let published = poisoner.stop().await;
    assert!(published >= 8, "only {published} foreign messages");
    assert_eq!(
        contents(&url).await.created,
        created_at,
        "the stream was repaired in place, never deleted and refilled"
    );
    assert_eq!(
        metric(&svc, "enspace_token_stream_refills_total").await,
        0.0
    );
    // 1 + 8 creations and 8 revocations.
    only_events_left(&url, 17).await;
    repairs_within(&[&svc], started).await;

    // Foreign messages in the middle and at the tail (more than are read
    // one at a time), then SIGKILL.
    let client = async_nats::connect(url.as_str()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    for n in 0..4 {
        publish_foreign(&js, n).await;
    }
    let (last, last_secret) = create(&svc, &alice, "before the kill").await;
    for n in 4..84 {
        publish_foreign(&js, n).await;
    }
    service.kill();
    let mut service = token_service(data.path(), &url, &REPAIR_FLAG);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    revoke(&svc, &alice, &last).await;
    wait_status(&node, &last_secret, 401, Duration::from_secs(5)).await;
    let (_, after) = create(&svc, &alice, "after the restart").await;
    wait_status(&node, &after, 200, Duration::from_secs(5)).await;
    only_events_left(&url, 20).await;

    // A restarted node catches up past the deleted messages.
    drop(node_process);
    let node_process = api_node(&url, "node", &[]);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&node).await;
    assert_eq!(status(&node, &last_secret).await, 401);
    assert_eq!(status(&node, &after).await, 200);

    // No signed event lost: the log verifies and the stream holds exactly it.
    service.terminate();
    let dir = data.path().to_str().expect("utf-8");
    let (code, said) = audit(&["verify", "--data", dir]);
    assert_eq!(code, 0, "{said}");
    let (_, export) = audit(&["export", "--data", dir]);
    let in_stream: Vec<Vec<u8>> = contents(&url)
        .await
        .messages
        .into_iter()
        .map(|(_, payload, _)| payload)
        .collect();
    assert_eq!(in_stream, exported_payloads(&export));
}

/// Two members sharing a key in `dir`, started one after the other.
async fn pair(dir: &Path, url: &str) -> (Member, Member) {
    let key = dir.join("event-signing.key");
    let a = Member::start(&dir.join("a"), &key, url, "cp-a", &REPAIR_FLAG);
    writer(&[&a]).await;
    let b = Member::start(&dir.join("b"), &key, url, "cp-b", &REPAIR_FLAG);
    eventually(Duration::from_secs(20), "cp-b following", || async {
        b.head().await.is_some().then_some(())
    })
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_messages_never_stop_a_cluster_from_writing_reading_revoking_or_restarting() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &url).await;
    let session = a.api.login("alice").await;
    let node_process = api_node(&url, "node", &[]);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&node).await;
    let (mut token, mut secret) = create(&a.api, &session, "before").await;
    wait_status(&node, &secret, 200, Duration::from_secs(10)).await;

    let started = Instant::now();
    let poisoner = Poisoner::start(&url, Duration::from_millis(150)).await;
    let mut made = 1;
    for i in 0..8 {
        // Through either process: the follower forwards to the writer.
        let through = if i % 2 == 0 { &a } else { &b };
        let (next, next_secret) = create(&through.api, &session, &format!("poisoned {i}")).await;
        revoke(&through.api, &session, &token).await;
        made += 1;
        for member in [&a, &b] {
            let id = next["id"].as_str().expect("id");
            let res = member.api.get(&session, &format!("/v1/tokens/{id}")).await;
            assert_eq!(res.status(), 200, "{} reads the token", member.node_id);
        }
        wait_status(&node, &secret, 401, Duration::from_secs(5)).await;
        wait_status(&node, &next_secret, 200, Duration::from_secs(5)).await;
        (token, secret) = (next, next_secret);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The writer SIGKILLed and started again, with the poisoning going on.
    let old = writer(&[&a, &b]).await;
    let (mut victim, survivor) = if a.node_id == old { (a, b) } else { (b, a) };
    victim.process.kill();
    let key = dir.path().join("event-signing.key");
    let back = Member::start(&victim.data, &key, &url, &victim.node_id, &REPAIR_FLAG);
    wait_ready(&back.api).await;
    for member in [&back, &survivor] {
        let (next, next_secret) = create(&member.api, &session, "after the kill").await;
        revoke(&member.api, &session, &token).await;
        made += 1;
        wait_status(&node, &secret, 401, Duration::from_secs(10)).await;
        wait_status(&node, &next_secret, 200, Duration::from_secs(10)).await;
        let id = next["id"].as_str().expect("id");
        for reader in [&back, &survivor] {
            let res = reader.api.get(&session, &format!("/v1/tokens/{id}")).await;
            assert_eq!(res.status(), 200, "{} reads the token", reader.node_id);
        }
        (token, secret) = (next, next_secret);
    }
    let _ = token;
    eventually(Duration::from_secs(10), "a repair", || async {
        (repairs_within(&[&back.api, &survivor.api], started).await >= 1.0).then_some(())
    })
    .await;
    let published = poisoner.stop().await;
    assert!(published >= 8, "only {published} foreign messages");

    // A restarted node catches up.
    drop(node_process);
    let node_process = api_node(&url, "node", &[]);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&node).await;
    assert_eq!(status(&node, &secret).await, 200);

    // Every event once, in order; the two logs are the one history.
    let events = made * 2 - 1;
    repairs_within(&[&back.api, &survivor.api], started).await;
    // Copies at the tail are noted by the writer's next append.
    create(&survivor.api, &session, "last").await;
    only_events_left(&url, events + 1).await;
    eventually(
        Duration::from_secs(20),
        "both members at the head",
        || async {
            let (x, y) = (back.head().await?, survivor.head().await?);
            (x == events + 1 && y == x).then_some(())
        },
    )
    .await;
    let (mut back, mut survivor) = (back, survivor);
    back.process.terminate();
    survivor.process.terminate();
    let (x, y) = (audit_export(&back), audit_export(&survivor));
    assert_eq!(x, y, "one history");
    assert_eq!(
        x.lines().count() as u64,
        1 + events + 1,
        "the header and every event"
    );
    let in_stream: Vec<Vec<u8>> = contents(&url)
        .await
        .messages
        .into_iter()
        .map(|(_, payload, _)| payload)
        .collect();
    assert_eq!(in_stream, exported_payloads(&x));
    drop(victim);
}
