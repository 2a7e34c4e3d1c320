//! The API node through `enspace serve` (embedded): the auth layer in front
//! of the example records API, every allow and deny row.

use std::time::Duration;

use jiff::SignedDuration;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::support::{ServeApp, eventually};

async fn call(app: &ServeApp, method: Method, path: &str, bearer: Option<&str>) -> Response {
    let mut req = app.client.request(method.clone(), app.url(path));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if method == Method::POST || method == Method::PUT {
        req = req.json(&json!({"title": "Quarterly report", "body": "numbers"}));
    }
    req.send().await.expect("api call")
}

fn www_authenticate(res: &Response) -> String {
    res.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn token(
    app: &ServeApp,
    session: &str,
    scopes: &[&str],
    workspaces: &[&str],
    expiration: &str,
) -> (Value, String) {
    app.create_token(
        session,
        &json!({"description": "api test", "expiration": expiration, "scopes": scopes, "workspaces": workspaces}),
    )
    .await
}

/// Waits until the node's replica knows the token (it follows the log).
async fn until_known(app: &ServeApp, secret: &str, ws: &str) {
    eventually(Duration::from_secs(5), "token reaches the node", || async {
        let res = call(
            app,
            Method::GET,
            &format!("/api/v1/workspaces/{ws}/records"),
            Some(secret),
        )
        .await;
        (res.status() != 401).then_some(())
    })
    .await;
}

async fn assert_invalid_token(res: Response) {
    assert_eq!(res.status(), 401);
    assert_eq!(www_authenticate(&res), "Bearer error=\"invalid_token\"");
    assert_eq!(
        res.headers()["content-type"].to_str().expect("ascii"),
        "application/problem+json"
    );
    let body: Value = res.json().await.expect("problem");
    assert_eq!(body["code"], "invalid_token");
}

#[tokio::test]
async fn a_full_token_can_list_create_view_update_and_delete_records() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (_, secret) = token(&app, &alice, &["read", "write", "delete"], &["acme"], "1m").await;
    until_known(&app, &secret, "acme").await;

    let created = call(
        &app,
        Method::POST,
        "/api/v1/workspaces/acme/records",
        Some(&secret),
    )
    .await;
    assert_eq!(created.status(), 201);
    let record: Value = created.json().await.expect("record");
    let id = record["id"].as_str().expect("id").to_owned();
    assert_eq!(record["created_by"], "alice");

    let list: Value = call(
        &app,
        Method::GET,
        "/api/v1/workspaces/acme/records?q=quarterly",
        Some(&secret),
    )
    .await
    .json()
    .await
    .expect("list");
    assert_eq!(list["records"][0]["id"], id.as_str());
    let none: Value = call(
        &app,
        Method::GET,
        "/api/v1/workspaces/acme/records?q=absent",
        Some(&secret),
    )
    .await
    .json()
    .await
    .expect("list");
    assert_eq!(none["records"], json!([]));

    let path = format!("/api/v1/workspaces/acme/records/{id}");
    assert_eq!(
        call(&app, Method::GET, &path, Some(&secret)).await.status(),
        200
    );
    assert_eq!(
        call(&app, Method::PUT, &path, Some(&secret)).await.status(),
        200
    );
    assert_eq!(
        call(&app, Method::DELETE, &path, Some(&secret))
            .await
            .status(),
        204
    );
    assert_eq!(
        call(&app, Method::GET, &path, Some(&secret)).await.status(),
        404
    );
}

#[tokio::test]
async fn a_read_only_token_cannot_post_put_or_delete() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (_, secret) = token(&app, &alice, &["read"], &["acme"], "3m").await;
    until_known(&app, &secret, "acme").await;
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/api/v1/workspaces/acme/records",
            Some(&secret)
        )
        .await
        .status(),
        200
    );
    let id = ulid::Ulid::new();
    for (method, path, scope) in [
        (
            Method::POST,
            "/api/v1/workspaces/acme/records".to_owned(),
            "write",
        ),
        (
            Method::PUT,
            format!("/api/v1/workspaces/acme/records/{id}"),
            "write",
        ),
        (
            Method::DELETE,
            format!("/api/v1/workspaces/acme/records/{id}"),
            "delete",
        ),
    ] {
        let res = call(&app, method.clone(), &path, Some(&secret)).await;
        assert_eq!(res.status(), 403, "{method} {path}");
        assert_eq!(
            www_authenticate(&res),
            format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"")
        );
        let body: Value = res.json().await.expect("problem");
        assert_eq!(body["code"], "insufficient_scope");
    }
}

#[tokio::test]
async fn a_write_token_without_delete_cannot_delete() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (_, secret) = token(&app, &alice, &["read", "write"], &["acme"], "3m").await;
    until_known(&app, &secret, "acme").await;
    let created: Value = call(
        &app,
        Method::POST,
        "/api/v1/workspaces/acme/records",
        Some(&secret),
    )
    .await
    .json()
    .await
    .expect("record");
    let path = format!(
        "/api/v1/workspaces/acme/records/{}",
        created["id"].as_str().expect("id")
    );
    let res = call(&app, Method::DELETE, &path, Some(&secret)).await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        www_authenticate(&res),
        "Bearer error=\"insufficient_scope\", scope=\"delete\""
    );
    assert_eq!(
        call(&app, Method::GET, &path, Some(&secret)).await.status(),
        200
    );
}

#[tokio::test]
async fn a_token_for_acme_is_refused_on_globex() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (_, secret) = token(&app, &alice, &["read", "write", "delete"], &["acme"], "3m").await;
    until_known(&app, &secret, "acme").await;
    let res = call(
        &app,
        Method::GET,
        "/api/v1/workspaces/globex/records",
        Some(&secret),
    )
    .await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.expect("problem");
    assert_eq!(body["code"], "workspace_not_allowed");
}

#[tokio::test]
async fn missing_garbage_wrong_checksum_unknown_and_session_tokens_get_401() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (_, secret) = token(&app, &alice, &["read"], &["acme"], "3m").await;
    until_known(&app, &secret, "acme").await;
    let path = "/api/v1/workspaces/acme/records";

    assert_invalid_token(call(&app, Method::GET, path, None).await).await;
    assert_invalid_token(call(&app, Method::GET, path, Some("garbage")).await).await;
    let mut typo = secret.clone().into_bytes();
    typo[20] = if typo[20] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).expect("ascii");
    assert_invalid_token(call(&app, Method::GET, path, Some(&typo)).await).await;
    let unknown = enspace_core::PatSecret::generate();
    assert_invalid_token(call(&app, Method::GET, path, Some(unknown.expose())).await).await;
    assert_invalid_token(call(&app, Method::GET, path, Some(&alice)).await).await;
    let huge = "x".repeat(10_000);
    assert_invalid_token(call(&app, Method::GET, path, Some(&huge)).await).await;
}

#[tokio::test]
async fn an_expired_token_gets_401_from_its_expiry_instant() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (created, secret) = token(&app, &alice, &["read"], &["acme"], "1m").await;
    until_known(&app, &secret, "acme").await;
    let expires_at: jiff::Timestamp = created["expires_at"]
        .as_str()
        .expect("expiry")
        .parse()
        .expect("ts");
    app.clock.set(
        expires_at
            .checked_sub(SignedDuration::from_millis(1))
            .expect("ts"),
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/api/v1/workspaces/acme/records",
            Some(&secret)
        )
        .await
        .status(),
        200
    );
    app.clock.set(expires_at);
    assert_invalid_token(
        call(
            &app,
            Method::GET,
            "/api/v1/workspaces/acme/records",
            Some(&secret),
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn a_revoked_token_gets_401() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (created, secret) = token(&app, &alice, &["read"], &["acme"], "never").await;
    until_known(&app, &secret, "acme").await;
    let id = created["id"].as_str().expect("id");
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{id}"))
            .await
            .status(),
        204
    );
    eventually(
        Duration::from_secs(1),
        "revocation reaches the node",
        || async {
            let res = call(
                &app,
                Method::GET,
                "/api/v1/workspaces/acme/records",
                Some(&secret),
            )
            .await;
            (res.status() == 401).then_some(res)
        },
    )
    .await;
    assert_invalid_token(
        call(
            &app,
            Method::GET,
            "/api/v1/workspaces/acme/records",
            Some(&secret),
        )
        .await,
    )
    .await;
}

#[tokio::test]
async fn record_bodies_are_validated_like_every_other_route() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (_, secret) = token(&app, &alice, &["read", "write"], &["acme"], "3m").await;
    until_known(&app, &secret, "acme").await;
    let url = app.url("/api/v1/workspaces/acme/records");
    let send = |body: String| {
        app.client
            .post(&url)
            .bearer_auth(&secret)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = send("{not json".into()).await.expect("call");
    assert_eq!(res.status(), 400);
    let res = send(json!({"title": ""}).to_string()).await.expect("call");
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>().await.expect("problem")["field"],
        "title"
    );
    let res = send(json!({"title": "x", "evil": 1}).to_string())
        .await
        .expect("call");
    assert_eq!(res.status(), 422);
    let res = send(format!("{{\"title\":\"{}\"}}", "a".repeat(70_000)))
        .await
        .expect("call");
    assert_eq!(res.status(), 413);
    let res = call(
        &app,
        Method::GET,
        "/api/v1/workspaces/acme/records/not-a-ulid",
        Some(&secret),
    )
    .await;
    assert_eq!(res.status(), 404);
}
