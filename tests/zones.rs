//! The edge cannot touch the control plane (contract §15): with the shipped
//! `deploy/nats.conf` (the control plane's account and the API nodes'), a
//! raw NATS client holding only an API node's credentials tries what an
//! attacker would, and the outcome is checked from outside: with the
//! control plane's credentials, and through the product's own API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde_json::Value;

use crate::support::app::ApiClient;
use crate::support::cluster::{Member, writer};
use crate::support::distributed::{
    RECORDS, api_node, body, revoke, status, token_service, wait_ready, wait_status,
};
use crate::support::nats::{EDGE_FLAGS, NODE_PASSWORD, node_user_password};
use crate::support::{EnspaceProcess, NatsServer, eventually};

/// What the attacker writes wherever it can: found anywhere, it got through.
const MARKER: &str = "FORGED-BY-A-NODE";
/// A JetStream publish ack of the nodes' intake, as JetStream sends it to a
/// publish's reply subject: found anywhere, an ack was aimed there.
const ACK_MARK: &str = r#""stream":"ENSPACE_REQUESTS""#;

/// A raw client with the API node user's credentials; its JetStream calls
/// give up after a second (a refused one never gets an answer).
async fn as_node(nats: &NatsServer) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::ConnectOptions::with_user_and_password(
        "enspace-node".into(),
        NODE_PASSWORD.into(),
    )
    .custom_inbox_prefix("_INBOX.enspace-node")
    .request_timeout(Some(Duration::from_secs(1)))
    .connect(format!("127.0.0.1:{}", nats.port))
    .await
    .expect("the node user connects");
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(1));
    (client, js)
}

/// The control plane's view: its own JetStream, and the nodes' account's
/// through the imported API.
async fn as_control(nats: &NatsServer) -> (jetstream::Context, jetstream::Context) {
    let client = enspace_nats::connect(&nats.tokens_url(), "test-observer")
        .await
        .expect("the control user connects");
    (
        jetstream::new(client.clone()),
        jetstream::with_prefix(client, enspace_nats::edge::EDGE_API),
    )
}

/// What a stream is, for before/after comparisons.
#[derive(Debug, PartialEq)]
struct Shape {
    created: String,
    subjects: Vec<String>,
    sealed: bool,
    republish: bool,
    /// Messages were removed from the front (a purge).
    purged: bool,
}

async fn shape(js: &jetstream::Context, name: &str) -> Shape {
    let mut stream = js.get_stream(name).await.expect("the stream is there");
    let info = stream.info().await.expect("info");
    Shape {
        created: enspace_nats::edge::identity(info),
        subjects: info.config.subjects.clone(),
        sealed: info.config.sealed,
        republish: info.config.republish.is_some(),
        purged: info.state.first_sequence > 1,
    }
}

/// The messages of a stream whose payload holds `needle`.
async fn holding(js: &jetstream::Context, name: &str, needle: &str) -> Vec<u64> {
    let Ok(mut stream) = js.get_stream(name).await else {
        return Vec::new();
    };
    let state = stream.info().await.expect("info").state.clone();
    let mut found = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await
            && String::from_utf8_lossy(&message.payload).contains(needle)
        {
            found.push(seq);
        }
    }
    found
}

/// Every stream of the control plane's account (the token events, the
/// indexers' records, the KV buckets): none holds the attacker's marker or
/// a publish ack.
async fn control_state_is_clean(control: &jetstream::Context) {
    let mut names = control.stream_names();
    let mut checked = 0;
    while let Some(name) = names.next().await {
        let name = name.expect("stream name");
        for needle in [MARKER, ACK_MARK] {
            let found = holding(control, &name, needle).await;
            assert!(found.is_empty(), "{name} holds {needle} at {found:?}");
        }
        checked += 1;
    }
    assert!(checked >= 2, "the control plane's streams were checked");
}

/// A control plane and one API node (user `enspace-node`) on the shipped
/// configuration, alice signed in, one token the node knows.
struct Zoned {
    nats: NatsServer,
    svc: ApiClient,
    node: ApiClient,
    alice: String,
    token: Value,
    secret: String,
    _processes: Vec<EnspaceProcess>,
    _data: tempfile::TempDir,
}

impl Zoned {
    async fn start() -> Self {
        let nats = NatsServer::shipped();
        let data = tempfile::tempdir().expect("temp dir");
        let service = token_service(data.path(), &nats.tokens_url(), &EDGE_FLAGS);
        let node = api_node(&nats.node_url(), "node-a", &[]);
        let (svc, node_api) = (
            ApiClient::from_base(&service.base),
            ApiClient::from_base(&node.base),
        );
        wait_ready(&svc).await;
        wait_ready(&node_api).await;
        let alice = svc.login("alice").await;
        let (token, secret) = svc.create_token(&alice, &body("zoned")).await;
        wait_status(&node_api, &secret, 200, Duration::from_secs(10)).await;
        Zoned {
            nats,
            svc,
            node: node_api,
            alice,
            token,
            secret,
            _processes: vec![service, node],
            _data: data,
        }
    }

    /// Calls the node once and waits until the call's record is in the
    /// token's Request Logs: logging goes on.
    async fn logging_goes_on(&self) {
        let id = self.token["id"].as_str().expect("id");
        let count = || async {
            let page: Value = self
                .svc
                .get(&self.alice, &format!("/v1/tokens/{id}/requests?limit=100"))
                .await
                .json()
                .await
                .ok()?;
            Some(page["requests"].as_array()?.len())
        };
        let before = eventually(Duration::from_secs(10), "the request logs", count).await;
        assert_eq!(status(&self.node, &self.secret).await, 200);
        eventually(
            Duration::from_secs(30),
            "the new call in Request Logs",
            || async { (count().await? > before).then_some(()) },
        )
        .await;
    }
}

/// A stream's settings as the control plane makes it (what an update must
/// keep to be taken).
fn as_made(name: &str) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: if name == enspace_nats::REQUESTS_STREAM {
            vec![enspace_nats::REQUESTS_SUBJECTS.to_owned()]
        } else {
            vec![enspace_nats::TOKEN_EVENTS_SUBJECTS.to_owned()]
        },
        max_age: if name == enspace_nats::REQUESTS_STREAM {
            enspace_nats::DEFAULT_REQUEST_RETENTION
        } else {
            Duration::ZERO
        },
        duplicate_window: enspace_nats::DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// The stream settings an attacker would set: a republish rule into the
/// sessions bucket, subjects widened to the forwarded commands, a seal.
fn hostile_updates(name: &str) -> Vec<stream::Config> {
    let base = as_made(name);
    vec![
        stream::Config {
            republish: Some(stream::Republish {
                source: "enspace.requests.>".into(),
                destination: "$KV.ENSPACE_SESSIONS.>".into(),
                headers_only: false,
            }),
            ..base.clone()
        },
        stream::Config {
            subjects: [base.subjects.clone(), vec!["enspace.control.>".into()]].concat(),
            ..base.clone()
        },
        stream::Config {
            sealed: true,
            ..base
        },
    ]
}

#[tokio::test]
async fn a_node_can_neither_change_seal_purge_nor_delete_any_stream_and_request_logging_goes_on() {
    let zoned = Zoned::start().await;
    let (control, edge) = as_control(&zoned.nats).await;
    let names = [
        enspace_nats::REQUESTS_STREAM,
        enspace_nats::TOKEN_EVENTS_STREAM,
    ];
    // Something in every stream to purge: the node's call's record has
    // reached the control plane's copy.
    eventually(
        Duration::from_secs(30),
        "a record in every stream",
        || async {
            let mut copy = control
                .get_stream(enspace_nats::REQUESTS_STREAM)
                .await
                .ok()?;
            (copy.info().await.ok()?.state.messages > 0).then_some(())
        },
    )
    .await;
    let mut before = HashMap::new();
    for name in names {
        before.insert(("control", name), shape(&control, name).await);
        before.insert(("edge", name), shape(&edge, name).await);
    }

    let (client, own) = as_node(&zoned.nats).await;
    // Its own account's JetStream, and the prefixes the configuration
    // imports the two accounts' APIs under.
    let mut contexts = vec![own];
    for prefix in ["$JS.control.API", "$JS.edge.API"] {
        let mut js = jetstream::with_prefix(client.clone(), prefix);
        js.set_timeout(Duration::from_secs(1));
        contexts.push(js);
    }
    // Every attempt at once: each refused one waits out its timeout.
    let mut attempts = Vec::new();
    for js in &contexts {
        for name in names {
            for config in hostile_updates(name) {
                attempts.push(Box::pin(async move {
                    let _ = js.update_stream(config).await;
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>);
            }
            attempts.push(Box::pin(async move {
                if let Ok(stream) = js.get_stream_no_info(name).await {
                    let _ = stream.purge().await;
                }
                let _ = js.delete_stream(name).await;
            }));
        }
    }
    futures::future::join_all(attempts).await;
    // And JetStream's own ack to a record, aimed at the API: the purge,
    // deletion and update of either stream, and the consumer creation the
    // mirror imports.
    for name in names {
        for call in ["PURGE", "DELETE", "UPDATE", "MSG.DELETE"] {
            let api = format!("$JS.API.STREAM.{call}.{name}");
            let _ = client
                .publish_with_reply("enspace.requests.ack", api, "x".into())
                .await;
        }
    }
    let _ = client
        .publish_with_reply(
            "enspace.requests.ack",
            "$JS.control.API.CONSUMER.CREATE.ENSPACE_TOKEN_EVENTS",
            "x".into(),
        )
        .await;
    client.flush().await.expect("flush");
    zoned.logging_goes_on().await;

    for name in names {
        assert_eq!(
            shape(&control, name).await,
            before[&("control", name)],
            "the control plane's {name}"
        );
        assert_eq!(
            shape(&edge, name).await,
            before[&("edge", name)],
            "the nodes' {name}"
        );
    }
}

/// Publishes the marker to each target, and a request record whose reply
/// subject is the target (so that JetStream's publish ack goes there), every
/// 100 ms until `stop` is set: what jammed the writer lease and wedged the
/// token events stream with one shared account.
fn flood(
    client: async_nats::Client,
    targets: Vec<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for target in &targets {
                let _ = client.publish(target.clone(), MARKER.into()).await;
                let _ = client
                    .publish_with_reply("enspace.requests.flood", target.clone(), "x".into())
                    .await;
                sent += 2;
            }
            let _ = client.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    })
}

/// Two `enspace tokens --cluster` and an API node on the shipped
/// configuration, with alice signed in.
struct ZonedCluster {
    nats: NatsServer,
    members: [Member; 2],
    node: ApiClient,
    alice: String,
    _node: EnspaceProcess,
    dir: tempfile::TempDir,
}

impl ZonedCluster {
    async fn start() -> Self {
        let nats = NatsServer::shipped();
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("event-signing.key");
        let a = Member::start(
            &dir.path().join("a"),
            &key,
            &nats.tokens_url(),
            "cp-a",
            &EDGE_FLAGS,
        );
        writer(&[&a]).await;
        let b = Member::start(
            &dir.path().join("b"),
            &key,
            &nats.tokens_url(),
            "cp-b",
            &EDGE_FLAGS,
        );
        eventually(Duration::from_secs(20), "cp-b following", || async {
            b.head().await.map(drop)
        })
        .await;
        let node = api_node(&nats.node_url(), "node-a", &[]);
        let node_api = ApiClient::from_base(&node.base);
        wait_ready(&node_api).await;
        let alice = a.api.login("alice").await;
        ZonedCluster {
            nats,
            members: [a, b],
            node: node_api,
            alice,
            _node: node,
            dir,
        }
    }

    /// A token created on one process and revoked on the other reaches the
    /// node both times.
    async fn write_and_revoke(&self, round: usize) {
        let (made, revokes) = (&self.members[round % 2], &self.members[(round + 1) % 2]);
        let (token, secret) = made
            .api
            .create_token(&self.alice, &body(&format!("round {round}")))
            .await;
        wait_status(&self.node, &secret, 200, Duration::from_secs(10)).await;
        revoke(&revokes.api, &self.alice, &token).await;
        wait_status(&self.node, &secret, 401, Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_nothing_a_node_publishes_or_has_jetstream_ack_reaches_the_control_plane_and_writes_go_on()
 {
    let cluster = ZonedCluster::start().await;
    let (control, _) = as_control(&cluster.nats).await;
    let (first, _) = cluster.members[0]
        .api
        .create_token(&cluster.alice, &body("first"))
        .await;
    let made_up = enspace_core::secret::SessionSecret::generate();
    let targets = vec![
        enspace_nats::token_event_subject(first["id"].as_str().expect("id")),
        "$KV.ENSPACE_CONTROL_LEASE.writer".to_owned(),
        "$KV.ENSPACE_CONTROL_MEMBERS.cp-a".to_owned(),
        "$KV.ENSPACE_INDEX_ASSIGNMENT.partitions".to_owned(),
        format!(
            "$KV.ENSPACE_SESSIONS.{}",
            hex::encode(made_up.hash().as_bytes())
        ),
        "enspace.control.commands.cp-a".to_owned(),
        "enspace.control.commands.cp-b".to_owned(),
        enspace_nats::NOTICES_SUBJECT.to_owned(),
        // Where reads of a partition's request logs are asked.
        enspace_nats::usage_query_subject(3),
        "enspace.notifications.alice".to_owned(),
        enspace_nats::HEARTBEAT_SUBJECT.to_owned(),
        // What crosses between the accounts, as the nodes' account sees it:
        // the mirror's and the source's subjects.
        "$JS.control.API.CONSUMER.CREATE.ENSPACE_TOKEN_EVENTS".to_owned(),
        "$JS.FC.ENSPACE_TOKEN_EVENTS.x.y".to_owned(),
        "enspace.mirror.token-events.x".to_owned(),
        "enspace.source.requests.x".to_owned(),
        "$JS.FC.ENSPACE_REQUESTS.x.y".to_owned(),
    ];
    let (attacker, _) = as_node(&cluster.nats).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = flood(attacker, targets, stop.clone());

    // While it lasts, writes and revocations go on through either process.
    for round in 0..4 {
        cluster.write_and_revoke(round).await;
    }
    for member in &cluster.members {
        assert_eq!(
            member.api.get(&cluster.alice, "/v1/tokens").await.status(),
            200,
            "{} lists tokens",
            member.node_id
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(flooding.await.expect("flood") > 0);
    control_state_is_clean(&control).await;
    indexing_is_the_writers_assignment(&cluster).await;
    notices_are_out_of_reach(&cluster, &control).await;

    // A restarted process starts, and follows.
    let [a, mut b] = cluster.members;
    b.process.terminate();
    let key = cluster.dir.path().join("event-signing.key");
    let b = Member::start(
        &b.data,
        &key,
        &cluster.nats.tokens_url(),
        "cp-b",
        &EDGE_FLAGS,
    );
    eventually(Duration::from_secs(30), "cp-b back at a's head", || async {
        let head = a.head().await?;
        (b.head().await? == head).then_some(())
    })
    .await;
    assert_eq!(b.api.get(&cluster.alice, "/v1/tokens").await.status(), 200);
}

/// Both processes own and serve every partition of the request records, as
/// the writer assigned them (the shipped configuration lets the control
/// plane keep the assignment, and no node's publish changed it), and a call
/// through the node is in the request logs of both.
async fn indexing_is_the_writers_assignment(cluster: &ZonedCluster) {
    for member in &cluster.members {
        eventually(
            Duration::from_secs(30),
            "every partition served by both",
            || async {
                let view = member.cluster().await?;
                let owners = view["assignment"]["owners"].as_array()?;
                let all_by_both = owners.len() == 16
                    && owners.iter().all(|o| {
                        let mut ids: Vec<&str> = o
                            .as_array()
                            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        ids.sort_unstable();
                        ids == ["cp-a", "cp-b"]
                    });
                let served = view["members"]
                    .as_array()?
                    .iter()
                    .all(|m| m["serving"].as_array().is_some_and(|s| s.len() == 16));
                (all_by_both && served).then_some(())
            },
        )
        .await;
    }
    let (token, secret) = cluster.members[0]
        .api
        .create_token(&cluster.alice, &body("logged"))
        .await;
    wait_status(&cluster.node, &secret, 200, Duration::from_secs(10)).await;
    let id = token["id"].as_str().expect("id");
    for member in &cluster.members {
        eventually(
            Duration::from_secs(20),
            "the call in the request logs",
            || member.api.lists_a_call(&cluster.alice, &id),
        )
        .await;
    }
}

/// A node can neither hear the notices the processes share nor make a
/// consumer of their stream (in either account's API), while a notice is
/// shared: a decoy presented to cp-b, which cp-a then lists.
async fn notices_are_out_of_reach(cluster: &ZonedCluster, control: &jetstream::Context) {
    let (attacker, _) = as_node(&cluster.nats).await;
    let inbox = "_INBOX.enspace-node.notices";
    let mut pushed = attacker.subscribe(inbox).await.expect("subscribe");
    let mut direct = attacker
        .subscribe(enspace_nats::NOTICES_SUBJECT)
        .await
        .expect("subscribe");
    attacker.flush().await.expect("flush");
    let stream = enspace_nats::NOTICES_STREAM;
    for api in ["$JS.API", "$JS.control.API"] {
        let config = serde_json::json!({
            "durable_name": "squatter", "deliver_subject": inbox, "ack_policy": "none",
        });
        let request = serde_json::json!({"stream_name": stream, "config": config});
        for subject in [
            format!("{api}.CONSUMER.CREATE.{stream}"),
            format!("{api}.CONSUMER.CREATE.{stream}.squatter"),
            format!("{api}.CONSUMER.DURABLE.CREATE.{stream}.squatter"),
        ] {
            let _ = attacker.request(subject, request.to_string().into()).await;
        }
    }

    let [a, b] = &cluster.members;
    let res = a
        .api
        .post_json(
            &cluster.alice,
            "/v1/decoys",
            &serde_json::json!({"description": "canary"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let decoy: Value = res.json().await.expect("json");
    let secret = decoy["secret"].as_str().expect("secret");
    let answer = b
        .api
        .client
        .post(b.api.url("/v1/introspect"))
        .bearer_auth("test-internal-key")
        .form(&[("token", secret), ("client_ip", "192.0.2.77")])
        .send()
        .await
        .expect("introspect");
    assert_eq!(answer.status(), 200);
    eventually(
        Duration::from_secs(20),
        "cp-a lists the use cp-b saw",
        || async {
            let notes = a.api.notifications(&cluster.alice).await;
            notes
                .iter()
                .any(|n| n["kind"] == "decoy_used")
                .then_some(())
        },
    )
    .await;
    for (sub, what) in [
        (&mut pushed, "a pushed consumer"),
        (&mut direct, "the subject"),
    ] {
        let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(
            got.is_err(),
            "the node heard a notice through {what}: {got:?}"
        );
    }
    let notices = control
        .get_stream(stream)
        .await
        .expect("the notices stream");
    let mut names = notices.consumer_names();
    while let Some(name) = names.next().await {
        let name = name.expect("consumer name");
        assert!(
            ["notices-cp-a", "notices-cp-b"].contains(&name.as_str()),
            "a consumer not the processes' own: {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_forged_with_a_nodes_credentials_is_refused_by_every_process() {
    let cluster = ZonedCluster::start().await;
    let (control, _) = as_control(&cluster.nats).await;
    let made_up = enspace_core::secret::SessionSecret::generate();
    let key = hex::encode(made_up.hash().as_bytes());
    let record = rmp_serde::to_vec_named(
        &serde_json::json!({"user_id": "audra", "expires_at": "2099-01-01T00:00:00Z"}),
    )
    .expect("msgpack");

    let (attacker, own) = as_node(&cluster.nats).await;
    // A republish rule from the records into the sessions bucket, through
    // every JetStream API the node can name; then the record itself, there,
    // directly, and as the target of a publish ack.
    let mut contexts = vec![own];
    for prefix in ["$JS.control.API", "$JS.edge.API"] {
        let mut js = jetstream::with_prefix(attacker.clone(), prefix);
        js.set_timeout(Duration::from_secs(1));
        contexts.push(js);
    }
    for js in &contexts {
        let _ = js
            .update_stream(hostile_updates(enspace_nats::REQUESTS_STREAM).remove(0))
            .await;
    }
    let sessions_subject = format!("$KV.ENSPACE_SESSIONS.{key}");
    let _ = attacker
        .publish(format!("enspace.requests.{key}"), record.clone().into())
        .await;
    let _ = attacker
        .publish(sessions_subject.clone(), record.clone().into())
        .await;
    let _ = attacker
        .publish_with_reply(
            format!("enspace.requests.{key}"),
            sessions_subject,
            record.into(),
        )
        .await;
    attacker.flush().await.expect("flush");

    // A real sign-in on one process works on the other at once (the bucket
    // is read on a miss), and the forged session on neither.
    let real = cluster.members[0].api.login("bob").await;
    for member in &cluster.members {
        assert_eq!(member.api.get(&real, "/v1/me").await.status(), 200);
        let me = member.api.get(made_up.expose(), "/v1/me").await;
        assert_eq!(
            me.status(),
            401,
            "{} took the forged session",
            member.node_id
        );
    }
    assert!(
        holding(&control, "KV_ENSPACE_SESSIONS", "audra")
            .await
            .is_empty(),
        "the forged session is in the sessions bucket"
    );
}

#[tokio::test]
async fn forged_events_and_heartbeats_never_get_where_nodes_read_them() {
    let zoned = Zoned::start().await;
    let (control, edge) = as_control(&zoned.nats).await;
    let (observer, _) = as_node(&zoned.nats).await;
    let mut beats = observer
        .subscribe(enspace_nats::HEARTBEAT_SUBJECT)
        .await
        .expect("subscribe to heartbeats");
    observer.flush().await.expect("flush");

    let (attacker, own) = as_node(&zoned.nats).await;
    let republish = |source: &str, destination: &str| stream::Config {
        republish: Some(stream::Republish {
            source: source.into(),
            destination: destination.into(),
            headers_only: false,
        }),
        ..as_made(enspace_nats::REQUESTS_STREAM)
    };
    for config in [
        republish("enspace.requests.hb", enspace_nats::HEARTBEAT_SUBJECT),
        republish("enspace.requests.ev.>", "enspace.token-events.>"),
    ] {
        let _ = own.update_stream(config).await;
    }
    for subject in [
        "enspace.requests.hb",
        "enspace.requests.ev.01FORGED",
        enspace_nats::HEARTBEAT_SUBJECT,
        "enspace.token-events.01FORGED",
    ] {
        let _ = attacker.publish(subject, MARKER.into()).await;
    }
    attacker.flush().await.expect("flush");

    // Two heartbeats after the attack: whatever it sent has arrived.
    let mut seen = Vec::new();
    let mut after = 0;
    while after < 2 {
        let beat = tokio::time::timeout(Duration::from_secs(10), beats.next())
            .await
            .expect("a heartbeat within 10 s")
            .expect("subscription open");
        if enspace_core::signing::Heartbeat::open(&beat.payload, None).is_ok() {
            after += 1;
        }
        seen.push(beat.payload);
    }
    assert!(
        !seen
            .iter()
            .any(|p| String::from_utf8_lossy(p).contains(MARKER)),
        "a forged heartbeat reached the nodes' subject"
    );
    for js in [&control, &edge] {
        let found = holding(js, enspace_nats::TOKEN_EVENTS_STREAM, MARKER).await;
        assert!(found.is_empty(), "a forged event at {found:?}");
    }
    revoke(&zoned.svc, &zoned.alice, &zoned.token).await;
    wait_status(&zoned.node, &zoned.secret, 401, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_node_listening_on_every_inbox_hears_nothing_of_the_control_plane_or_another_node() {
    let nats = NatsServer::shipped_with_node_users(&["api-node-2"]);
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats.tokens_url(), &EDGE_FLAGS);
    let svc = ApiClient::from_base(&service.base);
    wait_ready(&svc).await;

    let (attacker, _) = as_node(&nats).await;
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    for subject in [
        ">",
        "_INBOX.>",
        "_INBOX.api-node-2.>",
        "_INBOX.enspace-tokens.>",
        "_INBOX.enspace-node.>",
        "_R_.>",
        "$JS.>",
        "$KV.>",
        "enspace.>",
        "enspace.control.usage.3",
        "enspace.source.requests.>",
        "enspace.mirror.token-events.>",
    ] {
        let mut sub = attacker.subscribe(subject).await.expect("subscribe");
        let heard = heard.clone();
        tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                heard
                    .lock()
                    .expect("lock")
                    .push(message.subject.to_string());
            }
        });
    }
    attacker.flush().await.expect("flush");

    // The other node, with its own user, and the control plane at work.
    let url = nats.url_as("api-node-2", &node_user_password("api-node-2"));
    let other = api_node(&url, "api-node-2", &[]);
    let node = ApiClient::from_base(&other.base);
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (token, secret) = svc.create_token(&alice, &body("overheard?")).await;
    wait_status(&node, &secret, 200, Duration::from_secs(10)).await;
    for _ in 0..5 {
        assert_eq!(status(&node, &secret).await, 200);
    }
    let id = token["id"].as_str().expect("id");
    eventually(
        Duration::from_secs(30),
        "the calls in Request Logs",
        || async {
            let page: Value = svc
                .get(&alice, &format!("/v1/tokens/{id}/requests"))
                .await
                .json()
                .await
                .ok()?;
            (page["requests"].as_array()?.len() >= 6).then_some(())
        },
    )
    .await;
    revoke(&svc, &alice, &token).await;
    wait_status(&node, &secret, 401, Duration::from_secs(10)).await;
    // Control-plane processes asking one another for request logs.
    let control = enspace_nats::connect(&nats.tokens_url(), "test-reader")
        .await
        .expect("the control user connects");
    control
        .publish(enspace_nats::usage_query_subject(3), "a read".into())
        .await
        .expect("publish");
    control.flush().await.expect("flush");

    // What the attacker may hear, it hears: the replies to another client
    // of the same user (its own inbox prefix). Nothing else.
    let (_, same_user) = as_node(&nats).await;
    same_user
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("the node user reads the mirror's info");
    eventually(Duration::from_secs(5), "the same user's reply", || async {
        let heard = heard.lock().expect("lock");
        heard
            .iter()
            .any(|s| s.starts_with("_INBOX.enspace-node."))
            .then_some(())
    })
    .await;
    let others: Vec<String> = heard
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| !s.starts_with("_INBOX.enspace-node."))
        .cloned()
        .collect();
    assert_eq!(
        others,
        Vec::<String>::new(),
        "a node's credentials overheard others"
    );
}

#[tokio::test]
async fn a_consumer_a_node_makes_delivers_nothing_into_the_control_plane_and_a_lasting_one_is_deleted()
 {
    let nats = NatsServer::shipped();
    let data = tempfile::tempdir().expect("temp dir");
    crate::support::distributed::remember_event_key(data.path(), &nats.url(), &[]);
    let mut args = vec![
        "serve",
        "--data",
        data.path().to_str().expect("utf-8"),
        "--nats-url",
    ];
    let tokens_url = nats.tokens_url();
    args.push(&tokens_url);
    args.extend_from_slice(&EDGE_FLAGS);
    let serve = EnspaceProcess::start(&args, &[]);
    let svc = ApiClient::from_base(&serve.base);
    wait_ready(&svc).await;
    let node_process = api_node(&nats.node_url(), "node-a", &[]);
    let node = ApiClient::from_base(&node_process.base);
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (token, secret) = svc.create_token(&alice, &body("delivered?")).await;
    wait_status(&node, &secret, 200, Duration::from_secs(10)).await;

    // In the control plane's account, someone listens where the attacker
    // aims, so that a delivery there would have somewhere to go (a push
    // consumer delivers only where a client subscribed to that very
    // subject).
    let observer = enspace_nats::connect(&nats.tokens_url(), "observer")
        .await
        .expect("connect");
    let mut heard = observer
        .subscribe("enspace.control.observed")
        .await
        .expect("subscribe");
    let mut heard_inbox = observer
        .subscribe("_INBOX.observed.1")
        .await
        .expect("subscribe");
    observer.flush().await.expect("flush");

    let (attacker, own) = as_node(&nats).await;
    let mirror = own
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("the mirror");
    for deliver in [
        "enspace.control.observed",
        "_INBOX.observed.1",
        "$KV.ENSPACE_SESSIONS.x",
        "$KV.ENSPACE_CONTROL_LEASE.writer",
        "enspace.token-events.x",
        "$JS.control.API.CONSUMER.CREATE.ENSPACE_TOKEN_EVENTS",
        "$JS.FC.ENSPACE_TOKEN_EVENTS.x.y",
        "enspace.mirror.token-events.x",
    ] {
        for headers_only in [false, true] {
            let _ = mirror
                .create_consumer(consumer::push::Config {
                    deliver_subject: deliver.to_owned(),
                    headers_only,
                    ..Default::default()
                })
                .await;
        }
        // The consumer creation the mirror uses, asked for directly.
        let request = serde_json::json!({
            "stream_name": enspace_nats::TOKEN_EVENTS_STREAM,
            "config": {"deliver_subject": deliver, "ack_policy": "none"},
        });
        let _ = attacker
            .request(
                "$JS.control.API.CONSUMER.CREATE.ENSPACE_TOKEN_EVENTS",
                request.to_string().into(),
            )
            .await;
    }

    // Everything keeps working meanwhile: a write, a revocation, the
    // control plane's own API node, logging from both nodes.
    let (_, other) = svc.create_token(&alice, &body("after")).await;
    wait_status(&node, &other, 200, Duration::from_secs(10)).await;
    revoke(&svc, &alice, &token).await;
    wait_status(&node, &secret, 401, Duration::from_secs(10)).await;
    wait_status(&svc, &other, 200, Duration::from_secs(10)).await;
    // serve's own API node answers `RECORDS` as any node does.
    assert_eq!(
        svc.client
            .get(svc.url(RECORDS))
            .bearer_auth(&other)
            .send()
            .await
            .expect("serve's node")
            .status(),
        200
    );
    for (sub, what) in [(&mut heard, "commands"), (&mut heard_inbox, "an inbox")] {
        let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(
            got.is_err(),
            "a node's consumer delivered into {what}: {got:?}"
        );
    }
    let (control, edge) = as_control(&nats).await;
    control_state_is_clean(&control).await;

    // Nor can a node hold the mirror's consumers for good (durable ones, or
    // pushing ones): the control plane deletes what no node's feed makes.
    let _ = mirror
        .create_consumer(consumer::pull::Config {
            durable_name: Some("squatter".into()),
            ..Default::default()
        })
        .await;
    let mirror = edge
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("the mirror");
    eventually(
        Duration::from_secs(60),
        "no foreign consumer on the mirror",
        || async {
            let mut consumers = mirror.consumers();
            while let Some(info) = consumers.next().await {
                let config = info.ok()?.config;
                if config.durable_name.is_some() || config.deliver_subject.is_some() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    wait_status(&node, &other, 200, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_control_plane_makes_again_whatever_of_the_nodes_streams_is_lost() {
    let zoned = Zoned::start().await;
    let (control, edge) = as_control(&zoned.nats).await;

    // The token events stream made again (refilled from the log): the
    // nodes' mirror follows the new one.
    control
        .delete_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("delete the token events stream");
    let (later_token, later) = zoned
        .svc
        .create_token(&zoned.alice, &body("after the refill"))
        .await;
    wait_status(&zoned.node, &later, 200, Duration::from_secs(30)).await;
    revoke(&zoned.svc, &zoned.alice, &zoned.token).await;
    wait_status(&zoned.node, &zoned.secret, 401, Duration::from_secs(30)).await;
    let origin = shape(&control, enspace_nats::TOKEN_EVENTS_STREAM).await;
    let mirror = edge
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("the mirror");
    assert_eq!(
        mirror
            .cached_info()
            .config
            .metadata
            .get(enspace_nats::edge::ORIGIN_KEY),
        Some(&origin.created),
        "the mirror is of today's origin"
    );

    // The mirror itself lost: made again.
    edge.delete_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("delete the mirror");
    let (_, third) = zoned
        .svc
        .create_token(&zoned.alice, &body("after the mirror"))
        .await;
    wait_status(&zoned.node, &third, 200, Duration::from_secs(30)).await;

    // The intake lost: made again, and records flow into Request Logs.
    edge.delete_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("delete the intake");
    let zoned = Zoned {
        token: later_token,
        secret: later,
        ..zoned
    };
    zoned.logging_goes_on().await;
}

/// With the shipped configuration, a control-plane process answers
/// another's read of the request logs, however many messages the answer
/// takes, and a node's credentials get no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_processes_answer_one_anothers_log_reads_and_a_node_gets_none() {
    use enspace_usage::RequestIndex;
    use enspace_usage::index::Upper;
    use enspace_usage::ownership::Ownership;
    use enspace_usage::reads::{UsageReads, serve_queries, wire};

    let nats = NatsServer::shipped();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let index_a = RequestIndex::open_in(dir_a.path()).expect("index");
    let token = ulid::Ulid::new();
    // A thousand records as long as a node sends them: over 1 MiB.
    let records: Vec<enspace_core::RequestRecord> = (0..1000)
        .map(|i| enspace_core::RequestRecord {
            id: ulid::Ulid::new(),
            token_id: token,
            user_id: "alice".into(),
            at: jiff::Timestamp::from_millisecond(1_790_000_000_000 + i).expect("ts"),
            node: "node-1".into(),
            method: "GET".into(),
            path: format!("/{}", "x".repeat(1023)),
            path_truncated: false,
            workspace: Some("acme".into()),
            status: 200,
            duration_ms: 1.0,
            client_ip: "10.0.0.1".into(),
            user_agent: Some("u".repeat(256)),
        })
        .collect();
    index_a
        .ingest(&records, jiff::Timestamp::UNIX_EPOCH)
        .expect("ingest");
    let cp = |name: &'static str| {
        let url = nats.tokens_url();
        async move {
            enspace_nats::connect(&url, name)
                .await
                .expect("the control user connects")
        }
    };
    tokio::spawn(serve_queries(
        cp("cp-a").await,
        index_a.clone(),
        Ownership::all(),
    ));
    let b = UsageReads::new(
        RequestIndex::open_in(dir_b.path()).expect("index"),
        Ownership::partitioned(),
    );
    b.connect(cp("cp-b").await);
    let page = eventually(Duration::from_secs(10), "cp-b reads cp-a's page", || {
        let b = b.clone();
        async move {
            b.page(token, 0, Upper::To(u64::MAX), wire::MAX_PAGE)
                .await
                .ok()
        }
    })
    .await;
    assert_eq!(page.records.len(), 1000);
    let (here, _) = index_a
        .query(token, 0, Upper::To(u64::MAX), wire::MAX_PAGE)
        .expect("query");
    assert_eq!(page.records, here);

    let (attacker, _) = as_node(&nats).await;
    let asked = wire::encode_query(&wire::Query::Page {
        token,
        from_ms: 0,
        upper: Upper::To(u64::MAX),
        limit: 10,
    })
    .expect("encode");
    let subject =
        enspace_nats::usage_query_subject(enspace_core::record_batch::partition_of(&token));
    let answered = attacker.request(subject, asked.into()).await;
    assert!(answered.is_err(), "a node got an answer: {answered:?}");
}
