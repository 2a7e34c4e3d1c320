//! A request record is bounded whatever a call sends: `path` at most 1 KiB
//! (cut, `path_truncated: true`), `workspace` a valid workspace id or null,
//! `user_agent` at most 256 bytes; calls over the rate limit are logged
//! bounded the same way; and `--request-max-bytes` bounds the stream they
//! travel in, the oldest records going first.

use std::num::NonZeroU32;
use std::time::Duration;

use async_nats::jetstream;
use enspace_core::Clock;
use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::distributed::wait_ready;
use crate::support::records::{records_in, stream_records};
use crate::support::serve::service_args;
use crate::support::{EnspaceProcess, NatsServer, ServeApp, eventually};

const RECORDS: &str = "/api/v1/workspaces/acme/records";
const KIB: usize = 1024;
/// Well over what a record keeps, within what an HTTP listener reads of a
/// request head (16 KiB; more is `431`).
const LONG: usize = 12 * KIB;

fn long_user_agent() -> String {
    format!("flood/1.0 {}", "u".repeat(2 * KIB))
}

async fn call(api: &ApiClient, path: &str, secret: &str, user_agent: &str) -> u16 {
    api.client
        .get(api.url(path))
        .bearer_auth(secret)
        .header("user-agent", user_agent)
        .send()
        .await
        .expect("api call")
        .status()
        .as_u16()
}

/// A read token on acme that the node already knows; (id, secret).
async fn known_token(app: &ServeApp, session: &str) -> (String, String) {
    let body = json!({"description": "bounded", "expiration": "1m", "scopes": ["read"], "workspaces": ["acme"]});
    let (token, secret) = app.create_token(session, &body).await;
    eventually(
        Duration::from_secs(20),
        "the node knows the token",
        || async { (call(app, RECORDS, &secret, "test").await == 200).then_some(()) },
    )
    .await;
    (token["id"].as_str().expect("id").to_owned(), secret)
}

/// Every record of `token` in the last and next day, through the Request
/// Logs API.
async fn records(app: &ServeApp, session: &str, token: &str) -> Vec<Value> {
    let now = app.clock.now();
    let window = format!(
        "from={}&to={}&limit=1000",
        now - SignedDuration::from_hours(24),
        now + SignedDuration::from_hours(24)
    )
    .replace('+', "%2B");
    let res = app
        .get(session, &format!("/v1/tokens/{token}/requests?{window}"))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    body["requests"].as_array().expect("requests").clone()
}

/// Waits until `token`'s records include one for each of `paths` (as sent,
/// matched by the kept prefix) and returns them in that order.
async fn records_of(app: &ServeApp, session: &str, token: &str, sent: &[&str]) -> Vec<Value> {
    eventually(Duration::from_secs(20), "the calls' records", || async {
        let all = records(app, session, token).await;
        sent.iter()
            .map(|path| {
                all.iter()
                    .find(|r| {
                        r["path"]
                            .as_str()
                            .is_some_and(|kept| kept.len() > 40 && path.starts_with(kept))
                    })
                    .cloned()
            })
            .collect::<Option<Vec<_>>>()
    })
    .await
}

/// A record of a call with a long path and user agent, as it must be kept.
fn assert_bounded(record: &Value, sent_path: &str, workspace: Option<&str>) {
    let path = record["path"].as_str().expect("path");
    assert_eq!(path.len(), KIB, "{path}");
    assert!(sent_path.starts_with(path));
    assert_eq!(record["path_truncated"], true, "{record}");
    assert_eq!(record["workspace"].as_str(), workspace);
    let agent = long_user_agent();
    assert_eq!(record["user_agent"].as_str(), Some(&agent[..256]));
}

#[tokio::test]
async fn a_revoked_tokens_huge_path_workspace_and_user_agent_are_stored_bounded_and_flagged() {
    let nats = NatsServer::start();
    let app = ServeApp::spawn(Some(nats.url())).await;
    let alice = app.login("alice").await;
    let (id, secret) = known_token(&app, &alice).await;
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{id}"))
            .await
            .status(),
        204
    );
    eventually(
        Duration::from_secs(20),
        "the node learns of the revocation",
        || async { (call(&app, RECORDS, &secret, "test").await == 401).then_some(()) },
    )
    .await;

    // A request head over 16 KiB is refused before any route: no record.
    let too_long = format!("{RECORDS}/{}", "x".repeat(60 * KIB));
    assert_eq!(call(&app, &too_long, &secret, "test").await, 431);

    let long_path = format!("{RECORDS}/{}", "r".repeat(LONG));
    let long_workspace = format!("/api/v1/workspaces/{}/records", "w".repeat(LONG));
    for path in [&long_path, &long_workspace] {
        assert_eq!(call(&app, path, &secret, &long_user_agent()).await, 401);
    }
    let kept = records_of(&app, &alice, &id, &[&long_path, &long_workspace]).await;
    assert_bounded(&kept[0], &long_path, Some("acme"));
    assert_bounded(&kept[1], &long_workspace, None);
    for record in &kept {
        assert_eq!(record["status"], 401);
    }
    for other in records(&app, &alice, &id).await {
        if !kept.contains(&other) {
            assert!(other.get("path_truncated").is_none(), "{other}");
        }
    }

    // The stream holds them bounded too: read with a raw NATS client.
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let mut stream = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream");
    let mut found = 0;
    for record in stream_records(&mut stream).await {
        let bytes = record.to_msgpack().len();
        assert!(bytes < 2 * KIB, "record {}: {bytes} bytes", record.id);
        if let Some(api) = kept.iter().find(|r| r["id"] == record.id.to_string()) {
            assert_eq!(&serde_json::to_value(&record).expect("json"), api);
            found += 1;
        }
    }
    assert_eq!(found, 2, "both records are in the stream");
}

#[tokio::test]
async fn calls_over_the_rate_limit_are_logged_bounded_the_same_way() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.limits.token_rate_limit = enspace::cli::TokenRateLimit(NonZeroU32::new(1));
    let app = ServeApp::spawn_with(args, data).await;
    let alice = app.login("alice").await;
    let (id, secret) = known_token(&app, &alice).await;
    // A whole burst of two again, on the node's clock.
    app.clock.advance(SignedDuration::from_secs(10));

    let long_paths: Vec<String> = (0..4)
        .map(|n| format!("{RECORDS}/{n}{}", "r".repeat(LONG)))
        .collect();
    let agent = long_user_agent();
    let statuses: Vec<u16> =
        futures::future::join_all(long_paths.iter().map(|p| call(&app, p, &secret, &agent))).await;
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [404, 404, 429, 429],
        "two in the burst, two over it"
    );
    let long_workspace = format!("/api/v1/workspaces/{}/records", "w".repeat(LONG));
    assert_eq!(
        call(&app, &long_workspace, &secret, &long_user_agent()).await,
        429
    );

    let sent: Vec<&str> = long_paths
        .iter()
        .map(String::as_str)
        .chain([long_workspace.as_str()])
        .collect();
    let kept = records_of(&app, &alice, &id, &sent).await;
    for (record, (path, status)) in kept
        .iter()
        .zip(sent.iter().zip(statuses.iter().chain([&429])))
    {
        assert_eq!(record["status"], *status);
        let workspace = (path != &long_workspace).then_some("acme");
        assert_bounded(record, path, workspace);
    }
}

/// The settings of the request stream `js` holds.
async fn stream_config(js: &jetstream::Context) -> Option<jetstream::stream::Config> {
    let mut stream = js.get_stream(enspace_nats::REQUESTS_STREAM).await.ok()?;
    Some(stream.info().await.ok()?.config.clone())
}

async fn wait_max_bytes(js: &jetstream::Context, want: i64) -> jetstream::stream::Config {
    eventually(
        Duration::from_secs(30),
        &format!("ENSPACE_REQUESTS with max_bytes {want}"),
        || async { stream_config(js).await.filter(|c| c.max_bytes == want) },
    )
    .await
}

/// `enspace tokens` with `ENSPACE_REQUEST_MAX_BYTES` and `extra` flags on
/// `nats_url`, ready, and its data directory.
async fn tokens_with_max_bytes(
    nats_url: &str,
    max: &str,
    extra: &[&str],
) -> (EnspaceProcess, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().to_str().expect("utf-8").to_owned();
    let mut args = vec!["tokens", "--data", &data_dir, "--nats-url", nats_url];
    args.extend_from_slice(extra);
    let service = EnspaceProcess::start(&args, &[("ENSPACE_REQUEST_MAX_BYTES", max)]);
    wait_ready(&ApiClient::from_base(&service.base)).await;
    (service, data)
}

#[tokio::test]
async fn the_control_plane_bounds_every_request_stream_with_its_max_bytes() {
    // One account: the one stream nodes publish into and indexers read.
    let nats = NatsServer::start();
    let _service = tokens_with_max_bytes(&nats.url(), "32KiB", &[]).await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let config = wait_max_bytes(&js, 32 * 1024).await;
    assert_eq!(config.discard, jetstream::stream::DiscardPolicy::Old);
    assert_eq!(config.max_age, Duration::from_secs(90 * 86_400));

    // Two trust zones: the nodes' intake (EDGE) and the indexers' copy
    // (CONTROL) alike.
    let zoned = NatsServer::shipped();
    let _service = tokens_with_max_bytes(
        &zoned.tokens_url(),
        "64KiB",
        &crate::support::nats::EDGE_FLAGS,
    )
    .await;
    let client = enspace_nats::connect(&zoned.tokens_url(), "test-observer")
        .await
        .expect("the control user connects");
    let control = jetstream::new(client.clone());
    let edge = jetstream::with_prefix(client, enspace_nats::edge::EDGE_API);
    for js in [&control, &edge] {
        let config = wait_max_bytes(js, 64 * 1024).await;
        assert_eq!(config.discard, jetstream::stream::DiscardPolicy::Old);
    }
}

#[tokio::test]
async fn past_request_max_bytes_the_oldest_records_leave_the_stream_first() {
    const MAX: usize = 16 * KIB;
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), Some(nats.url()));
    args.request_max_bytes = enspace::cli::MaxBytes(Some(MAX as u64));
    let app = ServeApp::spawn_with(args, data).await;
    let alice = app.login("alice").await;
    let (id, secret) = known_token(&app, &alice).await;
    // Each record is a few hundred bytes: 150 are several times the bound.
    let path = |n: usize| format!("{RECORDS}/call-{n:03}");
    for n in 0..150 {
        assert_eq!(call(&app, &path(n), &secret, "test").await, 404);
    }

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let mut stream = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream");
    // A node publishes the token's records in batches on its partition's
    // subject.
    let token: ulid::Ulid = id.parse().expect("ulid");
    let subject = enspace_core::record_batch::partition_subject(
        enspace_core::record_batch::partition_of(&token),
    );
    eventually(
        Duration::from_secs(30),
        "the last call's record in the stream",
        || async {
            let last = stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .ok()?;
            let record = records_in(&last).pop()?;
            (record.path == path(149)).then_some(())
        },
    )
    .await;
    let state = stream.info().await.expect("info").state.clone();
    assert!(
        state.bytes <= MAX as u64,
        "{} bytes kept, over {MAX}",
        state.bytes
    );
    assert!(state.first_sequence > 1, "the oldest were discarded");
    let kept: Vec<String> = stream_records(&mut stream)
        .await
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert!(kept.len() < 150, "{} records kept", kept.len());
    // What is left is the newest calls, in order, up to the last.
    let first = 150 - kept.len();
    let newest: Vec<String> = (first..150).map(path).collect();
    assert_eq!(kept, newest);
}
