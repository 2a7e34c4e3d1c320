//! Reads of the request index through a process that does not serve the
//! token's partition, against a real nats-server: two indexes in temporary
//! directories, A serving every partition (`serve_queries`), B serving none
//! (or one); whatever B reads equals what A reads.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use enspace_core::RequestRecord;
use enspace_core::record::DroppedRecords;
use enspace_core::record_batch::{PARTITIONS, partition_of};
use enspace_usage::RequestIndex;
use enspace_usage::index::{DAY_MS, HOUR_MS, Upper};
use enspace_usage::ownership::Ownership;
use enspace_usage::reads::wire::{self, Refusal};
use enspace_usage::reads::{ReadError, TimelineQuery, UsageReads, serve_queries};
use jiff::Timestamp;
use ulid::Ulid;

/// A nats-server on its own port, killed on drop.
struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start() -> Self {
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nats-server (is it on PATH? tests/run installs it)");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("nats-server reports its port");
        Nats {
            child,
            url: format!("nats://{address}"),
        }
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url).await.expect("connect")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const T0: u64 = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS;

/// An index in `dir` holding 10 records of a new token.
fn with_ten_records(dir: &tempfile::TempDir) -> (RequestIndex, Ulid) {
    let index = index(dir);
    let token = Ulid::new();
    index
        .ingest(&records_of(token, 10), Timestamp::UNIX_EPOCH)
        .expect("ingest");
    (index, token)
}

fn index(dir: &tempfile::TempDir) -> RequestIndex {
    RequestIndex::open_in(dir.path()).expect("open the index")
}

fn record(token: Ulid, at_ms: u64, status: u16, i: usize) -> RequestRecord {
    RequestRecord {
        id: Ulid::new(),
        token_id: token,
        user_id: "alice".into(),
        at: Timestamp::from_millisecond(at_ms as i64).expect("ts"),
        node: "node-1".into(),
        method: ["GET", "POST", "DELETE"][i % 3].into(),
        path: format!("/api/v1/workspaces/ws{}/records/{i}", i % 4),
        path_truncated: false,
        workspace: Some(format!("ws{}", i % 4)),
        status,
        duration_ms: 0.5,
        client_ip: format!("10.0.{}.{}", i % 3, i % 7),
        user_agent: Some("test".into()),
    }
}

/// A token of each of `n` distinct partitions.
fn tokens_of_distinct_partitions(n: usize) -> Vec<Ulid> {
    let mut seen = std::collections::BTreeSet::new();
    std::iter::repeat_with(Ulid::new)
        .filter(|t| seen.insert(partition_of(t)))
        .take(n)
        .collect()
}

/// Records of `token` over two days, every status class, some before and
/// some after `leak_ms`.
fn records_of(token: Ulid, n: usize) -> Vec<RequestRecord> {
    (0..n)
        .map(|i| {
            let status = [200, 201, 403, 404, 401, 429, 500][i % 7];
            record(token, T0 + (i as u64 * 7_919_000) % (2 * DAY_MS), status, i)
        })
        .collect()
}

/// Waits until `reads` answers a read of `token` (A's subscriptions are
/// made in the background).
async fn until_answered(reads: &UsageReads, token: Ulid) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while reads.insights(token, 0).await.is_err() {
        assert!(Instant::now() < deadline, "no process answered in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_through_a_process_serving_nothing_equals_the_owners_own() {
    let nats = Nats::start();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (index_a, index_b) = (index(&dir_a), index(&dir_b));
    let a = UsageReads::new(index_a.clone(), Ownership::all());
    let b_owns = Ownership::partitioned();
    let b = UsageReads::new(index_b.clone(), b_owns.clone());
    b.connect(nats.client().await);
    tokio::spawn(serve_queries(
        nats.client().await,
        index_a.clone(),
        Ownership::all(),
    ));

    let tokens = tokens_of_distinct_partitions(4);
    let (busy, leaked, mine, long) = (tokens[0], tokens[1], tokens[2], tokens[3]);
    for token in [busy, leaked, mine] {
        index_a
            .ingest(&records_of(token, 120), Timestamp::UNIX_EPOCH)
            .expect("ingest");
    }
    // Records as long as a node sends them: a page of a thousand is more
    // than one NATS message carries.
    let long_records: Vec<RequestRecord> = (0..1000)
        .map(|i| {
            let mut r = record(long, T0 + i as u64, 200, i);
            r.path = format!("/{}", "x".repeat(1023));
            r.user_agent = Some("u".repeat(256));
            r
        })
        .collect();
    index_a
        .ingest(&long_records, Timestamp::UNIX_EPOCH)
        .expect("ingest");
    let drop_count = DroppedRecords {
        id: Ulid::new(),
        token_id: busy,
        hour: Timestamp::from_millisecond((T0 + HOUR_MS) as i64).expect("ts"),
        count: 94,
        node: "node-1".into(),
    };
    index_a.record_drops(&[drop_count]).expect("drops");
    // B serves `mine`'s partition, and indexed it too.
    index_b
        .ingest(&records_of(mine, 120), Timestamp::UNIX_EPOCH)
        .expect("ingest");
    b_owns.set([partition_of(&mine)].into());
    until_answered(&b, busy).await;

    let window = (T0, T0 + 2 * DAY_MS);
    for token in [busy, leaked, long] {
        let (first_a, first_b) = (
            a.page(token, window.0, Upper::To(window.1), 7)
                .await
                .expect("page"),
            b.page(token, window.0, Upper::To(window.1), 7)
                .await
                .expect("page"),
        );
        assert_eq!(first_b, first_a);
        let next = Upper::Before(first_a.next.expect("more than a page"));
        assert_eq!(
            b.page(token, window.0, next, 50).await.expect("page"),
            a.page(token, window.0, next, 50).await.expect("page")
        );
        for bucket_ms in [HOUR_MS, DAY_MS] {
            let stats = a
                .stats(token, window.0 + 5, window.1, bucket_ms)
                .await
                .expect("stats");
            assert_eq!(
                b.stats(token, window.0 + 5, window.1, bucket_ms)
                    .await
                    .expect("stats"),
                stats
            );
        }
        for cutoff in [0, T0 + 3 * HOUR_MS + 17] {
            assert_eq!(
                b.insights(token, cutoff).await.expect("insights"),
                a.insights(token, cutoff).await.expect("insights")
            );
        }
        let timeline = TimelineQuery {
            token,
            from_ms: T0,
            to_ms: T0 + 2 * DAY_MS,
            leak_ms: (token == leaked).then_some(T0 + DAY_MS + 1234),
        };
        assert_eq!(
            b.timeline(timeline).await.expect("timeline"),
            a.timeline(timeline).await.expect("timeline")
        );
    }
    let whole = b
        .page(long, 0, Upper::To(u64::MAX), wire::MAX_PAGE)
        .await
        .expect("a page over several messages");
    assert_eq!(whole.records.len(), 1000);
    assert_eq!(
        whole,
        a.page(long, 0, Upper::To(u64::MAX), wire::MAX_PAGE)
            .await
            .expect("page")
    );
    let stats = b
        .stats(busy, T0, T0 + DAY_MS, HOUR_MS)
        .await
        .expect("stats");
    assert_eq!(stats.dropped, 94);
    assert_eq!(stats.buckets.len(), 24);

    // Last uses of tokens here, forwarded, unknown, of every partition.
    let mut asked = vec![busy, mine, leaked, long, Ulid::new()];
    asked.extend(tokens_of_distinct_partitions(PARTITIONS as usize));
    let used_b = b.last_used(&asked).await.expect("last used");
    assert_eq!(used_b, a.last_used(&asked).await.expect("last used"));
    assert_eq!(used_b.len(), asked.len());
    assert!(used_b[&busy].is_some() && used_b[&mine].is_some() && used_b[&long].is_some());
    assert_eq!(used_b[&asked[4]], None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_serving_the_partition_a_read_fails_unavailable_within_the_timeout() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().expect("dir");
    let timeout = Duration::from_millis(800);
    let b = UsageReads::new(index(&dir), Ownership::partitioned()).with_timeout(timeout);
    let token = Ulid::new();

    // Before NATS is there.
    let failed = b.insights(token, 0).await;
    assert!(
        matches!(failed, Err(ReadError::Unavailable { .. })),
        "{failed:?}"
    );

    // Nobody listens: NATS says so at once, and the read asks again until
    // its timeout (a cluster starting serves its partitions a moment later).
    b.connect(nats.client().await);
    let started = Instant::now();
    let failed = b.page(token, 0, Upper::To(u64::MAX), 10).await;
    assert!(
        matches!(failed, Err(ReadError::Unavailable { .. })),
        "{failed:?}"
    );
    assert!(started.elapsed() >= timeout - 2 * enspace_usage::reads::ASK_AGAIN);
    assert!(started.elapsed() < timeout + Duration::from_millis(500));
    let failed = b.last_used(&[Ulid::new(), token]).await;
    assert!(
        matches!(failed, Err(ReadError::Unavailable { .. })),
        "{failed:?}"
    );

    // Someone listens and never answers.
    let silent = nats.client().await;
    let _listening = silent
        .queue_subscribe(
            enspace_nats::usage_query_subject(partition_of(&token)),
            enspace_nats::USAGE_QUERIES_QUEUE.into(),
        )
        .await
        .expect("subscribe");
    silent.flush().await.expect("flush");
    let started = Instant::now();
    let failed = b.stats(token, 0, HOUR_MS, HOUR_MS).await;
    assert!(
        matches!(failed, Err(ReadError::Unavailable { .. })),
        "{failed:?}"
    );
    assert!(started.elapsed() >= timeout);
    assert!(started.elapsed() < timeout + Duration::from_millis(500));

    // Which a route answers 503, with Retry-After, and not a word of why.
    let answered = enspace_http::ApiError::from(failed.expect_err("failed"));
    assert_eq!(answered.status.as_u16(), 503);
    assert_eq!(answered.code, "request_logs_unavailable");
    assert!(
        answered
            .headers
            .iter()
            .any(|(name, _)| name == "retry-after")
    );
    assert!(!answered.detail.contains("partition"));
}

/// The reply to `payload` sent as is on `partition`'s subject.
async fn raw_reply(client: &async_nats::Client, partition: u32, payload: Vec<u8>) -> wire::Reply {
    let message = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(enspace_nats::usage_query_subject(partition), payload.into()),
    )
    .await
    .expect("answered in time")
    .expect("answered");
    let whole = wire::Parts::default()
        .add(&message.payload)
        .expect("a part")
        .expect("in one part");
    wire::decode_reply(&whole).expect("a reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_misdirected_query_gets_an_error_reply_and_the_server_keeps_serving() {
    let nats = Nats::start();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (index_a, token) = with_ten_records(&dir_a);
    tokio::spawn(serve_queries(
        nats.client().await,
        index_a.clone(),
        Ownership::all(),
    ));
    let b = UsageReads::new(index(&dir_b), Ownership::partitioned());
    b.connect(nats.client().await);
    until_answered(&b, token).await;

    let client = nats.client().await;
    let partition = partition_of(&token);
    for garbage in [
        Vec::new(),
        vec![0xc1],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        b"{}".to_vec(),
    ] {
        assert_eq!(
            raw_reply(&client, partition, garbage).await,
            Err(Refusal::Unreadable)
        );
    }
    let elsewhere = (partition + 1) % PARTITIONS;
    let asked = wire::encode_query(&wire::Query::Insights {
        token,
        cutoff_ms: 0,
    })
    .expect("encode");
    assert_eq!(
        raw_reply(&client, elsewhere, asked).await,
        Err(Refusal::WrongPartition)
    );
    let too_much = wire::encode_query(&wire::Query::Page {
        token,
        from_ms: 0,
        upper: Upper::To(u64::MAX),
        limit: wire::MAX_PAGE + 1,
    })
    .expect("encode");
    assert_eq!(
        raw_reply(&client, partition, too_much).await,
        Err(Refusal::OutOfBounds)
    );

    let page = b
        .page(token, 0, Upper::To(u64::MAX), 50)
        .await
        .expect("still served");
    assert_eq!(page.records.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_made_while_nobody_serves_the_partition_is_answered_once_someone_does() {
    let nats = Nats::start();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (index_a, token) = with_ten_records(&dir_a);
    let b = UsageReads::new(index(&dir_b), Ownership::partitioned());
    b.connect(nats.client().await);
    let client = nats.client().await;
    let owner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        serve_queries(client, index_a, Ownership::all()).await;
    });
    let started = Instant::now();
    let page = b
        .page(token, 0, Upper::To(u64::MAX), 100)
        .await
        .expect("answered once the owner serves");
    assert_eq!(page.records.len(), 10);
    assert!(started.elapsed() >= Duration::from_millis(700));
    owner.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_answers_a_partition_exactly_while_it_serves_it() {
    let nats = Nats::start();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (index_a, token) = with_ten_records(&dir_a);
    let owns = Ownership::partitioned();
    tokio::spawn(serve_queries(nats.client().await, index_a, owns.clone()));
    let b = UsageReads::new(index(&dir_b), Ownership::partitioned())
        .with_timeout(Duration::from_secs(1));
    b.connect(nats.client().await);

    owns.set([(partition_of(&token) + 1) % PARTITIONS].into());
    assert!(matches!(
        b.insights(token, 0).await,
        Err(ReadError::Unavailable { .. })
    ));
    owns.set([partition_of(&token)].into());
    until_answered(&b, token).await;
    owns.set(Default::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match b.insights(token, 0).await {
            Err(
                ReadError::Unavailable { .. }
                | ReadError::Refused {
                    refusal: Refusal::NotServed { .. },
                    ..
                },
            ) => break,
            other => assert!(Instant::now() < deadline, "still answered: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
