//! Token insights (`GET /v1/tokens/{id}/insights`) after real calls through
//! the API node of `enspace serve`, embedded and on JetStream: what a
//! token's calls used and were refused per scope and workspace, the client
//! IPs they came from, the least-privilege suggestion, the retention
//! window, and hostile input.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use enspace_core::Clock;
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::serve::service_args;
use crate::support::{ServeApp, assert_problem, eventually};

const ACME: &str = "/api/v1/workspaces/acme/records";
const GLOBEX: &str = "/api/v1/workspaces/globex/records";

fn token_body(description: &str, scopes: &[&str], workspaces: &[&str]) -> Value {
    json!({"description": description, "expiration": "1m", "scopes": scopes, "workspaces": workspaces})
}

fn id_of(token: &Value) -> String {
    token["id"].as_str().expect("token id").to_owned()
}

/// A client whose calls come from `ip` (another loopback address).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .build()
        .expect("client")
}

async fn call_with(
    client: &reqwest::Client,
    api: &ApiClient,
    method: Method,
    path: &str,
    secret: &str,
) -> u16 {
    let mut req = client
        .request(method.clone(), api.url(path))
        .bearer_auth(secret);
    if method == Method::POST || method == Method::PUT {
        req = req.json(&json!({"title": "a record"}));
    }
    req.send().await.expect("api call").status().as_u16()
}

async fn call(api: &ApiClient, method: Method, path: &str, secret: &str) -> u16 {
    call_with(&api.client, api, method, path, secret).await
}

/// Calls the node until it knows the token; exactly one of these calls (the
/// last, a 200 read of acme) resolves to the token and so is logged.
async fn until_known(api: &ApiClient, secret: &str) {
    eventually(
        Duration::from_secs(20),
        "the node knows the token",
        || async { (call(api, Method::GET, ACME, secret).await == 200).then_some(()) },
    )
    .await;
}

async fn insights(api: &ApiClient, session: &str, id: &str) -> Value {
    let res = api.get(session, &format!("/v1/tokens/{id}/insights")).await;
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the insights count `n` calls in all (allowed, denied, 401,
/// 429), then answers them; fails if they ever count more.
pub(crate) async fn insights_after(api: &ApiClient, session: &str, id: &str, n: u64) -> Value {
    eventually(
        Duration::from_secs(20),
        &format!("insights of {n} calls"),
        || async {
            let body = insights(api, session, id).await;
            let calls = &body["calls"];
            let counted: u64 = ["allowed", "denied", "invalid_token", "rate_limited"]
                .iter()
                .map(|k| calls[k].as_u64().expect("count"))
                .sum();
            assert!(counted <= n, "{counted} calls counted, {n} made: {body}");
            (counted == n).then_some(body)
        },
    )
    .await
}

fn row<'a>(rows: &'a Value, key: &str, name: &str) -> &'a Value {
    rows.as_array()
        .expect("rows")
        .iter()
        .find(|r| r[key] == name)
        .unwrap_or_else(|| panic!("no {key} {name} in {rows}"))
}

fn counts(row: &Value) -> (bool, u64, u64) {
    (
        row["granted"].as_bool().expect("granted"),
        row["allowed"].as_u64().expect("allowed"),
        row["denied"].as_u64().expect("denied"),
    )
}

/// A token with read, write and delete on acme and globex, used only for
/// reads of acme, from two client IPs: read and acme are suggested, every
/// scope and workspace is listed as granted, the IPs with their counts.
async fn a_token_used_only_to_read_one_workspace_is_told_so(app: &ServeApp) {
    let alice = app.login("alice").await;
    let before = app.clock.now();
    let (token, secret) = app
        .create_token(
            &alice,
            &token_body("broad", &["read", "write", "delete"], &["acme", "globex"]),
        )
        .await;
    let id = id_of(&token);
    until_known(app, &secret).await;
    app.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(call(app, Method::GET, ACME, &secret).await, 200);
    assert_eq!(
        call(app, Method::GET, &format!("{ACME}?q=x"), &secret).await,
        200
    );
    app.clock.advance(SignedDuration::from_secs(1));
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(
        call_with(&other, app, Method::GET, ACME, &secret).await,
        200
    );
    let body = insights_after(app, &alice, &id, 4).await;

    assert_eq!(
        body["suggestion"],
        json!({"scopes": ["read"], "workspaces": ["acme"], "allowed_cidrs": ["127.0.0.0/24"]})
    );
    assert_eq!(
        body["calls"],
        json!({"allowed": 4, "denied": 0, "invalid_token": 0, "rate_limited": 0, "unlisted_workspace_calls": 0})
    );
    let scopes = &body["scopes"];
    let names: Vec<&str> = scopes
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| s["scope"].as_str().expect("scope"))
        .collect();
    assert_eq!(names, ["read", "write", "delete"]);
    assert_eq!(counts(row(scopes, "scope", "read")), (true, 4, 0));
    assert_eq!(counts(row(scopes, "scope", "write")), (true, 0, 0));
    assert_eq!(counts(row(scopes, "scope", "delete")), (true, 0, 0));
    let last_read: Timestamp = row(scopes, "scope", "read")["last_used"]
        .as_str()
        .expect("last used")
        .parse()
        .expect("RFC 3339");
    assert_eq!(
        last_read,
        Timestamp::from_millisecond(app.clock.now().as_millisecond()).expect("ms"),
        "the newest read, to the millisecond"
    );
    assert!(row(scopes, "scope", "write")["last_used"].is_null());
    assert!(row(scopes, "scope", "read")["last_denied"].is_null());
    let workspaces = &body["workspaces"];
    assert_eq!(workspaces.as_array().expect("workspaces").len(), 2);
    assert_eq!(counts(row(workspaces, "workspace", "acme")), (true, 4, 0));
    assert_eq!(counts(row(workspaces, "workspace", "globex")), (true, 0, 0));
    assert!(row(workspaces, "workspace", "globex")["last_used"].is_null());

    let ips = body["client_ips"].as_array().expect("client ips");
    assert_eq!(body["client_ips_seen"], 2);
    assert_eq!(ips.len(), 2);
    assert_eq!(ips[0]["ip"], "127.0.0.2", "the most recently seen first");
    assert_eq!(ips[0]["count"], 1);
    assert_eq!(ips[1]["ip"], "127.0.0.1");
    assert_eq!(ips[1]["count"], 3);
    let first: Timestamp = ips[1]["first_seen"]
        .as_str()
        .expect("first")
        .parse()
        .expect("ts");
    let last: Timestamp = ips[1]["last_seen"]
        .as_str()
        .expect("last")
        .parse()
        .expect("ts");
    assert!(before <= first && first < last, "{first} {last}");
    let from: Timestamp = body["from"].as_str().expect("from").parse().expect("ts");
    assert_eq!(
        from,
        app.clock.now() - SignedDuration::from_hours(90 * 24),
        "the window is the 90-day retention"
    );
}

/// Calls the node refuses for the scope or the workspace count as denied
/// (and for the scope and the workspace they asked for); a revoked token's
/// 401 counts apart, for neither.
async fn denied_calls_are_counted_as_denied(app: &ServeApp) {
    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(&alice, &token_body("reader", &["read"], &["acme"]))
        .await;
    let id = id_of(&token);
    until_known(app, &secret).await;
    assert_eq!(
        call(
            app,
            Method::DELETE,
            &format!("{ACME}/01J00000000000000000000000"),
            &secret
        )
        .await,
        403,
        "no delete scope"
    );
    assert_eq!(
        call(app, Method::POST, ACME, &secret).await,
        403,
        "no write scope"
    );
    assert_eq!(
        call(app, Method::GET, GLOBEX, &secret).await,
        403,
        "globex not granted"
    );
    assert_eq!(
        call(app, Method::GET, &format!("{ACME}/not-a-record"), &secret).await,
        404,
        "allowed, though the record is not there"
    );
    let body = insights_after(app, &alice, &id, 5).await;
    assert_eq!(body["calls"]["allowed"], 2);
    assert_eq!(body["calls"]["denied"], 3);
    let scopes = &body["scopes"];
    assert_eq!(counts(row(scopes, "scope", "read")), (true, 2, 1));
    assert_eq!(counts(row(scopes, "scope", "write")), (false, 0, 1));
    assert_eq!(counts(row(scopes, "scope", "delete")), (false, 0, 1));
    assert!(row(scopes, "scope", "delete")["last_denied"].is_string());
    let workspaces = &body["workspaces"];
    assert_eq!(counts(row(workspaces, "workspace", "acme")), (true, 2, 2));
    assert_eq!(
        counts(row(workspaces, "workspace", "globex")),
        (false, 0, 1)
    );
    assert_eq!(
        body["suggestion"],
        json!({"scopes": ["read"], "workspaces": ["acme"], "allowed_cidrs": ["127.0.0.1/32"]})
    );

    // Revoked: its calls are 401s, counted apart (reads the node allowed
    // before it learnt of the revocation count as allowed).
    let res = app.delete(&alice, &format!("/v1/tokens/{id}")).await;
    assert_eq!(res.status(), 204, "revoke");
    let (mut ok, mut refused) = (0u64, 0u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match call(app, Method::GET, ACME, &secret).await {
            200 => ok += 1,
            401 => {
                refused += 1;
                break;
            }
            other => panic!("a revoked token's read answered {other}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node still allows it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = insights_after(app, &alice, &id, 5 + ok + refused).await;
    assert_eq!(body["calls"]["invalid_token"], refused);
    assert_eq!(body["calls"]["allowed"], 2 + ok, "401s count for no scope");
    assert_eq!(
        counts(row(&body["scopes"], "scope", "read")),
        (true, 2 + ok, 1)
    );
}

/// Only the owner reads a token's insights: anyone else gets the 404 of an
/// unknown token, no session 401, a malformed id the same 404 as on every
/// `/v1/tokens/{id}` route; all as problem details, never a 5xx.
async fn hostile_input(app: &ServeApp) {
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (token, _) = app
        .create_token(&alice, &token_body("mine", &["read"], &["acme"]))
        .await;
    let id = id_of(&token);
    let path = format!("/v1/tokens/{id}/insights");
    assert_problem(app.get(&bob, &path).await, 404, "token_not_found").await;
    let res = app
        .client
        .get(app.url(&path))
        .send()
        .await
        .expect("anonymous");
    assert_problem(res, 401, "unauthenticated").await;
    let res = app
        .client
        .get(app.url(&path))
        .bearer_auth("ens_sess_not-a-session")
        .send()
        .await
        .expect("bad session");
    assert_problem(res, 401, "unauthenticated").await;
    let long = "7".repeat(5000);
    let res = app
        .get(&alice, &format!("/v1/tokens/{long}/insights"))
        .await;
    assert!(
        res.status().is_client_error(),
        "a long id: {}",
        res.status()
    );
    for bad in [
        "not-a-ulid",
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "%00",
        "..%2F..%2Fetc",
    ] {
        let res = app.get(&alice, &format!("/v1/tokens/{bad}/insights")).await;
        assert!(res.status().is_client_error(), "{bad}: {}", res.status());
        assert_problem(res, 404, "token_not_found").await;
    }
    // An unknown, well-formed id.
    let res = app
        .get(
            &alice,
            &format!("/v1/tokens/{}/insights", ulid::Ulid::new()),
        )
        .await;
    assert_problem(res, 404, "token_not_found").await;
    // Another method.
    let res = app
        .client
        .post(app.url(&path))
        .bearer_auth(&alice)
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_problem(res, 405, "method_not_allowed").await;
    // Unknown query parameters are ignored; the owner still gets 200.
    let res = app.get(&alice, &format!("{path}?from=x&limit=-1")).await;
    assert_eq!(res.status(), 200);
}

crate::support::queues::on_both_queues!(
    a_token_used_only_to_read_one_workspace_is_told_so,
    denied_calls_are_counted_as_denied,
);

#[tokio::test]
async fn hostile_input_on_insights_gets_problems_never_a_5xx() {
    let app = ServeApp::spawn(None).await;
    hostile_input(&app).await;
}

/// Calls older than the retention no longer count, at once, and their
/// client IPs are gone with them.
#[tokio::test]
async fn past_the_retention_calls_no_longer_count() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.request_retention = Duration::from_secs(60);
    let app = ServeApp::spawn_with(args, data).await;
    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(&alice, &token_body("old", &["read", "write"], &["acme"]))
        .await;
    let id = id_of(&token);
    until_known(&app, &secret).await;
    assert_eq!(call(&app, Method::POST, ACME, &secret).await, 201);
    let body = insights_after(&app, &alice, &id, 2).await;
    assert_eq!(
        body["suggestion"],
        json!({"scopes": ["read", "write"], "workspaces": ["acme"], "allowed_cidrs": ["127.0.0.1/32"]})
    );
    // 40 s on, a read from another IP: all three within the minute.
    app.clock.advance(SignedDuration::from_secs(40));
    let other = client_from(Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(
        call_with(&other, &app, Method::GET, ACME, &secret).await,
        200
    );
    let body = insights_after(&app, &alice, &id, 3).await;
    assert_eq!(body["client_ips_seen"], 2);
    // 30 s more: the first two are past the retention.
    app.clock.advance(SignedDuration::from_secs(30));
    let body = insights(&app, &alice, &id).await;
    assert_eq!(body["calls"]["allowed"], 1, "{body}");
    assert_eq!(
        body["suggestion"],
        json!({"scopes": ["read"], "workspaces": ["acme"], "allowed_cidrs": ["127.0.0.3/32"]})
    );
    assert_eq!(body["client_ips_seen"], 1);
    assert_eq!(body["client_ips"][0]["ip"], "127.0.0.3");
    // And past the last: nothing, and nothing suggested.
    app.clock.advance(SignedDuration::from_secs(60));
    let body = insights(&app, &alice, &id).await;
    assert_eq!(
        body["calls"],
        json!({"allowed": 0, "denied": 0, "invalid_token": 0, "rate_limited": 0, "unlisted_workspace_calls": 0})
    );
    assert_eq!(
        body["suggestion"],
        json!({"scopes": [], "workspaces": [], "allowed_cidrs": []})
    );
    assert_eq!(body["client_ips"], json!([]));
    assert!(row(&body["scopes"], "scope", "read")["last_used"].is_null());
}
