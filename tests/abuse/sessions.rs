//! Sessions and the cookie: the origin check compares the scheme too, a
//! token sent as the session cookie is told tokens cannot manage tokens,
//! the cookie is `Secure` when the request came over TLS or the service is
//! told so, ended sessions are swept, and a user holds a bounded number of
//! sessions (the oldest go first).

use std::time::Duration;

use jiff::SignedDuration;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, RequestBuilder};
use serde_json::json;

use crate::support::serve::service_args;
use crate::support::{ServeApp, TestApp, assert_problem, create_body, eventually};

fn with_cookie(app: &TestApp, method: Method, path: &str, session: &str) -> RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header(COOKIE, format!("enspace_session={session}"))
}

#[tokio::test]
async fn the_origin_check_compares_the_scheme_and_the_host() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let host = app.addr.to_string();
    let create = |origin: String| {
        with_cookie(&app, Method::POST, "/v1/tokens", &alice)
            .header("origin", origin)
            .json(&create_body("by cookie"))
            .send()
    };
    for origin in [
        format!("ftp://{host}"),
        format!("ws://{host}"),
        format!("javascript://{host}"),
        host.clone(),
        "null".to_owned(),
        format!("http://{host}.evil.example"),
    ] {
        let res = create(origin.clone()).await.expect("POST");
        assert_problem(res, 403, "csrf_rejected").await;
    }
    for origin in [format!("http://{host}"), format!("https://{host}")] {
        assert_eq!(create(origin).await.expect("POST").status(), 201);
    }
    // Behind a TLS proxy, plain http is not this site.
    let res = with_cookie(&app, Method::POST, "/v1/tokens", &alice)
        .header("origin", format!("http://{host}"))
        .header("x-forwarded-proto", "https")
        .json(&create_body("downgraded"))
        .send()
        .await
        .expect("POST");
    assert_problem(res, 403, "csrf_rejected").await;
}

#[tokio::test]
async fn a_personal_access_token_sent_as_the_session_cookie_is_403_pat_not_allowed() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (_, secret) = app.create_token(&alice, &create_body("as cookie")).await;
    for (method, path) in [
        (Method::GET, "/v1/tokens"),
        (Method::POST, "/v1/tokens"),
        (Method::DELETE, "/v1/session"),
    ] {
        let res = with_cookie(&app, method, path, &secret)
            .json(&create_body("by token"))
            .send()
            .await
            .expect("call");
        assert_problem(res, 403, "pat_not_allowed").await;
    }
}

fn set_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("Set-Cookie")
        .to_owned()
}

fn is_secure(cookie: &str) -> bool {
    cookie
        .split(';')
        .any(|a| a.trim().eq_ignore_ascii_case("secure"))
}

async fn sign_in(
    client: &reqwest::Client,
    url: String,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .post(url)
        .json(&json!({"username": "alice", "password": "alice-password"}));
    if let Some(proto) = forwarded {
        req = req.header("x-forwarded-proto", proto);
    }
    let res = req.send().await.expect("sign in");
    assert_eq!(res.status(), 200);
    res
}

#[tokio::test]
async fn the_cookie_is_secure_over_tls_and_with_secure_cookies_and_not_otherwise() {
    let app = TestApp::spawn().await;
    let plain = sign_in(&app.client, app.url("/v1/session"), None).await;
    assert!(!is_secure(&set_cookie(&plain)));
    let tls = sign_in(&app.client, app.url("/v1/session"), Some("https")).await;
    assert!(is_secure(&set_cookie(&tls)));
    let session: serde_json::Value = tls.json().await.expect("json");
    let session = session["session"].as_str().expect("session");
    let out = app
        .client
        .delete(app.url("/v1/session"))
        .bearer_auth(session)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("sign out");
    assert!(is_secure(&set_cookie(&out)), "the removal too");

    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.limits.secure_cookies = true;
    let serve = ServeApp::spawn_with(args, data).await;
    let res = sign_in(&serve.client, serve.url("/v1/session"), None).await;
    assert!(is_secure(&set_cookie(&res)));
    serve.stop().await;
}

#[tokio::test]
async fn signing_in_past_the_session_cap_ends_the_oldest_sessions() {
    let app = TestApp::spawn().await;
    let cap = enspace_accounts::limits::Limits::default().max_sessions_per_user;
    let mut sessions = Vec::new();
    for _ in 0..cap + 2 {
        sessions.push(app.login("alice").await);
        app.clock.advance(SignedDuration::from_secs(1));
    }
    let bob = app.login("bob").await;
    for (n, session) in sessions.iter().enumerate() {
        let status = app.get(session, "/v1/me").await.status();
        let want = if n < 2 { 401 } else { 200 };
        assert_eq!(status, want, "session {n}");
    }
    assert_eq!(
        app.get(&bob, "/v1/me").await.status(),
        200,
        "another user's stays"
    );
    assert_eq!(app.state.store.sessions.count_of("alice"), cap);
}

#[tokio::test]
async fn ended_sessions_are_swept_from_the_store() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    app.login("bob").await;
    app.clock.advance(SignedDuration::from_hours(6));
    let fresh = app.login("audra").await;
    assert_eq!(app.state.store.sessions.len(), 3);
    app.clock.advance(SignedDuration::from_hours(6));
    let sweeper = tokio::spawn(enspace_store::sessions::sweep_forever(
        app.state.store.sessions.clone(),
        app.state.clock.clone(),
        Duration::from_millis(20),
    ));
    eventually(
        Duration::from_secs(10),
        "the two ended sessions swept",
        || async { (app.state.store.sessions.len() == 1).then_some(()) },
    )
    .await;
    sweeper.abort();
    assert_eq!(app.state.store.sessions.count_of("alice"), 0);
    assert_eq!(app.get(&alice, "/v1/me").await.status(), 401);
    assert_eq!(app.get(&fresh, "/v1/me").await.status(), 200);
}
