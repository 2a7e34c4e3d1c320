//! A token's incident timeline (`GET /v1/audit/tokens/{id}/timeline`) after
//! real calls through the API node of `enspace serve`: its events, what its
//! calls did per day, status, client IP and workspace, and what was tried
//! with it after it was reported leaked; for auditors and for its owner
//! only.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::support::{ServeApp, assert_problem, eventually};

const ACME: &str = "/api/v1/workspaces/acme/records";
const GLOBEX: &str = "/api/v1/workspaces/globex/records";

async fn call_from(app: &ServeApp, ip: [u8; 4], path: &str, secret: &str) -> u16 {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .build()
        .expect("client");
    client
        .get(app.url(path))
        .bearer_auth(secret)
        .send()
        .await
        .expect("api call")
        .status()
        .as_u16()
}

async fn timeline_with(app: &ServeApp, session: &str, id: &str, calls: u64) -> Value {
    eventually(
        Duration::from_secs(20),
        &format!("a timeline of {calls} calls"),
        || async {
            let body = app
                .get_ok(session, &format!("/v1/audit/tokens/{id}/timeline"))
                .await;
            let counted = body["activity"]["calls"].as_u64().expect("calls");
            assert!(counted <= calls, "{counted} counted, {calls} made: {body}");
            (counted == calls).then_some(body)
        },
    )
    .await
}

#[tokio::test]
async fn a_leaked_tokens_timeline_shows_its_events_its_calls_and_what_came_after_the_leak() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(
            &alice,
            &json!({"description": "ci", "expiration": "1m", "scopes": ["read"], "workspaces": ["acme"]}),
        )
        .await;
    let id = token["id"].as_str().expect("id").to_owned();
    eventually(
        Duration::from_secs(20),
        "the node knows the token",
        || async { (call_from(&app, [127, 0, 0, 1], ACME, &secret).await == 200).then_some(()) },
    )
    .await;
    app.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(call_from(&app, [127, 0, 0, 1], ACME, &secret).await, 200);
    assert_eq!(call_from(&app, [127, 0, 0, 2], ACME, &secret).await, 200);
    assert_eq!(call_from(&app, [127, 0, 0, 2], GLOBEX, &secret).await, 403);
    timeline_with(&app, &alice, &id, 4).await;

    app.clock.advance(SignedDuration::from_secs(60));
    let reported = app
        .client
        .post(app.url("/v1/tokens/report-leak"))
        .json(&json!({"token": secret, "url": "https://paste.example.com/abc"}))
        .send()
        .await
        .expect("report");
    assert_eq!(reported.status(), 202);
    eventually(
        Duration::from_secs(20),
        "the node refuses the leaked token",
        || async { (call_from(&app, [127, 0, 0, 9], ACME, &secret).await == 401).then_some(()) },
    )
    .await;
    app.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(call_from(&app, [127, 0, 0, 9], ACME, &secret).await, 401);

    let audra = app.login("audra").await;
    // The refusals from .9 after the leak are logged: 4 before, at least 2 after.
    let body = eventually(
        Duration::from_secs(20),
        "the calls after the leak",
        || async {
            let body = app
                .get_ok(&audra, &format!("/v1/audit/tokens/{id}/timeline"))
                .await;
            (body["since_leak"]["calls"].as_u64() >= Some(2)).then_some(body)
        },
    )
    .await;
    let types: Vec<&str> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["token_created", "token_revoked"]);
    assert_eq!(body["marks"]["revoked_reason"], "leaked");
    assert_eq!(body["marks"]["leaked_at"], body["marks"]["revoked_at"]);
    assert!(body["marks"]["leaked_at"].is_string());
    let after_leak = body["since_leak"]["calls"].as_u64().expect("calls");
    assert_eq!(
        body["since_leak"]["per_client_ip"][0]["client_ip"], "127.0.0.9",
        "only the attempts after the report: {body}"
    );
    assert_eq!(
        body["since_leak"]["per_client_ip"].as_array().map(Vec::len),
        Some(1)
    );

    let activity = &body["activity"];
    let calls = activity["calls"].as_u64().expect("calls");
    assert_eq!(calls, 4 + after_leak);
    assert_eq!(activity["per_status"]["success"], 3);
    assert_eq!(activity["per_status"]["client_error"], 1 + after_leak);
    assert_eq!(activity["per_status"]["invalid_token"], after_leak);
    assert_eq!(activity["per_status"]["server_error"], 0);
    let days = activity["per_day"].as_array().expect("days");
    assert_eq!(days.len(), 1, "{activity}");
    assert_eq!(days[0]["total"], calls);
    let ips = activity["per_client_ip"].as_array().expect("ips");
    let per_ip: Vec<(&str, u64)> = ips
        .iter()
        .map(|i| {
            (
                i["client_ip"].as_str().expect("ip"),
                i["calls"].as_u64().expect("n"),
            )
        })
        .collect();
    assert!(per_ip.contains(&("127.0.0.1", 2)), "{per_ip:?}");
    assert!(per_ip.contains(&("127.0.0.2", 2)), "{per_ip:?}");
    assert!(per_ip.contains(&("127.0.0.9", after_leak)), "{per_ip:?}");
    assert_eq!(
        activity["per_workspace"],
        json!([{"workspace": "acme", "allowed": 3, "denied": 0}, {"workspace": "globex", "allowed": 0, "denied": 1}])
    );
    assert!(activity["first_call"].as_str() < activity["last_call"].as_str());
    assert_eq!(activity["from"], token["created_at"]);

    // The owner reads the same timeline; nobody else does.
    let own = app
        .get_ok(&alice, &format!("/v1/audit/tokens/{id}/timeline"))
        .await;
    assert_eq!(own["events"], body["events"]);
    let bob = app.login("bob").await;
    for path in [
        format!("/v1/audit/tokens/{id}/timeline"),
        "/v1/audit/tokens/not-a-ulid/timeline".to_owned(),
        format!("/v1/audit/tokens/{}/timeline", ulid::Ulid::new()),
    ] {
        assert_problem(app.get(&bob, &path).await, 404, "token_not_found").await;
    }
    let anonymous = app
        .client
        .get(app.url(&format!("/v1/audit/tokens/{id}/timeline")))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);
    // A secret never appears in a timeline.
    assert!(!body.to_string().contains(&secret));
    app.stop().await;
}

#[tokio::test]
async fn a_token_never_used_has_an_empty_timeline_of_calls() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (token, _) = app
        .create_token(&alice, &crate::support::create_body("idle"))
        .await;
    let id = token["id"].as_str().expect("id");
    let body = app
        .get_ok(&alice, &format!("/v1/audit/tokens/{id}/timeline"))
        .await;
    assert_eq!(body["activity"]["calls"], 0);
    assert_eq!(body["activity"]["per_day"], json!([]));
    assert_eq!(body["activity"]["first_call"], Value::Null);
    assert!(body.get("since_leak").is_none());
    assert_eq!(body["marks"]["revoked_at"], Value::Null);
    app.stop().await;
}
