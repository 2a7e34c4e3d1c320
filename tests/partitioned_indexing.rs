//! Partitioned indexing (contract §19): each control-plane process of a
//! cluster indexes only the partitions of the request records assigned to
//! it, two owners per partition; a process killed has its partitions taken
//! over by the others within seconds, and nothing is indexed twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use enspace_core::record_batch::{self, COUNT_HEADER, PARTITIONS, partition_of, partition_subject};
use serde_json::Value;
use ulid::Ulid;

use crate::request_logs::record_for;
use crate::support::cluster::{MANY_TOKENS, Member, writer};
use crate::support::{NatsServer, eventually};

/// `id`, a process of the cluster on `nats` keeping its data in `dir`
/// (with the others' key), with `extra` flags.
pub(crate) fn member(nats: &NatsServer, dir: &Path, id: &str, extra: &[&str]) -> Member {
    let mut flags = MANY_TOKENS.to_vec();
    flags.extend_from_slice(extra);
    let key = dir.join("event-signing.key");
    Member::start(&dir.join(id), &key, &nats.url(), id, &flags)
}

/// Three processes, cp-a the writer, once every partition is served by its
/// owners alone; with each partition's owners.
pub(crate) async fn three(
    nats: &NatsServer,
    dir: &Path,
    extra: &[&str],
) -> ([Member; 3], Vec<BTreeSet<String>>) {
    let a = member(nats, dir, "cp-a", extra);
    writer(&[&a]).await;
    let (b, c) = (
        member(nats, dir, "cp-b", extra),
        member(nats, dir, "cp-c", extra),
    );
    let owners = settled(&a, &["cp-a", "cp-b", "cp-c"], Duration::from_secs(60)).await;
    ([a, b, c], owners)
}

/// Records published per partition in each round.
const PER_PARTITION: u64 = 10;

/// A token id of each partition.
fn one_token_per_partition() -> Vec<Ulid> {
    let mut tokens: BTreeMap<u32, Ulid> = BTreeMap::new();
    while tokens.len() < PARTITIONS as usize {
        let id = Ulid::new();
        tokens.entry(partition_of(&id)).or_insert(id);
    }
    tokens.into_values().collect()
}

/// Publishes one batch of `n` records of `token` on its partition's
/// subject, as an API node does.
async fn publish_batch(js: &jetstream::Context, token: &Ulid, n: u64) {
    let now = jiff::Timestamp::now();
    let records: Vec<Vec<u8>> = (0..n)
        .map(|_| record_for(&token.to_string(), now).to_msgpack())
        .collect();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", Ulid::new().to_string().as_str());
    headers.insert(COUNT_HEADER, n.to_string().as_str());
    js.publish_with_headers(
        partition_subject(partition_of(token)),
        headers,
        record_batch::encode(&records).into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
}

/// Publishes one batch of [`PER_PARTITION`] records for each token.
async fn publish_round(js: &jetstream::Context, tokens: &[Ulid]) {
    for token in tokens {
        publish_batch(js, token, PER_PARTITION).await;
    }
}

/// The assignment and what each member serves, as `member` shows them:
/// `(owners of each partition, partitions each member serves)`.
async fn partitions(
    member: &Member,
) -> Option<(Vec<BTreeSet<String>>, BTreeMap<String, BTreeSet<u64>>)> {
    let view: Value = member.cluster().await?;
    let owners = view["assignment"]["owners"]
        .as_array()?
        .iter()
        .map(|o| {
            o.as_array().map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .collect::<Option<Vec<BTreeSet<String>>>>()?;
    let serving = view["members"]
        .as_array()?
        .iter()
        .map(|m| {
            let id = m["node_id"].as_str()?.to_owned();
            let served = m["serving"]
                .as_array()
                .map(|s| s.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            Some((id, served))
        })
        .collect::<Option<BTreeMap<String, BTreeSet<u64>>>>()?;
    Some((owners, serving))
}

/// Waits until the assignment names exactly `members` (a member killed is
/// still listed until it is forgotten: what it last said does not count),
/// every one of them owning some partitions, two owners per partition (or
/// all of them when fewer), and each partition is served by its owners and
/// no one else; returns the owners of each partition.
pub(crate) async fn settled(
    via: &Member,
    members: &[&str],
    within: Duration,
) -> Vec<BTreeSet<String>> {
    let wanted: BTreeSet<&str> = members.iter().copied().collect();
    let wanted = &wanted;
    eventually(
        within,
        "the partitions assigned and served by their owners alone",
        || async move {
            let (owners, mut serving) = partitions(via).await?;
            serving.retain(|m, _| wanted.contains(m.as_str()));
            if serving.len() != wanted.len() || owners.len() != PARTITIONS as usize {
                return None;
            }
            if !wanted.iter().all(|m| owners.iter().any(|o| o.contains(*m))) {
                return None;
            }
            for (p, o) in owners.iter().enumerate() {
                if o.len() != wanted.len().min(2) || !o.iter().all(|m| wanted.contains(m.as_str()))
                {
                    return None;
                }
                let served_by: BTreeSet<&String> = serving
                    .iter()
                    .filter(|(_, s)| s.contains(&(p as u64)))
                    .map(|(m, _)| m)
                    .collect();
                if served_by != o.iter().collect() {
                    return None;
                }
            }
            Some(owners)
        },
    )
    .await
}

async fn indexed(member: &Member) -> u64 {
    member
        .api
        .counter("enspace_request_records_indexed_total")
        .await
}

/// Waits until `member` has indexed exactly `n` records, then checks that
/// it stays there while a later batch (of a partition it owns) arrives.
async fn indexed_exactly(member: &Member, n: u64) {
    eventually(Duration::from_secs(30), "the records indexed", || async {
        let got = indexed(member).await;
        assert!(
            got <= n,
            "{} indexed {got} records, more than its partitions' {n}",
            member.node_id
        );
        (got == n).then_some(())
    })
    .await;
}

fn owned_by(owners: &[BTreeSet<String>], member: &str) -> u64 {
    owners.iter().filter(|o| o.contains(member)).count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partition_is_indexed_by_two_of_three_processes_and_a_killed_ones_are_taken_over() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let ([a, b, mut c], owners) = three(&nats, dir.path(), &[]).await;
    for m in ["cp-a", "cp-b", "cp-c"] {
        let share = owned_by(&owners, m);
        assert!(
            (6..=16).contains(&share),
            "{m} owns {share} of 16 partitions"
        );
    }

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let tokens = one_token_per_partition();
    publish_round(&js, &tokens).await;
    // Each process indexes its own partitions' records, once; together
    // every record twice (two owners), no process all of them.
    for m in [&a, &b, &c] {
        indexed_exactly(m, PER_PARTITION * owned_by(&owners, &m.node_id)).await;
    }
    let total: u64 = [indexed(&a).await, indexed(&b).await, indexed(&c).await]
        .iter()
        .sum();
    assert_eq!(total, 2 * PER_PARTITION * u64::from(PARTITIONS));

    // cp-c dies (it is not the writer: cp-a was first).
    c.process.kill();
    let killed = Instant::now();
    let after = settled(&a, &["cp-a", "cp-b"], Duration::from_secs(60)).await;
    let took = killed.elapsed();
    eprintln!(
        "cp-c's partitions served by the others {} ms after its SIGKILL",
        took.as_millis()
    );
    assert!(after.iter().all(|o| o.len() == 2));
    // Both survivors now hold every partition: what they took over was read
    // from the stream's start, and nothing they had was counted again.
    for m in [&a, &b] {
        indexed_exactly(m, PER_PARTITION * u64::from(PARTITIONS)).await;
    }
    publish_round(&js, &tokens).await;
    for m in [&a, &b] {
        indexed_exactly(m, 2 * PER_PARTITION * u64::from(PARTITIONS)).await;
        assert_eq!(
            m.api
                .counter("enspace_request_records_duplicate_total")
                .await,
            0,
            "{} indexed something twice",
            m.node_id
        );
    }

    // cp-c comes back: it gets its partitions again and resumes them where
    // it was (its first round is not indexed again).
    c = member(&nats, dir.path(), "cp-c", &[]);
    let back = settled(&a, &["cp-a", "cp-b", "cp-c"], Duration::from_secs(60)).await;
    assert_eq!(back, owners, "the same members, the same assignment");
    indexed_exactly(&c, PER_PARTITION * owned_by(&owners, "cp-c")).await;
}

/// `value` without the fields, at any depth, that say when it was answered
/// (a window ending now).
fn answered_at_removed(mut value: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(object) => {
                for key in ["from", "to", "generated_at", "now", "as_of"] {
                    object.remove(key);
                }
                object.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_on_a_process_that_does_not_own_the_tokens_partition_answers_as_its_owners_do() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let ([a, b, c], owners) = three(&nats, dir.path(), &[]).await;
    let members = [&a, &b, &c];

    let alice = a.api.login("alice").await;
    let (token, _) = a
        .api
        .create_token(
            &alice,
            &crate::request_logs::token_body("logged", &["read"]),
        )
        .await;
    let id: Ulid = token["id"].as_str().expect("id").parse().expect("ulid");
    let partition = partition_of(&id) as usize;
    let (stranger, owning): (Vec<&Member>, Vec<&Member>) = members
        .iter()
        .partition(|m| !owners[partition].contains(&m.node_id));
    assert_eq!((stranger.len(), owning.len()), (1, 2), "{owners:?}");
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    publish_round(&js, &[id]).await;
    publish_round(&js, &[id]).await;

    let paths = [
        // A window given, as the cursor names the window's start.
        format!("/v1/tokens/{id}/requests?{}", crate::request_logs::wide()),
        format!(
            "/v1/tokens/{id}/requests?{}&limit=7",
            crate::request_logs::wide()
        ),
        format!(
            "/v1/tokens/{id}/requests/stats?{}&bucket=day",
            crate::request_logs::wide()
        ),
        format!("/v1/tokens/{id}/insights"),
        format!("/v1/audit/tokens/{id}/timeline"),
        "/v1/tokens".to_owned(),
    ];
    // Every member, the one that does not own the partition included,
    // answers as the owners do, once both owners hold every record (each
    // indexes on its own; a read elsewhere reaches either).
    for owner in &owning {
        eventually(
            Duration::from_secs(30),
            "both owners holding every record",
            || async {
                let page = owner
                    .api
                    .get_ok(&alice, &format!("/v1/tokens/{id}/requests?limit=100"))
                    .await;
                (page["requests"].as_array()?.len() == 2 * PER_PARTITION as usize).then_some(())
            },
        )
        .await;
    }
    for path in &paths {
        let want = answered_at_removed(owning[0].api.get_ok(&alice, path).await);
        for member in members {
            let got = answered_at_removed(member.api.get_ok(&alice, path).await);
            assert_eq!(
                got, want,
                "{path} on {} (partition {partition}, owned by {:?})",
                member.node_id, owners[partition]
            );
        }
    }
    let listed = owning[0].api.get_ok(&alice, "/v1/tokens").await;
    assert!(
        listed["tokens"][0]["last_used_at"].is_string(),
        "the list shows the token's last use: {listed}"
    );
}

/// Publishes `batches` batches of 100 records for each token.
async fn publish_burst(js: &jetstream::Context, tokens: &[Ulid], batches: usize) {
    for _ in 0..batches {
        for token in tokens {
            publish_batch(js, token, 100).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_burst_resumes_its_partitions_and_counts_each_record_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let ([a, _b, mut c], owners) = three(&nats, dir.path(), &[]).await;
    // One of alice's tokens in each partition, so that cp-c's answers for
    // its own partitions can be read back through the API.
    let alice = a.api.login("alice").await;
    let mut tokens: BTreeMap<u32, Ulid> = BTreeMap::new();
    while tokens.len() < PARTITIONS as usize {
        let (token, _) = a
            .api
            .create_token(&alice, &crate::request_logs::token_body("burst", &["read"]))
            .await;
        let id: Ulid = token["id"].as_str().expect("id").parse().expect("ulid");
        tokens.entry(partition_of(&id)).or_insert(id);
    }
    let tokens: Vec<Ulid> = tokens.into_values().collect();
    let theirs: Vec<Ulid> = tokens
        .iter()
        .copied()
        .filter(|t| owners[partition_of(t) as usize].contains("cp-c"))
        .collect();
    const BATCHES: usize = 40;
    let expected = theirs.len() as u64 * BATCHES as u64 * 100;

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    publish_burst(&js, &tokens, BATCHES).await;
    // SIGKILL cp-c while it is indexing the burst, and show that it was.
    let at_kill = eventually(Duration::from_secs(60), "cp-c indexing", || async {
        let n = indexed(&c).await;
        (n > 0).then_some(n)
    })
    .await;
    c.process.kill();
    assert!(
        at_kill < expected,
        "the kill came after cp-c had indexed all {expected} records; make the burst larger"
    );
    eprintln!("cp-c SIGKILLed with {at_kill} of its {expected} records indexed");

    // Back, it takes up its partitions where its acks were, and its own
    // index (read here once it serves them again) counts each record once.
    c = member(&nats, dir.path(), "cp-c", &[]);
    settled(&a, &["cp-a", "cp-b", "cp-c"], Duration::from_secs(60)).await;
    for token in &theirs {
        eventually(
            Duration::from_secs(60),
            "every record of the burst, once",
            || async {
                let stats = c
                    .api
                    .get_ok(
                        &alice,
                        &format!(
                            "/v1/tokens/{token}/requests/stats?{}&bucket=day",
                            crate::request_logs::wide()
                        ),
                    )
                    .await;
                let total: u64 = stats["buckets"]
                    .as_array()?
                    .iter()
                    .filter_map(|b| b["total"].as_u64())
                    .sum();
                assert!(
                    total <= BATCHES as u64 * 100,
                    "{token} counted {total}: some twice"
                );
                (total == BATCHES as u64 * 100).then_some(())
            },
        )
        .await;
    }
}
