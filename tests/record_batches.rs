//! Batched request records (contract §19): an API node publishes many
//! records in one JetStream message, on its partition's subject, with a
//! `Nats-Msg-Id` per batch. A batch published again is stored and indexed
//! once; a node killed mid-batch loses nothing the stream acknowledged; a
//! token's records never split across partitions; a malformed or hostile
//! batch published with a node's credentials is refused whole and indexing
//! goes on.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use enspace_core::record_batch::{self, COUNT_HEADER, partition_of, partition_subject};
use enspace_core::{Clock, RequestRecord};
use futures::StreamExt;
use jiff::SignedDuration;
use ulid::Ulid;

use crate::request_logs::{
    Deployed, RECORDS, all_requests, call, deploy, id_of, jetstream as js_of, record_for,
    token_body, token_service, until_known, wait_for_count, wide,
};
use crate::support::app::ApiClient;
use crate::support::distributed::{self, wait_ready};
use crate::support::nats::{EDGE_FLAGS, NODE_PASSWORD};
use crate::support::records::{records_in, stream_records};
use crate::support::{NatsServer, ServeApp, eventually};

/// Publishes `payload` as a batch of `count` records on `subject` with
/// message id `msg_id`; returns whether the stream stored it as new.
async fn publish_batch(
    js: &jetstream::Context,
    subject: &str,
    count: &str,
    msg_id: &str,
    payload: Vec<u8>,
) -> bool {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    headers.insert(COUNT_HEADER, count);
    let ack = js
        .publish_with_headers(subject.to_owned(), headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    !ack.duplicate
}

fn encode(records: &[RequestRecord]) -> Vec<u8> {
    let encoded: Vec<Vec<u8>> = records.iter().map(RequestRecord::to_msgpack).collect();
    record_batch::encode(&encoded)
}

#[tokio::test]
async fn a_batch_published_again_is_stored_once_and_indexed_once() {
    let nats = NatsServer::start();
    let app = ServeApp::spawn(Some(nats.url())).await;
    let alice = app.login("alice").await;
    let (token, _) = app
        .create_token(&alice, &token_body("batch retried", &["read"]))
        .await;
    let id = id_of(&token);
    let js = js_of(&nats).await;
    let now = app.clock.now();
    let batch: Vec<RequestRecord> = (0..5)
        .map(|n| record_for(&id, now + SignedDuration::from_millis(n)))
        .collect();
    let subject = partition_subject(partition_of(&batch[0].token_id));
    // The node's first publish got lost on the way back (no ack): it
    // publishes the same batch again, same id. The stream keeps one.
    let batch_id = Ulid::new().to_string();
    assert!(publish_batch(&js, &subject, "5", &batch_id, encode(&batch)).await);
    assert!(
        !publish_batch(&js, &subject, "5", &batch_id, encode(&batch)).await,
        "the retry is a duplicate"
    );
    // Past the duplicate window (another id), the index skips what it has.
    assert!(publish_batch(&js, &subject, "5", "after-the-window", encode(&batch)).await);
    let mut stream = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 2);
    eventually(
        Duration::from_secs(20),
        "both batches processed",
        || async {
            (app.counter("enspace_request_records_duplicate_total").await >= 5).then_some(())
        },
    )
    .await;
    let records = wait_for_count(&app, &alice, &id, 5, Duration::from_secs(20)).await;
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    let mut sent: Vec<String> = batch.iter().map(|r| r.id.to_string()).collect();
    sent.sort();
    assert_eq!(ids, sent, "each record of the batch once");
    assert_eq!(
        app.counter("enspace_request_records_indexed_total").await,
        5
    );
    // Counted once in the stats too.
    let stats = app
        .get_ok(
            &alice,
            &format!("/v1/tokens/{id}/requests/stats?{}&bucket=day", wide()),
        )
        .await;
    let total: u64 = stats["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["total"].as_u64())
        .sum();
    assert_eq!(total, 5, "{stats}");
}

#[tokio::test]
async fn a_node_whose_acks_are_lost_publishes_the_same_batches_again_and_each_record_counts_once() {
    let Deployed {
        nats,
        data: _data,
        service: _service,
        node_process,
        svc,
        node,
        alice,
        id,
        secret,
    } = deploy("acks lost").await;
    eventually(
        Duration::from_secs(10),
        "the first record acknowledged",
        || async {
            (node
                .counter("enspace_request_records_published_total")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    // The server takes the node's batches into its socket but answers
    // nothing: past the ack timeout (5 s) the node publishes them again.
    nats.pause();
    for _ in 0..30 {
        assert_eq!(
            call(&node, reqwest::Method::GET, RECORDS, &secret).await,
            200
        );
    }
    eventually(
        Duration::from_secs(20),
        "the node retrying its batches",
        || async { node_process.logs().contains("acks timed out").then_some(()) },
    )
    .await;
    nats.resume();
    let records = wait_for_count(&svc, &alice, &id, 31, Duration::from_secs(30)).await;
    let unique: HashSet<_> = records.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(unique.len(), 31);
    eventually(
        Duration::from_secs(10),
        "31 records acknowledged",
        || async {
            (node
                .counter("enspace_request_records_published_total")
                .await
                == 31)
                .then_some(())
        },
    )
    .await;
    // The stream kept each batch once: every record once.
    let js = js_of(&nats).await;
    let mut stream = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream");
    let stored = stream_records(&mut stream).await;
    assert_eq!(stored.len(), 31, "each retried batch stored once");
    assert_eq!(
        svc.counter("enspace_request_records_duplicate_total").await,
        0,
        "nothing reached the index twice"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        node.counter("enspace_request_records_published_total")
            .await,
        31,
        "a record acknowledged twice counts once"
    );
}

#[tokio::test]
async fn a_node_killed_mid_batch_loses_nothing_the_stream_acknowledged() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats);
    // A long linger: the node always holds a batch being gathered.
    let mut node_process =
        distributed::api_node(&nats.url(), "node-a", &["--record-linger", "200ms"]);
    let (svc, node) = (
        ApiClient::from_base(&service.base),
        ApiClient::from_base(&node_process.base),
    );
    wait_ready(&svc).await;
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (token, secret) = svc
        .create_token(&alice, &token_body("killed node", &["read"]))
        .await;
    let id = id_of(&token);
    until_known(&node, &secret).await;

    let calls = {
        let (node, secret) = (node.clone(), secret.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..100_000)
                .map(|_| {
                    let (node, secret) = (node.clone(), secret.clone());
                    async move {
                        tokio::time::timeout(
                            Duration::from_secs(2),
                            call(&node, reqwest::Method::GET, RECORDS, &secret),
                        )
                        .await
                    }
                })
                .buffer_unordered(8)
                .take_while(|r| std::future::ready(r.is_ok()))
                .count()
                .await
        })
    };
    eventually(Duration::from_secs(30), "batches acknowledged", || async {
        (node
            .counter("enspace_request_records_published_total")
            .await
            >= 500)
            .then_some(())
    })
    .await;
    // What the stream acknowledged just before the kill: at least this
    // many records must be indexed.
    let acknowledged = node
        .counter("enspace_request_records_published_total")
        .await;
    node_process.kill();
    calls.abort();
    let _ = calls.await;

    let records = eventually(
        Duration::from_secs(30),
        "every acknowledged record indexed",
        || async {
            let records = all_requests(&svc, &alice, &id, &wide()).await;
            (records.len() as u64 >= acknowledged).then_some(records)
        },
    )
    .await;
    let unique: HashSet<_> = records.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(unique.len(), records.len(), "nothing indexed twice");
    // Everything indexed is what the stream holds, and no more.
    let js = js_of(&nats).await;
    let mut stream = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream");
    let stored = stream_records(&mut stream).await;
    let stored_ids: HashSet<String> = stored.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(stored_ids.len(), stored.len(), "no record stored twice");
    assert!(stored.len() as u64 >= acknowledged);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = all_requests(&svc, &alice, &id, &wide()).await;
    assert_eq!(
        records.len(),
        stored.len(),
        "the index holds what the stream holds"
    );
}

#[tokio::test]
async fn records_of_one_token_never_split_across_partitions() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("temp dir");
    let service = token_service(data.path(), &nats);
    let nodes = [
        distributed::api_node(&nats.url(), "node-a", &[]),
        distributed::api_node(&nats.url(), "node-b", &[]),
    ];
    let svc = ApiClient::from_base(&service.base);
    let nodes: Vec<ApiClient> = nodes
        .iter()
        .map(|n| ApiClient::from_base(&n.base))
        .collect();
    wait_ready(&svc).await;
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        let session = svc.login(user).await;
        for n in 0..6 {
            let (token, secret) = svc
                .create_token(&session, &token_body(&format!("{user} {n}"), &["read"]))
                .await;
            tokens.push((session.clone(), id_of(&token), secret));
        }
    }
    for node in &nodes {
        wait_ready(node).await;
    }
    // Every token from both nodes at once, interleaved.
    futures::future::join_all(tokens.iter().flat_map(|(_, _, secret)| {
        nodes.iter().map(move |node| async move {
            until_known(node, secret).await;
            for _ in 0..19 {
                assert_eq!(call(node, reqwest::Method::GET, RECORDS, secret).await, 200);
            }
        })
    }))
    .await;
    for (session, id, _) in &tokens {
        wait_for_count(&svc, session, id, 40, Duration::from_secs(30)).await;
    }

    let js = js_of(&nats).await;
    let mut stream = js
        .get_stream(enspace_nats::REQUESTS_STREAM)
        .await
        .expect("stream");
    let state = stream.info().await.expect("info").state.clone();
    let mut subjects: BTreeMap<Ulid, BTreeSet<String>> = BTreeMap::new();
    let mut records = 0;
    for seq in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("message");
        assert!(
            message.headers.get(COUNT_HEADER).is_some(),
            "message {seq} on {} is a batch",
            message.subject
        );
        for record in records_in(&message) {
            records += 1;
            assert_eq!(
                message.subject.as_str(),
                partition_subject(partition_of(&record.token_id))
            );
            subjects
                .entry(record.token_id)
                .or_default()
                .insert(message.subject.to_string());
        }
    }
    assert_eq!(records, tokens.len() * 40);
    assert!(
        state.messages < records as u64,
        "{} messages for {records} records: batched",
        state.messages
    );
    assert_eq!(subjects.len(), tokens.len());
    for (token, subjects) in subjects {
        assert_eq!(subjects.len(), 1, "token {token} in {subjects:?}");
    }
}

/// A raw client with the API node user's credentials of the shipped
/// configuration.
async fn as_node(nats: &NatsServer) -> jetstream::Context {
    let client = async_nats::ConnectOptions::with_user_and_password(
        "enspace-node".into(),
        NODE_PASSWORD.into(),
    )
    .custom_inbox_prefix("_INBOX.enspace-node")
    .connect(format!("127.0.0.1:{}", nats.port))
    .await
    .expect("the node user connects");
    jetstream::new(client)
}

#[tokio::test]
async fn hostile_batches_from_a_nodes_credentials_are_refused_whole_and_indexing_goes_on() {
    let nats = NatsServer::shipped();
    let data = tempfile::tempdir().expect("temp dir");
    let service = distributed::token_service(data.path(), &nats.tokens_url(), &EDGE_FLAGS);
    let node_process = distributed::api_node(&nats.node_url(), "node-a", &[]);
    let (svc, node) = (
        ApiClient::from_base(&service.base),
        ApiClient::from_base(&node_process.base),
    );
    wait_ready(&svc).await;
    wait_ready(&node).await;
    let alice = svc.login("alice").await;
    let (token, secret) = svc
        .create_token(&alice, &token_body("hostile batches", &["read"]))
        .await;
    let id = id_of(&token);
    until_known(&node, &secret).await;
    wait_for_count(&svc, &alice, &id, 1, Duration::from_secs(30)).await;

    let js = as_node(&nats).await;
    let now = jiff::Timestamp::now();
    let forged = |n: i64| {
        let mut r = record_for(&id, now + SignedDuration::from_millis(n));
        r.node = "FORGED".into();
        r
    };
    let token_id: Ulid = id.parse().expect("ulid");
    let mine = partition_subject(partition_of(&token_id));
    let other = partition_subject((partition_of(&token_id) + 1) % record_batch::PARTITIONS);
    let two = encode(&[forged(1), forged(2)]);
    let by_token = format!("enspace.requests.{id}");
    let hostile: Vec<(&str, &str, Vec<u8>)> = vec![
        // A count that is not the payload's.
        (&mine, "3", two.clone()),
        (&mine, "1", two.clone()),
        // Not a number, zero, more than any batch may hold.
        (&mine, "two", two.clone()),
        (&mine, "0", two.clone()),
        (&mine, "4294967296", two.clone()),
        // Records of this token on another partition's subject.
        (&other, "2", two.clone()),
        // A batch on a token's subject rather than a partition's.
        (&by_token, "2", two.clone()),
        // Garbage, an array header claiming 4 billion records, an empty
        // array, an array of something else.
        (&mine, "2", b"not messagepack".to_vec()),
        (&mine, "2", vec![0xdd, 0xff, 0xff, 0xff, 0xff]),
        (&mine, "1", vec![0x90]),
        (&mine, "2", vec![0x92, 0x01, 0x02]),
    ];
    let n = hostile.len() as u64;
    let subjects: Vec<String> = hostile.iter().map(|(s, _, _)| (*s).to_owned()).collect();
    for ((_, count, payload), subject) in hostile.into_iter().zip(&subjects) {
        let msg_id = Ulid::new().to_string();
        publish_batch(&js, subject, count, &msg_id, payload).await;
    }
    // The indexer refuses every one of them and goes on: the node's next
    // records are indexed.
    eventually(
        Duration::from_secs(30),
        "every hostile batch refused",
        || async {
            (svc.counter("enspace_request_records_undecodable_total")
                .await
                >= n)
                .then_some(())
        },
    )
    .await;
    for _ in 0..10 {
        assert_eq!(
            call(&node, reqwest::Method::GET, RECORDS, &secret).await,
            200
        );
    }
    let records = wait_for_count(&svc, &alice, &id, 11, Duration::from_secs(30)).await;
    assert!(
        records.iter().all(|r| r["node"] == "node-a"),
        "no forged record indexed"
    );
    assert_eq!(
        svc.counter("enspace_request_records_undecodable_total")
            .await,
        n
    );
}
