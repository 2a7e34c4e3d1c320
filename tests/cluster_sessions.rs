//! Sessions shared between control-plane processes through the KV bucket
//! `ENSPACE_SESSIONS`: only records the control plane signed sign anyone
//! in, never for longer than a session, and never after their entry is
//! gone. The records are put in the bucket by a raw NATS client with the
//! control plane's access, as an attacker holding its credentials (but not
//! the event signing key) would.

use std::time::Duration;

use enspace_core::{EventSigner, SessionSecret};
use enspace_store::sessions::SessionRecord;
use jiff::{SignedDuration, Timestamp};

use crate::support::cluster::{Member, pair};
use crate::support::distributed::metric;
use crate::support::{NatsServer, eventually};

const REFUSED: &str = "enspace_session_records_refused";

async fn sessions_bucket(url: &str) -> async_nats::jetstream::kv::Store {
    let client = async_nats::connect(url).await.expect("connect");
    async_nats::jetstream::new(client)
        .get_key_value("ENSPACE_SESSIONS")
        .await
        .expect("the sessions bucket")
}

fn key_of(secret: &SessionSecret) -> String {
    hex::encode(secret.hash().as_bytes())
}

fn alice_for(lifetime: SignedDuration) -> SessionRecord {
    SessionRecord {
        user_id: "alice".into(),
        expires_at: Timestamp::now() + lifetime,
    }
}

async fn me_status(member: &Member, session: &str) -> u16 {
    member.api.get(session, "/v1/me").await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_record_not_signed_by_the_control_plane_or_claiming_a_longer_life_signs_nobody_in_on_any_process()
 {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &[]).await;
    let kv = sessions_bucket(&nats.url()).await;
    let (real_key, _) =
        enspace_tokens::signing_key::load_or_create(&dir.path().join("event-signing.key"))
            .expect("the cluster's key");
    let hour = SignedDuration::from_hours(1);

    // Each a session secret the forger knows, with a record for alice.
    let unsigned = SessionSecret::generate();
    let plain = rmp_serde::to_vec_named(&alice_for(hour)).expect("encode");
    let other_key = SessionSecret::generate();
    let by_other_key = enspace_cluster::session_mirror::seal(
        &other_key.hash(),
        &alice_for(hour),
        &EventSigner::generate(),
    )
    .expect("seal");
    let too_long = SessionSecret::generate();
    let for_a_month = enspace_cluster::session_mirror::seal(
        &too_long.hash(),
        &alice_for(SignedDuration::from_hours(30 * 24)),
        &real_key,
    )
    .expect("seal");
    // Bob's real record, moved to a key whose secret the forger knows.
    let bob = b.api.login("bob").await;
    let bobs_record = kv
        .get(hex::encode(
            SessionSecret::parse(&bob).expect("bob").hash().as_bytes(),
        ))
        .await
        .expect("get")
        .expect("bob's record");
    let moved = SessionSecret::generate();

    let forged = [
        (&unsigned, plain),
        (&other_key, by_other_key),
        (&too_long, for_a_month),
        (&moved, bobs_record.to_vec()),
    ];
    for (secret, value) in &forged {
        kv.put(key_of(secret), value.clone().into())
            .await
            .expect("put");
    }
    // Looked up by a process that has not copied it yet, or copied: never
    // taken.
    for member in [&a, &b] {
        for (secret, _) in &forged {
            assert_eq!(
                me_status(member, secret.expose()).await,
                401,
                "{} let a forged record sign someone in",
                member.node_id
            );
        }
    }
    for member in [&a, &b] {
        // Every process sees each record come by, and refuses it once.
        eventually(
            Duration::from_secs(20),
            "each forged record counted",
            || async { (metric(&member.api, REFUSED).await >= forged.len() as f64).then_some(()) },
        )
        .await;
        for (secret, _) in &forged {
            assert_eq!(
                me_status(member, secret.expose()).await,
                401,
                "{} let a forged record sign someone in",
                member.node_id
            );
        }
        assert_eq!(
            metric(&member.api, REFUSED).await,
            forged.len() as f64,
            "each counted once however often it is presented"
        );
        let logs = member.process.logs();
        assert!(logs.contains("ignored the session record"), "{logs}");
        for (secret, _) in &forged {
            let key = key_of(secret);
            assert!(!logs.contains(&key[..8]), "a hash prefix in the log");
            assert!(
                !logs.contains(&secret.expose()[..16]),
                "a secret in the log"
            );
        }
    }
    // Real sessions still work everywhere.
    let alice = a.api.login("alice").await;
    for member in [&a, &b] {
        assert_eq!(me_status(member, &alice).await, 200);
        assert_eq!(me_status(member, &bob).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_aged_out_session_record_ends_the_session_on_every_process() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = pair(dir.path(), &nats.url(), &["--session-ttl", "8s"]).await;
    let kv = sessions_bucket(&nats.url()).await;

    let ages = a.api.login("alice").await;
    let deleted = a.api.login("alice").await;
    for member in [&a, &b] {
        for session in [&ages, &deleted] {
            assert_eq!(me_status(member, session).await, 200, "{}", member.node_id);
        }
    }
    let key = hex::encode(
        SessionSecret::parse(&deleted)
            .expect("session")
            .hash()
            .as_bytes(),
    );
    kv.delete(&key).await.expect("delete");
    for member in [&a, &b] {
        eventually(
            Duration::from_secs(10),
            "the deleted session ended",
            || async { (me_status(member, &deleted).await == 401).then_some(()) },
        )
        .await;
    }
    for member in [&a, &b] {
        eventually(Duration::from_secs(30), "the session aged out", || async {
            (me_status(member, &ages).await == 401).then_some(())
        })
        .await;
    }
    let key = hex::encode(
        SessionSecret::parse(&ages)
            .expect("session")
            .hash()
            .as_bytes(),
    );
    eventually(
        Duration::from_secs(30),
        "the bucket's entry aged out as well",
        || async { kv.get(&key).await.expect("get").is_none().then_some(()) },
    )
    .await;
}
