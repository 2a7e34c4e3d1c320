//! What survives what: a SIGKILL in the middle of a burst of
//! creations, projections dropped or behind, and many creations at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use enspace_core::SecretHash;
use enspace_store::tamper::{PROJECTIONS, Tamper};
use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::process::audit;
use crate::support::{EnspaceProcess, TestApp, create_body, eventually};

fn ids(list: &Value) -> Vec<String> {
    list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn every_creation_that_got_a_201_survives_a_sigkill_in_the_middle_of_200() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut process = EnspaceProcess::serve(data.path());
    let api = ApiClient::from_base(&process.base);
    let alice = api.login("alice").await;

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let creations: Vec<_> = (0..200)
        .map(|i| {
            let (client, url, alice, acknowledged) = (
                client.clone(),
                api.url("/v1/tokens"),
                alice.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                let res = client
                    .post(url)
                    .bearer_auth(alice)
                    .json(&create_body(&format!("burst {i}")))
                    .send()
                    .await
                    .ok()?;
                if res.status() != 201 {
                    return None;
                }
                let body: Value = res.json().await.ok()?;
                acknowledged.fetch_add(1, Ordering::SeqCst);
                Some((
                    body["token"]["id"].as_str()?.to_owned(),
                    body["secret"].as_str()?.to_owned(),
                ))
            })
        })
        .collect();
    // Kill it once the burst is well under way.
    eventually(Duration::from_secs(30), "the first 201s", || {
        let n = acknowledged.load(Ordering::SeqCst);
        async move { (n >= 20).then_some(()) }
    })
    .await;
    process.kill(); // SIGKILL: no shutdown, no final flush
    let at_kill = acknowledged.load(Ordering::SeqCst);
    let mut created = Vec::new();
    for task in creations {
        if let Some(ok) = task.await.expect("task") {
            created.push(ok);
        }
    }
    eprintln!(
        "SIGKILL after {at_kill} of 200 creations were answered; {} answered 201 in all",
        created.len()
    );
    // The kill landed in the middle of the burst: some creations were
    // answered 201 before it, and at least one never was.
    assert!(
        (20..200).contains(&at_kill),
        "{at_kill} of 200 answered 201 before the kill"
    );
    assert!(
        created.len() < 200,
        "every creation answered 201: the kill came after the burst"
    );

    // Restart on the same data: every acknowledged creation is there.
    let mut process = EnspaceProcess::serve(data.path());
    let api = ApiClient::from_base(&process.base);
    let alice = api.login("alice").await;
    let list: Value = api
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    let listed: HashSet<String> = ids(&list).into_iter().collect();
    for (id, _) in &created {
        assert!(
            listed.contains(id),
            "acknowledged token {id} is listed after the restart"
        );
    }
    // And each still authenticates on the API node, found by its hash.
    for (id, secret) in &created {
        let res = api.get(secret, "/api/v1/workspaces/acme/records").await;
        assert_eq!(res.status(), 200, "token {id} works after the restart");
    }
    // The log holds exactly the listed creations (some unanswered ones may
    // have made it too, but nothing half-written).
    let audra = api.login("audra").await;
    let events: Value = api
        .get(&audra, "/v1/audit/events?limit=1000")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        events["events"].as_array().expect("events").len(),
        listed.len()
    );
    // The service keeps working where it stopped (for bob: alice may hold
    // her whole cap of 200 if every creation was committed before the kill,
    // answered or not).
    let bob = api.login("bob").await;
    let (token, _) = api
        .create_token(&bob, &create_body("after the crash"))
        .await;
    let events: Value = api
        .get(
            &bob,
            &format!("/v1/tokens/{}/events", token["id"].as_str().expect("id")),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(events["events"][0]["seq"], listed.len() as u64 + 1);
    process.terminate();

    let (code, out) = audit(&["verify", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("ok: {} events", listed.len() + 1)),
        "{out}"
    );
}

/// Everything a user can read about their tokens, and what API nodes look
/// up by hash, keyed for comparison.
#[derive(Debug, PartialEq)]
struct Observed {
    lists: BTreeMap<String, Value>,
    tokens: BTreeMap<String, Value>,
    events: BTreeMap<String, Value>,
    by_hash: BTreeMap<String, Option<String>>,
    audit: Value,
}

async fn observe(app: &TestApp, secrets: &[(String, String, String)]) -> Observed {
    let mut sessions = BTreeMap::new();
    for user in ["alice", "bob", "audra"] {
        sessions.insert(user.to_owned(), app.login(user).await);
    }
    let mut lists = BTreeMap::new();
    for user in ["alice", "bob"] {
        let list = app
            .get(&sessions[user], "/v1/tokens")
            .await
            .json()
            .await
            .expect("json");
        lists.insert(user.to_owned(), list);
    }
    let mut tokens = BTreeMap::new();
    let mut events = BTreeMap::new();
    let mut by_hash = BTreeMap::new();
    for (user, id, secret) in secrets {
        let session = &sessions[user];
        let path = format!("/v1/tokens/{id}");
        let res = app.get(session, &path).await;
        assert_eq!(res.status(), 200);
        tokens.insert(id.clone(), res.json().await.expect("json"));
        let history = app
            .get(session, &format!("{path}/events"))
            .await
            .json()
            .await
            .expect("json");
        events.insert(id.clone(), history);
        let found = app
            .state
            .store
            .projections
            .token_by_hash(&SecretHash::of(secret))
            .expect("lookup")
            .map(|view| format!("{} {:?}", view.id, view.revoked_at));
        by_hash.insert(id.clone(), found);
    }
    let audra = app.login("audra").await;
    let audit = app
        .get(&audra, "/v1/audit/events?limit=1000")
        .await
        .json()
        .await
        .expect("json");
    Observed {
        lists,
        tokens,
        events,
        by_hash,
        audit,
    }
}

/// A store with tokens of two users, some revoked: `(user, id, secret)`.
async fn populated() -> (TestApp, Vec<(String, String, String)>) {
    let app = TestApp::spawn_at("2026-04-01T09:00:00Z").await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let mut made = Vec::new();
    for i in 0..9 {
        let (user, session) = if i % 3 == 1 {
            ("bob", &bob)
        } else {
            ("alice", &alice)
        };
        let expiration = ["1m", "1y", "never"][i % 3];
        let body = json!({"description": format!("token {i}"), "expiration": expiration,
                          "scopes": ["read", "delete"], "workspaces": ["acme"]});
        let (token, secret) = app.create_token(session, &body).await;
        let id = token["id"].as_str().expect("id").to_owned();
        if i % 4 == 0 {
            assert_eq!(
                app.delete(session, &format!("/v1/tokens/{id}"))
                    .await
                    .status(),
                204
            );
        }
        made.push((user.to_owned(), id, secret));
    }
    (app, made)
}

async fn restart_after(app: TestApp, change: impl FnOnce(&Tamper)) -> TestApp {
    let (data, clock) = app.stop().await;
    change(&Tamper::open(data.path()).expect("open the stopped store"));
    TestApp::spawn_with(data, clock).await
}

#[tokio::test]
async fn dropping_every_projection_tree_and_restarting_rebuilds_the_same_state() {
    let (app, made) = populated().await;
    let before = observe(&app, &made).await;
    assert!(before.by_hash.values().all(Option::is_some));
    let app = restart_after(app, |store| {
        for tree in PROJECTIONS {
            assert!(
                store.drop_projection(tree).expect("drop tree"),
                "{tree} existed"
            );
        }
        for tree in PROJECTIONS {
            assert!(!store.has_tree(tree), "{tree} is gone");
        }
    })
    .await;
    assert_eq!(observe(&app, &made).await, before);
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ready.status(), 200);
    // And the writer carries on from the log's head.
    let alice = app.login("alice").await;
    let (token, _) = app
        .create_token(&alice, &create_body("after the rebuild"))
        .await;
    let events: Value = app
        .get(
            &alice,
            &format!("/v1/tokens/{}/events", token["id"].as_str().expect("id")),
        )
        .await
        .json()
        .await
        .expect("json");
    let head = before.audit["events"].as_array().expect("events").len() as u64;
    assert_eq!(events["events"][0]["seq"], head + 1);
}

#[tokio::test]
async fn dropping_any_one_projection_tree_and_restarting_rebuilds_it() {
    let (mut app, made) = populated().await;
    let before = observe(&app, &made).await;
    for tree in PROJECTIONS {
        app = restart_after(app, |store| {
            assert!(
                store.drop_projection(tree).expect("drop tree"),
                "{tree} existed"
            );
        })
        .await;
        assert_eq!(observe(&app, &made).await, before, "after dropping {tree}");
    }
}

#[tokio::test]
async fn projections_behind_the_log_are_caught_up_on_start() {
    let (app, made) = populated().await;
    let before = observe(&app, &made).await;
    // As if the service had died after appending events 6.. but before
    // folding them: the projections' mark says 5, and the state of every
    // later token is gone from them.
    let app = restart_after(app, |store| {
        store.set_projections_mark(5).expect("mark");
        let later: Vec<&(String, String, String)> = made.iter().skip(4).collect();
        for (_, id, _) in later {
            let id = ulid::Ulid::from_string(id).expect("ulid");
            store.forget_token(id).expect("forget");
        }
    })
    .await;
    assert_eq!(observe(&app, &made).await, before);
}

#[tokio::test]
async fn projections_claiming_to_be_ahead_of_the_log_are_rebuilt_from_it() {
    let (app, made) = populated().await;
    let before = observe(&app, &made).await;
    let app = restart_after(app, |store| {
        store.set_projections_mark(1_000).expect("mark");
        // A token that no event ever created.
        store
            .list_phantom_token("alice", ulid::Ulid::new())
            .expect("list");
    })
    .await;
    assert_eq!(observe(&app, &made).await, before);
}

#[tokio::test]
async fn fifty_parallel_creations_get_fifty_distinct_tokens_and_a_gap_free_log() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let bodies: Vec<(String, Value)> = (0..50)
        .map(|i| {
            let who = if i % 2 == 0 { &alice } else { &bob };
            (who.clone(), create_body(&format!("parallel {i}")))
        })
        .collect();
    let creations = bodies
        .iter()
        .map(|(who, body)| app.post_json(who, "/v1/tokens", body));
    let mut ids = HashSet::new();
    let mut secrets = HashSet::new();
    for res in futures::future::join_all(creations).await {
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.expect("json");
        assert!(ids.insert(body["token"]["id"].as_str().expect("id").to_owned()));
        assert!(secrets.insert(body["secret"].as_str().expect("secret").to_owned()));
    }
    assert_eq!((ids.len(), secrets.len()), (50, 50));

    let audra = app.login("audra").await;
    let page: Value = app
        .get(&audra, "/v1/audit/events?limit=1000")
        .await
        .json()
        .await
        .expect("json");
    let events = page["events"].as_array().expect("events");
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    let logged: HashSet<String> = events
        .iter()
        .map(|e| e["token_id"].as_str().expect("token id").to_owned())
        .collect();
    assert_eq!(logged, ids);
    // One chain, never forked.
    let mut prev = "0".repeat(64);
    for e in events {
        assert_eq!(e["prev_hash"], prev.as_str());
        prev = e["hash"].as_str().expect("hash").to_owned();
    }
    // Each user sees exactly their own 25.
    for who in [&alice, &bob] {
        let list: Value = app.get(who, "/v1/tokens").await.json().await.expect("json");
        assert_eq!(list["tokens"].as_array().expect("tokens").len(), 25);
    }
    // And the store agrees once stopped.
    let (data, _) = app.stop().await;
    let (code, out) = audit(&["verify", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 50 events"), "{out}");
}

#[tokio::test]
async fn parallel_creations_and_revocations_keep_one_intact_chain() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let mut made = Vec::new();
    for i in 0..20 {
        let (token, _) = app
            .create_token(&alice, &create_body(&format!("t{i}")))
            .await;
        made.push(token["id"].as_str().expect("id").to_owned());
    }
    let paths: Vec<String> = made.iter().map(|id| format!("/v1/tokens/{id}")).collect();
    let bodies: Vec<Value> = (0..20).map(|i| create_body(&format!("n{i}"))).collect();
    let revokes = paths.iter().map(|p| app.delete(&alice, p));
    let creates = bodies
        .iter()
        .map(|b| app.post_json(&alice, "/v1/tokens", b));
    let (revoked, created) = futures::future::join(
        futures::future::join_all(revokes),
        futures::future::join_all(creates),
    )
    .await;
    assert!(revoked.iter().all(|r| r.status() == 204));
    assert!(created.iter().all(|r| r.status() == 201));
    let (data, _) = app.stop().await;
    let (code, out) = audit(&["verify", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 60 events"), "{out}");
}

/// After a SIGKILL the projections cannot be trusted and are folded again
/// from the log at start; the process says how far that fold is (a log line
/// every `ENSPACE_PROGRESS_EVERY` seconds; 0 here, so every batch).
#[tokio::test]
async fn a_restart_after_a_sigkill_rebuilds_the_projections_and_says_how_far_it_is() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut process = EnspaceProcess::serve(data.path());
    let api = ApiClient::from_base(&process.base);
    let alice = api.login("alice").await;
    for i in 0..3 {
        api.create_token(&alice, &create_body(&format!("before the kill {i}")))
            .await;
    }
    process.kill();
    let dir = data.path().to_str().expect("utf-8 path");
    let mut restarted = EnspaceProcess::start(
        &["serve", "--data", dir],
        &[("ENSPACE_PROGRESS_EVERY", "0")],
    );
    let api = ApiClient::from_base(&restarted.base);
    let alice = api.login("alice").await;
    assert_eq!(api.tokens(&alice).await.len(), 3);
    let logs = restarted.logs();
    assert!(
        logs.contains("rebuilding the projections from the event log"),
        "{logs}"
    );
    assert!(
        logs.contains("3 events folded into the projections of 3"),
        "{logs}"
    );
    restarted.terminate();
}
