//! Several control-plane processes (`enspace tokens --cluster`) on one NATS
//! or a 3-server NATS cluster: one writes, holding a lease; any answers;
//! none loses an acknowledged write or forks the chain.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enspace_cluster::commit::StreamCommit;
use enspace_cluster::{Part, Role};
use enspace_core::events::StoredEvent;
use enspace_core::fixtures;
use enspace_core::{EventSigner, SecretHash};
use enspace_store::commands::{Command, CommandError, CreateToken};
use enspace_store::writer::Commit;
use serde_json::Value;

use crate::support::app::ApiClient;
use crate::support::cluster::{
    MANY_TOKENS, Member, NatsCluster, audit_export, by_id, converge, other, pair, writer,
};
use crate::support::distributed::{RECORDS, api_node, body, wait_ready, wait_status};
use crate::support::nats::EDGE_FLAGS;
use crate::support::{EnspaceProcess, NatsServer, eventually};

/// Two API nodes on `url`, ready, with their clients.
async fn two_api_nodes(url: &str) -> (Vec<EnspaceProcess>, Vec<ApiClient>) {
    let nodes = vec![api_node(url, "n1", &[]), api_node(url, "n2", &[])];
    let apis: Vec<ApiClient> = nodes
        .iter()
        .map(|n| ApiClient::from_base(&n.base))
        .collect();
    for api in &apis {
        wait_ready(api).await;
    }
    (nodes, apis)
}

/// What the clients were told succeeded.
#[derive(Default)]
struct Acked {
    created: Mutex<Vec<(String, String)>>,
    revoked: Mutex<HashSet<String>>,
}

/// Four clients creating and revoking through both processes until `stop`.
fn load(
    apis: Vec<ApiClient>,
    session: String,
    acked: Arc<Acked>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|client| {
            let (apis, session, acked, stop) =
                (apis.clone(), session.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut mine: Vec<String> = Vec::new();
                let mut turn = client;
                while !stop.load(Ordering::Relaxed) {
                    turn += 1;
                    let api = &apis[turn % apis.len()];
                    if turn % 3 == 0 && !mine.is_empty() {
                        let id = mine.remove(0);
                        let res = api
                            .client
                            .delete(api.url(&format!("/v1/tokens/{id}")))
                            .bearer_auth(&session)
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        match res {
                            Ok(r) if r.status() == 204 => {
                                acked.revoked.lock().expect("lock").insert(id);
                            }
                            _ => mine.push(id),
                        }
                        continue;
                    }
                    let res = api
                        .client
                        .post(api.url("/v1/tokens"))
                        .bearer_auth(&session)
                        .json(&body(&format!("client {client}")))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 201 => {
                            let body: Value = r.json().await.expect("created body");
                            let id = body["token"]["id"].as_str().expect("id").to_owned();
                            let secret = body["secret"].as_str().expect("secret").to_owned();
                            acked
                                .created
                                .lock()
                                .expect("lock")
                                .push((id.clone(), secret));
                            mine.push(id);
                        }
                        Ok(r) => {
                            let status = r.status().as_u16();
                            assert!(
                                status == 503 && r.headers().contains_key("retry-after"),
                                "a create answered {status}"
                            );
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect()
}

/// Alice signed in, and [`load`] through both members.
async fn load_both(
    a: &Member,
    b: &Member,
) -> (
    String,
    Arc<Acked>,
    Arc<AtomicBool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let session = a.api.login("alice").await;
    let acked = Arc::new(Acked::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(
        vec![a.api.clone(), b.api.clone()],
        session.clone(),
        acked.clone(),
        stop.clone(),
    );
    (session, acked, stop, clients)
}

/// Every acknowledged change is there on `member`.
async fn holds_every_acked_change(member: &Member, session: &str, acked: &Acked) {
    let created = acked.created.lock().expect("lock").clone();
    let revoked = acked.revoked.lock().expect("lock").clone();
    let res = member.api.get(session, "/v1/tokens").await;
    let status = res.status();
    let list: Value = res.json().await.expect("list");
    assert_eq!(status, 200, "{} lists the tokens: {list}", member.node_id);
    let listed: std::collections::HashMap<String, bool> = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().expect("id").to_owned(),
                !t["revoked_at"].is_null(),
            )
        })
        .collect();
    for (id, _) in &created {
        let is_revoked = listed.get(id).unwrap_or_else(|| {
            panic!(
                "{} does not list the acknowledged token {id}",
                member.node_id
            )
        });
        if revoked.contains(id) {
            assert!(
                is_revoked,
                "{} shows the acknowledged revocation of {id} undone",
                member.node_id
            );
        }
    }
}

/// Creates a token through `member`, retrying while the cluster answers 503.
async fn create_through(
    member: &Member,
    session: &str,
    what: &str,
    all: [&Member; 2],
) -> (Value, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = member
            .api
            .post_json(session, "/v1/tokens", &body(what))
            .await;
        if res.status() == 201 {
            let created: Value = res.json().await.expect("body");
            let secret = created["secret"].as_str().expect("secret").to_owned();
            return (created["token"].clone(), secret);
        }
        assert_eq!(res.status(), 503);
        if Instant::now() > deadline {
            for m in all {
                eprintln!("--- {} ---\n{}", m.node_id, m.process.logs());
            }
            panic!("no write through {} for 30 s", member.node_id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_writer_under_load_loses_no_acknowledged_change_and_writes_resume() {
    let nats = NatsCluster::start(3).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &["--stream-replicas", "3"]).await;
    let (_nodes, node_apis) = two_api_nodes(&nats.url()).await;
    let (session, acked, stop, clients) = load_both(&a, &b).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let old = writer(&[&a, &b]).await;
    let (mut victim, survivor) = if a.node_id == old { (a, b) } else { (b, a) };
    let before = acked.created.lock().expect("lock").len();
    victim.process.kill();
    let killed = Instant::now();
    let resumed = eventually(
        Duration::from_secs(20),
        "a write after the kill",
        || async {
            (acked.created.lock().expect("lock").len() > before + 4).then(|| killed.elapsed())
        },
    )
    .await;
    // Writes that were in flight at the kill may land just after it; the
    // first ones after the new writer took over are what count.
    let new = writer(&[&survivor]).await;
    assert_ne!(new, old, "the survivor took over");
    assert!(
        resumed < Duration::from_secs(10),
        "writes resumed after {resumed:?}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    assert!(
        !acked.revoked.lock().expect("lock").is_empty(),
        "the clients revoked too"
    );

    // The killed process comes back as a follower and catches up.
    let key = dir.path().join("event-signing.key");
    let back = Member::start(
        &victim.data,
        &key,
        &nats.url(),
        &victim.node_id,
        &MANY_TOKENS,
    );
    victim.process.kill();
    converge(&back, &survivor).await;
    for member in [&back, &survivor] {
        holds_every_acked_change(member, &session, &acked).await;
    }
    let created = acked.created.lock().expect("lock").clone();
    let revoked = acked.revoked.lock().expect("lock").clone();
    for api in &node_apis {
        for (id, secret) in &created {
            let want = if revoked.contains(id) { 401 } else { 200 };
            wait_status(api, secret, want, Duration::from_secs(10)).await;
        }
    }

    let (mut back, mut survivor) = (back, survivor);
    back.process.terminate();
    survivor.process.terminate();
    let (x, y) = (audit_export(&back), audit_export(&survivor));
    assert!(x.lines().count() >= created.len());
    assert_eq!(x, y, "both processes hold the same history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_paused_past_its_lease_cannot_append_and_the_chain_does_not_fork() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let session = a.api.login("alice").await;
    let old = writer(&[&a, &b]).await;
    let (paused, other) = (by_id([&a, &b], &old), other([&a, &b], &old));
    paused.pause();
    // The other takes over once the lease expires, and writes.
    let mut written = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while written.len() < 5 {
        assert!(
            Instant::now() < deadline,
            "the other process never took over"
        );
        let res = other
            .api
            .post_json(&session, "/v1/tokens", &body("while paused"))
            .await;
        if res.status() == 201 {
            let created: Value = res.json().await.expect("body");
            written.push(created["token"]["id"].as_str().expect("id").to_owned());
        }
    }
    paused.resume();
    // Straight away, the resumed process is asked to write: it must not
    // append after its stale head.
    let mut answers = Vec::new();
    for i in 0..5 {
        let res = paused
            .api
            .post_json(&session, "/v1/tokens", &body(&format!("after resume {i}")))
            .await;
        let status = res.status().as_u16();
        assert!(status == 201 || status == 503, "a create answered {status}");
        if status == 201 {
            let created: Value = res.json().await.expect("body");
            answers.push(created["token"]["id"].as_str().expect("id").to_owned());
        }
    }
    let head = converge(&a, &b).await;
    assert_eq!(
        head as usize,
        5 + answers.len(),
        "every acknowledged creation, once each"
    );
    for id in written.iter().chain(&answers) {
        for member in [&a, &b] {
            assert_eq!(
                member
                    .api
                    .get(&session, &format!("/v1/tokens/{id}"))
                    .await
                    .status(),
                200
            );
        }
    }
    let view = other.cluster().await.expect("cluster");
    assert_eq!(view["writer"], other.node_id.as_str());
    let (mut a, mut b) = (a, b);
    a.process.terminate();
    b.process.terminate();
    let (x, y) = (audit_export(&a), audit_export(&b));
    assert_eq!(x, y, "one history, not two");
    for data in [&a.data, &b.data] {
        let (code, _) =
            crate::support::process::audit(&["verify", "--data", data.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "the chain verifies");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_refuses_an_append_after_a_stale_head_and_the_writer_stops_writing() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    enspace_nats::ensure_stream(&js, enspace_nats::token_events_config())
        .await
        .expect("stream");
    let role = Role::default();
    role.set(Part::Writer(7));
    let data = tempfile::tempdir().expect("temp dir");
    let store = enspace_store::Store::open(data.path()).expect("store");
    let (keys, _) =
        enspace_store::keyring::Keyring::open(&store, &data.path().join("k")).expect("keys");
    let repairer = enspace_cluster::event_stream::repair::Repairer::new(
        store.outbox_state.clone(),
        Duration::from_secs(10),
        Default::default(),
    );
    let commit = StreamCommit::new(
        role.clone(),
        js.clone(),
        keys,
        tokio::runtime::Handle::current(),
        &store,
        repairer,
    );
    let first = fixtures::created(1, &SecretHash([1; 32])).build();
    let second = fixtures::created(2, &SecretHash([2; 32])).build();
    let stored_first = StoredEvent::new(enspace_core::events::GENESIS_HASH, &first);
    let stored_second = StoredEvent::new(stored_first.hash, &second);
    let commit = Arc::new(commit);
    let run = |c: Arc<StreamCommit>, stored: StoredEvent, envelope| {
        tokio::task::spawn_blocking(move || {
            let stored = c.store(&[&stored], &[envelope]);
            (stored.count, stored.error)
        })
    };
    let (count, error) = run(commit.clone(), stored_first.clone(), first.clone())
        .await
        .expect("store");
    assert_eq!((count, error), (1, None));
    // A writer whose head is stale appends another event 1, after nothing:
    // a different event (its own id) in the place the stream has filled.
    let stale = fixtures::created(1, &SecretHash([9; 32])).build();
    let stored_stale = StoredEvent::new(enspace_core::events::GENESIS_HASH, &stale);
    let (count, error) = run(commit.clone(), stored_stale, stale)
        .await
        .expect("store");
    assert_eq!(count, 0);
    assert_eq!(error, Some(CommandError::NotWriter));
    assert_eq!(
        role.part(),
        Part::Preparing(7),
        "it stops writing until it has caught up"
    );
    assert!(!commit.is_writer());
    role.set(Part::Writer(7));
    let (count, _) = run(commit, stored_second, second).await.expect("store");
    assert_eq!(count, 1, "the next event after the stream's head is stored");
    let info = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone();
    assert_eq!(info.state.messages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_one_process_works_on_the_other_and_signing_out_ends_it_on_both() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let session = a.api.login("alice").await;
    let (token, _) = b.api.create_token(&session, &body("made on b")).await;
    let id = token["id"].as_str().expect("id");
    let list: Value = a
        .api
        .get(&session, "/v1/tokens")
        .await
        .json()
        .await
        .expect("list");
    assert!(
        list["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .any(|t| t["id"] == id),
        "a lists the token created through b, at once"
    );
    let res = b.api.delete(&session, "/v1/session").await;
    assert_eq!(res.status(), 204);
    eventually(Duration::from_secs(5), "the session ended on a", || async {
        (a.api.get(&session, "/v1/tokens").await.status() == 401).then_some(())
    })
    .await;
    assert_eq!(b.api.get(&session, "/v1/tokens").await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_shipped_nats_permissions_a_follower_forwards_and_shares_sessions() {
    let nats = NatsServer::shipped();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.tokens_url(), &EDGE_FLAGS).await;
    let leader = writer(&[&a, &b]).await;
    let follower = other([&a, &b], &leader);
    let session = by_id([&a, &b], &leader).api.login("alice").await;
    let (token, secret) = follower
        .api
        .create_token(&session, &body("forwarded"))
        .await;
    let node = api_node(&nats.node_url(), "node", &[]);
    let node_api = ApiClient::from_base(&node.base);
    wait_ready(&node_api).await;
    wait_status(&node_api, &secret, 200, Duration::from_secs(10)).await;
    crate::support::distributed::revoke(&follower.api, &session, &token).await;
    wait_status(&node_api, &secret, 401, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_the_writer_is_read_at_once_on_a_follower_and_a_revoked_token_never_introspects_active()
 {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let leader = writer(&[&a, &b]).await;
    let (writes, reads) = (by_id([&a, &b], &leader), other([&a, &b], &leader));
    let session = writes.api.login("alice").await;
    for i in 0..30 {
        let (token, secret) = writes
            .api
            .create_token(&session, &body(&format!("at once {i}")))
            .await;
        let id = token["id"].as_str().expect("id");
        assert_eq!(
            reads
                .api
                .get(&session, &format!("/v1/tokens/{id}"))
                .await
                .status(),
            200,
            "the follower shows a token the writer just created"
        );
        crate::support::distributed::revoke(&writes.api, &session, &token).await;
        let introspection = reads.api.introspect(&[("token", secret.as_str())]).await;
        assert_eq!(
            introspection["active"], false,
            "revoked on the writer, inactive on the follower at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nats_store_is_refilled_from_the_process_holding_the_most_never_from_a_lagging_one()
{
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, mut b) = pair(dir.path(), &nats.url(), &[]).await;
    assert_eq!(writer(&[&a, &b]).await, "cp-a");
    let session = a.api.login("alice").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (token, _) = a
            .api
            .create_token(&session, &body(&format!("both {i}")))
            .await;
        ids.push(token["id"].as_str().expect("id").to_owned());
    }
    converge(&a, &b).await;
    // b stops; a goes on alone: b's log is now behind a's.
    b.process.terminate();
    for i in 0..3 {
        let (token, _) = a
            .api
            .create_token(&session, &body(&format!("a alone {i}")))
            .await;
        ids.push(token["id"].as_str().expect("id").to_owned());
    }
    // The NATS store is lost (stream, lease, sessions, members), and b is back.
    nats.wipe_store_and_restart();
    let key = dir.path().join("event-signing.key");
    let b = Member::start(&b.data, &key, &nats.url(), "cp-b", &MANY_TOKENS);
    let head = converge(&a, &b).await;
    assert_eq!(
        head, 6,
        "the stream was refilled from a's six events, not b's three"
    );
    let session = b.api.login("alice").await;
    for id in &ids {
        for member in [&a, &b] {
            assert_eq!(
                member
                    .api
                    .get(&session, &format!("/v1/tokens/{id}"))
                    .await
                    .status(),
                200,
                "{} holds {id}",
                member.node_id
            );
        }
    }
    b.api.create_token(&session, &body("after the loss")).await;
    converge(&a, &b).await;
    let (mut a, mut b) = (a, b);
    a.process.terminate();
    b.process.terminate();
    assert_eq!(audit_export(&a), audit_export(&b), "one history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_garbled_forwarded_command_is_answered_with_an_error_and_changes_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let leader = writer(&[&a, &b]).await;
    let head = by_id([&a, &b], &leader).head().await.expect("head");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let subject = format!("enspace.control.commands.{leader}");
    // A well-formed command for alice with a secret the forger knows, sealed
    // with a key that is not the cluster's: NATS access alone makes nothing.
    let forged = Command::CreateToken(CreateToken {
        token_id: ulid::Ulid::nil(),
        actor: "alice".into(),
        description: "forged".into(),
        expiration: enspace_core::Expiration::Never,
        scopes: vec![enspace_core::Scope::Read],
        workspaces: vec!["acme".into()],
        secret_hash: SecretHash([7; 32]),
        allowed_cidrs: Vec::new(),
        not_before: None,
        self_rotate: false,
        decoy: false,
    });
    let forged = enspace_cluster::forward::seal(&forged, &EventSigner::generate()).expect("sealed");
    let garbage: [&[u8]; 5] = [
        b"",
        b"\xc1",
        b"not msgpack at all",
        &[0x92, 0x01, 0x02],
        &forged,
    ];
    for garbage in garbage {
        let reply = client
            .request(subject.clone(), garbage.to_vec().into())
            .await
            .expect("an answer");
        let answer: Result<Value, CommandError> =
            rmp_serde::from_slice(&reply.payload).expect("an answer it can read");
        assert!(
            matches!(answer, Err(CommandError::Unavailable(_))),
            "{answer:?}"
        );
    }
    assert_eq!(
        by_id([&a, &b], &leader).head().await,
        Some(head),
        "nothing recorded"
    );
    let session = a.api.login("alice").await;
    b.api.create_token(&session, &body("still writes")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_writer_vanished_answers_503_not_a_hang_and_the_writer_never_carries_it_out_later()
 {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &["--lease-ttl", "30s"]).await;
    let session = b.api.login("alice").await;
    let old = writer(&[&a, &b]).await;
    let (gone, follower) = (by_id([&a, &b], &old), other([&a, &b], &old));
    gone.pause();
    let asked = Instant::now();
    let res = follower
        .api
        .client
        .post(follower.api.url("/v1/tokens"))
        .bearer_auth(&session)
        .json(&body("nobody writes"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer, not a hang");
    // The command's time (at most 5 s), then the time a writer that decided
    // it just then would take to store it (2.5 s): generous on a busy machine.
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "answered after {:?}",
        asked.elapsed()
    );
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let problem: Value = res.json().await.expect("problem");
    assert_eq!(problem["code"], "writer_unavailable");
    // Reads still work on the follower.
    assert_eq!(follower.api.get(&session, "/v1/tokens").await.status(), 200);
    // Resumed within its lease, the writer finds the forwarded copies it
    // was sent while paused: their time has passed, so it refuses them.
    gone.resume();
    let (token, _) = create_through(follower, &session, "after resume", [&a, &b]).await;
    converge(&a, &b).await;
    let list: Value = follower
        .api
        .get(&session, "/v1/tokens")
        .await
        .json()
        .await
        .expect("list");
    let descriptions: Vec<&str> = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["description"].as_str())
        .collect();
    assert_eq!(
        descriptions,
        ["after resume"],
        "the creation answered 503 was never carried out"
    );
    assert_eq!(list["tokens"][0]["id"], token["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_with_another_lease_ttl_than_the_cluster_refuses_to_start() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("event-signing.key");
    let a = Member::start(&dir.path().join("a"), &key, &nats.url(), "cp-a", &[]);
    writer(&[&a]).await;
    let out = tokio::task::spawn_blocking({
        let (data, key, url) = (dir.path().join("b"), key.clone(), nats.url());
        move || {
            std::process::Command::new(crate::support::process::binary())
                .args([
                    "tokens",
                    "--cluster",
                    "--node-id",
                    "cp-b",
                    "--listen",
                    "127.0.0.1:0",
                ])
                .arg("--data")
                .arg(&data)
                .arg("--event-signing-key")
                .arg(&key)
                .args(["--nats-url", &url, "--lease-ttl", "5s"])
                .output()
                .expect("run enspace")
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("it exits")
        .expect("joined");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--lease-ttl is 5s here but 2s"), "{said}");
    assert_eq!(writer(&[&a]).await, "cp-a", "the cluster goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_view_is_for_operators_and_auditors_only() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let leader = writer(&[&a, &b]).await;
    let url = a.api.url("/v1/cluster");
    let http = &a.api.client;
    assert_eq!(http.get(&url).send().await.expect("get").status(), 401);
    assert_eq!(
        http.get(&url)
            .bearer_auth("wrong-key")
            .send()
            .await
            .expect("get")
            .status(),
        401
    );
    let alice = a.api.login("alice").await;
    assert_eq!(a.api.get(&alice, "/v1/cluster").await.status(), 403);
    let auditor = a.api.login("audra").await;
    let res = a.api.get(&auditor, "/v1/cluster").await;
    assert_eq!(res.status(), 200);
    let view: Value = res.json().await.expect("view");
    assert_eq!(view["writer"], leader.as_str());
    assert!(view["term"].as_u64().expect("term") > 0);
    let ids: Vec<&str> = view["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["node_id"].as_str())
        .collect();
    assert_eq!(ids, ["cp-a", "cp-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_one_of_three_nats_servers_loses_no_write_and_revocations_and_records_still_flow() {
    let mut nats = NatsCluster::start(3).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &["--stream-replicas", "3"]).await;
    let (_nodes, node_apis) = two_api_nodes(&nats.url()).await;
    let (session, acked, stop, clients) = load_both(&a, &b).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = acked.created.lock().expect("lock").len();
    nats.kill(0);
    let killed = Instant::now();
    while acked.created.lock().expect("lock").len() <= before + 4 {
        // A NATS server that led the streams takes their leadership with it;
        // JetStream elects new leaders within its election timeouts (4-9 s).
        if killed.elapsed() > Duration::from_secs(30) {
            for m in [&a, &b] {
                eprintln!("--- {} ---\n{}", m.node_id, m.process.logs());
            }
            panic!("no writes within 30 s of losing a NATS server");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "writes resumed {:?} after a NATS server was killed",
        killed.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    // Changes go on after the loss.
    let (live, live_secret) = create_through(&b, &session, "after the loss", [&a, &b]).await;
    let (doomed, doomed_secret) =
        create_through(&a, &session, "revoked after the loss", [&a, &b]).await;
    for api in &node_apis {
        wait_status(api, &live_secret, 200, Duration::from_secs(30)).await;
    }
    let id = doomed["id"].as_str().expect("id");
    eventually(
        Duration::from_secs(30),
        "a revocation after the loss",
        || async {
            let status = b
                .api
                .delete(&session, &format!("/v1/tokens/{id}"))
                .await
                .status();
            assert!(
                status == 204 || status == 503,
                "a revocation answered {status}"
            );
            (status == 204).then_some(())
        },
    )
    .await;
    for api in &node_apis {
        wait_status(api, &doomed_secret, 401, Duration::from_secs(30)).await;
    }
    converge(&a, &b).await;
    for member in [&a, &b] {
        holds_every_acked_change(member, &session, &acked).await;
    }
    // A request made after the loss is in the request logs of both processes.
    let id = live["id"].as_str().expect("id");
    for member in [&a, &b] {
        eventually(Duration::from_secs(30), "the record indexed", || async {
            let res = member
                .api
                .get(&session, &format!("/v1/tokens/{id}/requests"))
                .await;
            let body: Value = res.json().await.ok()?;
            body["requests"]
                .as_array()?
                .iter()
                .any(|r| r["path"] == RECORDS)
                .then_some(())
        })
        .await;
    }
}
