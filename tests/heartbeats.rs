//! API nodes order the control plane's heartbeats by its term and their
//! sequence, not by the sender's clock: a writer whose clock is behind
//! keeps nodes fresh, a replayed heartbeat and one from the far future are
//! refused. Heartbeats here are signed with the real key (read from the
//! control plane's data directory), as a new writer's would be.

use std::time::Duration;

use enspace_core::EventSigner;
use enspace_core::signing::Heartbeat;
use futures::StreamExt;

use crate::support::app::ApiClient;
use crate::support::distributed::{
    api_node, body, metric, status, token_service, wait_ready, wait_status,
};
use crate::support::{NatsServer, eventually};

const STALENESS: Duration = Duration::from_secs(2);

/// The control plane's signing key, from its data directory.
fn real_key(data: &std::path::Path) -> EventSigner {
    let path = enspace_tokens::signing_key::path(data, None);
    enspace_tokens::signing_key::load(&path)
        .expect("read the key")
        .expect("a key")
}

/// The next real heartbeat.
async fn real_heartbeat(client: &async_nats::Client, signer: &EventSigner) -> Heartbeat {
    let mut beats = client
        .subscribe(enspace_nats::HEARTBEAT_SUBJECT)
        .await
        .expect("subscribe");
    let message = tokio::time::timeout(Duration::from_secs(10), beats.next())
        .await
        .expect("a heartbeat within 10 s")
        .expect("a heartbeat");
    Heartbeat::open(&message.payload, Some(signer.public()))
        .expect("a real heartbeat")
        .0
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Whether the node answers `/readyz` 200.
async fn ready(api: &ApiClient) -> bool {
    api.client
        .get(api.url("/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test]
async fn a_new_writer_whose_clock_is_behind_keeps_nodes_fresh_and_its_heartbeats_replayed_are_refused()
 {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut service = token_service(data.path(), &nats.url(), &[]);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let node_process = api_node(&nats.url(), "node", &["--max-staleness", "2s"]);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&node).await;
    let (_, secret) = svc.create_token(&alice, &body("fresh")).await;
    wait_status(&node, &secret, 200, Duration::from_secs(5)).await;

    let signer = real_key(data.path());
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let real = eventually(
        Duration::from_secs(10),
        "a heartbeat naming the token",
        || async {
            let beat = real_heartbeat(&client, &signer).await;
            (beat.seq == 1).then_some(beat)
        },
    )
    .await;
    // The writer is gone; a new one, with the same log and a clock an hour
    // behind, speaks in the next term.
    service.kill();
    let mut sent = Vec::new();
    let forge = async {
        for beat in 1..=u64::try_from(4 * STALENESS.as_millis() / 250).expect("small") {
            let heartbeat = Heartbeat {
                term: real.term + 1,
                beat,
                at_ms: now_ms() - 3_600_000,
                writer: "new-writer".into(),
                ..real.clone()
            };
            let wire = heartbeat.sign(&signer);
            client
                .publish(enspace_nats::HEARTBEAT_SUBJECT, wire.clone().into())
                .await
                .expect("publish");
            sent.push(wire);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    forge.await;
    // Twice the staleness bound has passed since the real writer died.
    eventually(Duration::from_secs(5), "the node fresh", || async {
        (ready(&node).await && status(&node, &secret).await == 200).then_some(())
    })
    .await;

    // The same heartbeats again, over and over: refused, and the node goes
    // stale.
    let replay = async {
        for wire in sent.iter().cycle().take(60) {
            client
                .publish(enspace_nats::HEARTBEAT_SUBJECT, wire.clone().into())
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let stale = async {
        wait_status(&node, &secret, 503, Duration::from_secs(10)).await;
        assert!(!ready(&node).await, "/readyz turns 503");
    };
    tokio::join!(replay, stale);
    assert!(
        metric(
            &node,
            "enspace_token_events_refused_total{reason=\"heartbeat_replayed\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_heartbeat_from_the_far_future_is_refused_and_the_real_ones_keep_the_node_fresh() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats.url(), &[]);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let node_process = api_node(&nats.url(), "node", &["--max-staleness", "2s"]);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&node).await;
    let (_, secret) = svc.create_token(&alice, &body("fresh")).await;
    wait_status(&node, &secret, 200, Duration::from_secs(5)).await;

    let signer = real_key(data.path());
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let real = real_heartbeat(&client, &signer).await;
    let future = Heartbeat {
        term: real.term + 1,
        beat: 1,
        at_ms: now_ms() + 86_400_000,
        ..real.clone()
    };
    client
        .publish(enspace_nats::HEARTBEAT_SUBJECT, future.sign(&signer).into())
        .await
        .expect("publish");
    eventually(Duration::from_secs(5), "the refusal counted", || async {
        let refused = metric(
            &node,
            "enspace_token_events_refused_total{reason=\"heartbeat_future\"}",
        );
        (refused.await >= 1.0).then_some(())
    })
    .await;
    // Past twice the staleness bound, the real heartbeats still count.
    tokio::time::sleep(2 * STALENESS).await;
    eventually(Duration::from_secs(5), "the node fresh", || async {
        (ready(&node).await && status(&node, &secret).await == 200).then_some(())
    })
    .await;
    drop(service);
}
