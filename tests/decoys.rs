//! Decoy tokens (issue 25 point 4, contract §18): `POST /v1/decoys` makes a
//! secret in the format of any token that never grants anything. Its use
//! on an API node is answered exactly as an unknown token's, and its owner
//! is told (`decoy_used`, with the client address, user agent, call and
//! node) within seconds, once per address and hour, on the webhook too.
//! Decoys are not tokens anywhere else: not in the owner's token list, not
//! in admins' inventories, not against the cap.

use std::time::{Duration, Instant};

use enspace_core::PatSecret;
use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::node::RECORDS;
use crate::support::serve::service_args;
use crate::support::webhook::Receiver;
use crate::support::{ServeApp, TestApp, assert_problem, create_body, eventually, node};

const DECOYS: &str = "/v1/decoys";

fn id(value: &Value) -> String {
    value["id"].as_str().expect("id").to_owned()
}

/// Makes a decoy, expecting 201; `(decoy, secret)`.
async fn make_decoy(api: &ApiClient, session: &str, description: &str) -> (Value, String) {
    let res = api
        .post_json(session, DECOYS, &json!({"description": description}))
        .await;
    let status = res.status();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "make a decoy: {body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    assert!(
        secret.parse::<PatSecret>().is_ok(),
        "a decoy's secret is a well-formed token: {secret}"
    );
    (body["decoy"].clone(), secret)
}

/// A real token (read on `acme`), made after the decoys: once `node`
/// answers it, the node holds every decoy made before (events reach it in
/// order).
async fn real_token_known_to(api: &ApiClient, node: &ApiClient, session: &str) -> Value {
    let (token, secret) = api.create_token(session, &create_body("real")).await;
    node::wait_status(node, &secret, 200, Duration::from_secs(20)).await;
    token
}

async fn decoys(api: &ApiClient, session: &str) -> Vec<Value> {
    api.get_ok(session, DECOYS).await["decoys"]
        .as_array()
        .expect("decoys")
        .clone()
}

/// A read of `acme` with `secret`, as if from `client` through the
/// trusted proxy, with user agent `agent`: (status, headers that matter,
/// body).
async fn read_as(
    api: &ApiClient,
    secret: &str,
    client: &str,
    agent: &str,
) -> (u16, Vec<(String, String)>, Value) {
    let res = api
        .client
        .get(api.url(RECORDS))
        .bearer_auth(secret)
        .header("x-forwarded-for", client)
        .header("user-agent", agent)
        .send()
        .await
        .expect("read");
    let status = res.status().as_u16();
    let headers = ["content-type", "www-authenticate", "x-ratelimit-limit"]
        .into_iter()
        .filter_map(|name| {
            res.headers()
                .get(name)
                .map(|v| (name.to_owned(), v.to_str().unwrap_or("").to_owned()))
        })
        .collect();
    let body = res.json().await.expect("problem body");
    (status, headers, body)
}

fn decoy_notes(notes: &[Value]) -> Vec<Value> {
    notes
        .iter()
        .filter(|n| n["kind"] == "decoy_used")
        .cloned()
        .collect()
}

/// `enspace serve` (its embedded API node trusting loopback as a proxy)
/// posting notifications to a local webhook receiver.
async fn serve_with_webhook() -> (ServeApp, Receiver) {
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.limits.http.trusted_proxies = "127.0.0.1".parse().expect("proxies");
    receiver.configure(&mut args);
    (ServeApp::spawn_with(args, data).await, receiver)
}

#[tokio::test]
async fn a_decoy_used_on_an_api_node_is_answered_as_an_unknown_token_and_told_to_its_owner_and_webhook_within_5_s()
 {
    let (app, posted) = serve_with_webhook().await;
    let alice = app.login("alice").await;
    let (decoy, secret) = make_decoy(&app, &alice, "in the billing repo's CI secrets").await;
    assert_eq!(decoy["status"], "active");
    assert_eq!(decoy["last_used_at"], Value::Null);
    // A real token made after it: once the node holds it, it holds the
    // decoy too (events reach it in order).
    real_token_known_to(&app, &app, &alice).await;

    let unknown = PatSecret::generate();
    let agent = "curl/8.5.0 (thief)";
    let as_unknown = read_as(&app, unknown.expose(), "198.51.100.23", agent).await;
    let used_at = Instant::now();
    let as_decoy = read_as(&app, &secret, "198.51.100.23", agent).await;
    assert_eq!(as_decoy.0, 401);
    assert_eq!(
        as_decoy, as_unknown,
        "a decoy is answered exactly as an unknown token: status, headers and body"
    );
    assert!(!as_decoy.2.to_string().contains(&secret));

    let note = eventually(
        Duration::from_secs(5),
        "the owner is told of the decoy's use within 5 s",
        || async { decoy_notes(&app.notifications(&alice).await).pop() },
    )
    .await;
    let told_after = used_at.elapsed();
    assert_eq!(note["token_id"], decoy["id"]);
    let detail = note["detail"].as_str().expect("detail");
    for part in [
        "198.51.100.23",
        agent,
        "GET /api/v1/workspaces/acme/records",
        "serve",
    ] {
        assert!(detail.contains(part), "`{part}` in {detail}");
    }
    assert!(!detail.contains(&secret), "the secret is never told");
    let hook = eventually(
        Duration::from_secs(5),
        "the webhook is told of the decoy's use within 5 s",
        || async { posted.first("notification.decoy_used") },
    )
    .await;
    assert_eq!(hook["data"]["token_id"], decoy["id"]);
    assert_eq!(hook["data"]["user_id"], "alice");
    assert!(!hook.to_string().contains(&secret));
    println!("decoy_used told {told_after:?} after the call");

    // The decoy's row says when it was last used; it is still only a decoy.
    let listed = decoys(&app, &alice).await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0]["last_used_at"].is_string(), "{listed:?}");
}

#[tokio::test]
async fn a_decoy_tells_once_per_address_per_hour_and_nothing_once_revoked() {
    let (app, _) = serve_with_webhook().await;
    let alice = app.login("alice").await;
    let (decoy, secret) = make_decoy(&app, &alice, "tripwire").await;
    let (marker_decoy, marker) = make_decoy(&app, &alice, "marker").await;
    real_token_known_to(&app, &app, &alice).await;

    for _ in 0..3 {
        assert_eq!(read_as(&app, &secret, "203.0.113.1", "a").await.0, 401);
    }
    assert_eq!(read_as(&app, &secret, "203.0.113.2", "b").await.0, 401);
    // Calls are indexed in order: once the second address is told, every
    // call from the first was seen.
    let notes = eventually(
        Duration::from_secs(10),
        "the second address is told",
        || async {
            let notes = decoy_notes(&app.notifications(&alice).await);
            notes
                .iter()
                .any(|n| {
                    n["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("203.0.113.2"))
                })
                .then_some(notes)
        },
    )
    .await;
    assert_eq!(notes.len(), 2, "one per address: {notes:?}");

    // An hour later the first address is told again.
    app.clock
        .advance(SignedDuration::from_hours(1) + SignedDuration::from_secs(1));
    let alice = app.login("alice").await;
    assert_eq!(read_as(&app, &secret, "203.0.113.1", "a").await.0, 401);
    eventually(
        Duration::from_secs(10),
        "the first address is told again after an hour",
        || async { (decoy_notes(&app.notifications(&alice).await).len() == 3).then_some(()) },
    )
    .await;

    // Revoked, the decoy is only an unknown token: nobody is told. The
    // marker decoy, used after it, proves its call was seen.
    let res = app
        .delete(&alice, &format!("{DECOYS}/{}", id(&decoy)))
        .await;
    assert_eq!(res.status(), 204);
    let res = app
        .delete(&alice, &format!("{DECOYS}/{}", id(&decoy)))
        .await;
    assert_eq!(res.status(), 204, "revoking it again changes nothing");
    let listed = decoys(&app, &alice).await;
    let row = listed
        .iter()
        .find(|d| d["id"] == decoy["id"])
        .expect("still listed");
    assert_eq!(row["status"], "revoked");
    assert!(row["revoked_at"].is_string());
    let unknown = PatSecret::generate();
    eventually(
        Duration::from_secs(10),
        "the node holds the revocation",
        || async {
            let revoked = read_as(&app, &secret, "203.0.113.9", "c").await;
            let as_unknown = read_as(&app, unknown.expose(), "203.0.113.9", "c").await;
            (revoked == as_unknown).then_some(())
        },
    )
    .await;
    assert_eq!(read_as(&app, &marker, "203.0.113.9", "marker").await.0, 401);
    let notes = eventually(Duration::from_secs(10), "the marker is told", || async {
        let notes = decoy_notes(&app.notifications(&alice).await);
        (notes.len() >= 4).then_some(notes)
    })
    .await;
    assert_eq!(notes.len(), 4, "nothing of the revoked decoy: {notes:?}");
    assert_eq!(
        notes
            .iter()
            .filter(|n| n["token_id"] == marker_decoy["id"])
            .count(),
        1,
        "{notes:?}"
    );
}

#[tokio::test]
async fn decoys_are_not_listed_as_tokens_shown_to_admins_or_counted_against_the_cap() {
    let mut config = TestApp::config();
    config.limits.max_tokens_per_user = 1;
    let app = TestApp::spawn_configured(config).await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("the one")).await;
    // At the cap of one token, decoys can still be made.
    let (decoy, _) = make_decoy(&app, &alice, "first").await;
    make_decoy(&app, &alice, "second").await;
    let res = app
        .post_json(&alice, "/v1/tokens", &create_body("one too many"))
        .await;
    assert_problem(res, 422, "token_limit_reached").await;

    let tokens = app.tokens(&alice).await;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0]["id"], token["id"]);
    let page = app.get_ok(&alice, "/v1/tokens?limit=10").await;
    assert_eq!(page["tokens"].as_array().map(Vec::len), Some(1), "{page}");
    let listed = decoys(&app, &alice).await;
    let names: Vec<&str> = listed
        .iter()
        .map(|d| d["description"].as_str().expect("description"))
        .collect();
    assert_eq!(names, ["second", "first"], "newest first");

    // Under /v1/tokens a decoy is no token of anyone's.
    let decoy_path = format!("/v1/tokens/{}", id(&decoy));
    for res in [
        app.get(&alice, &decoy_path).await,
        app.delete(&alice, &decoy_path).await,
        app.post_json(
            &alice,
            &format!("{decoy_path}/rotate"),
            &json!({"overlap": "0"}),
        )
        .await,
    ] {
        assert_problem(res, 404, "token_not_found").await;
    }

    // bob administers acme: he sees alice's token, not her decoys.
    let bob = app.login("bob").await;
    let inventory = app.get_ok(&bob, "/v1/workspaces/acme/tokens").await;
    let ids: Vec<&Value> = inventory["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(ids, [&token["id"]]);
    // An auditor sees it for what it is.
    let audra = app.login("audra").await;
    let now = enspace_core::Clock::now(&app.clock);
    let state = app
        .get_ok(&audra, &format!("/v1/audit/state?at={now}&user=alice"))
        .await;
    let seen = state["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == decoy["id"])
        .expect("the auditor's state lists the decoy")
        .clone();
    assert_eq!(seen["decoy"], true);
    assert_eq!(seen["scopes"], json!([]));
    assert_eq!(seen["workspaces"], json!([]));
    let real = state["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == token["id"])
        .expect("the token")
        .clone();
    assert!(real.get("decoy").is_none(), "{real}");
}

#[tokio::test]
async fn a_decoy_presented_to_introspection_self_rotation_or_leak_reports_is_an_unknown_token_and_stays()
 {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (decoy, secret) = make_decoy(&app, &alice, "canary").await;
    let unknown = PatSecret::generate();
    let introspect = |token: String| {
        let api = app.client.clone();
        let url = app.url("/v1/introspect");
        async move {
            api.post(url)
                .bearer_auth("test-internal-key")
                .form(&[("token", token.as_str()), ("client_ip", "192.0.2.77")])
                .send()
                .await
                .expect("introspect")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    assert_eq!(introspect(secret.clone()).await, json!({"active": false}));
    assert_eq!(
        introspect(secret.clone()).await,
        introspect(unknown.expose().to_owned()).await
    );

    let rotate = |token: String| {
        let api = app.client.clone();
        let url = app.url("/v1/tokens/self/rotate");
        async move {
            let res = api
                .post(url)
                .bearer_auth(token)
                .json(&json!({"overlap": "0"}))
                .send()
                .await
                .expect("self rotate");
            (
                res.status().as_u16(),
                res.json::<Value>().await.expect("json"),
            )
        }
    };
    let as_decoy = rotate(secret.clone()).await;
    assert_eq!(as_decoy.0, 401);
    assert_eq!(as_decoy, rotate(unknown.expose().to_owned()).await);

    let notes = eventually(Duration::from_secs(10), "both uses are told", || async {
        let notes = decoy_notes(&app.notifications(&alice).await);
        (notes.len() >= 2).then_some(notes)
    })
    .await;
    let details: Vec<&str> = notes
        .iter()
        .map(|n| n["detail"].as_str().expect("detail"))
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("introspection") && d.contains("192.0.2.77")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("/v1/tokens/self/rotate")),
        "{details:?}"
    );

    // A leak report is answered as for any string, and leaves the
    // tripwire in place.
    let res = app
        .client
        .post(app.url("/v1/tokens/report-leak"))
        .json(&json!({"token": secret, "url": "https://paste.example/x"}))
        .send()
        .await
        .expect("report");
    assert_eq!(res.status(), 202);
    let listed = decoys(&app, &alice).await;
    let row = listed
        .iter()
        .find(|d| d["id"] == decoy["id"])
        .expect("listed");
    assert_eq!(row["status"], "active", "a reported decoy is not revoked");
}

#[tokio::test]
async fn the_decoy_routes_refuse_bad_input_with_problem_details_and_others_decoys_with_404() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let raw = |body: &'static [u8], content_type: &'static str| {
        let api = app.client.clone();
        let url = app.url(DECOYS);
        let session = alice.clone();
        async move {
            api.post(url)
                .bearer_auth(session)
                .header("content-type", content_type)
                .body(body.to_vec())
                .send()
                .await
                .expect("post")
        }
    };
    assert_problem(
        raw(b"{\"description\":", "application/json").await,
        400,
        "malformed_json",
    )
    .await;
    assert_eq!(raw(b"description=x", "text/plain").await.status(), 415);
    let big = format!("{{\"description\":\"{}\"}}", "x".repeat(2_000_000));
    let res = app
        .client
        .post(app.url(DECOYS))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 413);
    for body in [
        json!({"description": ""}),
        json!({"description": "   "}),
        json!({"description": "x".repeat(101)}),
        json!({"description": "pay\u{202E}gpj.exe"}),
    ] {
        let res = app.post_json(&alice, DECOYS, &body).await;
        assert_problem(res, 422, "invalid_description").await;
    }
    let res = app
        .post_json(
            &alice,
            DECOYS,
            &json!({"description": "ok", "scopes": ["read"]}),
        )
        .await;
    let status = res.status().as_u16();
    assert!(
        status == 400 || status == 422,
        "an unknown field is refused: {status}"
    );
    // Without a session, or with a token as the bearer: refused.
    let res = app
        .client
        .post(app.url(DECOYS))
        .json(&json!({"description": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 401);
    let (_, pat) = make_decoy(&app, &alice, "a decoy is no credential").await;
    let res = app.get(&pat, DECOYS).await;
    assert!(
        [401, 403].contains(&res.status().as_u16()),
        "{}",
        res.status()
    );

    // Someone else's decoy, a malformed id, nothing: 404 alike.
    let (alices, _) = make_decoy(&app, &alice, "alice's").await;
    for path in [
        format!("{DECOYS}/{}", id(&alices)),
        format!("{DECOYS}/not-a-ulid"),
        format!("{DECOYS}/{}", ulid::Ulid::new()),
    ] {
        assert_problem(app.delete(&bob, &path).await, 404, "decoy_not_found").await;
    }
    assert!(decoys(&app, &bob).await.is_empty());
    // A real token is not a decoy either.
    let (token, _) = app.create_token(&alice, &create_body("real")).await;
    assert_problem(
        app.delete(&alice, &format!("{DECOYS}/{}", id(&token)))
            .await,
        404,
        "decoy_not_found",
    )
    .await;
    assert_eq!(
        decoys(&app, &alice)
            .await
            .iter()
            .filter(|d| d["status"] == "active")
            .count(),
        2
    );
}

#[tokio::test]
async fn a_user_holds_at_most_20_active_decoys_and_revoking_one_frees_a_place() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let mut made = Vec::new();
    for i in 0..20 {
        made.push(make_decoy(&app, &alice, &format!("decoy {i}")).await.0);
    }
    let res = app
        .post_json(&alice, DECOYS, &json!({"description": "one too many"}))
        .await;
    assert_problem(res, 422, "decoy_limit_reached").await;
    let res = app
        .delete(&alice, &format!("{DECOYS}/{}", id(&made[0])))
        .await;
    assert_eq!(res.status(), 204);
    make_decoy(&app, &alice, "in its place").await;
}

#[tokio::test]
async fn a_decoy_used_on_a_separate_api_node_over_nats_is_told_naming_that_node() {
    use crate::support::NatsServer;
    use crate::support::distributed::{self, wait_ready};

    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = distributed::token_service(data.path(), &nats.url(), &[]);
    let proxy = ["--trusted-proxies", "127.0.0.1"];
    let edge = distributed::api_node(&nats.url(), "edge-7", &proxy);
    let svc = ApiClient::from_base(&service.base);
    let node = ApiClient::from_base(&edge.base);
    wait_ready(&svc).await;
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (decoy, secret) = make_decoy(&svc, &alice, "planted on a laptop").await;
    real_token_known_to(&svc, &node, &alice).await;
    let unknown = PatSecret::generate();
    let as_decoy = read_as(&node, &secret, "192.0.2.200", "python-requests/2.32").await;
    assert_eq!(as_decoy.0, 401);
    assert_eq!(
        as_decoy,
        read_as(
            &node,
            unknown.expose(),
            "192.0.2.200",
            "python-requests/2.32"
        )
        .await
    );
    let note = eventually(
        Duration::from_secs(5),
        "the owner is told within 5 s",
        || async { decoy_notes(&svc.notifications(&alice).await).pop() },
    )
    .await;
    assert_eq!(note["token_id"], decoy["id"]);
    let detail = note["detail"].as_str().expect("detail");
    for part in ["192.0.2.200", "python-requests/2.32", "edge-7", RECORDS] {
        assert!(detail.contains(part), "`{part}` in {detail}");
    }
}

#[tokio::test]
async fn a_decoy_used_while_the_control_plane_is_down_is_told_once_after_it_restarts() {
    use crate::support::NatsServer;
    use crate::support::distributed::{self, wait_ready};

    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut service = distributed::token_service(data.path(), &nats.url(), &[]);
    let proxy = ["--trusted-proxies", "127.0.0.1"];
    let edge = distributed::api_node(&nats.url(), "edge-1", &proxy);
    let node = ApiClient::from_base(&edge.base);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (decoy, secret) = make_decoy(&svc, &alice, "on the old build server").await;
    real_token_known_to(&svc, &node, &alice).await;

    // The control plane is killed; the node still answers, from its replica,
    // and its record waits in the stream.
    service.kill();
    assert_eq!(
        read_as(&node, &secret, "198.51.100.99", "scanner/1.0")
            .await
            .0,
        401
    );
    let restart = || distributed::token_service(data.path(), &nats.url(), &[]);
    service = restart();
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let note = eventually(
        Duration::from_secs(20),
        "the use is told once the control plane is back",
        || async { decoy_notes(&svc.notifications(&alice).await).pop() },
    )
    .await;
    assert_eq!(note["token_id"], decoy["id"]);
    assert!(
        note["detail"]
            .as_str()
            .is_some_and(|d| d.contains("198.51.100.99"))
    );

    // Killed and started again, it has lost nothing it told and tells
    // nothing twice; a second use from another address, told after, proves
    // the first was read again.
    service.kill();
    service = restart();
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    assert_eq!(
        read_as(&node, &secret, "198.51.100.100", "scanner/1.0")
            .await
            .0,
        401
    );
    let notes = eventually(Duration::from_secs(20), "the second use", || async {
        let notes = decoy_notes(&svc.notifications(&alice).await);
        notes
            .iter()
            .any(|n| {
                n["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("198.51.100.100"))
            })
            .then_some(notes)
    })
    .await;
    assert_eq!(notes.len(), 2, "each use told once: {notes:?}");
    drop(service);
}
