//! Fences (contract §18): a token's `allowed_cidrs` and `not_before`, set at
//! creation, kept by a rotation, shown in the token, and enforced by every
//! API node from its own replica: a call from outside the ranges answers
//! `403` `address_not_allowed`, one before `not_before` `401`
//! `token_not_yet_valid`, and both are logged like any refused call.

use std::time::Duration;

use enspace_core::Clock;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::request_logs::wait_for_count;
use crate::support::app::ApiClient;
use crate::support::distributed::{self, wait_ready};
use crate::support::node::RECORDS;
use crate::support::{NatsServer, ServeApp, TestApp, assert_problem, eventually};

fn fenced(description: &str, cidrs: &[&str]) -> Value {
    json!({"description": description, "expiration": "never", "scopes": ["read"],
           "workspaces": ["acme"], "allowed_cidrs": cidrs})
}

fn id(token: &Value) -> String {
    token["id"].as_str().expect("id").to_owned()
}

/// A read of `acme` with `secret` as if from `client` (the API node
/// trusts loopback as its proxy); `None`: straight from loopback.
async fn read_from(node: &ApiClient, secret: &str, client: Option<&str>) -> reqwest::Response {
    let mut req = node.client.get(node.url(RECORDS)).bearer_auth(secret);
    if let Some(client) = client {
        req = req.header("x-forwarded-for", client);
    }
    req.send().await.expect("read")
}

#[tokio::test]
async fn a_call_from_outside_the_allowed_ranges_is_refused_on_two_api_nodes_and_logged() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = distributed::token_service(data.path(), &nats.url(), &[]);
    let proxy = ["--trusted-proxies", "127.0.0.1"];
    let a = distributed::api_node(&nats.url(), "node-a", &proxy);
    let b = distributed::api_node(&nats.url(), "node-b", &proxy);
    let svc = ApiClient::from_base(&service.base);
    let nodes = [ApiClient::from_base(&a.base), ApiClient::from_base(&b.base)];
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let (token, secret) = svc
        .create_token(
            &alice,
            &fenced("office only", &["203.0.113.0/24", "2001:db8::/32"]),
        )
        .await;
    assert_eq!(
        token["allowed_cidrs"],
        json!(["203.0.113.0/24", "2001:db8::/32"])
    );

    for node in &nodes {
        wait_ready(node).await;
        // From inside: allowed, once the node holds the token (the calls
        // before that are refused as unknown and not logged).
        eventually(
            Duration::from_secs(20),
            "the node knows the token",
            || async {
                (read_from(node, &secret, Some("203.0.113.9")).await.status() == 200).then_some(())
            },
        )
        .await;
        assert_eq!(
            read_from(node, &secret, Some("2001:db8::7")).await.status(),
            200,
            "IPv6 inside"
        );
        // From outside, or from loopback itself: refused.
        for outside in [Some("198.51.100.7"), None] {
            let res = read_from(node, &secret, outside).await;
            let problem = assert_problem(res, 403, "address_not_allowed").await;
            assert!(
                !problem.to_string().contains(&secret),
                "the secret is not echoed"
            );
        }
    }

    let records = wait_for_count(&svc, &alice, &id(&token), 8, Duration::from_secs(20)).await;
    for name in ["node-a", "node-b"] {
        let mine: Vec<&Value> = records.iter().filter(|r| r["node"] == name).collect();
        let refused: Vec<&str> = mine
            .iter()
            .filter(|r| r["status"] == 403)
            .map(|r| r["client_ip"].as_str().expect("client_ip"))
            .collect();
        assert_eq!(mine.len(), 4, "{name}: {mine:?}");
        assert_eq!(refused.len(), 2, "{name}: {mine:?}");
        assert!(refused.contains(&"198.51.100.7"), "{name}: {refused:?}");
        assert!(refused.contains(&"127.0.0.1"), "{name}: {refused:?}");
    }
}

#[tokio::test]
async fn a_call_from_inside_the_allowed_ranges_is_accepted_and_one_from_outside_is_not() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (_, inside) = app
        .create_token(&alice, &fenced("loopback", &["127.0.0.0/8"]))
        .await;
    let (_, outside) = app
        .create_token(&alice, &fenced("elsewhere", &["192.0.2.0/24"]))
        .await;
    assert_eq!(read_from(&app, &inside, None).await.status(), 200);
    assert_problem(
        read_from(&app, &outside, None).await,
        403,
        "address_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_rotation_keeps_the_allowed_ranges_and_not_before() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let not_before = app.clock.now() - SignedDuration::from_mins(1);
    let mut body = fenced("rotated", &["192.0.2.0/24", "127.0.0.1"]);
    body["not_before"] = json!(not_before.to_string());
    let (old, _) = app.create_token(&alice, &body).await;
    assert_eq!(
        old["allowed_cidrs"],
        json!(["192.0.2.0/24", "127.0.0.1/32"])
    );
    let res = app
        .post_json(
            &alice,
            &format!("/v1/tokens/{}/rotate", id(&old)),
            &json!({"overlap": "0"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("json");
    let (new, secret) = (
        &created["token"],
        created["secret"].as_str().expect("secret"),
    );
    assert_eq!(new["replaces"], old["id"]);
    assert_eq!(new["allowed_cidrs"], old["allowed_cidrs"]);
    assert_eq!(new["not_before"], old["not_before"]);
    let stored: Value = app
        .get(&alice, &format!("/v1/tokens/{}", id(new)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(stored["allowed_cidrs"], old["allowed_cidrs"]);
    // The successor is fenced on the node as its predecessor was.
    assert_eq!(read_from(&app, secret, None).await.status(), 200);

    let mut elsewhere = fenced("elsewhere", &["192.0.2.0/24"]);
    elsewhere["expiration"] = json!("1m");
    let (old, _) = app.create_token(&alice, &elsewhere).await;
    let res = app
        .post_json(
            &alice,
            &format!("/v1/tokens/{}/rotate", id(&old)),
            &json!({"overlap": "1h"}),
        )
        .await;
    let created: Value = res.json().await.expect("json");
    let secret = created["secret"].as_str().expect("secret");
    assert_problem(
        read_from(&app, secret, None).await,
        403,
        "address_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn a_token_is_refused_before_not_before_and_works_from_it_by_the_injected_clock() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let start: Timestamp = app.clock.now() + SignedDuration::from_hours(24 * 30);
    let mut body = fenced("from next month", &["127.0.0.0/8"]);
    body["not_before"] = json!(start.to_string());
    let (token, secret) = app.create_token(&alice, &body).await;
    assert_eq!(token["not_before"], json!(start.to_string()));
    assert_eq!(token["status"], "active");

    let problem = assert_problem(
        read_from(&app, &secret, None).await,
        401,
        "token_not_yet_valid",
    )
    .await;
    assert!(!problem.to_string().contains(&secret));
    app.clock.set(start - SignedDuration::from_millis(1));
    assert_problem(
        read_from(&app, &secret, None).await,
        401,
        "token_not_yet_valid",
    )
    .await;
    app.clock.set(start);
    assert_eq!(read_from(&app, &secret, None).await.status(), 200);

    // Both refusals and the allowed call are in the token's request log
    // (read with a new session: the first one ended in the month passed).
    let alice = app.login("alice").await;
    let window = format!(
        "from={}&to={}",
        (start - SignedDuration::from_hours(24 * 40))
            .to_string()
            .replace('+', "%2B"),
        (start + SignedDuration::from_hours(24))
            .to_string()
            .replace('+', "%2B"),
    );
    eventually(Duration::from_secs(20), "three records", || async {
        let body: Value = app
            .get(
                &alice,
                &format!("/v1/tokens/{}/requests?{window}", id(&token)),
            )
            .await
            .json()
            .await
            .ok()?;
        let statuses: Vec<u64> = body["requests"]
            .as_array()?
            .iter()
            .filter_map(|r| r["status"].as_u64())
            .collect();
        (statuses == [200, 401, 401]).then_some(())
    })
    .await;
}

/// Posts `body`, expecting a 422 with `code` on `field` and no token made.
async fn refused(app: &TestApp, session: &str, body: Value, code: &str, field: &str) {
    let res = app.post_json(session, "/v1/tokens", &body).await;
    let problem = assert_problem(res, 422, code).await;
    assert_eq!(problem["field"], field, "field named for {body}");
    assert_eq!(app.state.store.log.len(), 0, "nothing recorded for {body}");
}

#[tokio::test]
async fn bad_ranges_or_not_before_are_refused_as_problem_details_naming_the_field() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let with = |field: &str, value: Value| {
        let mut body = fenced("bad", &["192.0.2.0/24"]);
        body[field] = value;
        body
    };
    let too_many: Vec<String> = (0..33).map(|i| format!("10.0.{i}.0/24")).collect();
    for (value, code) in [
        (json!(["not a range"]), "invalid_allowed_cidrs"),
        (json!(["10.0.0.0/33"]), "invalid_allowed_cidrs"),
        (json!(["10.0.0.1/8"]), "invalid_allowed_cidrs"),
        (
            json!(["192.0.2.0/24", "300.1.2.3"]),
            "invalid_allowed_cidrs",
        ),
        (json!([]), "invalid_allowed_cidrs"),
        (json!(too_many), "invalid_allowed_cidrs"),
        (json!("10.0.0.0/8"), "invalid_type"),
        (json!([10]), "invalid_type"),
    ] {
        let field = if code == "invalid_type" && value.is_array() {
            "allowed_cidrs[0]"
        } else {
            "allowed_cidrs"
        };
        refused(&app, &alice, with("allowed_cidrs", value), code, field).await;
    }
    let now = app.clock.now();
    let too_far = now + SignedDuration::from_hours(24 * 90) + SignedDuration::from_secs(1);
    for value in [
        json!(too_far.to_string()),
        json!("tomorrow"),
        json!("2026-13-01T00:00:00Z"),
    ] {
        refused(
            &app,
            &alice,
            with("not_before", value),
            "invalid_not_before",
            "not_before",
        )
        .await;
    }
    refused(
        &app,
        &alice,
        with("not_before", json!(12)),
        "invalid_type",
        "not_before",
    )
    .await;
    // Not before a 1-month token's end, even within 90 days.
    let mut short = with(
        "not_before",
        json!((now + SignedDuration::from_hours(24 * 60)).to_string()),
    );
    short["expiration"] = json!("1m");
    refused(&app, &alice, short, "invalid_not_before", "not_before").await;

    // At the limits: 32 ranges and 90 days ahead.
    let mut body = with("allowed_cidrs", json!(too_many[..32]));
    body["not_before"] = json!((now + SignedDuration::from_hours(24 * 90)).to_string());
    let (token, _) = app.create_token(&alice, &body).await;
    assert_eq!(token["allowed_cidrs"].as_array().map(Vec::len), Some(32));
    // Without fences both are null.
    let (plain, _) = app
        .create_token(&alice, &crate::support::create_body("plain"))
        .await;
    assert_eq!(plain["allowed_cidrs"], Value::Null);
    assert_eq!(plain["not_before"], Value::Null);
}

/// `POST /v1/introspect` as a node in another language calls it.
async fn introspect(app: &TestApp, form: &[(&str, &str)]) -> Value {
    let res = app
        .client
        .post(app.url("/v1/introspect"))
        .bearer_auth("test-internal-key")
        .form(form)
        .send()
        .await
        .expect("introspect");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

#[tokio::test]
async fn introspection_enforces_fences_with_the_client_ip_the_calling_node_gives() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let start = app.clock.now() + SignedDuration::from_hours(2);
    let mut body = fenced("introspected", &["192.0.2.0/24"]);
    body["not_before"] = json!(start.to_string());
    let (_, secret) = app.create_token(&alice, &body).await;
    let inactive = json!({"active": false});
    let inside = [("token", secret.as_str()), ("client_ip", "192.0.2.7")];
    assert_eq!(
        introspect(&app, &inside).await,
        inactive,
        "before not_before"
    );
    app.clock.set(start);
    let info = introspect(&app, &inside).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["nbf"], start.as_second());
    assert_eq!(info["allowed_cidrs"], json!(["192.0.2.0/24"]));
    let outside = [("token", secret.as_str()), ("client_ip", "198.51.100.7")];
    assert_eq!(introspect(&app, &outside).await, inactive, "from outside");
    assert_eq!(
        introspect(&app, &[("token", secret.as_str())]).await,
        inactive,
        "no client_ip: a fenced token is not active"
    );
}

#[tokio::test]
async fn the_suggestion_covers_three_addresses_of_one_24_as_that_block_and_another_alone() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = crate::support::serve::service_args(data.path(), None);
    args.limits.http.trusted_proxies = "127.0.0.1".parse().expect("proxies");
    let app = ServeApp::spawn_with(args, data).await;
    let alice = app.login("alice").await;
    let read_only = json!({"description": "used", "expiration": "never", "scopes": ["read"],
                           "workspaces": ["acme"]});
    let (token, secret) = app.create_token(&alice, &read_only).await;
    for client in ["192.0.2.10", "192.0.2.20", "192.0.2.30", "198.51.100.7"] {
        assert_eq!(read_from(&app, &secret, Some(client)).await.status(), 200);
    }
    // A refused call (a write with a read-only token) suggests nothing.
    let refused = app
        .client
        .post(app.url(RECORDS))
        .bearer_auth(&secret)
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"title": "no"}))
        .send()
        .await
        .expect("write");
    assert_eq!(refused.status(), 403);

    let body = crate::insights::insights_after(&app, &alice, &id(&token), 5).await;
    let suggested = body["suggestion"]["allowed_cidrs"].clone();
    assert_eq!(suggested, json!(["192.0.2.0/24", "198.51.100.7/32"]));

    // The suggestion is a valid fence: a narrower token made from it works
    // from those networks only.
    let mut narrower = read_only.clone();
    narrower["allowed_cidrs"] = suggested;
    let (_, fenced_secret) = app.create_token(&alice, &narrower).await;
    for inside in ["192.0.2.99", "198.51.100.7"] {
        assert_eq!(
            read_from(&app, &fenced_secret, Some(inside)).await.status(),
            200
        );
    }
    for outside in ["203.0.113.9", "198.51.100.8"] {
        let res = read_from(&app, &fenced_secret, Some(outside)).await;
        assert_problem(res, 403, "address_not_allowed").await;
    }
}
