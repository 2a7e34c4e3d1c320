//! What operators rely on: `/healthz`, `/readyz`, `/metrics`.

use serde_json::{Value, json};

use crate::support::{TestApp, create_body};

/// The value of the first sample of `name` (with these labels, if any) in a
/// Prometheus/OpenMetrics text body.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
            let base = series.split('{').next().unwrap_or_default();
            base == name && labels.iter().all(|l| series.contains(l))
        })
        .and_then(|line| line.rsplit_once(' ')?.1.parse().ok())
}

async fn metrics(app: &TestApp) -> String {
    let res = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    res.text().await.expect("body")
}

#[tokio::test]
async fn healthz_answers_200_without_a_session() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn readyz_answers_200_once_the_projections_have_the_whole_log() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    let alice = app.login("alice").await;
    app.create_token(&alice, &create_body("one")).await;
    app.create_token(&alice, &create_body("two")).await;
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    // After a restart on the same data it is ready again, caught up.
    let (data, clock) = app.stop().await;
    let app = TestApp::spawn_with(data, clock).await;
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn metrics_count_tokens_created_and_revoked_and_the_event_log_length() {
    let app = TestApp::spawn().await;
    let before = metrics(&app).await;
    for name in [
        "enspace_tokens_created",
        "enspace_tokens_revoked",
        "enspace_event_log_length",
    ] {
        assert!(before.contains(name), "{name} is exported:\n{before}");
    }
    assert_eq!(sample(&before, "enspace_event_log_length", &[]), Some(0.0));

    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("one")).await;
    app.create_token(&alice, &create_body("two")).await;
    app.create_token(&alice, &create_body("three")).await;
    let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
    assert_eq!(app.delete(&alice, &path).await.status(), 204);
    assert_eq!(app.delete(&alice, &path).await.status(), 204); // records nothing

    let after = metrics(&app).await;
    assert_eq!(
        sample(&after, "enspace_tokens_created_total", &[]),
        Some(3.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "enspace_tokens_revoked_total", &[]),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "enspace_event_log_length", &[]),
        Some(4.0),
        "{after}"
    );
}

#[tokio::test]
async fn metrics_count_http_requests_by_route_method_and_status_and_time_them() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    app.create_token(&alice, &create_body("one")).await;
    app.create_token(&alice, &create_body("two")).await;
    let _ = app.get(&alice, "/v1/no-such-route").await;
    let _ = app.post_json(&alice, "/v1/tokens", &json!({})).await;
    let text = metrics(&app).await;
    assert_eq!(
        sample(
            &text,
            "http_requests_total",
            &["route=\"/v1/tokens\"", "method=\"POST\"", "status=\"201\""]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "http_requests_total",
            &["route=\"/v1/tokens\"", "method=\"POST\"", "status=\"422\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "http_requests_total",
            &["route=\"/v1/session\"", "method=\"POST\"", "status=\"200\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "http_requests_total", &["status=\"404\""]).is_some(),
        "unknown routes are counted too: {text}"
    );
    // Unknown paths are not labels of their own (no unbounded cardinality).
    assert!(!text.contains("no-such-route"), "{text}");
    assert!(
        sample(
            &text,
            "http_request_duration_seconds_count",
            &["route=\"/v1/tokens\""]
        )
        .is_some_and(|n| n >= 3.0),
        "{text}"
    );
}

#[tokio::test]
async fn the_ops_routes_need_no_session_and_answer_no_5xx_to_odd_requests() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let res = app.client.get(app.url(path)).send().await.expect("GET");
        assert_eq!(res.status(), 200, "{path}");
        let res = app
            .client
            .get(app.url(&format!("{path}?x=%FF&y")))
            .header("authorization", "Bearer nonsense")
            .send()
            .await
            .expect("GET");
        assert!(!res.status().is_server_error(), "{path}: {}", res.status());
    }
}

/// The control plane is not ready while it cannot reach NATS, and ready
/// again once NATS is back: a load balancer stops sending it writes it
/// could not publish.
#[tokio::test]
async fn the_control_planes_readyz_is_503_while_nats_is_down_and_200_once_it_is_back() {
    use std::time::Duration;

    use crate::support::{EnspaceProcess, NatsServer, eventually};

    let mut nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let tokens = EnspaceProcess::start(
        &[
            "tokens",
            "--data",
            data.path().to_str().expect("utf-8 path"),
            "--nats-url",
            &nats.url(),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let readyz = || async {
        let res = client
            .get(tokens.url("/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("a JSON body");
        // "ready", or the problem's code.
        let said = body["status"].as_str().or(body["code"].as_str());
        (status, said.expect("a status or a problem code").to_owned())
    };
    let wait_for = |want: (u16, &'static str), what: &'static str| {
        let readyz = &readyz;
        async move {
            eventually(Duration::from_secs(30), what, || async {
                let got = readyz().await;
                (got.0 == want.0 && got.1 == want.1).then_some(())
            })
            .await
        }
    };
    wait_for((200, "ready"), "ready with NATS up").await;
    nats.stop();
    wait_for((503, "not_ready"), "not ready with NATS down").await;
    nats.restart();
    wait_for((200, "ready"), "ready again once NATS is back").await;
}
