//! Self-rotation (issue 25 point 5, contract §18): a token made with
//! `"self_rotate": true` rotates itself with `POST /v1/tokens/self/rotate`,
//! itself the bearer; the successor keeps the right and the fences; the
//! owner is told. No other management route accepts a token.

use std::time::Duration;

use enspace_core::Clock;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::{ServeApp, TestApp, assert_problem, node};

const SELF_ROTATE: &str = "/v1/tokens/self/rotate";

fn machine(description: &str) -> Value {
    json!({"description": description, "expiration": "never", "scopes": ["read"],
           "workspaces": ["acme"], "self_rotate": true})
}

fn id(token: &Value) -> String {
    token["id"].as_str().expect("id").to_owned()
}

/// `POST /v1/tokens/self/rotate` with `secret` as the bearer and `body` as is.
async fn self_rotate_raw(api: &ApiClient, secret: &str, body: &[u8]) -> reqwest::Response {
    api.client
        .post(api.url(SELF_ROTATE))
        .bearer_auth(secret)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("POST /v1/tokens/self/rotate")
}

/// Rotates the token `secret` itself, expecting 201; `(successor, secret)`.
async fn rotate_itself(api: &ApiClient, secret: &str, overlap: &str) -> (Value, String) {
    let res = api
        .post_json(secret, SELF_ROTATE, &json!({"overlap": overlap}))
        .await;
    let status = res.status();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "self-rotation: {body}");
    assert_eq!(location, format!("/v1/tokens/{}", id(&body["token"])));
    let new_secret = body["secret"].as_str().expect("secret").to_owned();
    assert!(new_secret.starts_with("ens_pat_") && new_secret.len() == 46);
    assert_ne!(new_secret, secret);
    (body["token"].clone(), new_secret)
}

async fn token(api: &ApiClient, session: &str, token_id: &str) -> Value {
    api.get_ok(session, &format!("/v1/tokens/{token_id}")).await
}

#[tokio::test]
async fn a_self_rotating_token_rotates_itself_the_old_one_stops_after_its_hour_and_the_successor_rotates_again()
 {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (old, old_secret) = app.create_token(&alice, &machine("CI runner")).await;
    assert_eq!(old["self_rotate"], true);
    node::wait_status(&app, &old_secret, 200, Duration::from_secs(10)).await;

    let (new, new_secret) = rotate_itself(&app, &old_secret, "1h").await;
    for field in ["description", "scopes", "workspaces", "expiration"] {
        assert_eq!(new[field], old[field], "{field}");
    }
    assert_eq!(new["replaces"], old["id"]);
    assert_eq!(new["self_rotate"], true, "the successor keeps self_rotate");
    node::wait_status(&app, &new_secret, 200, Duration::from_secs(10)).await;
    assert_eq!(
        node::status(&app, &old_secret).await,
        200,
        "inside the hour"
    );

    // The rotation is the owner's, recorded as the token's own.
    let events = app
        .get_ok(&alice, &format!("/v1/tokens/{}/events", id(&old)))
        .await;
    let rotated = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "token_rotated")
        .expect("a token_rotated event")
        .clone();
    assert_eq!(rotated["actor"], "alice");
    assert_eq!(rotated["data"]["self_rotated"], true);
    assert_eq!(rotated["data"]["replaced_by"], new["id"]);

    app.clock
        .advance(SignedDuration::from_hours(1) + SignedDuration::from_secs(1));
    node::wait_status(&app, &old_secret, 401, Duration::from_secs(10)).await;
    assert_eq!(node::status(&app, &new_secret).await, 200);
    let alice = app.login("alice").await;
    assert_eq!(token(&app, &alice, &id(&old)).await["status"], "expired");

    // The old secret can no longer rotate anything; the successor can.
    assert_problem(
        app.post_json(&old_secret, SELF_ROTATE, &json!({"overlap": "0"}))
            .await,
        401,
        "invalid_token",
    )
    .await;
    let (newest, newest_secret) = rotate_itself(&app, &new_secret, "0").await;
    assert_eq!(newest["replaces"], new["id"]);
    assert_eq!(newest["self_rotate"], true);
    node::wait_status(&app, &new_secret, 401, Duration::from_secs(10)).await;
    assert_eq!(node::status(&app, &newest_secret).await, 200);
}

#[tokio::test]
async fn a_token_without_self_rotate_is_refused_with_self_rotate_not_allowed() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let mut body = machine("plain");
    body.as_object_mut().expect("object").remove("self_rotate");
    let (plain, secret) = app.create_token(&alice, &body).await;
    assert_eq!(plain["self_rotate"], false);
    let mut off = machine("explicitly off");
    off["self_rotate"] = json!(false);
    let (off_token, off_secret) = app.create_token(&alice, &off).await;
    assert_eq!(off_token["self_rotate"], false);
    for secret in [&secret, &off_secret] {
        let problem = assert_problem(
            app.post_json(secret, SELF_ROTATE, &json!({"overlap": "0"}))
                .await,
            403,
            "self_rotate_not_allowed",
        )
        .await;
        assert!(!problem.to_string().contains(secret.as_str()));
    }
    let after = token(&app, &alice, &id(&plain)).await;
    assert_eq!(after["status"], "active");
    assert_eq!(after["replaced_by"], Value::Null);
}

#[tokio::test]
async fn a_self_rotation_with_an_overlap_over_an_hour_or_a_bad_body_is_a_problem_never_a_5xx() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (machine_token, secret) = app.create_token(&alice, &machine("CI runner")).await;
    for overlap in ["2h", "1d", "7d", "30d", "", "1H", "garbage", "0 "] {
        let problem = assert_problem(
            app.post_json(&secret, SELF_ROTATE, &json!({"overlap": overlap}))
                .await,
            422,
            "invalid_overlap",
        )
        .await;
        assert_eq!(problem["field"], "overlap", "{overlap:?}");
    }
    for (body, code) in [
        (json!({"overlap": 1}), "invalid_type"),
        (json!({"overlap": null}), "invalid_type"),
        (json!({"overlap": ["1h"]}), "invalid_type"),
        (json!([]), "invalid_type"),
        (json!({}), "missing_field"),
        (json!({"overlap": "0", "expiration": "1y"}), "unknown_field"),
    ] {
        assert_problem(app.post_json(&secret, SELF_ROTATE, &body).await, 422, code).await;
    }
    for body in [&b"{"[..], b"{\"overlap\": \"0\"} x", b""] {
        let res = self_rotate_raw(&app, &secret, body).await;
        assert_problem(res, 400, "malformed_json").await;
    }
    let oversized = format!(
        "{{\"overlap\": \"0\", \"pad\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let res = self_rotate_raw(&app, &secret, oversized.as_bytes()).await;
    assert_problem(res, 413, "body_too_large").await;
    let res = app
        .client
        .post(app.url(SELF_ROTATE))
        .bearer_auth(&secret)
        .body("overlap=0")
        .send()
        .await
        .expect("POST");
    assert_problem(res, 415, "unsupported_media_type").await;
    // None of these rotated anything.
    let after = token(&app, &alice, &id(&machine_token)).await;
    assert_eq!(after["replaced_by"], Value::Null);
    assert_eq!(app.tokens(&alice).await.len(), 1);
}

#[tokio::test]
async fn unknown_revoked_expired_and_missing_bearers_get_401_and_a_rotated_one_token_inactive() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let body = json!({"overlap": "0"});
    let unknown = enspace_core::PatSecret::generate();
    for bearer in [
        unknown.expose(),
        "ens_pat_00000000000000000000000000000000000000",
        "not-a-token",
        alice.as_str(),
    ] {
        assert_problem(
            app.post_json(bearer, SELF_ROTATE, &body).await,
            401,
            "invalid_token",
        )
        .await;
    }
    let res = app
        .client
        .post(app.url(SELF_ROTATE))
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_problem(res, 401, "invalid_token").await;

    let (revoked, revoked_secret) = app.create_token(&alice, &machine("revoked")).await;
    let res = app
        .delete(&alice, &format!("/v1/tokens/{}", id(&revoked)))
        .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        app.post_json(&revoked_secret, SELF_ROTATE, &body).await,
        401,
        "invalid_token",
    )
    .await;

    let (_, rotated_secret) = app.create_token(&alice, &machine("rotated")).await;
    rotate_itself(&app, &rotated_secret, "1h").await;
    assert_problem(
        app.post_json(&rotated_secret, SELF_ROTATE, &body).await,
        422,
        "token_inactive",
    )
    .await;

    let mut monthly = machine("monthly");
    monthly["expiration"] = json!("1m");
    let (_, monthly_secret) = app.create_token(&alice, &monthly).await;
    app.clock.advance(SignedDuration::from_hours(24 * 32));
    assert_problem(
        app.post_json(&monthly_secret, SELF_ROTATE, &body).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn a_self_rotating_token_is_refused_on_every_other_management_route() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (machine_token, secret) = app.create_token(&alice, &machine("CI runner")).await;
    let token_id = id(&machine_token);
    let path = format!("/v1/tokens/{token_id}");
    let refusals = [
        app.get(&secret, "/v1/tokens").await,
        app.post_json(&secret, "/v1/tokens", &machine("another"))
            .await,
        app.get(&secret, &path).await,
        app.delete(&secret, &path).await,
        app.post_json(&secret, &format!("{path}/rotate"), &json!({"overlap": "0"}))
            .await,
        app.get(&secret, &format!("{path}/events")).await,
        app.get(&secret, "/v1/notifications").await,
        app.get(&secret, "/v1/me").await,
    ];
    for res in refusals {
        assert_problem(res, 403, "pat_not_allowed").await;
    }
    // Nothing changed: still one token, active, not replaced.
    let tokens = app.tokens(&alice).await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["status"], "active");
    assert_eq!(tokens[0]["replaced_by"], Value::Null);
}

#[tokio::test]
async fn a_self_rotation_honours_the_token_s_fences_and_the_successor_keeps_them() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let body = json!({"overlap": "0"});

    let mut elsewhere = machine("elsewhere");
    elsewhere["allowed_cidrs"] = json!(["192.0.2.0/24"]);
    let (_, elsewhere_secret) = app.create_token(&alice, &elsewhere).await;
    assert_problem(
        app.post_json(&elsewhere_secret, SELF_ROTATE, &body).await,
        403,
        "address_not_allowed",
    )
    .await;

    let start: Timestamp = app.clock.now() + SignedDuration::from_hours(24);
    let mut fenced = machine("loopback, from tomorrow");
    fenced["allowed_cidrs"] = json!(["192.0.2.0/24", "127.0.0.0/8"]);
    fenced["not_before"] = json!(start.to_string());
    let (old, secret) = app.create_token(&alice, &fenced).await;
    assert_problem(
        app.post_json(&secret, SELF_ROTATE, &body).await,
        401,
        "token_not_yet_valid",
    )
    .await;
    app.clock.set(start);
    let (new, _) = rotate_itself(&app, &secret, "0").await;
    assert_eq!(new["allowed_cidrs"], old["allowed_cidrs"]);
    assert_eq!(new["not_before"], old["not_before"]);
    assert_eq!(new["self_rotate"], true);
}

#[tokio::test]
async fn the_owner_is_notified_when_a_token_rotates_itself_but_not_when_they_rotate_it() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (by_owner, _) = app.create_token(&alice, &machine("rotated by alice")).await;
    let res = app
        .post_json(
            &alice,
            &format!("/v1/tokens/{}/rotate", id(&by_owner)),
            &json!({"overlap": "0"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert!(app.notifications(&alice).await.is_empty());

    let (old, secret) = app.create_token(&alice, &machine("CI runner")).await;
    let (new, new_secret) = rotate_itself(&app, &secret, "1h").await;
    let notes = app.notifications(&alice).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert_eq!(note["kind"], "token_self_rotated");
    assert_eq!(note["token_id"], old["id"]);
    assert_eq!(note["read"], false);
    let detail = note["detail"].as_str().expect("detail");
    assert!(detail.contains("CI runner"), "{detail}");
    assert!(detail.contains(&id(&new)), "{detail}");
    assert!(!detail.contains(&secret) && !detail.contains(&new_secret));
    // Bob is told nothing about alice's token.
    let bob = app.login("bob").await;
    assert!(app.notifications(&bob).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_made_a_moment_ago_on_the_writer_rotates_itself_through_a_follower() {
    use crate::support::NatsServer;
    use crate::support::cluster::{by_id, converge, other, pair, writer};

    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let leader = writer(&[&a, &b]).await;
    let (writing, following) = (by_id([&a, &b], &leader), other([&a, &b], &leader));
    let alice = writing.api.login("alice").await;
    let (old, secret) = writing
        .api
        .create_token(&alice, &machine("CI runner"))
        .await;
    // At once, on the other process: it catches up before judging the
    // bearer, and forwards the rotation to the writer.
    let (new, _) = rotate_itself(&following.api, &secret, "0").await;
    assert_eq!(new["replaces"], old["id"]);
    assert_eq!(new["self_rotate"], true);
    converge(&a, &b).await;
    let on_writer = token(&writing.api, &alice, &id(&old)).await;
    assert_eq!(on_writer["replaced_by"], new["id"]);
    assert_eq!(writing.api.tokens(&alice).await.len(), 2);
}

#[tokio::test]
async fn the_self_rotation_notification_is_also_posted_to_the_owner_s_webhook() {
    use crate::support::eventually;
    use crate::support::serve::service_args;
    use crate::support::webhook::Receiver;

    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    receiver.configure(&mut args);
    let app = ServeApp::spawn_with(args, data).await;
    let alice = app.login("alice").await;
    let (old, secret) = app.create_token(&alice, &machine("CI runner")).await;
    let (_, new_secret) = rotate_itself(&app, &secret, "1h").await;
    let posted = eventually(
        Duration::from_secs(20),
        "the webhook told of the self-rotation",
        || async { receiver.first("notification.token_self_rotated") },
    )
    .await;
    assert_eq!(posted["data"]["user_id"], "alice");
    assert_eq!(posted["data"]["token_id"], old["id"]);
    let text = posted.to_string();
    assert!(!text.contains(&secret) && !text.contains(&new_secret));
}
