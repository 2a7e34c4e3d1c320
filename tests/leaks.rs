//! Leak reports: GitHub's secret-scanning endpoint (signed with a key made
//! for the test) and `POST /v1/tokens/report-leak` (anyone, rate-limited per
//! client address), over real HTTP on a real store; and a reported token
//! refused by an API node of the distributed setup.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enspace_core::PatSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::app::ApiClient;
use crate::support::distributed::{self, body, wait_ready, wait_status};
use crate::support::github::{self, FakeGithub, matches};
use crate::support::{NatsServer, TestApp, assert_problem, create_body, eventually};

const LEAK_URL: &str = "https://github.com/acme/app/blob/main/.env";
const REPORT: &str = "/v1/tokens/report-leak";

async fn app_with_github(github: &FakeGithub) -> TestApp {
    let mut config = TestApp::config();
    config.github_keys = Some(Arc::new(
        enspace_tokens::leaks::GithubKeys::load(github.key_file()).expect("key file"),
    ));
    TestApp::spawn_configured(config).await
}

fn sha256_hex(s: &str) -> String {
    hex_of(&Sha256::digest(s.as_bytes()))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn id_of(token: &Value) -> String {
    token["id"].as_str().expect("token id").to_owned()
}

async fn token(app: &TestApp, session: &str, id: &str) -> Value {
    let res = app.get(session, &format!("/v1/tokens/{id}")).await;
    assert_eq!(res.status(), 200);
    res.json().await.expect("token json")
}

async fn events(app: &TestApp, session: &str, id: &str) -> Vec<Value> {
    let res = app.get(session, &format!("/v1/tokens/{id}/events")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("events json");
    body["events"].as_array().expect("events").clone()
}

/// `enspace_leak_reports_total{via, outcome}` in the service's `/metrics`.
async fn leak_count(app: &TestApp, via: &str, outcome: &str) -> u64 {
    app.counter(&format!(
        "enspace_leak_reports_total{{via=\"{via}\",outcome=\"{outcome}\"}}"
    ))
    .await
}

async fn status_of(app: &TestApp, session: &str, id: &str) -> String {
    token(app, session, id).await["status"]
        .as_str()
        .expect("status")
        .to_owned()
}

// ---- GitHub secret scanning ----

#[tokio::test]
async fn github_batch_of_a_live_an_unknown_a_revoked_and_a_foreign_token_revokes_only_the_live_one()
{
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let alice = app.login("alice").await;
    let (live, live_secret) = app.create_token(&alice, &create_body("live")).await;
    let (revoked, revoked_secret) = app.create_token(&alice, &create_body("revoked")).await;
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{}", id_of(&revoked)))
            .await
            .status(),
        204
    );
    let unknown = PatSecret::generate().expose().to_owned();
    let foreign = "ghp_0123456789abcdefghijklmnopqrstuvwxyz";
    let reported = [
        live_secret.as_str(),
        unknown.as_str(),
        revoked_secret.as_str(),
        foreign,
    ];

    let res = github.report(&app, &reported, LEAK_URL).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("body");
    for secret in reported {
        assert!(!text.contains(secret), "the answer never repeats a token");
    }
    let labels: Value = serde_json::from_str(&text).expect("json");
    let expected: Vec<Value> = reported
        .iter()
        .zip([
            "true_positive",
            "false_positive",
            "false_positive",
            "false_positive",
        ])
        .map(|(t, label)| {
            json!({"token_hash": sha256_hex(t),
                   "token_type": "enspace_personal_access_token", "label": label})
        })
        .collect();
    assert_eq!(labels, Value::Array(expected));

    let live_json = token(&app, &alice, &id_of(&live)).await;
    assert_eq!(live_json["status"], "revoked");
    assert_eq!(live_json["revoked_reason"], "leaked");
    assert_eq!(live_json["leak_url"], LEAK_URL);
    let history = events(&app, &alice, &id_of(&live)).await;
    let last = history.last().expect("an event");
    assert_eq!(last["type"], "token_revoked");
    assert_eq!(last["data"]["reason"], "leaked");
    assert_eq!(last["data"]["url"], LEAK_URL);

    // The token revoked before keeps its own reason and gains no event.
    let revoked_json = token(&app, &alice, &id_of(&revoked)).await;
    assert_eq!(revoked_json["revoked_reason"], "user");
    assert_eq!(events(&app, &alice, &id_of(&revoked)).await.len(), 2);
    assert_eq!(leak_count(&app, "github", "revoked").await, 1);
    assert_eq!(leak_count(&app, "github", "not_active").await, 3);
}

#[tokio::test]
async fn github_reporting_the_same_live_token_again_labels_it_false_positive() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let alice = app.login("alice").await;
    let (live, secret) = app.create_token(&alice, &create_body("live")).await;
    let first: Value = github
        .report(&app, &[&secret], LEAK_URL)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(first[0]["label"], "true_positive");
    let again: Value = github
        .report(&app, &[&secret], LEAK_URL)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again[0]["label"], "false_positive");
    assert_eq!(events(&app, &alice, &id_of(&live)).await.len(), 2);
}

#[tokio::test]
async fn github_match_with_a_url_that_is_not_http_revokes_and_records_no_url() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let alice = app.login("alice").await;
    let (live, secret) = app.create_token(&alice, &create_body("live")).await;
    let res = github.report(&app, &[&secret], "javascript:alert(1)").await;
    assert_eq!(res.status(), 200);
    let live_json = token(&app, &alice, &id_of(&live)).await;
    assert_eq!(live_json["revoked_reason"], "leaked");
    assert_eq!(live_json["leak_url"], Value::Null);
}

#[tokio::test]
async fn github_report_signed_with_an_unknown_key_id_is_401_and_revokes_nothing() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let alice = app.login("alice").await;
    let (live, secret) = app.create_token(&alice, &create_body("live")).await;
    let body = matches(&[&secret], LEAK_URL).to_string().into_bytes();
    let signature = github.sign(&body);
    let res = github
        .post_raw(&app, body, Some("not-a-github-key"), Some(&signature))
        .await;
    let problem = assert_problem(res, 401, "invalid_signature").await;
    assert!(!problem.to_string().contains(&secret));
    assert_eq!(status_of(&app, &alice, &id_of(&live)).await, "active");
    assert_eq!(leak_count(&app, "github", "refused").await, 1);
}

#[tokio::test]
async fn github_report_with_a_bad_signature_is_401_and_revokes_nothing() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let alice = app.login("alice").await;
    let (live, secret) = app.create_token(&alice, &create_body("live")).await;
    let body = matches(&[&secret], LEAK_URL).to_string().into_bytes();
    let stranger = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let by_stranger = github::sign_with(&stranger, &body);
    for signature in [by_stranger.as_str(), "bm90IGEgc2lnbmF0dXJl", "%%%", ""] {
        let res = github
            .post_raw(&app, body.clone(), Some(&github.key_id), Some(signature))
            .await;
        assert_problem(res, 401, "invalid_signature").await;
    }
    assert_eq!(status_of(&app, &alice, &id_of(&live)).await, "active");
}

#[tokio::test]
async fn github_report_whose_body_changed_after_signing_is_401_and_revokes_nothing() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let alice = app.login("alice").await;
    let (live, secret) = app.create_token(&alice, &create_body("live")).await;
    let signed = matches(&["ens_pat_harmless"], LEAK_URL).to_string();
    let signature = github.sign(signed.as_bytes());
    let tampered = matches(&[&secret], LEAK_URL).to_string().into_bytes();
    let res = github
        .post_raw(&app, tampered, Some(&github.key_id), Some(&signature))
        .await;
    assert_problem(res, 401, "invalid_signature").await;
    // One byte more (whitespace JSON would ignore) breaks it too.
    let mut padded = signed.clone().into_bytes();
    padded.push(b' ');
    let res = github
        .post_raw(&app, padded, Some(&github.key_id), Some(&signature))
        .await;
    assert_problem(res, 401, "invalid_signature").await;
    assert_eq!(status_of(&app, &alice, &id_of(&live)).await, "active");
}

#[tokio::test]
async fn github_report_missing_either_signature_header_is_401() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let body = b"[]".to_vec();
    let signature = github.sign(&body);
    let res = github
        .post_raw(&app, body.clone(), None, Some(&signature))
        .await;
    assert_problem(res, 401, "invalid_signature").await;
    let res = github
        .post_raw(&app, body.clone(), Some(&github.key_id), None)
        .await;
    assert_problem(res, 401, "invalid_signature").await;
    let res = github.post_raw(&app, body, None, None).await;
    assert_problem(res, 401, "invalid_signature").await;
}

#[tokio::test]
async fn github_endpoint_answers_404_when_the_service_has_no_github_keys() {
    let github = FakeGithub::new();
    let app = TestApp::spawn().await;
    let res = github.post_signed(&app, b"[]".to_vec()).await;
    assert_problem(res, 404, "secret_scanning_not_configured").await;
}

#[tokio::test]
async fn github_signed_body_that_is_not_json_is_400_and_wrong_types_are_422() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let res = github.post_signed(&app, b"[{\"token\": ".to_vec()).await;
    assert_problem(res, 400, "malformed_json").await;
    for wrong in [
        json!({"token": "x", "type": "t"}),
        json!([{"token": 42, "type": "t"}]),
        json!([{"token": "x", "type": ["t"]}]),
        json!(["ens_pat_x"]),
    ] {
        let res = github
            .post_signed(&app, wrong.to_string().into_bytes())
            .await;
        assert_problem(res, 422, "invalid_type").await;
    }
    let res = github
        .post_signed(&app, json!([{"type": "t"}]).to_string().into_bytes())
        .await;
    assert_problem(res, 422, "missing_field").await;
}

#[tokio::test]
async fn github_batch_over_1000_matches_or_over_1_mib_is_413() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let many: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let res = github.report(&app, &many, LEAK_URL).await;
    assert_problem(res, 413, "too_many_matches").await;
    // 1000 matches are taken.
    let res = github.report(&app, &many[..1000], LEAK_URL).await;
    assert_eq!(res.status(), 200);
    let labels: Value = res.json().await.expect("json");
    assert_eq!(labels.as_array().map(Vec::len), Some(1000));
    // Over 1 MiB is refused before anything is read into a match.
    let huge = matches(&[&"a".repeat(1024 * 1024)], LEAK_URL)
        .to_string()
        .into_bytes();
    let res = github.post_signed(&app, huge).await;
    assert_problem(res, 413, "body_too_large").await;
}

#[test]
fn serve_refuses_to_start_with_a_github_key_file_that_is_not_githubs_document() {
    let data = tempfile::tempdir().expect("temp dir");
    let keys = data.path().join("github-keys.json");
    std::fs::write(
        &keys,
        r#"{"public_keys": [{"key_identifier": "a", "key": "nope"}]}"#,
    )
    .expect("write");
    for file in [keys.clone(), data.path().join("missing.json")] {
        let refused = std::process::Command::new(crate::support::process::binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path().join("store"))
            .arg("--github-keys")
            .arg(&file)
            .output()
            .expect("run");
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("--github-keys (ENSPACE_GITHUB_KEYS)"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_token_reported_by_github_is_refused_by_an_api_node() {
    let github = FakeGithub::new();
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let key_file = github.key_file().to_str().expect("utf-8").to_owned();
    let service =
        distributed::token_service(data.path(), &nats.url(), &["--github-keys", &key_file]);
    let node = distributed::api_node_on(&nats, "node-a");
    let svc = ApiClient::from_base(&service.base);
    let api = ApiClient::from_base(&node.base);
    wait_ready(&svc).await;
    wait_ready(&api).await;
    let alice = svc.login("alice").await;
    let (_, secret) = svc.create_token(&alice, &body("leaks")).await;
    wait_status(&api, &secret, 200, Duration::from_secs(5)).await;

    let start = Instant::now();
    let res = github.report(&svc, &[&secret], LEAK_URL).await;
    assert_eq!(res.status(), 200);
    let labels: Value = res.json().await.expect("json");
    assert_eq!(labels[0]["label"], "true_positive");
    wait_status(&api, &secret, 401, Duration::from_secs(10)).await;
    eprintln!(
        "refused by the API node {:?} after the report",
        start.elapsed()
    );
    assert!(
        !service.logs().contains(&secret) && !node.logs().contains(&secret),
        "no log line holds the reported token"
    );
}

// ---- report-leak ----

/// A client whose connections come from `ip` (any 127.0.0.0/8 address
/// reaches the loopback listener on Linux).
fn client_from(app: &TestApp, ip: &str) -> ApiClient {
    let ip: IpAddr = ip.parse().expect("ip");
    ApiClient {
        base: app.base.clone(),
        addr: app.addr,
        client: reqwest::Client::builder()
            .local_address(ip)
            .build()
            .expect("client"),
    }
}

async fn report(api: &ApiClient, body: &Value) -> reqwest::Response {
    api.client
        .post(api.url(REPORT))
        .json(body)
        .send()
        .await
        .expect("POST report-leak")
}

/// Status, and the body and headers a client could compare across tokens
/// (everything but `date`).
async fn answer(res: reqwest::Response) -> (u16, Vec<(String, String)>, String) {
    let status = res.status().as_u16();
    let mut headers: Vec<(String, String)> = res
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    headers.sort();
    (status, headers, res.text().await.expect("body"))
}

#[tokio::test]
async fn report_leak_answers_the_same_202_for_garbage_unknown_and_live_tokens_and_revokes_only_the_live_one()
 {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (live, live_secret) = app.create_token(&alice, &create_body("live")).await;
    let (other, _) = app.create_token(&alice, &create_body("bystander")).await;
    let unknown = PatSecret::generate().expose().to_owned();
    let mut answers = Vec::new();
    for token in ["garbage", &unknown, &live_secret] {
        let res = report(&app, &json!({"token": token, "url": LEAK_URL})).await;
        answers.push(answer(res).await);
    }
    assert_eq!(answers[0].0, 202);
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");

    eventually(Duration::from_secs(5), "the live token revoked", || async {
        (status_of(&app, &alice, &id_of(&live)).await == "revoked").then_some(())
    })
    .await;
    let live_json = token(&app, &alice, &id_of(&live)).await;
    assert_eq!(live_json["revoked_reason"], "leaked");
    assert_eq!(live_json["leak_url"], LEAK_URL);
    let last = events(&app, &alice, &id_of(&live)).await;
    assert_eq!(last.last().expect("event")["data"]["url"], LEAK_URL);
    assert_eq!(status_of(&app, &alice, &id_of(&other)).await, "active");

    // Reported again once revoked, and without a url: the same answer.
    let res = report(&app, &json!({"token": live_secret})).await;
    assert_eq!(answer(res).await, answers[0]);
    // Counted by the revocation's task once the writer answered it, which
    // may be just after the token reads as revoked.
    eventually(Duration::from_secs(5), "the revocation counted", || async {
        (leak_count(&app, "public", "revoked").await == 1).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "three reports counted as not active",
        || async { (leak_count(&app, "public", "not_active").await == 3).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn report_leak_refuses_the_eleventh_report_a_minute_from_one_address_while_another_is_served()
{
    let app = TestApp::spawn().await;
    let first = client_from(&app, "127.0.0.2");
    let second = client_from(&app, "127.0.0.3");
    let garbage = json!({"token": "garbage"});
    for _ in 0..10 {
        assert_eq!(report(&first, &garbage).await.status(), 202);
    }
    let res = report(&first, &garbage).await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=6).contains(&retry_after), "{retry_after}");
    assert_problem(res, 429, "too_many_reports").await;
    // Bad requests count too: the limit comes before the body is read.
    let res = first
        .client
        .post(first.url(REPORT))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), 429);
    assert_eq!(leak_count(&app, "public", "limited").await, 2);
    assert_eq!(report(&second, &garbage).await.status(), 202);
    // A minute later the first address may report again.
    app.clock.advance(jiff::SignedDuration::from_secs(60));
    assert_eq!(report(&first, &garbage).await.status(), 202);
}

#[tokio::test]
async fn report_leak_bad_json_is_400_and_wrong_types_or_a_bad_url_are_422_the_same_for_a_live_token()
 {
    // More reports than the limit allows from one address: no limit here.
    let mut config = TestApp::config();
    config.limits.leak_reports_per_minute = None;
    let app = TestApp::spawn_configured(config).await;
    let alice = app.login("alice").await;
    let (live, live_secret) = app.create_token(&alice, &create_body("live")).await;
    let res = app
        .client
        .post(app.url(REPORT))
        .header("content-type", "application/json")
        .body(format!("{{\"token\": \"{live_secret}\""))
        .send()
        .await
        .expect("POST");
    let problem = assert_problem(res, 400, "malformed_json").await;
    assert!(!problem.to_string().contains(&live_secret));
    for wrong in [
        json!({"token": 42}),
        json!({"token": [live_secret]}),
        json!({"token": live_secret, "url": 7}),
        json!("token"),
    ] {
        assert_problem(report(&app, &wrong).await, 422, "invalid_type").await;
    }
    assert_problem(report(&app, &json!({})).await, 422, "missing_field").await;
    assert_problem(
        report(&app, &json!({"token": live_secret, "secret": 1})).await,
        422,
        "unknown_field",
    )
    .await;
    let too_long = format!("https://example.com/{}", "a".repeat(2048));
    for url in [
        too_long.as_str(),
        "javascript:alert(1)",
        "ftp://example.com",
    ] {
        let for_live = answer(report(&app, &json!({"token": live_secret, "url": url})).await).await;
        let for_garbage =
            answer(report(&app, &json!({"token": "garbage", "url": url})).await).await;
        assert_eq!(for_live.0, 422);
        assert!(for_live.2.contains("invalid_url"), "{}", for_live.2);
        assert_eq!(
            for_live, for_garbage,
            "a bad url tells nothing of the token"
        );
    }
    // Refused reports revoke nothing.
    assert_eq!(status_of(&app, &alice, &id_of(&live)).await, "active");
}

#[tokio::test]
async fn report_leak_body_over_16_kib_is_413_and_another_media_type_is_415() {
    let app = TestApp::spawn().await;
    let huge = json!({"token": "a".repeat(70 * 1024)});
    assert_problem(report(&app, &huge).await, 413, "body_too_large").await;
    let res = app
        .client
        .post(app.url(REPORT))
        .header("content-type", "text/plain")
        .body("ens_pat_x")
        .send()
        .await
        .expect("POST");
    assert_problem(res, 415, "unsupported_media_type").await;
}

// ---- leak URLs follow the description rules ----

#[tokio::test]
async fn a_leak_url_hiding_text_is_422_on_the_public_route_and_shown_percent_encoded_from_github() {
    let github = FakeGithub::new();
    let app = app_with_github(&github).await;
    let alice = app.login("alice").await;
    let (live, secret) = app.create_token(&alice, &create_body("live")).await;
    // U+202E turns the end of the name around: it reads "…exe.txt".
    let disguised = "https://github.com/acme/app/blob/main/\u{202E}txt.exe";
    for url in [
        disguised,
        "https://example.com/a\u{200B}b",
        "https://example.com/a\u{2028}b",
    ] {
        let for_live = answer(report(&app, &json!({"token": secret, "url": url})).await).await;
        let for_garbage =
            answer(report(&app, &json!({"token": "garbage", "url": url})).await).await;
        assert_eq!(for_live.0, 422);
        assert!(for_live.2.contains("invalid_url"), "{}", for_live.2);
        assert_eq!(
            for_live, for_garbage,
            "a bad url tells nothing of the token"
        );
    }
    assert_eq!(status_of(&app, &alice, &id_of(&live)).await, "active");

    // GitHub's report revokes the token whatever its URL; the URL is kept
    // with the character made visible.
    let res = github.report(&app, &[&secret], disguised).await;
    assert_eq!(res.status(), 200);
    let labels: Value = res.json().await.expect("json");
    assert_eq!(labels[0]["label"], "true_positive");
    let visible = "https://github.com/acme/app/blob/main/%E2%80%AEtxt.exe";
    let live_json = token(&app, &alice, &id_of(&live)).await;
    assert_eq!(live_json["revoked_reason"], "leaked");
    assert_eq!(live_json["leak_url"], visible);
    let last = events(&app, &alice, &id_of(&live)).await;
    assert_eq!(last.last().expect("event")["data"]["url"], visible);
    let res = app.get(&alice, "/v1/notifications").await;
    let body: Value = res.json().await.expect("json");
    let detail = body["notifications"][0]["detail"].as_str().expect("detail");
    assert!(
        !detail.contains('\u{202E}')
            && detail.contains(visible)
            && detail.contains("percent-encoded"),
        "{detail}"
    );
}
