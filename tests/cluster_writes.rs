//! Writes reaching a control-plane process that is not the writer: each is
//! carried out at most once and answered `201` exactly when it happened,
//! whatever happens to the reply (someone else answers first, a stream
//! acknowledges the request, the writer pauses), and during an election it
//! waits for the new writer rather than failing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::support::cluster::{MANY_TOKENS, Member, by_id, converge, other, pair, writer};
use crate::support::distributed::{body, metric};
use crate::support::{NatsServer, assert_problem, eventually};

/// Whether `secret` introspects as active on `member`.
async fn active_on(member: &Member, secret: &str) -> bool {
    let answer = member.api.introspect(&[("token", secret)]).await;
    answer["active"] == true
}

/// The descriptions of the tokens `session`'s user holds, as `member` lists them.
async fn descriptions(member: &Member, session: &str) -> Vec<String> {
    let list: Value = member
        .api
        .get(session, "/v1/tokens")
        .await
        .json()
        .await
        .expect("list");
    list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["description"].as_str().map(str::to_owned))
        .collect()
}

/// Creates a token through `member`; `201` is the only answer expected.
async fn create(member: &Member, session: &str, what: &str) -> (String, String) {
    let res = member
        .api
        .post_json(session, "/v1/tokens", &body(what))
        .await;
    let status = res.status();
    let text = res.text().await.expect("body");
    assert_eq!(status, 201, "{what}: {text}");
    let created: Value = serde_json::from_str(&text).expect("json");
    (
        created["token"]["id"].as_str().expect("id").to_owned(),
        created["secret"].as_str().expect("secret").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_whose_reply_is_garbled_or_taken_by_a_stream_is_answered_as_it_happened_and_counted_once()
 {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &["--max-tokens-per-user", "3"]).await;
    let leader = writer(&[&a, &b]).await;
    let forwards = other([&a, &b], &leader);
    let session = forwards.api.login("alice").await;

    // Someone with the control plane's NATS access answers every command
    // forwarded to the writer, before the writer can: garbage, then an
    // unsigned "done".
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut requests = client
        .subscribe(format!("enspace.control.commands.{leader}"))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let forger = client.clone();
    let answering = tokio::spawn(async move {
        let done: Result<Value, enspace_store::commands::CommandError> =
            Ok(serde_json::json!({"view": null, "head": 0}));
        let done = rmp_serde::to_vec_named(&done).expect("encode");
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let _ = forger.publish(reply.clone(), "garbage".into()).await;
                let _ = forger.publish(reply, done.clone().into()).await;
            }
        }
    });
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(create(forwards, &session, &format!("garbled {i}")).await);
    }
    for (_, secret) in &made {
        for member in [&a, &b] {
            assert!(
                active_on(member, secret).await,
                "the secret it was given works"
            );
        }
    }
    assert!(metric(&forwards.api, "enspace_forward_replies_ignored").await >= 3.0);
    // Three tokens, each counted once against the cap of three.
    let res = forwards
        .api
        .post_json(&session, "/v1/tokens", &body("one too many"))
        .await;
    assert_problem(res, 422, "token_limit_reached").await;
    answering.abort();

    // A stream that takes every command subject answers each forwarded
    // command with its acknowledgement, before the writer. (Not all of
    // `enspace.control.>`: the notices stream holds `enspace.control.notices`,
    // and streams' subjects may not overlap.)
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "CAPTURE".into(),
        subjects: vec![format!("{}>", enspace_cluster::COMMANDS_SUBJECT_PREFIX)],
        ..Default::default()
    })
    .await
    .expect("a stream on the command subjects");
    let res = forwards
        .api
        .delete(&session, &format!("/v1/tokens/{}", made[0].0))
        .await;
    assert_eq!(
        res.status(),
        204,
        "the revocation is answered as it happened"
    );
    made.push(create(forwards, &session, "taken by a stream").await);
    let res = forwards
        .api
        .post_json(&session, "/v1/tokens", &body("one too many again"))
        .await;
    assert_problem(res, 422, "token_limit_reached").await;

    converge(&a, &b).await;
    for member in [&a, &b] {
        let mut listed = descriptions(member, &session).await;
        listed.sort();
        assert_eq!(
            listed,
            ["garbled 0", "garbled 1", "garbled 2", "taken by a stream"],
            "every creation once, none the client was not told of"
        );
        assert!(
            !active_on(member, &made[0].1).await,
            "the revocation happened"
        );
        for (_, secret) in &made[1..] {
            assert!(active_on(member, secret).await);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_forwarded_to_a_writer_paused_past_the_old_forward_timeout_is_answered_201_exactly_when_it_happened()
 {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &["--lease-ttl", "10s"]).await;
    let leader = writer(&[&a, &b]).await;
    let (paused, forwards) = (by_id([&a, &b], &leader), other([&a, &b], &leader));
    let session = forwards.api.login("alice").await;
    paused.pause();
    let request = forwards
        .api
        .client
        .post(forwards.api.url("/v1/tokens"))
        .bearer_auth(&session)
        .json(&body("while paused"))
        .timeout(Duration::from_secs(60))
        .send();
    let request = tokio::spawn(request);
    // The writer stays paused past the 3 s a forward used to wait, and
    // comes back well within its lease: it still writes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    paused.resume();
    let res = request.await.expect("joined").expect("an answer");
    let status = res.status().as_u16();
    let answer: Value = res.json().await.expect("json");
    converge(&a, &b).await;
    let made: Vec<String> = descriptions(forwards, &session)
        .await
        .into_iter()
        .filter(|d| d == "while paused")
        .collect();
    match status {
        201 => {
            assert_eq!(made.len(), 1, "carried out once");
            let secret = answer["secret"].as_str().expect("secret");
            for member in [&a, &b] {
                assert!(
                    active_on(member, secret).await,
                    "the secret it was given works"
                );
            }
        }
        503 => assert!(made.is_empty(), "answered 503 but carried out: {answer}"),
        other => panic!("a creation answered {other}: {answer}"),
    }
}

/// One request of [`load_until`]: when it was sent, answered, and how.
type Outcome = (Instant, Instant, u16);

/// Three clients creating tokens through `api` until `stop`.
fn load_until(
    api: &crate::support::app::ApiClient,
    session: &str,
    outcomes: &Arc<Mutex<Vec<Outcome>>>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|client| {
            let (api, session, outcomes, stop) = (
                api.clone(),
                session.to_owned(),
                outcomes.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = Instant::now();
                    let res = api
                        .client
                        .post(api.url("/v1/tokens"))
                        .bearer_auth(&session)
                        .json(&body(&format!("client {client}")))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    let status = res.map_or(0, |r| r.status().as_u16());
                    outcomes
                        .lock()
                        .expect("lock")
                        .push((sent, Instant::now(), status));
                    if status != 201 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_each_of_ten_writer_kills_a_waiting_write_goes_to_the_new_writer_instead_of_failing()
{
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("event-signing.key");
    let lease = Duration::from_secs(2);
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let mut members = [a, b];
    let mut failovers = Vec::new();
    for kill in 0..10 {
        let leader = writer(&[&members[0], &members[1]]).await;
        let victim = usize::from(members[1].node_id == leader);
        let survivor = &members[1 - victim];
        let session = survivor.api.login("alice").await;
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = load_until(&survivor.api, &session, &outcomes, &stop);
        eventually(Duration::from_secs(10), "the clients writing", || async {
            (outcomes.lock().expect("lock").iter().any(|o| o.2 == 201)).then_some(())
        })
        .await;
        members[victim].process.kill();
        let killed = Instant::now();
        let first = eventually(
            Duration::from_secs(30),
            "a write acknowledged after the kill",
            || async {
                outcomes
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|(sent, _, status)| *sent >= killed && *status == 201)
                    .map(|(_, answered, _)| *answered)
                    .min()
            },
        )
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for client in clients {
            client.await.expect("client");
        }
        failovers.push(first - killed);
        for (sent, answered, status) in outcomes.lock().expect("lock").iter() {
            assert!(
                *status == 201 || (*status == 503 && *answered - *sent >= lease),
                "kill {kill}: a write answered {status} after {:?}, not waiting for the new writer",
                *answered - *sent
            );
        }
        let (data, node_id) = (
            members[victim].data.clone(),
            members[victim].node_id.clone(),
        );
        members[victim] = Member::start(&data, &key, &nats.url(), &node_id, &MANY_TOKENS);
        let back = &members[victim];
        eventually(
            Duration::from_secs(30),
            "the killed process back",
            || async { back.head().await.map(drop) },
        )
        .await;
    }
    failovers.sort_unstable();
    eprintln!(
        "client-seen failover over {} kills: p50 {:?}, max {:?}",
        failovers.len(),
        failovers[failovers.len() / 2],
        failovers.last()
    );
    for failover in &failovers {
        assert!(
            *failover < Duration::from_secs(15),
            "a write acknowledged {failover:?} after a kill"
        );
    }
}
