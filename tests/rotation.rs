//! Rotation: `POST /v1/tokens/{id}/rotate` makes a successor with the same
//! description, scopes and workspaces and a new secret; the old token keeps
//! working for the overlap and then stops on every API node.

use std::time::Duration;

use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::distributed::{self, TwoNodes, wait_status};
use crate::support::{ServeApp, TestApp, node};

fn body(expiration: &str) -> Value {
    json!({"description": "ERP Integration", "expiration": expiration,
           "scopes": ["read", "write"], "workspaces": ["acme", "globex"]})
}

fn id(token: &Value) -> String {
    token["id"].as_str().expect("id").to_owned()
}

/// Rotates `token`, expecting 201; answers `(successor, secret)`.
async fn rotate(api: &ApiClient, session: &str, token: &str, request: Value) -> (Value, String) {
    let res = api
        .post_json(session, &format!("/v1/tokens/{token}/rotate"), &request)
        .await;
    assert_eq!(res.status(), 201, "rotate {token}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = res.json().await.expect("json");
    assert_eq!(location, format!("/v1/tokens/{}", id(&body["token"])));
    let secret = body["secret"].as_str().expect("secret").to_owned();
    (body["token"].clone(), secret)
}

/// Waits (generously) until the embedded API node answers `want` to `secret`.
async fn until_status(app: &ServeApp, secret: &str, want: u16) {
    node::wait_status(app, secret, want, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn both_tokens_work_during_an_hours_overlap_and_only_the_new_one_after_it() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (old, old_secret) = app.create_token(&alice, &body("never")).await;
    until_status(&app, &old_secret, 200).await;

    let (new, new_secret) = rotate(&app, &alice, &id(&old), json!({"overlap": "1h"})).await;
    until_status(&app, &new_secret, 200).await;
    assert_eq!(
        node::status(&app, &old_secret).await,
        200,
        "inside the overlap"
    );

    let old_now: Value = app
        .get(&alice, &format!("/v1/tokens/{}", id(&old)))
        .await
        .json()
        .await
        .expect("json");
    let end: jiff::Timestamp = old_now["expires_at"]
        .as_str()
        .expect("expiry")
        .parse()
        .expect("ts");
    app.clock
        .set(end.checked_sub(SignedDuration::from_millis(1)).expect("ts"));
    assert_eq!(
        node::status(&app, &old_secret).await,
        200,
        "a millisecond before the end"
    );
    app.clock.set(end);
    assert_eq!(
        node::status(&app, &old_secret).await,
        401,
        "at the end of the overlap"
    );
    assert_eq!(node::status(&app, &new_secret).await, 200);

    let old_after: Value = app
        .get(&alice, &format!("/v1/tokens/{}", id(&old)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(old_after["status"], "expired");
    assert_eq!(old_after["replaced_by"], new["id"]);
    assert_eq!(new["replaces"], old["id"]);
}

#[tokio::test]
async fn the_successor_copies_the_token_and_both_are_linked_in_list_and_history() {
    let app = TestApp::spawn_at("2026-03-10T12:00:00Z").await;
    let alice = app.login("alice").await;
    let (old, _) = app.create_token(&alice, &body("3m")).await;
    app.clock.advance(SignedDuration::from_hours(24));
    let alice = app.login("alice").await;

    let (new, secret) = rotate(&app, &alice, &id(&old), json!({"overlap": "7d"})).await;
    assert!(secret.starts_with("ens_pat_") && secret.len() == 46);
    for field in ["description", "scopes", "workspaces", "expiration"] {
        assert_eq!(new[field], old[field], "{field}");
    }
    assert_eq!(new["created_at"], "2026-03-11T12:00:00Z");
    assert_eq!(
        new["expires_at"], "2026-06-11T12:00:00Z",
        "3 months from the rotation"
    );
    assert_eq!(new["replaces"], old["id"]);
    assert_eq!(new["replaced_by"], Value::Null);
    assert_eq!(new["status"], "active");

    let listed: Value = app
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    let tokens = listed["tokens"].as_array().expect("tokens");
    assert_eq!(tokens[0]["id"], new["id"], "newest first");
    assert_eq!(tokens[1]["id"], old["id"]);
    assert_eq!(tokens[1]["replaced_by"], new["id"]);
    assert_eq!(
        tokens[1]["expires_at"], "2026-03-18T12:00:00Z",
        "moved to the overlap's end"
    );
    assert_eq!(tokens[1]["status"], "active");

    let history: Value = app
        .get(&alice, &format!("/v1/tokens/{}/events", id(&old)))
        .await
        .json()
        .await
        .expect("json");
    let events = history["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["type"], "token_rotated");
    assert_eq!(events[1]["actor"], "alice");
    assert_eq!(events[1]["data"]["replaced_by"], new["id"]);
    assert_eq!(events[1]["data"]["expires_at"], "2026-03-18T12:00:00Z");
    let history: Value = app
        .get(&alice, &format!("/v1/tokens/{}/events", id(&new)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(history["events"][0]["data"]["replaces"], old["id"]);

    // Another expiration may be chosen; the state survives a restart.
    let (newer, _) = rotate(
        &app,
        &alice,
        &id(&new),
        json!({"overlap": "0", "expiration": "1y"}),
    )
    .await;
    assert_eq!(newer["expiration"], "1y");
    assert_eq!(newer["expires_at"], "2027-03-11T12:00:00Z");
    let (data, clock) = app.stop().await;
    let app = TestApp::spawn_with(data, clock).await;
    let alice = app.login("alice").await;
    let after: Value = app
        .get(&alice, &format!("/v1/tokens/{}", id(&new)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["replaced_by"], newer["id"]);
    assert_eq!(after["status"], "expired", "overlap 0 ends it at once");
}

#[tokio::test]
async fn rotating_a_revoked_expired_or_already_rotated_token_is_422_token_inactive() {
    let app = TestApp::spawn_at("2026-03-10T12:00:00Z").await;
    let alice = app.login("alice").await;
    let (revoked, _) = app.create_token(&alice, &body("never")).await;
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{}", id(&revoked)))
            .await
            .status(),
        204
    );
    let (expiring, _) = app.create_token(&alice, &body("1m")).await;
    let (rotated, _) = app.create_token(&alice, &body("never")).await;
    rotate(&app, &alice, &id(&rotated), json!({"overlap": "30d"})).await;
    let again = app
        .post_json(
            &alice,
            &format!("/v1/tokens/{}/rotate", id(&rotated)),
            &json!({"overlap": "1h"}),
        )
        .await;
    assert_eq!(again.status(), 422, "a token is rotated once");
    app.clock.advance(SignedDuration::from_hours(24 * 32));
    let alice = app.login("alice").await;

    for token in [&revoked, &expiring, &rotated] {
        let res = app
            .post_json(
                &alice,
                &format!("/v1/tokens/{}/rotate", id(token)),
                &json!({"overlap": "1h"}),
            )
            .await;
        assert_eq!(res.status(), 422, "{}", token["id"]);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let problem: Value = res.json().await.expect("problem");
        assert_eq!(problem["code"], "token_inactive");
    }
    let listed: Value = app
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["tokens"].as_array().expect("tokens").len(),
        4,
        "nothing new recorded"
    );
}

#[tokio::test]
async fn rotate_answers_problems_for_bad_input_and_other_peoples_tokens() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (token, _) = app.create_token(&alice, &body("never")).await;
    let path = format!("/v1/tokens/{}/rotate", id(&token));

    for (request, status, code) in [
        (json!({"overlap": "2h"}), 422, Some("invalid_overlap")),
        (json!({"overlap": 3600}), 422, None),
        (
            json!({"overlap": "1h", "expiration": "5y"}),
            422,
            Some("invalid_expiration"),
        ),
        (json!({"overlap": "1h", "expiration": 3}), 422, None),
        (json!({"overlap": "1h", "scopes": ["delete"]}), 422, None),
        (json!({}), 422, None),
        (json!([1, 2]), 422, None),
    ] {
        let res = app.post_json(&alice, &path, &request).await;
        assert_eq!(res.status(), status, "{request}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{request}"
        );
        let problem: Value = res.json().await.expect("problem");
        if let Some(code) = code {
            assert_eq!(problem["code"], code, "{request}");
        }
    }
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url(&path))
            .bearer_auth(&alice)
            .header("content-type", content_type)
            .body(body)
    };
    assert_eq!(
        raw("{\"overlap\":", "application/json")
            .send()
            .await
            .expect("send")
            .status(),
        400
    );
    assert_eq!(
        raw("overlap=1h", "text/plain")
            .send()
            .await
            .expect("send")
            .status(),
        415
    );
    let huge = format!("{{\"overlap\":\"1h\",\"pad\":\"{}\"}}", "x".repeat(2 << 20));
    let res = app
        .client
        .post(app.url(&path))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 413);

    let res = app.post_json(&bob, &path, &json!({"overlap": "1h"})).await;
    assert_eq!(res.status(), 404, "bob cannot rotate alice's token");
    let res = app
        .post_json(
            &alice,
            "/v1/tokens/not-a-ulid/rotate",
            &json!({"overlap": "1h"}),
        )
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .client
        .post(app.url(&path))
        .json(&json!({"overlap": "1h"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    let listed: Value = app
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["tokens"].as_array().expect("tokens").len(),
        1,
        "nothing recorded"
    );
}

#[tokio::test]
async fn with_no_overlap_the_old_token_stops_at_once_on_every_api_node() {
    // Bound whole: the processes live as long as it does.
    let two = TwoNodes::start().await;
    let (svc, nodes) = (&two.svc, &two.nodes);
    let alice = svc.login("alice").await;
    let (old, old_secret) = svc
        .create_token(&alice, &distributed::body("rotate me"))
        .await;
    for node in nodes {
        wait_status(node, &old_secret, 200, Duration::from_secs(5)).await;
    }
    let (_, new_secret) = rotate(svc, &alice, &id(&old), json!({"overlap": "0"})).await;
    for node in nodes {
        wait_status(node, &old_secret, 401, Duration::from_secs(1)).await;
        wait_status(node, &new_secret, 200, Duration::from_secs(1)).await;
    }
}
