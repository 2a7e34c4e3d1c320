//! Sign-in, sessions and who may call the management API.

use jiff::{SignedDuration, Timestamp};
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, create_body};

async fn sign_in(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/session"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("POST /v1/session")
}

fn with_cookie(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    session: &str,
) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header(COOKIE, format!("enspace_session={session}"))
}

#[tokio::test]
async fn sign_in_answers_the_session_the_user_and_a_12_hour_expiry() {
    let app = TestApp::spawn_at("2026-03-01T08:00:00Z").await;
    let res = sign_in(&app, "alice", "alice-password").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.expect("json");
    let session = body["session"].as_str().expect("session");
    assert!(session.starts_with("ens_sess_"), "{session}");
    assert_eq!(body["expires_at"], "2026-03-01T20:00:00Z");
    assert_eq!(
        body["user"],
        json!({"id": "alice", "name": "Alice", "role": "user", "admin_of": [],
               "workspaces": [{"id": "acme", "name": "Acme Corp"}, {"id": "globex", "name": "Globex"}]})
    );
}

#[tokio::test]
async fn sign_in_sets_an_http_only_same_site_strict_cookie_for_the_whole_site() {
    let app = TestApp::spawn().await;
    let res = sign_in(&app, "bob", "bob-password").await;
    assert_eq!(res.status(), 200);
    let cookies: Vec<String> = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let body: Value = res.json().await.expect("json");
    let session = body["session"].as_str().expect("session");
    // The session's, and the device cookie (see abuse::sign_in).
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(cookies[1].starts_with("enspace_device="), "{cookies:?}");
    let parts: Vec<&str> = cookies[0].split(';').map(str::trim).collect();
    assert_eq!(parts[0], format!("enspace_session={session}"));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            parts.iter().any(|p| p.eq_ignore_ascii_case(attribute)),
            "cookie has {attribute}: {cookies:?}"
        );
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401_body() {
    let app = TestApp::spawn().await;
    let wrong_password = sign_in(&app, "alice", "bob-password").await;
    let wrong_password = assert_problem(wrong_password, 401, "invalid_credentials").await;
    let unknown_user = sign_in(&app, "mallory", "alice-password").await;
    let unknown_user = assert_problem(unknown_user, 401, "invalid_credentials").await;
    assert_eq!(wrong_password, unknown_user);
    for (user, password) in [
        ("alice", ""),
        ("", ""),
        ("ALICE", "alice-password"),
        ("alice", "alice-password "),
    ] {
        let res = sign_in(&app, user, password).await;
        assert_eq!(
            assert_problem(res, 401, "invalid_credentials").await,
            wrong_password
        );
    }
}

#[tokio::test]
async fn failed_sign_in_sets_no_cookie() {
    let app = TestApp::spawn().await;
    let res = sign_in(&app, "alice", "nope").await;
    assert!(res.headers().get(SET_COOKIE).is_none());
    assert_problem(res, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn the_session_works_as_a_cookie_for_reads_and_changes() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let res = with_cookie(&app, reqwest::Method::GET, "/v1/me", &alice)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.expect("json");
    assert_eq!(me["id"], "alice");
    let res = with_cookie(&app, reqwest::Method::POST, "/v1/tokens", &alice)
        .json(&create_body("by cookie"))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("json");
    let id = created["token"]["id"].as_str().expect("id");
    let res = with_cookie(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/tokens/{id}"),
        &alice,
    )
    .send()
    .await
    .expect("DELETE");
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn a_cookie_authenticated_change_from_another_site_is_refused() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let res = with_cookie(&app, reqwest::Method::POST, "/v1/tokens", &alice)
        .header("origin", "https://evil.example")
        .json(&create_body("csrf"))
        .send()
        .await
        .expect("POST");
    assert_problem(res, 403, "csrf_rejected").await;
    let res = with_cookie(&app, reqwest::Method::POST, "/v1/tokens", &alice)
        .header("sec-fetch-site", "cross-site")
        .json(&create_body("csrf"))
        .send()
        .await
        .expect("POST");
    assert_problem(res, 403, "csrf_rejected").await;
    // Same origin is fine.
    let res = with_cookie(&app, reqwest::Method::POST, "/v1/tokens", &alice)
        .header("origin", app.base.clone())
        .header("sec-fetch-site", "same-origin")
        .json(&create_body("same origin"))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 201);
    assert_eq!(app.state.store.log.len(), 1);
}

#[tokio::test]
async fn sign_out_ends_the_session_for_bearer_and_cookie_alike() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let other = app.login("alice").await;
    let res = app.delete(&alice, "/v1/session").await;
    assert_eq!(res.status(), 204);
    let cleared = res.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cleared.starts_with("enspace_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_problem(app.get(&alice, "/v1/me").await, 401, "unauthenticated").await;
    let res = with_cookie(&app, reqwest::Method::GET, "/v1/me", &alice)
        .send()
        .await
        .expect("GET");
    assert_problem(res, 401, "unauthenticated").await;
    assert_problem(
        app.delete(&alice, "/v1/session").await,
        401,
        "unauthenticated",
    )
    .await;
    // Only that session: another sign-in of the same user goes on working.
    assert_eq!(app.get(&other, "/v1/me").await.status(), 200);
}

#[tokio::test]
async fn sign_out_by_cookie_works() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let res = with_cookie(&app, reqwest::Method::DELETE, "/v1/session", &alice)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.status(), 204);
    assert_problem(app.get(&alice, "/v1/me").await, 401, "unauthenticated").await;
}

#[tokio::test]
async fn a_personal_access_token_on_the_management_api_is_403_pat_not_allowed() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(&alice, &create_body("not a session"))
        .await;
    let id = token["id"].as_str().expect("id");
    let calls = [
        app.get(&secret, "/v1/me").await,
        app.get(&secret, "/v1/workspaces").await,
        app.get(&secret, "/v1/tokens").await,
        app.get(&secret, &format!("/v1/tokens/{id}")).await,
        app.get(&secret, &format!("/v1/tokens/{id}/events")).await,
        app.post_json(&secret, "/v1/tokens", &create_body("by a token"))
            .await,
        app.delete(&secret, &format!("/v1/tokens/{id}")).await,
        app.get(&secret, "/v1/audit/events").await,
        app.delete(&secret, "/v1/session").await,
    ];
    for res in calls {
        assert_problem(res, 403, "pat_not_allowed").await;
    }
    // Even as a cookie, and even a malformed one that merely looks like a token.
    let res = with_cookie(&app, reqwest::Method::GET, "/v1/tokens", &secret)
        .send()
        .await
        .expect("GET");
    assert!(
        res.status() == 401 || res.status() == 403,
        "{}",
        res.status()
    );
    assert_problem(
        app.get("ens_pat_short", "/v1/tokens").await,
        403,
        "pat_not_allowed",
    )
    .await;
    // Nothing changed: one token, still active.
    let list: Value = app
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["tokens"].as_array().expect("array").len(), 1);
    assert_eq!(list["tokens"][0]["status"], "active");
}

#[tokio::test]
async fn no_or_a_bad_session_is_401_unauthenticated() {
    let app = TestApp::spawn().await;
    let real = app.login("alice").await;
    for path in ["/v1/me", "/v1/workspaces", "/v1/tokens", "/v1/audit/events"] {
        let res = app.client.get(app.url(path)).send().await.expect("GET");
        assert_problem(res, 401, "unauthenticated").await;
        let forged = format!("ens_sess_{}", "A".repeat(40));
        let truncated = &real[..real.len() - 1];
        for bad in [forged.as_str(), "ens_sess_", "garbage", truncated, ""] {
            assert_problem(app.get(bad, path).await, 401, "unauthenticated").await;
        }
        let res = app
            .client
            .get(app.url(path))
            .header("authorization", format!("Basic {real}"))
            .send()
            .await
            .expect("GET");
        assert_problem(res, 401, "unauthenticated").await;
        let res = app
            .client
            .get(app.url(path))
            .header(COOKIE, "enspace_session=ens_sess_nope; other=1")
            .send()
            .await
            .expect("GET");
        assert_problem(res, 401, "unauthenticated").await;
    }
    let res = app
        .client
        .post(app.url("/v1/tokens"))
        .json(&create_body("x"))
        .send()
        .await
        .expect("POST");
    assert_problem(res, 401, "unauthenticated").await;
    assert_eq!(app.state.store.log.len(), 0);
}

#[tokio::test]
async fn a_session_lasts_12_hours_by_the_clock() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let cookie_session = app.login("alice").await;
    app.clock
        .advance(SignedDuration::from_hours(12) - SignedDuration::from_millis(1));
    assert_eq!(app.get(&alice, "/v1/me").await.status(), 200);
    app.clock.advance(SignedDuration::from_millis(1));
    assert_problem(app.get(&alice, "/v1/me").await, 401, "unauthenticated").await;
    let res = with_cookie(&app, reqwest::Method::GET, "/v1/tokens", &cookie_session)
        .send()
        .await
        .expect("GET");
    assert_problem(res, 401, "unauthenticated").await;
    // Turning the clock back does not revive it: an expired session is gone.
    app.clock.advance(SignedDuration::from_hours(-1));
    assert_problem(app.get(&alice, "/v1/me").await, 401, "unauthenticated").await;
    // Signing in again works.
    let again = app.login("alice").await;
    assert_eq!(app.get(&again, "/v1/me").await.status(), 200);
}

#[tokio::test]
async fn sessions_survive_a_restart_of_the_service() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (data, clock) = app.stop().await;
    let app = TestApp::spawn_with(data, clock).await;
    assert_eq!(app.get(&alice, "/v1/me").await.status(), 200);
}

#[tokio::test]
async fn me_describes_the_signed_in_user() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "alice",
            json!({"id": "alice", "name": "Alice", "role": "user", "admin_of": [],
            "workspaces": [{"id": "acme", "name": "Acme Corp"}, {"id": "globex", "name": "Globex"}]}),
        ),
        (
            "bob",
            json!({"id": "bob", "name": "Bob", "role": "user", "admin_of": ["acme"],
            "workspaces": [{"id": "acme", "name": "Acme Corp"}, {"id": "initech", "name": "Initech"}]}),
        ),
        (
            "audra",
            json!({"id": "audra", "name": "Audra", "role": "auditor", "admin_of": [], "workspaces": []}),
        ),
    ];
    for (user, want) in cases {
        let session = app.login(user).await;
        let res = app.get(&session, "/v1/me").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.expect("json"), want);
    }
}

#[tokio::test]
async fn workspaces_lists_only_the_callers_own_with_their_policies() {
    let app = TestApp::spawn().await;
    let none = json!({"max_lifetime": null, "require_expiration": false});
    let cases = [
        (
            "alice",
            json!([{"id": "acme", "name": "Acme Corp", "policy": none},
                   {"id": "globex", "name": "Globex", "policy": none}]),
        ),
        (
            "bob",
            json!([{"id": "acme", "name": "Acme Corp", "policy": none},
                   {"id": "initech", "name": "Initech", "policy": none}]),
        ),
        ("audra", json!([])),
    ];
    for (user, want) in cases {
        let session = app.login(user).await;
        let res = app.get(&session, "/v1/workspaces").await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.json::<Value>().await.expect("json"),
            json!({"workspaces": want})
        );
    }
}

#[tokio::test]
async fn session_expiry_in_the_sign_in_answer_follows_the_clock() {
    let app = TestApp::spawn_at("2026-12-31T18:30:00.250Z").await;
    let res = sign_in(&app, "audra", "audra-password").await;
    let body: Value = res.json().await.expect("json");
    let expires: Timestamp = body["expires_at"]
        .as_str()
        .expect("time")
        .parse()
        .expect("RFC 3339");
    assert_eq!(
        expires,
        "2027-01-01T06:30:00.250Z".parse::<Timestamp>().expect("ts")
    );
}
