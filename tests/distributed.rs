//! The distributed mode as separate processes on one real nats-server:
//! `enspace tokens` and `enspace api-node`s.

use std::time::{Duration, Instant};

use crate::support::app::ApiClient;
use crate::support::distributed::{self, body, status, wait_ready, wait_status};
use crate::support::{EnspaceProcess, NatsServer};

fn token_service(data: &std::path::Path, nats: &NatsServer) -> EnspaceProcess {
    distributed::token_service(data, &nats.url(), &[])
}

fn api_node(nats: &NatsServer, id: &str) -> EnspaceProcess {
    distributed::api_node_on(nats, id)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// How fast a revocation reaches the nodes is the `propagation` benchmark's
/// business; here it must only get there (within a generous bound).
#[tokio::test]
async fn a_token_works_on_both_nodes_and_its_revocation_reaches_both() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats);
    let (a, b) = (api_node(&nats, "node-a"), api_node(&nats, "node-b"));
    let svc = ApiClient::from_base(&service.base);
    let nodes = [ApiClient::from_base(&a.base), ApiClient::from_base(&b.base)];
    wait_ready(&svc).await;
    for node in &nodes {
        wait_ready(node).await;
    }
    let alice = svc.login("alice").await;

    let mut propagation = Vec::new();
    for i in 0..20 {
        let (token, secret) = svc.create_token(&alice, &body(&format!("t{i}"))).await;
        for node in &nodes {
            wait_status(node, &secret, 200, Duration::from_secs(5)).await;
        }
        let id = token["id"].as_str().expect("id");
        let start = Instant::now();
        assert_eq!(
            svc.delete(&alice, &format!("/v1/tokens/{id}"))
                .await
                .status(),
            204
        );
        for node in &nodes {
            wait_status(node, &secret, 401, Duration::from_secs(10)).await;
        }
        propagation.push(start.elapsed());
    }
    propagation.sort();
    let (p50, p99) = (
        percentile(&propagation, 0.5),
        percentile(&propagation, 0.99),
    );
    eprintln!("revocation visible on both nodes: p50 {p50:?}, p99 {p99:?} (incl. the DELETE)");
}

#[tokio::test]
async fn a_node_started_late_knows_every_creation_and_revocation_before_it_is_ready() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let mut tokens = Vec::new();
    for i in 0..300 {
        let (token, secret) = svc.create_token(&alice, &body(&format!("t{i}"))).await;
        let revoked = i % 3 != 0;
        if revoked {
            let id = token["id"].as_str().expect("id");
            assert_eq!(
                svc.delete(&alice, &format!("/v1/tokens/{id}"))
                    .await
                    .status(),
                204
            );
        }
        tokens.push((secret, revoked));
    }
    let late = api_node(&nats, "late");
    let node = ApiClient::from_base(&late.base);
    wait_ready(&node).await;
    for (secret, revoked) in &tokens {
        let want = if *revoked { 401 } else { 200 };
        assert_eq!(status(&node, secret).await, want);
    }
}

#[tokio::test]
async fn nodes_keep_verifying_while_nats_is_down_and_learn_revocations_once_it_is_back() {
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats);
    let a = api_node(&nats, "node-a");
    let (svc, node) = (
        ApiClient::from_base(&service.base),
        ApiClient::from_base(&a.base),
    );
    wait_ready(&svc).await;
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (token, secret) = svc.create_token(&alice, &body("outage")).await;
    wait_status(&node, &secret, 200, Duration::from_secs(5)).await;

    nats.stop();
    for _ in 0..20 {
        assert_eq!(
            status(&node, &secret).await,
            200,
            "verification from the local copy"
        );
    }
    let id = token["id"].as_str().expect("id");
    assert_eq!(
        svc.delete(&alice, &format!("/v1/tokens/{id}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        status(&node, &secret).await,
        200,
        "the node cannot know yet"
    );

    nats.restart();
    wait_status(&node, &secret, 401, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn an_event_committed_but_not_published_when_the_service_died_reaches_the_nodes_after_restart()
 {
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut service = token_service(data.path(), &nats);
    let a = api_node(&nats, "node-a");
    let (svc, node) = (
        ApiClient::from_base(&service.base),
        ApiClient::from_base(&a.base),
    );
    wait_ready(&svc).await;
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (old, old_secret) = svc.create_token(&alice, &body("published")).await;
    wait_status(&node, &old_secret, 200, Duration::from_secs(5)).await;

    // NATS away: these commit to sled but cannot be published.
    nats.stop();
    let (_, new_secret) = svc.create_token(&alice, &body("committed only")).await;
    let id = old["id"].as_str().expect("id");
    assert_eq!(
        svc.delete(&alice, &format!("/v1/tokens/{id}"))
            .await
            .status(),
        204
    );
    service.kill();

    nats.restart();
    let restarted = token_service(data.path(), &nats);
    wait_ready(&ApiClient::from_base(&restarted.base)).await;
    wait_status(&node, &new_secret, 200, Duration::from_secs(20)).await;
    wait_status(&node, &old_secret, 401, Duration::from_secs(5)).await;
}
