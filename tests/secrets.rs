//! A token's secret: its format, and that after the one `201`
//! that carries it, it is never seen again: not in a response, not in the
//! data files, not in the logs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::{EnspaceProcess, TestApp, create_body, eventually, files_containing};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The contract's checksum, computed here from its text alone: CRC-32 (IEEE)
/// of the 32 random characters, in base62, most significant digit first,
/// left-padded with `0` to 6 characters.
fn checksum(random: &str) -> String {
    let mut value = u64::from(crc32fast::hash(random.as_bytes()));
    let mut digits = Vec::new();
    while value > 0 {
        digits.push(ALPHABET[(value % 62) as usize]);
        value /= 62;
    }
    while digits.len() < 6 {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("ascii")
}

/// The parts of a secret that must never show up again: the whole string
/// and its body without the well-known prefix.
fn needles(secret: &str) -> [String; 2] {
    [secret.to_owned(), secret["ens_pat_".len()..].to_owned()]
}

fn assert_absent(haystack: &str, secret: &str, place: &str) {
    for needle in needles(secret) {
        assert!(!haystack.contains(&needle), "the secret appears in {place}");
    }
}

/// Every header and the body of a response, as one string.
async fn everything(res: reqwest::Response) -> String {
    let mut all = format!("{}\n", res.status());
    for (name, value) in res.headers() {
        all.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    all.push_str(&res.text().await.expect("body"));
    all
}

#[tokio::test]
async fn the_secret_is_ens_pat_32_base62_characters_and_a_crc32_base62_checksum() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        let (_, secret) = app
            .create_token(&alice, &create_body(&format!("t{i}")))
            .await;
        assert_eq!(secret.len(), 46, "{secret}");
        let body = secret.strip_prefix("ens_pat_").expect("prefix ens_pat_");
        assert!(body.bytes().all(|b| ALPHABET.contains(&b)), "{secret}");
        let (random, sum) = body.split_at(32);
        assert_eq!(sum, checksum(random), "checksum of {secret}");
        assert!(seen.insert(secret), "every secret is new");
    }
}

#[test]
fn the_checksum_helper_agrees_with_a_known_crc32() {
    // CRC-32 of 32 × "0" is 0xA0F292D0 (zlib); in base62, 6 digits.
    assert_eq!(crc32fast::hash("0".repeat(32).as_bytes()), 0xA0F2_92D0);
    assert_eq!(checksum(&"0".repeat(32)).len(), 6);
    assert_eq!(checksum_of_u32(u32::MAX), "4gfFC3");
}

fn checksum_of_u32(v: u32) -> String {
    let mut value = u64::from(v);
    let mut out = String::new();
    for _ in 0..6 {
        out.insert(0, char::from(ALPHABET[(value % 62) as usize]));
        value /= 62;
    }
    out
}

#[tokio::test]
async fn the_secret_appears_in_no_later_response() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let audra = app.login("audra").await;
    let (token, secret) = app.create_token(&alice, &create_body("shown once")).await;
    let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
    // A second token, so that lists and logs hold more than one.
    app.create_token(&alice, &create_body("another")).await;

    let mut later = vec![
        ("list", app.get(&alice, "/v1/tokens").await),
        ("get", app.get(&alice, &path).await),
        ("events", app.get(&alice, &format!("{path}/events")).await),
        ("audit", app.get(&audra, "/v1/audit/events").await),
        ("me", app.get(&alice, "/v1/me").await),
        ("metrics", app.get(&alice, "/metrics").await),
        ("revoke", app.delete(&alice, &path).await),
    ];
    later.push(("list after revoke", app.get(&alice, "/v1/tokens").await));
    later.push((
        "events after revoke",
        app.get(&alice, &format!("{path}/events")).await,
    ));
    later.push((
        "audit after revoke",
        app.get(&audra, "/v1/audit/events?limit=1000").await,
    ));
    // Presenting the secret where it does not belong echoes nothing of it.
    later.push(("pat on management", app.get(&secret, "/v1/tokens").await));
    later.push((
        "pat as body",
        app.post_json(
            &alice,
            "/v1/tokens",
            &json!({"description": secret, "expiration": "x", "scopes": [], "workspaces": []}),
        )
        .await,
    ));
    later.push((
        "pat in path",
        app.get(&alice, &format!("/v1/tokens/{secret}")).await,
    ));
    later.push((
        "pat as sign-in",
        app.client
            .post(app.url("/v1/session"))
            .json(&json!({"username": "alice", "password": secret}))
            .send()
            .await
            .expect("POST"),
    ));
    for (place, res) in later {
        assert!(!res.status().is_server_error(), "{place}: {}", res.status());
        assert_absent(&everything(res).await, &secret, place);
    }
}

#[tokio::test]
async fn the_secret_is_nowhere_in_the_data_files() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mut secrets = Vec::new();
    for i in 0..5 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        let (token, secret) = app
            .create_token(who, &create_body(&format!("needle-description-{i}")))
            .await;
        if i == 3 {
            let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
            assert_eq!(app.delete(who, &path).await.status(), 204);
        }
        secrets.push(secret);
    }
    let (data, _) = app.stop().await;
    // The scan does read what the store wrote: the descriptions are there.
    assert!(
        !files_containing(data.path(), "needle-description-4").is_empty(),
        "the scan finds what the store keeps"
    );
    for secret in &secrets {
        for needle in needles(secret) {
            let found = files_containing(data.path(), &needle);
            assert!(found.is_empty(), "a secret is stored in {found:?}");
        }
    }
    // Sessions too are kept only as hashes.
    for session in [&alice, &bob] {
        let found = files_containing(data.path(), session);
        assert!(found.is_empty(), "a session secret is stored in {found:?}");
    }
}

#[tokio::test]
async fn the_secret_is_in_no_log_line_nor_data_file_of_the_real_binary_at_trace_level() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8 path");
    let mut process = EnspaceProcess::start(&["serve", "--data", dir], &[("RUST_LOG", "trace")]);
    let api = ApiClient::from_base(&process.base);
    let alice = api.login("alice").await;
    let (token, secret) = api.create_token(&alice, &create_body("logged?")).await;
    let id = token["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/tokens/{id}");
    for res in [
        api.get(&alice, "/v1/tokens").await,
        api.get(&alice, &path).await,
        api.get(&alice, &format!("{path}/events")).await,
        // The secret in use: on the management API (refused) and on the
        // embedded API node (allowed), where it passes the auth layer.
        api.get(&secret, "/v1/tokens").await,
        api.get(&secret, "/api/v1/workspaces/acme/records").await,
        api.get(&secret, "/api/v1/workspaces/initech/records").await,
    ] {
        assert!(!res.status().is_server_error());
        let _ = res.text().await;
    }
    assert_eq!(api.delete(&alice, &path).await.status(), 204);
    let revoked_use = api.get(&secret, "/api/v1/workspaces/acme/records").await;
    assert_eq!(revoked_use.status(), 401);
    // The log really is captured: the creation and revocation are in it.
    eventually(Duration::from_secs(10), "the revocation in the log", || {
        let logs = process.logs();
        let id = id.clone();
        async move {
            (logs.contains(&format!("created token {id}"))
                && logs.contains(&format!("revoked token {id}")))
            .then_some(())
        }
    })
    .await;
    process.terminate();
    let logs = process.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("trace"),
        "logging ran at trace level"
    );
    assert_absent(&logs, &secret, "the logs");
    assert!(
        !logs.contains(&alice),
        "the session secret appears in the logs"
    );
    assert!(
        !logs.contains("alice-password"),
        "the password appears in the logs"
    );
    for needle in needles(&secret) {
        let found = files_containing(data.path(), &needle);
        assert!(found.is_empty(), "the secret is stored in {found:?}");
    }
}

#[tokio::test]
async fn a_token_response_never_carries_its_hash_or_owner_internals() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("shape")).await;
    let list: Value = app
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    for t in [&token, &list["tokens"][0]] {
        let keys: Vec<&str> = t
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for forbidden in ["secret", "secret_hash", "hash", "user_id"] {
            assert!(!keys.contains(&forbidden), "{forbidden} in {keys:?}");
        }
    }
}
