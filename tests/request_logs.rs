//! Request logs: records from API nodes reach
//! the owner's logs through JetStream (or the embedded queue), exactly once,
//! across redeliveries, an indexer crash and a NATS outage; paging, windows,
//! stats, retention, ownership and bad input on the query routes.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use enspace_core::Clock;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::distributed::{self, wait_ready};
use crate::support::records::stream_records;
use crate::support::serve::service_args;
use crate::support::{EnspaceProcess, NatsServer, ServeApp, assert_problem, eventually};

pub(crate) const RECORDS: &str = "/api/v1/workspaces/acme/records";

pub(crate) fn token_body(description: &str, scopes: &[&str]) -> Value {
    json!({"description": description, "expiration": "1m", "scopes": scopes, "workspaces": ["acme"]})
}

pub(crate) fn id_of(token: &Value) -> String {
    token["id"].as_str().expect("token id").to_owned()
}

fn rfc3339(ts: Timestamp) -> String {
    ts.to_string()
}

/// `from`/`to` as a query string, percent-encoding the `+` of offsets.
fn window(from: Timestamp, to: Timestamp) -> String {
    format!(
        "from={}&to={}",
        rfc3339(from).replace('+', "%2B"),
        rfc3339(to).replace('+', "%2B")
    )
}

pub(crate) async fn call(
    api: &ApiClient,
    method: reqwest::Method,
    path: &str,
    secret: &str,
) -> u16 {
    let mut req = api
        .client
        .request(method.clone(), api.url(path))
        .bearer_auth(secret);
    if method == reqwest::Method::POST || method == reqwest::Method::PUT {
        req = req.json(&json!({"title": "a record"}));
    }
    req.send().await.expect("api call").status().as_u16()
}

/// Calls the node until it knows the token; exactly one of these calls (the
/// last, a 200) resolves to the token and so is logged.
pub(crate) async fn until_known(api: &ApiClient, secret: &str) {
    eventually(
        Duration::from_secs(20),
        "the node knows the token",
        || async { (call(api, reqwest::Method::GET, RECORDS, secret).await == 200).then_some(()) },
    )
    .await;
}

/// One page of a token's requests.
pub(crate) async fn page(api: &ApiClient, session: &str, token: &str, query: &str) -> Value {
    let res = api
        .get(session, &format!("/v1/tokens/{token}/requests?{query}"))
        .await;
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body
}

/// Every record of the window, following `next_cursor`.
pub(crate) async fn all_requests(
    api: &ApiClient,
    session: &str,
    token: &str,
    query: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => format!("{query}&limit=1000"),
            Some(c) => format!("{query}&limit=1000&cursor={c}"),
        };
        let body = page(api, session, token, &q).await;
        out.extend(
            body["requests"]
                .as_array()
                .expect("requests")
                .iter()
                .cloned(),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// A window wide enough for every record of a test.
pub(crate) fn wide() -> String {
    let now = Timestamp::now();
    window(
        now - SignedDuration::from_hours(24 * 30),
        now + SignedDuration::from_hours(24 * 80),
    )
}

/// Waits until the window holds exactly `n` records (fails if it ever holds more).
pub(crate) async fn wait_for_count(
    api: &ApiClient,
    session: &str,
    token: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Value> {
    let query = wide();
    eventually(timeout, &format!("{n} records of {token}"), || async {
        let records = all_requests(api, session, token, &query).await;
        assert!(
            records.len() <= n,
            "{} records of {token}, more than the {n} calls made",
            records.len()
        );
        (records.len() == n).then_some(records)
    })
    .await
}

fn statuses(records: &[Value]) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for r in records {
        *out.entry(r["status"].as_u64().expect("status"))
            .or_default() += 1;
    }
    out
}

/// The API node of `enspace serve`, as its records name it.
const NODE: &str = "serve";

/// A token of alice's ("logged", read and write in acme) that the node
/// knows, and the calls made with it: one each of 200, 201, 403 (a scope it
/// lacks), 403 (a workspace it lacks) and 404, after the 200 that found it
/// known; 6 logged records in all.
struct LoggedCalls {
    alice: String,
    id: String,
    start: Timestamp,
}

async fn logged_calls(app: &ServeApp) -> LoggedCalls {
    use reqwest::Method;
    let alice = app.login("alice").await;
    let start = app.clock.now();
    let (token, secret) = app
        .create_token(&alice, &token_body("logged", &["read", "write"]))
        .await;
    let id = id_of(&token);
    until_known(app, &secret).await;

    assert_eq!(call(app, Method::POST, RECORDS, &secret).await, 201);
    assert_eq!(
        call(
            app,
            Method::GET,
            &format!("{RECORDS}?q=secret-search"),
            &secret
        )
        .await,
        200
    );
    assert_eq!(
        call(
            app,
            Method::DELETE,
            &format!("{RECORDS}/01J00000000000000000000000"),
            &secret
        )
        .await,
        403,
        "no delete scope"
    );
    assert_eq!(
        call(
            app,
            Method::GET,
            "/api/v1/workspaces/globex/records",
            &secret
        )
        .await,
        403,
        "workspace not granted"
    );
    assert_eq!(
        call(
            app,
            Method::GET,
            &format!("{RECORDS}/not-a-record"),
            &secret
        )
        .await,
        404
    );
    LoggedCalls { alice, id, start }
}

/// The records of [`logged_calls`], once all 6 are indexed.
async fn logged_records(app: &ServeApp, logged: &LoggedCalls) -> Vec<Value> {
    wait_for_count(app, &logged.alice, &logged.id, 6, Duration::from_secs(20)).await
}

/// Allowed and denied calls are logged against their token with their
/// details, and nothing else in a record.
async fn allowed_and_denied_calls_are_logged_with_their_details(app: &ServeApp) {
    let logged = logged_calls(app).await;
    let records = logged_records(app, &logged).await;
    let (id, start) = (&logged.id, logged.start);
    let want: BTreeMap<u64, usize> = [(200, 2), (201, 1), (403, 2), (404, 1)].into();
    assert_eq!(statuses(&records), want);
    for r in &records {
        assert_eq!(r["token_id"], id.as_str());
        assert_eq!(r["user_id"], "alice");
        assert_eq!(r["node"], NODE);
        assert_eq!(r["client_ip"], "127.0.0.1");
        assert!(r["duration_ms"].as_f64().expect("duration") >= 0.0);
        let path = r["path"].as_str().expect("path");
        assert!(!path.contains('?'), "no query string in {path}");
        assert!(path.starts_with("/api/v1/workspaces/"), "{path}");
        let at: Timestamp = r["at"].as_str().expect("at").parse().expect("RFC 3339");
        assert!(at >= start, "at {at} after the test started ({start})");
        assert_eq!(
            r.as_object().expect("object").len(),
            12,
            "exactly the RequestRecord fields: {r}"
        );
    }
    let by_status = |s: u64| records.iter().filter(move |r| r["status"] == s);
    let post = by_status(201).next().expect("the POST");
    assert_eq!(
        (post["method"].as_str(), post["path"].as_str()),
        (Some("POST"), Some(RECORDS))
    );
    assert_eq!(post["workspace"], "acme");
    let denied_ws = by_status(403)
        .find(|r| r["workspace"] == "globex")
        .expect("the globex call");
    assert_eq!(denied_ws["path"], "/api/v1/workspaces/globex/records");
    assert!(by_status(403).any(|r| r["method"] == "DELETE"));
    assert!(by_status(200).any(|r| r["path"] == RECORDS && r["method"] == "GET"));
}

/// Unknown, malformed and session "tokens" resolve to no token: their calls
/// leave no trace anywhere, and nothing is dropped.
async fn calls_without_a_known_token_are_not_logged(app: &ServeApp) {
    use reqwest::Method;
    let logged = logged_calls(app).await;
    let unknown = "ens_pat_000000000000000000000000000000001ZZZZZ";
    assert_eq!(call(app, Method::GET, RECORDS, unknown).await, 401);
    assert_eq!(call(app, Method::GET, RECORDS, "garbage").await, 401);
    assert_eq!(call(app, Method::GET, RECORDS, &logged.alice).await, 401);
    logged_records(app, &logged).await;

    let expected = 6;
    let indexed = eventually(Duration::from_secs(10), "the indexed counter", || async {
        let n = app.counter("enspace_request_records_indexed_total").await;
        (n >= expected).then_some(n)
    })
    .await;
    assert_eq!(indexed, expected);
    assert_eq!(
        app.counter("enspace_request_records_dropped_total").await,
        0
    );
}

/// A revoked token's 401 is logged against it; until the node learns of
/// the revocation, calls still succeed and are logged too.
async fn a_revoked_tokens_401_is_logged(app: &ServeApp) {
    use reqwest::Method;
    let alice = app.login("alice").await;
    let (revoked, revoked_secret) = app
        .create_token(&alice, &token_body("revoked", &["read"]))
        .await;
    let revoked_id = id_of(&revoked);
    until_known(app, &revoked_secret).await;
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{revoked_id}"))
            .await
            .status(),
        204
    );
    let revoked_calls = std::sync::atomic::AtomicUsize::new(0);
    eventually(
        Duration::from_secs(10),
        "revocation reaches the node",
        || async {
            revoked_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (call(app, Method::GET, RECORDS, &revoked_secret).await == 401).then_some(())
        },
    )
    .await;
    let revoked_calls = revoked_calls.into_inner();
    let revoked_records = wait_for_count(
        app,
        &alice,
        &revoked_id,
        1 + revoked_calls,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        statuses(&revoked_records),
        [(200, revoked_calls), (401, 1)].into()
    );
}

/// The chart's numbers agree with the records: every hour of the window,
/// on the hour, split by status class.
async fn stats_count_the_logged_calls_by_hour(app: &ServeApp) {
    let logged = logged_calls(app).await;
    logged_records(app, &logged).await;
    let (alice, id) = (&logged.alice, &logged.id);
    let now_ms = app.clock.now().as_millisecond();
    let hour = Timestamp::from_millisecond(now_ms - now_ms % 3_600_000).expect("ts");
    let stats_query = window(
        hour - SignedDuration::from_hours(2),
        hour + SignedDuration::from_hours(2),
    );
    let res = app
        .get(
            alice,
            &format!("/v1/tokens/{id}/requests/stats?{stats_query}&bucket=hour"),
        )
        .await;
    assert_eq!(res.status(), 200);
    let stats: Value = res.json().await.expect("stats");
    assert_eq!(stats["bucket"], "hour");
    let buckets = stats["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 4, "every hour of the window: {stats}");
    let sum = |k: &str| {
        buckets
            .iter()
            .map(|b| b[k].as_u64().expect("count"))
            .sum::<u64>()
    };
    assert_eq!(
        (
            sum("total"),
            sum("success"),
            sum("client_error"),
            sum("server_error")
        ),
        (6, 3, 3, 0)
    );
    for b in buckets {
        let start: Timestamp = b["start"]
            .as_str()
            .expect("start")
            .parse()
            .expect("RFC 3339");
        assert_eq!(start.as_millisecond() % 3_600_000, 0, "on the hour");
        assert_eq!(b.as_object().expect("bucket").len(), 5);
    }
}

/// A token's last use is on its JSON once its calls are indexed.
async fn a_used_token_shows_when_it_was_last_used(app: &ServeApp) {
    let logged = logged_calls(app).await;
    logged_records(app, &logged).await;
    // The index writes a batch's last use right after its records.
    eventually(Duration::from_secs(10), "last_used_at", || async {
        let token_now: Value = app
            .get(&logged.alice, &format!("/v1/tokens/{}", logged.id))
            .await
            .json()
            .await
            .expect("token");
        token_now["last_used_at"].is_string().then_some(())
    })
    .await;
}

/// An expired token's 401 is logged against it.
async fn an_expired_tokens_401_is_logged(app: &ServeApp) {
    use reqwest::Method;
    let alice = app.login("alice").await;
    let (expiring, expiring_secret) = app
        .create_token(&alice, &token_body("expiring", &["read"]))
        .await;
    let expiring_id = id_of(&expiring);
    until_known(app, &expiring_secret).await;
    app.clock.advance(SignedDuration::from_hours(24 * 32));
    // Sessions last 12 hours: sign in again.
    let alice = app.login("alice").await;
    assert_eq!(call(app, Method::GET, RECORDS, &expiring_secret).await, 401);
    let expired_records =
        wait_for_count(app, &alice, &expiring_id, 2, Duration::from_secs(20)).await;
    assert_eq!(statuses(&expired_records), [(200, 1), (401, 1)].into());
}

/// Only the owner reads a token's requests and stats: another user gets
/// 404, an anonymous caller 401.
async fn only_the_owner_reads_a_tokens_logs(app: &ServeApp) {
    let logged = logged_calls(app).await;
    let bob = app.login("bob").await;
    let id = &logged.id;
    for path in [
        format!("/v1/tokens/{id}/requests"),
        format!("/v1/tokens/{id}/requests/stats"),
    ] {
        assert_problem(app.get(&bob, &path).await, 404, "token_not_found").await;
        let res = app
            .client
            .get(app.url(&path))
            .send()
            .await
            .expect("anonymous");
        assert_problem(res, 401, "unauthenticated").await;
    }
}

crate::support::queues::on_both_queues!(
    allowed_and_denied_calls_are_logged_with_their_details,
    calls_without_a_known_token_are_not_logged,
    a_revoked_tokens_401_is_logged,
    stats_count_the_logged_calls_by_hour,
    a_used_token_shows_when_it_was_last_used,
    an_expired_tokens_401_is_logged,
    only_the_owner_reads_a_tokens_logs,
);

pub(crate) fn token_service(data: &std::path::Path, nats: &NatsServer) -> EnspaceProcess {
    distributed::token_service(data, &nats.url(), &[])
}

pub(crate) fn api_node(nats: &NatsServer, id: &str) -> EnspaceProcess {
    distributed::api_node_on(nats, id)
}

pub(crate) async fn jetstream(nats: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    jetstream::new(client)
}

#[tokio::test]
async fn records_from_two_api_node_processes_reach_the_owner_with_their_node_names() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats);
    let (a, b) = (api_node(&nats, "node-a"), api_node(&nats, "node-b"));
    let svc = ApiClient::from_base(&service.base);
    let nodes = [ApiClient::from_base(&a.base), ApiClient::from_base(&b.base)];
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let (token, secret) = svc
        .create_token(&alice, &token_body("two nodes", &["read"]))
        .await;
    let id = id_of(&token);
    for node in &nodes {
        wait_ready(node).await;
        until_known(node, &secret).await;
        for _ in 0..9 {
            assert_eq!(
                call(node, reqwest::Method::GET, RECORDS, &secret).await,
                200
            );
        }
        assert_eq!(
            call(node, reqwest::Method::POST, RECORDS, &secret).await,
            403
        );
    }
    let records = wait_for_count(&svc, &alice, &id, 22, Duration::from_secs(20)).await;
    for name in ["node-a", "node-b"] {
        let mine: Vec<_> = records.iter().filter(|r| r["node"] == name).collect();
        assert_eq!(mine.len(), 11, "{name}");
        assert_eq!(
            mine.iter()
                .filter(|r| r["status"] == 403 && r["method"] == "POST")
                .count(),
            1
        );
    }
}

#[tokio::test]
async fn the_stream_and_consumer_have_the_contract_settings() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats);
    let node = api_node(&nats, "node-a");
    wait_ready(&ApiClient::from_base(&service.base)).await;
    wait_ready(&ApiClient::from_base(&node.base)).await;
    let js = jetstream(&nats).await;
    let info = eventually(Duration::from_secs(10), "the requests stream", || async {
        let mut stream = js.get_stream(enspace_nats::REQUESTS_STREAM).await.ok()?;
        stream.info().await.ok().cloned()
    })
    .await;
    let config = &info.config;
    assert_eq!(config.subjects, ["enspace.requests.>"]);
    assert_eq!(config.storage, jetstream::stream::StorageType::File);
    assert_eq!(config.retention, jetstream::stream::RetentionPolicy::Limits);
    assert_eq!(config.max_age, Duration::from_secs(90 * 24 * 3600));
    assert!(
        config.duplicate_window >= Duration::from_secs(120),
        "{:?}",
        config.duplicate_window
    );

    let consumer = eventually(
        Duration::from_secs(10),
        "the request-indexer consumer",
        || async {
            let stream = js.get_stream(enspace_nats::REQUESTS_STREAM).await.ok()?;
            let mut consumer: jetstream::consumer::PullConsumer = stream
                .get_consumer(enspace_nats::REQUEST_INDEXER)
                .await
                .ok()?;
            consumer.info().await.ok().cloned()
        },
    )
    .await;
    assert_eq!(
        consumer.config.durable_name.as_deref(),
        Some("request-indexer")
    );
    assert_eq!(
        consumer.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
}

pub(crate) fn record_for(token: &str, at: Timestamp) -> enspace_core::RequestRecord {
    enspace_core::RequestRecord {
        id: ulid::Ulid::new(),
        token_id: token.parse().expect("ulid"),
        user_id: "alice".into(),
        at,
        node: "test".into(),
        method: "GET".into(),
        path: RECORDS.into(),
        path_truncated: false,
        workspace: Some("acme".into()),
        status: 200,
        duration_ms: 0.5,
        client_ip: "127.0.0.1".into(),
        user_agent: None,
    }
}

async fn publish(js: &jetstream::Context, record: &enspace_core::RequestRecord, msg_id: &str) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    js.publish_with_headers(
        enspace_nats::request_subject(&record.token_id.to_string()),
        headers,
        record.to_msgpack().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
}

#[tokio::test]
async fn a_record_published_twice_is_indexed_once() {
    let nats = NatsServer::start();
    let app = ServeApp::spawn(Some(nats.url())).await;
    let alice = app.login("alice").await;
    let (token, _) = app
        .create_token(&alice, &token_body("dups", &["read"]))
        .await;
    let id = id_of(&token);
    let js = jetstream(&nats).await;
    let record = record_for(&id, app.clock.now());
    let msg_id = record.id.to_string();
    // Within the duplicate window the stream drops the second publish...
    publish(&js, &record, &msg_id).await;
    publish(&js, &record, &msg_id).await;
    // ...past it (another message id), the index must.
    publish(&js, &record, "republished-after-the-window").await;
    let mut stream = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 2);
    // Another record after them: once it is in, both copies were processed.
    let marker = record_for(&id, app.clock.now() + SignedDuration::from_millis(1));
    publish(&js, &marker, &marker.id.to_string()).await;
    eventually(
        Duration::from_secs(20),
        "all three messages processed",
        || async {
            (app.counter("enspace_request_records_duplicate_total").await >= 1).then_some(())
        },
    )
    .await;
    let records = wait_for_count(&app, &alice, &id, 2, Duration::from_secs(20)).await;
    let ids: Vec<_> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, [marker.id.to_string(), record.id.to_string()]);
    assert_eq!(serde_json::to_value(&record).expect("json"), records[1]);
}

/// nats-server, `enspace tokens` and an API node `node-a` as processes,
/// and a read token of alice's that the node already knows.
pub(crate) struct Deployed {
    pub(crate) nats: NatsServer,
    pub(crate) data: tempfile::TempDir,
    pub(crate) service: EnspaceProcess,
    pub(crate) node_process: EnspaceProcess,
    pub(crate) svc: ApiClient,
    pub(crate) node: ApiClient,
    pub(crate) alice: String,
    pub(crate) id: String,
    pub(crate) secret: String,
}

pub(crate) async fn deploy(description: &str) -> Deployed {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats);
    let node_process = api_node(&nats, "node-a");
    let (svc, node) = (
        ApiClient::from_base(&service.base),
        ApiClient::from_base(&node_process.base),
    );
    wait_ready(&svc).await;
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (token, secret) = svc
        .create_token(&alice, &token_body(description, &["read"]))
        .await;
    until_known(&node, &secret).await;
    Deployed {
        nats,
        data,
        service,
        node_process,
        svc,
        node,
        alice,
        id: id_of(&token),
        secret,
    }
}

#[tokio::test]
async fn killing_the_indexer_mid_batch_loses_and_duplicates_nothing() {
    let Deployed {
        nats,
        data,
        mut service,
        node_process: _node_process,
        svc,
        node,
        alice,
        id,
        secret,
    } = deploy("crash").await;

    // Calls flow the whole time; the indexer is killed while it is writing.
    let calls = {
        let (node, secret) = (node.clone(), secret.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..3000)
                .map(|_| call(&node, reqwest::Method::GET, RECORDS, &secret))
                .buffer_unordered(16)
                .filter(|status| std::future::ready(*status == 200))
                .count()
                .await
        })
    };
    let query = wide();
    eventually(Duration::from_secs(30), "indexing under way", || async {
        let n = page(&svc, &alice, &id, &format!("{query}&limit=1000")).await["requests"]
            .as_array()
            .map_or(0, Vec::len);
        (n >= 300).then_some(())
    })
    .await;
    service.kill();
    let restarted = token_service(data.path(), &nats);
    let svc = ApiClient::from_base(&restarted.base);
    wait_ready(&svc).await;
    let alice = svc.login("alice").await;
    let ok = calls.await.expect("calls");
    assert_eq!(ok, 3000, "every call served while the indexer was away");
    // Unacked messages come back after the ack wait (10 s).
    let records = wait_for_count(&svc, &alice, &id, 3000 + 1, Duration::from_secs(60)).await;
    let unique: std::collections::HashSet<_> = records.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(unique.len(), records.len());
}

#[tokio::test]
async fn records_of_calls_made_while_nats_is_down_reach_the_index_once_it_is_back() {
    let Deployed {
        mut nats,
        data: _data,
        service: _service,
        node_process: _node_process,
        svc,
        node,
        alice,
        id,
        secret,
    } = deploy("outage").await;
    for _ in 0..49 {
        assert_eq!(
            call(&node, reqwest::Method::GET, RECORDS, &secret).await,
            200
        );
    }
    wait_for_count(&svc, &alice, &id, 50, Duration::from_secs(20)).await;

    nats.stop();
    for _ in 0..500 {
        assert_eq!(
            call(&node, reqwest::Method::GET, RECORDS, &secret).await,
            200,
            "the node serves from its replica"
        );
    }
    nats.restart();
    for _ in 0..50 {
        assert_eq!(
            call(&node, reqwest::Method::GET, RECORDS, &secret).await,
            200
        );
    }
    wait_for_count(&svc, &alice, &id, 600, Duration::from_secs(60)).await;
    assert_eq!(
        node.counter("enspace_request_records_dropped_total").await,
        0
    );
}

#[tokio::test]
async fn a_deleted_request_stream_is_made_again_by_the_control_plane_and_no_record_is_lost() {
    let Deployed {
        nats,
        data: _data,
        service: _service,
        node_process: _node_process,
        svc,
        node,
        alice,
        id,
        secret,
    } = deploy("stream deleted").await;
    published(&node, 1).await;
    let js = jetstream(&nats).await;
    assert!(
        js.delete_stream(enspace_nats::REQUESTS_STREAM)
            .await
            .expect("delete")
            .success
    );

    for _ in 0..200 {
        assert_eq!(
            call(&node, reqwest::Method::GET, RECORDS, &secret).await,
            200
        );
    }
    let records = eventually(Duration::from_secs(20), "200 records", || async {
        let mut stream = js.get_stream(enspace_nats::REQUESTS_STREAM).await.ok()?;
        let records = stream_records(&mut stream).await;
        (records.len() >= 200).then_some(records)
    })
    .await;
    assert_eq!(records.len(), 200, "each record stored once");
    let unique: std::collections::HashSet<_> = records.iter().map(|r| r.id).collect();
    assert_eq!(unique.len(), 200);
    let config = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream")
        .cached_info()
        .config
        .clone();
    assert_eq!(config.max_age, Duration::from_secs(90 * 24 * 3600));
    published(&node, 201).await;
    assert_eq!(
        node.counter("enspace_request_records_dropped_total").await,
        0
    );
    // The warm-up call's record and the 200, each indexed once.
    wait_for_count(&svc, &alice, &id, 201, Duration::from_secs(60)).await;
}

/// Waits until the node counts `n` records acknowledged by the stream.
async fn published(node: &ApiClient, n: u64) {
    eventually(
        Duration::from_secs(10),
        &format!("{n} records acknowledged"),
        || async {
            (node
                .counter("enspace_request_records_published_total")
                .await
                == n)
                .then_some(())
        },
    )
    .await;
}

/// Makes `n` calls, moving the clock `step` after each.
async fn calls_over_time(app: &ServeApp, secret: &str, n: usize, step: SignedDuration) {
    for _ in 0..n {
        assert_eq!(call(app, reqwest::Method::GET, RECORDS, secret).await, 200);
        app.clock.advance(step);
    }
}

#[tokio::test]
async fn paging_2500_records_by_100_yields_each_exactly_once_newest_first() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(&alice, &token_body("paging", &["read"]))
        .await;
    let id = id_of(&token);
    until_known(&app, &secret).await;
    app.clock.advance(SignedDuration::from_millis(1));
    let start = app.clock.now();
    // Five calls per millisecond: ties in time are ordered by record id.
    for _ in 0..500 {
        for _ in 0..5 {
            assert_eq!(
                call(&app, reqwest::Method::GET, RECORDS, &secret).await,
                200
            );
        }
        app.clock.advance(SignedDuration::from_millis(1));
    }
    // Open-ended: records arriving while paging fall in the window too.
    let query = window(start, app.clock.now() + SignedDuration::from_hours(1));
    wait_for_count(&app, &alice, &id, 2501, Duration::from_secs(30)).await;

    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            None => format!("{query}&limit=100"),
            Some(c) => format!("{query}&limit=100&cursor={c}"),
        };
        let body = page(&app, &alice, &id, &q).await;
        let requests = body["requests"].as_array().expect("requests");
        pages += 1;
        seen.extend(requests.iter().cloned());
        if pages == 3 {
            // Newer records arriving meanwhile do not disturb the paging:
            // they sort above the cursor.
            calls_over_time(&app, &secret, 20, SignedDuration::from_millis(1)).await;
        }
        match body["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(requests.len(), 100, "full pages until the last");
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(pages, 25);
    assert_eq!(seen.len(), 2500);
    let keys: Vec<(String, String)> = seen
        .iter()
        .map(|r| {
            (
                r["at"].as_str().expect("at").to_owned(),
                r["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    for pair in keys.windows(2) {
        assert!(pair[0] > pair[1], "strictly newest first: {pair:?}");
    }
}

#[tokio::test]
async fn from_is_inclusive_and_to_exclusive_to_the_millisecond() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(&alice, &token_body("window", &["read"]))
        .await;
    let id = id_of(&token);
    until_known(&app, &secret).await;
    app.clock.advance(SignedDuration::from_mins(1));
    let t0 = app.clock.now();
    // One call at t0 + k minutes, k = 0..9.
    calls_over_time(&app, &secret, 10, SignedDuration::from_mins(1)).await;
    wait_for_count(&app, &alice, &id, 11, Duration::from_secs(20)).await;
    let at = |k: i64| t0 + SignedDuration::from_mins(k);
    let times = |body: &Value| -> Vec<Timestamp> {
        body["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .map(|r| r["at"].as_str().expect("at").parse().expect("RFC 3339"))
            .collect()
    };
    let body = page(&app, &alice, &id, &window(at(3), at(7))).await;
    assert_eq!(times(&body), [at(6), at(5), at(4), at(3)]);
    let one_ms = SignedDuration::from_millis(1);
    let body = page(&app, &alice, &id, &window(at(3) + one_ms, at(7) + one_ms)).await;
    assert_eq!(times(&body), [at(7), at(6), at(5), at(4)]);
    let body = page(&app, &alice, &id, &window(at(5), at(5))).await;
    assert_eq!(times(&body), [], "an empty window");
    // Any offset names the same instant.
    let plus_two = at(3).display_with_offset(jiff::tz::offset(2)).to_string();
    assert!(plus_two.ends_with("+02:00"), "{plus_two}");
    let query = format!(
        "from={}&to={}",
        plus_two.replace('+', "%2B"),
        rfc3339(at(4))
    );
    let body = page(&app, &alice, &id, &query).await;
    assert_eq!(times(&body), [at(3)]);
    // Stats use the same window rules.
    let res = app
        .get(
            &alice,
            &format!(
                "/v1/tokens/{id}/requests/stats?{}&bucket=day",
                window(at(3), at(7))
            ),
        )
        .await;
    let stats: Value = res.json().await.expect("stats");
    let total: u64 = stats["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["total"].as_u64().expect("total"))
        .sum();
    assert_eq!(total, 4, "{stats}");
}

#[tokio::test]
async fn past_the_retention_records_leave_the_stream_and_the_index_and_are_never_returned() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), Some(nats.url()));
    args.request_retention = Duration::from_secs(3);
    let app = ServeApp::spawn_with(args, data).await;
    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(&alice, &token_body("short-lived", &["read"]))
        .await;
    let id = id_of(&token);
    until_known(&app, &secret).await;
    for _ in 0..19 {
        assert_eq!(
            call(&app, reqwest::Method::GET, RECORDS, &secret).await,
            200
        );
    }
    let query = window(
        app.clock.now() - SignedDuration::from_hours(1),
        app.clock.now() + SignedDuration::from_hours(1),
    );
    eventually(Duration::from_secs(20), "20 records indexed", || async {
        let n = all_requests(&app, &alice, &id, &query).await.len();
        (n == 20).then_some(())
    })
    .await;

    let js = jetstream(&nats).await;
    let mut stream = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream");
    let info = stream.info().await.expect("info").clone();
    assert_eq!(
        info.config.max_age,
        Duration::from_secs(3),
        "the retention setting reached the stream"
    );
    // JetStream ages messages out by its own clock.
    eventually(
        Duration::from_secs(30),
        "the stream to expire the records",
        || async {
            let mut stream = js.get_stream(enspace_nats::REQUESTS_STREAM).await.ok()?;
            (stream.info().await.ok()?.state.messages == 0).then_some(())
        },
    )
    .await;

    // The service's clock passes the retention: nothing is returned, at once...
    app.clock.advance(SignedDuration::from_secs(4));
    let everything = window(
        Timestamp::UNIX_EPOCH,
        app.clock.now() + SignedDuration::from_hours(1),
    );
    assert!(
        all_requests(&app, &alice, &id, &everything)
            .await
            .is_empty()
    );
    let stats: Value = app
        .get(&alice, &format!("/v1/tokens/{id}/requests/stats?{query}"))
        .await
        .json()
        .await
        .expect("stats");
    let total: u64 = stats["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["total"].as_u64().expect("n"))
        .sum();
    assert_eq!(total, 0, "{stats}");
    // ...and the sweep deletes them from the index.
    eventually(Duration::from_secs(20), "the sweep", || async {
        (app.counter("enspace_request_records_swept_total").await == 20).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_input_on_the_query_routes_gets_clear_problems_never_a_5xx() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (token, _) = app
        .create_token(&alice, &token_body("inputs", &["read"]))
        .await;
    let id = id_of(&token);
    let list = format!("/v1/tokens/{id}/requests");
    let stats = format!("{list}/stats");
    let get = |path: String| {
        let (app, alice) = (&app, &alice);
        async move { app.get(alice, &path).await }
    };
    let long = "x".repeat(10_000);
    for (route, query, code) in [
        (&list, "from=yesterday".to_owned(), "invalid_time"),
        (&list, "to=2026-13-01T00:00:00Z".to_owned(), "invalid_time"),
        (&list, "from=2026-11-28".to_owned(), "invalid_time"),
        (&list, "from=1700000000".to_owned(), "invalid_time"),
        (&list, format!("from={long}"), "invalid_time"),
        (&list, "from=%3Cscript%3E".to_owned(), "invalid_time"),
        (
            &list,
            "from=2026-11-28T10:00:00Z&to=2026-11-28T09:00:00Z".to_owned(),
            "invalid_window",
        ),
        (&list, "limit=0".to_owned(), "invalid_limit"),
        (&list, "limit=1001".to_owned(), "invalid_limit"),
        (&list, "limit=-1".to_owned(), "invalid_limit"),
        (&list, "limit=ten".to_owned(), "invalid_limit"),
        (
            &list,
            "limit=99999999999999999999999".to_owned(),
            "invalid_limit",
        ),
        (&list, "cursor=garbage".to_owned(), "invalid_cursor"),
        (&list, "cursor=".to_owned(), "invalid_cursor"),
        (&list, format!("cursor={long}"), "invalid_cursor"),
        (&list, "cursor=%00%FF%FE".to_owned(), "invalid_cursor"),
        (
            &list,
            "cursor=..%2F..%2Fetc%2Fpasswd".to_owned(),
            "invalid_cursor",
        ),
        (&stats, "bucket=minute".to_owned(), "invalid_bucket"),
        (&stats, "bucket=".to_owned(), "invalid_bucket"),
        (&stats, "from=nope".to_owned(), "invalid_time"),
        (
            &stats,
            "from=2026-11-28T10:00:00Z&to=2020-01-01T00:00:00Z".to_owned(),
            "invalid_window",
        ),
        (
            &stats,
            "from=2020-01-01T00:00:00Z&to=9000-12-31T23:59:59Z".to_owned(),
            "window_too_large",
        ),
    ] {
        let res = get(format!("{route}?{query}")).await;
        let body = assert_problem(res, 422, code).await;
        assert!(body["field"].is_string(), "{body}");
    }
    // A parameter given twice cannot be read: 400, still problem details.
    assert_problem(
        get(format!("{list}?limit=1&limit=2")).await,
        400,
        "bad_request",
    )
    .await;
    // Hostile token ids are simply not found.
    for bad in [
        "not-a-ulid",
        "..%2F..",
        "%00",
        &"Z".repeat(300),
        "01J00000000000000000000000",
    ] {
        assert_problem(
            get(format!("/v1/tokens/{bad}/requests")).await,
            404,
            "token_not_found",
        )
        .await;
        assert_problem(
            get(format!("/v1/tokens/{bad}/requests/stats")).await,
            404,
            "token_not_found",
        )
        .await;
    }
    let body = page(&app, &alice, &id, "limit=1").await;
    assert!(body["next_cursor"].is_null(), "no records, no cursor");
    // Extreme but valid times answer 200.
    for query in [
        "from=0001-01-01T00:00:00Z&to=9000-12-31T23:59:59Z",
        "from=1970-01-01T00:00:00Z&to=1970-01-01T00:00:00Z",
        "from=2020-01-01T10:00:00%2B14:00",
    ] {
        let res = get(format!("{list}?{query}")).await;
        assert_eq!(
            res.status(),
            200,
            "{query}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    let res = get(format!("{stats}?bucket=day&from=0001-01-01T00:00:00Z")).await;
    assert_eq!(res.status(), 200, "the window starts at the retention");
    // A personal access token cannot read logs.
    let (_, secret) = app
        .create_token(&alice, &token_body("pat", &["read"]))
        .await;
    assert_problem(app.get(&secret, &list).await, 403, "pat_not_allowed").await;
}

#[tokio::test]
async fn a_cursor_carries_its_window_and_refuses_another() {
    let app = ServeApp::spawn(None).await;
    let alice = app.login("alice").await;
    let (token, secret) = app
        .create_token(&alice, &token_body("cursor", &["read"]))
        .await;
    let id = id_of(&token);
    until_known(&app, &secret).await;
    calls_over_time(&app, &secret, 4, SignedDuration::from_secs(1)).await;
    let start = app.clock.now() - SignedDuration::from_mins(10);
    let end = app.clock.now();
    wait_for_count(&app, &alice, &id, 5, Duration::from_secs(20)).await;
    let first = page(
        &app,
        &alice,
        &id,
        &format!("{}&limit=2", window(start, end)),
    )
    .await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    // Without from/to the cursor alone continues the same window.
    let second = page(&app, &alice, &id, &format!("limit=2&cursor={cursor}")).await;
    let third = page(
        &app,
        &alice,
        &id,
        &format!(
            "limit=2&cursor={}",
            second["next_cursor"].as_str().expect("more")
        ),
    )
    .await;
    assert!(third["next_cursor"].is_null());
    let n = |b: &Value| b["requests"].as_array().map_or(0, Vec::len);
    assert_eq!(n(&first) + n(&second) + n(&third), 5);
    let other = window(start - SignedDuration::from_mins(1), end);
    let res = app
        .get(
            &alice,
            &format!("/v1/tokens/{id}/requests?{other}&cursor={cursor}"),
        )
        .await;
    assert_problem(res, 422, "cursor_mismatch").await;
}
