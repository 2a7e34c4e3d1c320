//! Notifications: expiry stages told once each by the injected clock (and
//! across restarts of the process), revocations by someone else than the
//! owner, read marks, the signed webhook with its retries, and the NATS
//! publish.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::app::ApiClient;
use crate::support::serve::service_args;
use crate::support::{
    EnspaceProcess, NatsServer, ServeApp, TestApp, absence, assert_problem, eventually,
};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("RFC 3339")
}

fn one_month(description: &str) -> Value {
    json!({"description": description, "expiration": "1m",
           "scopes": ["read"], "workspaces": ["acme"]})
}

fn kinds(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|n| n["kind"].as_str().expect("kind").to_owned())
        .collect()
}

/// Waits until the user has `n` notifications; answers them.
async fn wait_for(api: &ApiClient, session: &str, n: usize) -> Vec<Value> {
    eventually(WAIT, &format!("{n} notifications"), || async {
        let list = api.notifications(session).await;
        (list.len() >= n).then_some(list)
    })
    .await
}

/// A marker that must tell `user` something: a token of theirs made and
/// reported leaked (`POST /v1/tokens/report-leak`, as anyone can); waits
/// until their list shows it and answers that list.
async fn leak_marker(api: &ApiClient, user: &str) -> Vec<Value> {
    let session = api.login(user).await;
    let (token, secret) = api.create_token(&session, &one_month("marker")).await;
    let report = async {
        let res = api
            .client
            .post(api.url("/v1/tokens/report-leak"))
            .json(&json!({"token": secret}))
            .send()
            .await
            .expect("POST report-leak");
        assert_eq!(res.status(), 202, "report-leak");
    };
    absence::after_marker(&format!("{user} told of the leak"), report, || async {
        let list = api.notifications(&session).await;
        list.iter()
            .any(|n| n["token_id"] == token["id"] && n["kind"] == "leaked")
            .then_some(list)
    })
    .await
}

/// Waits until the process has swept `n` more times.
async fn wait_sweeps(api: &ApiClient, n: u64) {
    let start = api.counter("enspace_notification_sweeps_total").await;
    eventually(WAIT, "sweeps", || async {
        (api.counter("enspace_notification_sweeps_total").await >= start + n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn expiring_soon_is_told_7_days_and_1_day_before_expiry_and_expired_at_it_each_once() {
    let app = ServeApp::spawn(None).await;
    app.clock.set(ts("2026-01-10T08:00:00Z"));
    let alice = app.login("alice").await;
    let (token, _) = app
        .create_token(&alice, &one_month("ERP Integration"))
        .await;
    let expires = ts(token["expires_at"].as_str().expect("expires_at"));
    wait_sweeps(&app, 2).await;
    assert!(app.notifications(&alice).await.is_empty());

    let stages = [
        (SignedDuration::from_hours(7 * 24), "expiring_soon"),
        (SignedDuration::from_hours(24), "expiring_soon"),
        (SignedDuration::ZERO, "expired"),
    ];
    for (i, (before, kind)) in stages.into_iter().enumerate() {
        app.clock
            .set(expires - before - SignedDuration::from_millis(1));
        wait_sweeps(&app, 2).await;
        let alice = app.login("alice").await;
        assert_eq!(app.notifications(&alice).await.len(), i, "not due yet");
        app.clock.set(expires - before);
        let list = wait_for(&app, &alice, i + 1).await;
        assert_eq!(list[0]["kind"], kind, "newest first");
        assert_eq!(list[0]["token_id"], token["id"]);
        assert_eq!(ts(list[0]["at"].as_str().expect("at")), expires - before);
        assert_eq!(list[0]["read"], false);
        assert!(
            list[0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("ERP Integration")),
            "{list:?}"
        );
        wait_sweeps(&app, 3).await;
        assert_eq!(app.notifications(&alice).await.len(), i + 1, "told once");
    }

    // Much later: nothing more.
    app.clock.set(expires + SignedDuration::from_hours(24 * 30));
    wait_sweeps(&app, 3).await;
    let alice = app.login("alice").await;
    let list = app.notifications(&alice).await;
    assert_eq!(kinds(&list), ["expired", "expiring_soon", "expiring_soon"]);
}

#[tokio::test]
async fn a_stopped_or_killed_and_restarted_process_does_not_tell_a_stage_twice() {
    // Tokens made in the past so that, by the machine's clock the real
    // process runs on, one is in its 7-day stage, one in its 1-day stage and
    // one has expired.
    let app = TestApp::spawn().await;
    let mut made = Vec::new();
    for (hours_left, description) in [
        (3 * 24, "nightly backup"),
        (12, "deploy key"),
        (-1, "old export"),
    ] {
        let expires_wanted = Timestamp::now() + SignedDuration::from_hours(hours_left);
        let created = expires_wanted
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .checked_sub(jiff::Span::new().months(1))
            .expect("a month earlier")
            .timestamp();
        app.clock.set(created);
        let alice = app.login("alice").await;
        let (token, _) = app.create_token(&alice, &one_month(description)).await;
        made.push(token["id"].clone());
    }
    let (data, _) = app.stop().await;

    let start = || {
        let process = EnspaceProcess::start(
            &[
                "serve",
                "--data",
                data.path().to_str().expect("utf-8"),
                "--notification-sweep-interval",
                "50ms",
            ],
            &[],
        );
        let api = ApiClient::from_base(&process.base);
        (process, api)
    };
    let (mut process, api) = start();
    let alice = api.login("alice").await;
    let told = wait_for(&api, &alice, 3).await;
    let stage_of = |list: &[Value], token: &Value| {
        list.iter()
            .filter(|n| n["token_id"] == *token)
            .map(|n| {
                (
                    n["kind"].as_str().unwrap_or_default().to_owned(),
                    n["id"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let kinds_by_token: Vec<Vec<String>> = made
        .iter()
        .map(|t| stage_of(&told, t).into_iter().map(|(k, _)| k).collect())
        .collect();
    assert_eq!(
        kinds_by_token,
        [["expiring_soon"], ["expiring_soon"], ["expired"]],
        "one stage each, the latest due: {told:?}"
    );
    let deploy_key = told
        .iter()
        .find(|n| n["token_id"] == made[1])
        .and_then(|n| n["detail"].as_str())
        .unwrap_or_default();
    assert!(
        deploy_key.contains("deploy key") && deploy_key.contains("1 day"),
        "the 1-day stage: {deploy_key}"
    );
    let mut ids: Vec<Value> = told.iter().map(|n| n["id"].clone()).collect();
    ids.sort_by_key(|v| v.to_string());

    // A graceful stop (SIGTERM), then a crash (SIGKILL): each told once still.
    for stop in [EnspaceProcess::terminate, EnspaceProcess::kill] {
        stop(&mut process);
        let (next, api) = start();
        process = next;
        wait_sweeps(&api, 3).await;
        let alice = api.login("alice").await;
        let list = api.notifications(&alice).await;
        let mut again: Vec<Value> = list.iter().map(|n| n["id"].clone()).collect();
        again.sort_by_key(|v| v.to_string());
        assert_eq!(again, ids, "the same notifications, told once: {list:?}");
    }
}

/// A directory file of the demo users in `workspaces`.
fn write_directory(path: &std::path::Path, alice_workspaces: &[&str]) {
    let users: Vec<Value> = [("alice", alice_workspaces), ("bob", &["acme"][..])]
        .iter()
        .map(|(id, workspaces)| {
            let hash = enspace_accounts::directory::hash_password(&format!("{id}-password"))
                .expect("hash");
            json!({"id": id, "name": id, "role": "user", "workspaces": workspaces,
                   "password_hash": hash})
        })
        .collect();
    let file = json!({
        "workspaces": [{"id": "acme", "name": "Acme Corp"}, {"id": "globex", "name": "Globex"}],
        "users": users,
    });
    std::fs::write(path, file.to_string()).expect("write directory");
}

#[tokio::test]
async fn a_revocation_by_the_directory_is_told_as_revoked_but_the_owners_own_is_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let directory = dir.path().join("directory.json");
    write_directory(&directory, &["acme", "globex"]);
    // The demo directory: alice is in acme and globex.
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (globex, _) = app
        .create_token(
            &alice,
            &json!({"description": "globex sync", "expiration": "3m",
                    "scopes": ["read"], "workspaces": ["globex"]}),
        )
        .await;
    let (own, _) = app.create_token(&alice, &one_month("mine")).await;
    let path = format!("/v1/tokens/{}", own["id"].as_str().expect("id"));
    assert_eq!(app.delete(&alice, &path).await.status(), 204);
    let told = leak_marker(&app, "alice").await;
    assert_eq!(kinds(&told), ["leaked"], "the owner's own revocation");

    // alice leaves globex: at start-up the token is revoked by the system.
    write_directory(&directory, &["acme"]);
    let (data, _) = app.stop().await;
    let mut args = service_args(data.path(), None);
    args.directory = Some(directory.clone());
    let app = ServeApp::spawn_with(args, data).await;
    let alice = app.login("alice").await;
    let list = wait_for(&app, &alice, 2).await;
    assert_eq!(kinds(&list), ["revoked", "leaked"]);
    assert_eq!(list[0]["token_id"], globex["id"]);
    assert!(
        list[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("globex sync")),
        "{list:?}"
    );
    let told = leak_marker(&app, "bob").await;
    assert_eq!(kinds(&told), ["leaked"], "only the owner's");
}

/// alice's token made and its 7-day stage reached; answers her session and
/// her one notification.
async fn one_notification(app: &ServeApp) -> (String, Value) {
    app.clock.set(ts("2026-01-10T08:00:00Z"));
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &one_month("reader")).await;
    let expires = ts(token["expires_at"].as_str().expect("expires_at"));
    app.clock
        .set(expires - SignedDuration::from_hours(7 * 24) + SignedDuration::from_hours(1));
    let alice = app.login("alice").await;
    let list = wait_for(app, &alice, 1).await;
    (alice, list[0].clone())
}

#[tokio::test]
async fn marking_read_answers_204_and_only_the_owner_can() {
    let app = ServeApp::spawn(None).await;
    let (alice, notification) = one_notification(&app).await;
    let id = notification["id"].as_str().expect("id");
    let path = format!("/v1/notifications/{id}/read");

    let bob = app.login("bob").await;
    let told = leak_marker(&app, "bob").await;
    assert_eq!(kinds(&told), ["leaked"], "bob is not told of alice's");
    assert_problem(
        app.post_json(&bob, &path, &json!({})).await,
        404,
        "notification_not_found",
    )
    .await;
    assert_eq!(app.notifications(&alice).await[0]["read"], false);

    let res = app
        .client
        .post(app.url(&path))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 204);
    assert_eq!(app.notifications(&alice).await[0]["read"], true);
    // Again: still 204, still read.
    assert_eq!(app.post_json(&alice, &path, &json!({})).await.status(), 204);
    assert_eq!(app.notifications(&alice).await[0]["read"], true);
}

#[tokio::test]
async fn hostile_requests_to_the_notification_routes_get_problems() {
    let app = ServeApp::spawn(None).await;
    let (alice, notification) = one_notification(&app).await;
    let id = notification["id"].as_str().expect("id");

    // Without a session.
    let res = app
        .client
        .get(app.url("/v1/notifications"))
        .send()
        .await
        .expect("GET");
    assert_problem(res, 401, "unauthenticated").await;
    let res = app
        .client
        .post(app.url(&format!("/v1/notifications/{id}/read")))
        .send()
        .await
        .expect("POST");
    assert_problem(res, 401, "unauthenticated").await;

    // Malformed and unknown ids.
    for bad in [
        "not-a-ulid",
        "0",
        "%00",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        &"Z".repeat(300),
        "..%2F..%2Fetc",
    ] {
        let res = app
            .post_json(&alice, &format!("/v1/notifications/{bad}/read"), &json!({}))
            .await;
        assert_problem(res, 404, "notification_not_found").await;
    }

    // Wrong methods.
    let res = app
        .client
        .delete(app.url("/v1/notifications"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(res.status(), 405);
    let res = app
        .get(&alice, &format!("/v1/notifications/{id}/read"))
        .await;
    assert_eq!(res.status(), 405);

    // A huge body.
    let res = app
        .client
        .post(app.url(&format!("/v1/notifications/{id}/read")))
        .bearer_auth(&alice)
        .body(vec![b'x'; 2 << 20])
        .send()
        .await
        .expect("POST");
    assert_problem(res, 413, "body_too_large").await;
    assert_eq!(app.notifications(&alice).await[0]["read"], false);
}

/// What the test's webhook receiver got: headers and body of each POST.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

/// A webhook receiver on `addr` that answers 500 to its first POST and 200
/// to every other.
async fn start_receiver(addr: SocketAddr) -> Arc<Mutex<Vec<Received>>> {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = got.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let mut got = sink.lock().expect("lock");
                    got.push(Received {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body: body.to_vec(),
                    });
                    if got.len() == 1 {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the receiver");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    got
}

/// The signature as the receiver computes it, from the secret alone.
fn expected_signature(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(SECRET.strip_prefix("whsec_").expect("prefix"))
        .expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn the_webhook_gets_each_notification_signed_retried_until_it_is_up_with_one_id() {
    // A port for the receiver, which is down until the notification is due.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let receiver = reserved.local_addr().expect("addr");
    drop(reserved);
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.notifications.webhook_url = Some(format!("http://{receiver}/hook").parse().expect("url"));
    args.notifications.webhook_secret = Some(SECRET.parse().expect("secret"));
    let app = ServeApp::spawn_with(args, data).await;
    let (_, notification) = one_notification(&app).await;

    // The receiver is down: the delivery fails and waits to be retried.
    eventually(WAIT, "a failed delivery", || async {
        app.metrics_text()
            .await
            .lines()
            .any(|l| l.starts_with("enspace_webhook_failed_total ") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    let got = start_receiver(receiver).await;
    let deliveries = eventually(WAIT, "a delivery answered 200", || async {
        let got = got.lock().expect("lock").clone();
        (got.len() >= 2).then_some(got)
    })
    .await;

    let id = notification["id"].as_str().expect("id");
    for delivery in &deliveries {
        assert_eq!(delivery.id, id, "the same webhook-id on every attempt");
        assert_eq!(
            delivery.signature,
            expected_signature(&delivery.id, &delivery.timestamp, &delivery.body),
            "signed with the secret"
        );
        let seconds: i64 = delivery.timestamp.parse().expect("unix seconds");
        assert!((seconds - Timestamp::now().as_second()).abs() < 60);
        let body: Value = serde_json::from_slice(&delivery.body).expect("JSON body");
        assert_eq!(body["type"], "notification.expiring_soon");
        assert_eq!(body["data"]["id"], id);
        assert_eq!(body["data"]["user_id"], "alice");
        assert_eq!(body["data"]["token_id"], notification["token_id"]);
        assert_eq!(body["data"]["detail"], notification["detail"]);
        let text = String::from_utf8_lossy(&delivery.body);
        assert!(!text.contains("whsec_") && !text.contains("ens_pat_"));
    }
    // Delivered: not sent again, by the time a later notification (the
    // marker: a leak told to alice) has been delivered after it.
    wait_sweeps(&app, 5).await;
    let marker = async {
        leak_marker(&app, "alice").await;
    };
    let delivered = absence::after_marker("the leak delivered", marker, || async {
        let got = got.lock().expect("lock").clone();
        got.iter()
            .any(|d| String::from_utf8_lossy(&d.body).contains("notification.leaked"))
            .then_some(got)
    })
    .await;
    assert_eq!(
        delivered.iter().filter(|d| d.id == id).count(),
        2,
        "the delivered notification is not sent again"
    );
}

#[tokio::test]
async fn each_notification_is_published_on_the_users_nats_subject() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut subscription = client
        .subscribe("enspace.notifications.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let app = ServeApp::spawn(Some(nats.url())).await;
    let (_, notification) = one_notification(&app).await;
    let message = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut subscription))
        .await
        .expect("a message in time")
        .expect("a message");
    assert_eq!(message.subject.as_str(), "enspace.notifications.alice");
    let body: Value = serde_json::from_slice(&message.payload).expect("JSON");
    assert_eq!(body["type"], "notification.expiring_soon");
    assert_eq!(body["data"]["id"], notification["id"]);
    assert_eq!(body["data"]["kind"], "expiring_soon");
}

#[tokio::test]
async fn a_leaked_token_is_told_as_leaked_with_the_url() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, secret) = app.create_token(&alice, &one_month("deploy key")).await;
    let hash = enspace_core::SecretHash::of(&secret);
    app.state
        .writer
        .execute(enspace_store::commands::Command::RevokeLeaked {
            secret_hash: hash,
            url: Some("https://github.com/acme/app/blob/main/.env".into()),
        })
        .await
        .expect("revoked as leaked");
    let list = app.notifications(&alice).await;
    assert_eq!(kinds(&list), ["leaked"]);
    assert_eq!(list[0]["token_id"], token["id"]);
    let detail = list[0]["detail"].as_str().expect("detail");
    assert!(
        detail.contains("deploy key")
            && detail.contains("https://github.com/acme/app/blob/main/.env"),
        "{detail}"
    );
    assert!(!detail.contains(&secret));
}

async fn rotate(app: &ServeApp, session: &str, old: &Value, overlap: &str) -> Value {
    let res = app
        .post_json(
            session,
            &format!("/v1/tokens/{}/rotate", old["id"].as_str().expect("id")),
            &json!({"overlap": overlap}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    body["token"].clone()
}

#[tokio::test]
async fn a_rotation_tells_the_old_tokens_stop_as_what_it_is_never_as_an_expiry_nor_dated_before_it()
{
    let app = ServeApp::spawn(None).await;
    let rotated_at = ts("2026-01-10T08:00:00Z");
    app.clock.set(rotated_at - SignedDuration::from_hours(24));
    let alice = app.login("alice").await;
    let (billing, _) = app.create_token(&alice, &one_month("Billing sync")).await;
    let (deploy, _) = app.create_token(&alice, &one_month("Deploy key")).await;
    app.clock.set(rotated_at);
    let alice = app.login("alice").await;
    let billing_new = rotate(&app, &alice, &billing, "1h").await;
    let deploy_new = rotate(&app, &alice, &deploy, "7d").await;

    // An hour's overlap: no "expires in 1 day" (nor 7), now or later.
    wait_sweeps(&app, 3).await;
    assert!(app.notifications(&alice).await.is_empty());
    let stops = rotated_at + SignedDuration::from_hours(1);
    app.clock.set(stops - SignedDuration::from_millis(1));
    wait_sweeps(&app, 3).await;
    assert!(app.notifications(&alice).await.is_empty());
    // Its end, told as the old token stopping, when it does.
    app.clock.set(stops);
    let list = wait_for(&app, &alice, 1).await;
    assert_eq!(kinds(&list), ["expired"]);
    assert_eq!(list[0]["token_id"], billing["id"]);
    assert_eq!(ts(list[0]["at"].as_str().expect("at")), stops);
    let detail = list[0]["detail"].as_str().expect("detail");
    assert!(
        detail.contains("old token")
            && detail.contains("Billing sync")
            && detail.contains("stopped")
            && detail.contains(billing_new["id"].as_str().expect("id"))
            && !detail.contains("expires"),
        "{detail}"
    );

    // A week's overlap: a day before its end, told that it stops then.
    let deploy_stops = rotated_at + SignedDuration::from_hours(7 * 24);
    app.clock.set(deploy_stops - SignedDuration::from_hours(24));
    let alice = app.login("alice").await;
    let list = wait_for(&app, &alice, 2).await;
    assert_eq!(kinds(&list), ["expiring_soon", "expired"]);
    assert_eq!(list[0]["token_id"], deploy["id"]);
    let detail = list[0]["detail"].as_str().expect("detail");
    assert!(
        detail.contains("old token")
            && detail.contains("stops at 2026-01-17 08:00 UTC")
            && detail.contains(deploy_new["id"].as_str().expect("id")),
        "{detail}"
    );
    app.clock.set(deploy_stops + SignedDuration::from_hours(24));
    let alice = app.login("alice").await;
    wait_for(&app, &alice, 3).await;
    wait_sweeps(&app, 3).await;
    let list = app.notifications(&alice).await;
    assert_eq!(kinds(&list), ["expired", "expiring_soon", "expired"]);
    // Nothing is dated before the rotation that made it.
    assert!(
        list.iter()
            .all(|n| ts(n["at"].as_str().expect("at")) >= rotated_at),
        "{list:?}"
    );
}

/// A client whose calls come from `ip` (another loopback address).
fn client_from(ip: std::net::Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(ip))
        .build()
        .expect("client")
}

async fn call_from(app: &ServeApp, ip: std::net::Ipv4Addr, secret: &str) {
    let res = client_from(ip)
        .get(app.url("/api/v1/workspaces/acme/records"))
        .bearer_auth(secret)
        .send()
        .await
        .expect("API call");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_token_used_from_a_new_client_ip_is_told_once_but_not_its_first_ip() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (token, secret) = app.create_token(&alice, &one_month("CI runner")).await;
    call_from(&app, [127, 0, 0, 1].into(), &secret).await;
    // Indexed (its insights show the IP), and not news: every token has a first IP.
    let insights = format!("/v1/tokens/{}/insights", token["id"].as_str().expect("id"));
    eventually(WAIT, "the first call indexed", || async {
        let body: Value = app.get(&alice, &insights).await.json().await.ok()?;
        (body["client_ips_seen"] == 1).then_some(())
    })
    .await;
    assert!(app.notifications(&alice).await.is_empty());

    for _ in 0..3 {
        call_from(&app, [127, 0, 0, 2].into(), &secret).await;
    }
    let list = wait_for(&app, &alice, 1).await;
    assert_eq!(kinds(&list), ["new_client_ip"]);
    assert_eq!(list[0]["token_id"], token["id"]);
    let detail = list[0]["detail"].as_str().expect("detail");
    assert!(
        detail.contains("CI runner") && detail.contains("127.0.0.2"),
        "{detail}"
    );

    // The same IP again, and the first one: nothing new; a third IP, a
    // second later (the clock is the test's): told, and listed first.
    app.clock.advance(SignedDuration::from_secs(1));
    call_from(&app, [127, 0, 0, 2].into(), &secret).await;
    call_from(&app, [127, 0, 0, 1].into(), &secret).await;
    call_from(&app, [127, 0, 0, 3].into(), &secret).await;
    let list = wait_for(&app, &alice, 2).await;
    assert!(
        list[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("127.0.0.3"))
    );
    eventually(WAIT, "every call indexed", || async {
        let body: Value = app.get(&alice, &insights).await.json().await.ok()?;
        (body["calls"]["allowed"] == 7).then_some(())
    })
    .await;
    assert_eq!(app.notifications(&alice).await.len(), 2);
}

#[tokio::test]
async fn a_token_revoked_by_a_workspace_admin_is_told_to_its_owner_as_revoked() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &one_month("shared report")).await;
    // bob administers acme in the demo directory.
    let bob = app.login("bob").await;
    let path = format!(
        "/v1/workspaces/acme/tokens/{}",
        token["id"].as_str().expect("id")
    );
    assert_eq!(app.delete(&bob, &path).await.status(), 204);
    let list = app.notifications(&alice).await;
    assert_eq!(kinds(&list), ["revoked"]);
    assert_eq!(list[0]["token_id"], token["id"]);
    assert!(
        list[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("shared report") && d.contains("administrator")),
        "{list:?}"
    );
    let told = leak_marker(&app, "bob").await;
    assert_eq!(kinds(&told), ["leaked"], "the admin is not told");
}
