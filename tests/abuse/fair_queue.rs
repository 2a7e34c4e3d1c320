//! An API node's request-record queue is fair between tokens: when it is
//! full, the token holding the most of it loses its oldest records, so one
//! token's flood never pushes out another's; every dropped record is counted
//! for its token and shown with the token's logs (`dropped` in
//! `/requests/stats`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::serve::service_args;
use crate::support::{NatsServer, ServeApp, eventually};

const RECORDS: &str = "/api/v1/workspaces/acme/records";

async fn call(api: &ApiClient, secret: &str) -> u16 {
    api.client
        .get(api.url(RECORDS))
        .bearer_auth(secret)
        .send()
        .await
        .expect("api call")
        .status()
        .as_u16()
}

async fn read_token(api: &ApiClient, session: &str) -> (String, String) {
    let (token, secret) = api
        .create_token(
            session,
            &json!({"description": "fair", "expiration": "3m", "scopes": ["read"], "workspaces": ["acme"]}),
        )
        .await;
    (token["id"].as_str().expect("id").to_owned(), secret)
}

/// (records indexed, records dropped) of a token over the last day.
async fn accounted(api: &ApiClient, session: &str, id: &str) -> Option<(u64, u64)> {
    let stats: Value = api
        .get(session, &format!("/v1/tokens/{id}/requests/stats"))
        .await
        .json()
        .await
        .ok()?;
    let indexed = stats["buckets"]
        .as_array()?
        .iter()
        .filter_map(|b| b["total"].as_u64())
        .sum();
    Some((indexed, stats["dropped"].as_u64()?))
}

async fn wait_ready(api: &ApiClient) {
    eventually(Duration::from_secs(30), "ready", || async {
        let res = api.client.get(api.url("/readyz")).send().await.ok()?;
        (res.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn while_nats_is_away_a_flooding_token_pushes_out_only_its_own_records_and_each_drop_is_counted()
 {
    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let url = nats.url();
    let _service = crate::support::distributed::token_service(data.path(), &url, &[]);
    let node_process =
        crate::support::distributed::api_node(&url, "node-a", &["--record-queue-capacity", "50"]);
    let svc = ApiClient::from_base(&_service.base);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&svc).await;
    wait_ready(&node).await;
    let (alice, bob) = (svc.login("alice").await, svc.login("bob").await);
    let (heavy_id, heavy) = read_token(&svc, &alice).await;
    let (light_id, light) = read_token(&svc, &bob).await;
    for secret in [&heavy, &light] {
        eventually(
            Duration::from_secs(10),
            "the node knows the token",
            || async { (call(&node, secret).await == 200).then_some(()) },
        )
        .await;
    }
    let before = |id: String, session: String| {
        let svc = svc.clone();
        async move {
            eventually(
                Duration::from_secs(20),
                "the first records indexed",
                || async {
                    accounted(&svc, &session, &id)
                        .await
                        .filter(|(n, _)| *n >= 1)
                },
            )
            .await
        }
    };
    let (heavy_before, _) = before(heavy_id.clone(), alice.clone()).await;
    let (light_before, _) = before(light_id.clone(), bob.clone()).await;

    // NATS goes away: the node keeps serving and holds at most 50 records.
    nats.stop();
    let (mut heavy_calls, mut light_calls) = (0u64, 0u64);
    for n in 0..300 {
        assert_eq!(call(&node, &heavy).await, 200);
        heavy_calls += 1;
        if n % 15 == 0 {
            assert_eq!(call(&node, &light).await, 200);
            light_calls += 1;
        }
    }
    nats.restart();

    let light_total = light_before + light_calls;
    let (light_indexed, light_dropped) = eventually(
        Duration::from_secs(60),
        "every light record indexed",
        || async {
            accounted(&svc, &bob, &light_id)
                .await
                .filter(|(n, _)| *n == light_total)
        },
    )
    .await;
    assert_eq!((light_indexed, light_dropped), (light_total, 0));
    let heavy_total = heavy_before + heavy_calls;
    let (heavy_indexed, heavy_dropped) = eventually(
        Duration::from_secs(60),
        "the flood accounted for",
        || async {
            accounted(&svc, &alice, &heavy_id)
                .await
                .filter(|(n, d)| n + d == heavy_total)
        },
    )
    .await;
    assert!(
        heavy_dropped >= 200,
        "{heavy_dropped} dropped, {heavy_indexed} indexed"
    );
    assert_eq!(
        node.counter("enspace_request_records_dropped_total").await,
        heavy_dropped
    );
    assert!(
        node_process
            .logs()
            .contains(&format!("dropping the oldest records of token {heavy_id}")),
        "{}",
        node_process.logs()
    );
}

#[tokio::test]
async fn the_embedded_node_counts_its_dropped_records_for_their_token() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.limits.record_queue_capacity = 1;
    let app = ServeApp::spawn_with(args, data).await;
    let alice = app.login("alice").await;
    let (id, secret) = read_token(&app, &alice).await;
    let calls = 200u64;
    for _ in 0..calls {
        assert_eq!(call(&app, &secret).await, 200);
    }
    // The clock stands still, so the default window would end before now.
    let (indexed, dropped) = eventually(
        Duration::from_secs(20),
        "every call accounted for",
        || async {
            let stats: Value = app
                .get(
                    &alice,
                    &format!(
                        "/v1/tokens/{id}/requests/stats?to={}",
                        enspace_core::Clock::now(&app.clock) + jiff::SignedDuration::from_hours(1)
                    ),
                )
                .await
                .json()
                .await
                .ok()?;
            let indexed: u64 = stats["buckets"]
                .as_array()?
                .iter()
                .filter_map(|b| b["total"].as_u64())
                .sum();
            let dropped = stats["dropped"].as_u64()?;
            (indexed + dropped == calls).then_some((indexed, dropped))
        },
    )
    .await;
    assert!(
        dropped > 0,
        "a one-record queue dropped some of {calls} fast calls ({indexed} indexed)"
    );
}
