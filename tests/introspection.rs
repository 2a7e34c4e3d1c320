//! `POST /v1/introspect` (RFC 7662) for API nodes in other languages.

use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::support::TestApp;

async fn introspect(app: &TestApp, key: Option<&str>, token: &str) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/v1/introspect"))
        .form(&[("token", token)]);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("introspect")
}

async fn active(app: &TestApp, token: &str) -> Value {
    let res = introspect(app, Some("test-internal-key"), token).await;
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

#[tokio::test]
async fn introspection_describes_an_active_token_and_says_inactive_for_the_rest() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let body = json!({"description": "i", "expiration": "1m", "scopes": ["write", "read"], "workspaces": ["acme"]});
    let (token, secret) = app.create_token(&alice, &body).await;

    let info = active(&app, &secret).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "read write");
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["jti"], token["id"]);
    assert_eq!(info["workspaces"], json!(["acme"]));

    assert_eq!(active(&app, "garbage").await, json!({"active": false}));
    assert_eq!(
        active(&app, enspace_core::PatSecret::generate().expose()).await,
        json!({"active": false})
    );

    app.clock.advance(SignedDuration::from_hours(24 * 32));
    assert_eq!(
        active(&app, &secret).await,
        json!({"active": false}),
        "expired"
    );
    app.clock.advance(SignedDuration::from_hours(-24 * 32));

    let id = token["id"].as_str().expect("id");
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{id}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        active(&app, &secret).await,
        json!({"active": false}),
        "revoked"
    );
}

#[tokio::test]
async fn introspection_rejects_callers_without_the_internal_key() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (_, secret) = app
        .create_token(&alice, &crate::support::create_body("i"))
        .await;
    for key in [
        None,
        Some("wrong-key"),
        Some(alice.as_str()),
        Some(secret.as_str()),
    ] {
        let res = introspect(&app, key, &secret).await;
        assert_eq!(res.status(), 401, "{key:?}");
        let body: Value = res.json().await.expect("problem");
        assert_eq!(body["code"], "invalid_internal_key");
    }
}
