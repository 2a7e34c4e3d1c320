//! `--token-rate-limit N/s` on an API node: each token its own bucket of
//! 2N calls refilled at N a second, on the node's clock; a call over it is
//! 429 `rate_limited` with `Retry-After` and the ratelimit headers (which
//! allowed calls carry too once half the burst is used), and is still
//! logged.

use std::num::NonZeroU32;
use std::time::Duration;

use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::support::serve::service_args;
use crate::support::{ServeApp, assert_problem, eventually};

async fn call(app: &ServeApp, secret: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/workspaces/acme/records"))
        .bearer_auth(secret)
        .send()
        .await
        .expect("api call")
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn limited_serve(per_second: u32) -> ServeApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.limits.token_rate_limit = enspace::cli::TokenRateLimit(NonZeroU32::new(per_second));
    ServeApp::spawn_with(args, data).await
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after_and_ratelimit_headers_and_others_do_not() {
    let app = limited_serve(5).await;
    let alice = app.login("alice").await;
    let body = json!({"description": "limited", "expiration": "3m", "scopes": ["read"], "workspaces": ["acme"]});
    let (flooding, flood_secret) = app.create_token(&alice, &body).await;
    let (_, calm_secret) = app.create_token(&alice, &body).await;
    for n in 0..10 {
        let res = call(&app, &flood_secret).await;
        assert_eq!(res.status(), 200, "call {n} of the burst");
        // The headers come once half of the burst of 10 is used.
        if n < 5 {
            assert!(res.headers().get("ratelimit").is_none(), "call {n}");
            continue;
        }
        assert_eq!(header(&res, "ratelimit-policy"), "\"per-token\";q=10;w=2");
        assert!(
            header(&res, "ratelimit").starts_with(&format!("\"per-token\";r={};t=", 9 - n)),
            "{}",
            header(&res, "ratelimit")
        );
    }
    let refused = call(&app, &flood_secret).await;
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "ratelimit"), "\"per-token\";r=0;t=1");
    assert_problem(refused, 429, "rate_limited").await;
    assert_eq!(
        call(&app, &calm_secret).await.status(),
        200,
        "another token has its own"
    );

    app.clock.advance(SignedDuration::from_secs(1));
    for _ in 0..5 {
        assert_eq!(call(&app, &flood_secret).await.status(), 200);
    }
    assert_eq!(call(&app, &flood_secret).await.status(), 429);

    // Every call is logged, the refused ones with their 429.
    let id = flooding["id"].as_str().expect("id");
    // `to` is exclusive and the clock stands still: look past it.
    let to = enspace_core::Clock::now(&app.clock) + SignedDuration::from_hours(1);
    let statuses = eventually(Duration::from_secs(10), "17 records", || async {
        let page: Value = app
            .get(
                &alice,
                &format!("/v1/tokens/{id}/requests?limit=100&to={to}"),
            )
            .await
            .json()
            .await
            .ok()?;
        let statuses: Vec<u64> = page["requests"]
            .as_array()?
            .iter()
            .filter_map(|r| r["status"].as_u64())
            .collect();
        (statuses.len() == 17).then_some(statuses)
    })
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("enspace_token_rate_limited_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_a_rate_limit_no_ratelimit_headers_are_sent() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let body = json!({"description": "free", "expiration": "3m", "scopes": ["read"], "workspaces": ["acme"]});
    let (_, secret) = app.create_token(&alice, &body).await;
    for _ in 0..30 {
        let res = call(&app, &secret).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("ratelimit").is_none());
    }
}
