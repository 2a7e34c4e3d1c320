//! Notices (`enspace_notify::notices`): in a cluster, a notification one
//! control-plane process made from what only it saw becomes, on every
//! other process, the notification it would have made itself (same id,
//! same once key), delivered only by the writer. Here through the library
//! with a real nats-server: each "process" is a store in its own temp dir
//! with the tasks `notices::join` answers, all sharing one event key. The
//! same through real `enspace tokens --cluster` processes is in
//! `cluster_notices.rs`.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use enspace_cluster::{Part, Role};
use enspace_core::fixtures::created;
use enspace_core::{EventEnvelope, EventSigner, SecretHash};
use enspace_notify::notices::{self, NoticeConfig};
use enspace_notify::store::ToShare;
use enspace_notify::{DecoyUse, Kind, NotificationMetrics, Notifications, notification_id};
use enspace_store::Store;
use enspace_store::keyring::Keyring;
use enspace_usage::client_ips::NewClientIp;
use jiff::Timestamp;
use tokio::task::JoinHandle;

use crate::support::{NatsServer, eventually};

/// One control-plane process, as far as notices go.
struct Process {
    notifications: Notifications,
    store: Store,
    metrics: NotificationMetrics,
    tasks: Vec<JoinHandle<()>>,
}

/// Which of the tasks `notices::join` answers are started.
#[derive(Clone, Copy, PartialEq)]
enum Tasks {
    All,
    /// Not the publisher: what it makes stays queued.
    ApplyOnly,
}

/// Opens (or reopens) the process `name` in `dir`/`name`, signing with the
/// key at `dir`/key, knowing `token`; the writer delivers, the others not.
async fn process(
    dir: &Path,
    name: &str,
    nats: &NatsServer,
    token: &EventEnvelope,
    writer: bool,
    tasks: Tasks,
) -> Process {
    let store = Store::open(&dir.join(name)).expect("store");
    let (keys, _) = Keyring::open(&store, &dir.join("event-signing.key")).expect("keys");
    store
        .projections
        .apply(std::slice::from_ref(token))
        .expect("the token");
    let notifications = Notifications::open(&store.db, true).expect("notifications");
    let role = Role::default();
    if writer {
        role.set(Part::Writer(1));
    }
    notifications.join_cluster(role);
    let client = enspace_nats::connect(&nats.url(), name)
        .await
        .expect("connect");
    let metrics = NotificationMetrics::default();
    let joined = notices::join(
        &notifications,
        &jetstream::new(client),
        &keys,
        &NoticeConfig {
            node_id: name.to_owned(),
            replicas: 1,
        },
        &metrics,
    )
    .await
    .expect("join");
    let tasks = joined
        .into_iter()
        .filter(|(task, _)| tasks == Tasks::All || *task != "notices-publish")
        .map(|(_, task)| tokio::spawn(task))
        .collect();
    Process {
        notifications,
        store,
        metrics,
        tasks,
    }
}

impl Process {
    /// Ends its tasks and lets go of its store (it can then be reopened).
    async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.db.flush().expect("flush");
    }

    /// What the indexer's hook does with a batch's decoy uses: tell them,
    /// then wait until they are shared (answered), on a blocking thread.
    async fn tell_decoy_use(&self, used: DecoyUse) -> bool {
        let (notifications, tokens) = (self.notifications.clone(), self.store.projections.clone());
        tokio::task::spawn_blocking(move || {
            let made = notifications
                .tell_decoy_uses(&[used], &tokens)
                .expect("tell");
            assert_eq!(made, 1, "a new use");
            notifications.wait_shared(notices::SHARE_WAIT)
        })
        .await
        .expect("the hook")
    }

    /// The same for a new client IP.
    async fn tell_new_ip(&self, seen: NewClientIp) -> bool {
        let (notifications, tokens) = (self.notifications.clone(), self.store.projections.clone());
        tokio::task::spawn_blocking(move || {
            notifications
                .tell_new_client_ips(&[seen], &tokens, 90)
                .expect("tell");
            notifications.wait_shared(notices::SHARE_WAIT)
        })
        .await
        .expect("the hook")
    }

    fn alices(&self) -> Vec<enspace_notify::Notification> {
        self.notifications.store.list("alice", 100).expect("list")
    }

    /// Waits until it holds exactly one notification, and answers it.
    async fn holds_one(&self, what: &str) -> enspace_notify::Notification {
        eventually(Duration::from_secs(15), what, || async {
            let mut list = self.alices();
            (list.len() == 1).then(|| list.remove(0))
        })
        .await
    }
}

fn decoy() -> EventEnvelope {
    created(1, &SecretHash([1; 32])).decoy().build()
}

fn token() -> EventEnvelope {
    created(1, &SecretHash([2; 32])).build()
}

fn use_of(token: &EventEnvelope, ip: &str) -> DecoyUse {
    DecoyUse {
        token_id: token.token_id,
        at: Timestamp::now(),
        client_ip: ip.into(),
        user_agent: Some("scanner/1.0".into()),
        call: "GET /v1/records".into(),
        node: "edge-1".into(),
    }
}

async fn notices_stream(nats: &NatsServer) -> jetstream::stream::Stream {
    let client = enspace_nats::connect(&nats.url(), "observer")
        .await
        .expect("connect");
    jetstream::new(client)
        .get_stream(enspace_nats::NOTICES_STREAM)
        .await
        .expect("the notices stream")
}

async fn messages_in(stream: &mut jetstream::stream::Stream) -> u64 {
    stream.info().await.expect("info").state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_made_by_one_process_is_kept_by_the_others_with_its_id_and_queued_only_by_the_writer()
 {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let decoy = decoy();
    let maker = process(dir.path(), "maker", &nats, &decoy, false, Tasks::All).await;
    let writer = process(dir.path(), "writer", &nats, &decoy, true, Tasks::All).await;
    let other = process(dir.path(), "other", &nats, &decoy, false, Tasks::All).await;

    assert!(
        maker.tell_decoy_use(use_of(&decoy, "192.0.2.7")).await,
        "in the stream before the batch would be acked"
    );
    let made = maker.alices().remove(0);
    assert_eq!(made.kind, Kind::DecoyUsed);
    for process in [&writer, &other] {
        let kept = process.holds_one("the notice kept").await;
        assert_eq!(kept, made, "the same notification, same id");
    }
    assert!(writer.notifications.store.is_queued(made.id).expect("q"));
    assert!(!other.notifications.store.is_queued(made.id).expect("q"));
    assert!(!maker.notifications.store.is_queued(made.id).expect("q"));
    assert_eq!(maker.metrics.notices_published.get(), 1);
    assert_eq!(writer.metrics.notices_applied.get(), 1);

    // The writer making the same use itself (its indexer sees the same
    // record) makes nothing new: the same once key.
    let again = use_of(&decoy, "192.0.2.7");
    let (notifications, tokens) = (
        writer.notifications.clone(),
        writer.store.projections.clone(),
    );
    let made_again = tokio::task::spawn_blocking(move || {
        notifications
            .tell_decoy_uses(
                &[DecoyUse {
                    at: made.at,
                    ..again
                }],
                &tokens,
            )
            .expect("tell")
    })
    .await
    .expect("hook");
    assert_eq!(made_again, 0);
    for process in [maker, writer, other] {
        process.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_notice_made_by_two_processes_is_stored_once_and_kept_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let token = token();
    let owners = [
        process(dir.path(), "owner-1", &nats, &token, false, Tasks::All).await,
        process(dir.path(), "owner-2", &nats, &token, false, Tasks::All).await,
    ];
    let reader = process(dir.path(), "reader", &nats, &token, true, Tasks::All).await;
    let seen = NewClientIp {
        token_id: token.token_id,
        ip: "198.51.100.4".into(),
        at_ms: 1_767_225_600_000,
    };
    // Both owners index the same record, at once.
    let (one, two) = tokio::join!(
        owners[0].tell_new_ip(seen.clone()),
        owners[1].tell_new_ip(seen.clone())
    );
    assert!(one && two);
    let kept = reader.holds_one("the notice kept").await;
    assert_eq!(kept.kind, Kind::NewClientIp);
    for owner in &owners {
        assert_eq!(owner.holds_one("each owner's own").await, kept);
    }
    let mut stream = notices_stream(&nats).await;
    assert_eq!(messages_in(&mut stream).await, 1, "stored once");
    assert!(reader.notifications.store.is_queued(kept.id).expect("q"));
    let [a, b] = owners;
    for process in [a, b, reader] {
        process.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_recorded_by_a_process_stopped_before_it_published_is_published_once_it_restarts()
{
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let decoy = decoy();
    let reader = process(dir.path(), "reader", &nats, &decoy, true, Tasks::All).await;
    let maker = process(dir.path(), "maker", &nats, &decoy, false, Tasks::ApplyOnly).await;
    assert!(
        !maker.tell_decoy_use(use_of(&decoy, "203.0.113.9")).await,
        "nothing publishes"
    );
    let made = maker.alices().remove(0);
    maker.stop().await;
    let mut stream = notices_stream(&nats).await;
    assert_eq!(messages_in(&mut stream).await, 0);
    assert!(reader.alices().is_empty());

    let maker = process(dir.path(), "maker", &nats, &decoy, false, Tasks::All).await;
    assert_eq!(
        reader.holds_one("the notice, after the restart").await,
        made
    );
    eventually(Duration::from_secs(10), "the queue emptied", || async {
        maker
            .notifications
            .wait_shared(Duration::ZERO)
            .then_some(())
    })
    .await;
    assert_eq!(messages_in(&mut stream).await, 1);
    for process in [maker, reader] {
        process.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_forged_message_on_the_notices_subject_is_refused_and_the_next_notice_kept()
{
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let decoy = decoy();
    let reader = process(dir.path(), "reader", &nats, &decoy, true, Tasks::All).await;
    let maker = process(dir.path(), "maker", &nats, &decoy, false, Tasks::All).await;
    let client = enspace_nats::connect(&nats.url(), "forger")
        .await
        .expect("connect");
    let js = jetstream::new(client);
    let at = Timestamp::now();
    let what = b"decoy\x00192.0.2.66".to_vec();
    let forged = ToShare {
        notification: enspace_notify::Notification {
            id: notification_id(decoy.token_id, &what, at),
            kind: Kind::DecoyUsed,
            user_id: "alice".into(),
            token_id: decoy.token_id,
            at,
            detail: "click https://evil.example to keep your account".into(),
            read: false,
        },
        what,
    };
    let by_another_key = notices::seal(&forged, &EventSigner::generate()).expect("seal");
    for payload in [b"\xc1 not a notice".to_vec(), by_another_key] {
        js.publish(enspace_nats::NOTICES_SUBJECT, payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    assert!(maker.tell_decoy_use(use_of(&decoy, "192.0.2.8")).await);
    let kept = reader.holds_one("the real notice").await;
    assert!(kept.detail.contains("192.0.2.8"), "{}", kept.detail);
    // The forged one is tried a few times (a key rotation not seen yet),
    // then terminated as well; never kept.
    eventually(Duration::from_secs(30), "both refused", || async {
        (reader.metrics.notices_refused.get() == 2).then_some(())
    })
    .await;
    assert_eq!(reader.alices(), vec![kept]);
    assert_eq!(
        reader
            .notifications
            .store
            .get(forged.notification.id)
            .expect("get"),
        None
    );
    for process in [maker, reader] {
        process.stop().await;
    }
}
