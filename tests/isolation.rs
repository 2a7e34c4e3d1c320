//! One user never sees another's tokens, and only auditors read the whole
//! log.

use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, create_body};

#[tokio::test]
async fn bob_cannot_see_read_revoke_or_read_the_events_of_alices_token() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    // Both belong to acme: sharing a workspace shares no tokens.
    let (token, _) = app.create_token(&alice, &create_body("alice's")).await;
    let id = token["id"].as_str().expect("id");
    let path = format!("/v1/tokens/{id}");

    let list: Value = app
        .get(&bob, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list, json!({"tokens": []}));
    let read = assert_problem(app.get(&bob, &path).await, 404, "token_not_found").await;
    let events = assert_problem(
        app.get(&bob, &format!("{path}/events")).await,
        404,
        "token_not_found",
    )
    .await;
    let revoke = assert_problem(app.delete(&bob, &path).await, 404, "token_not_found").await;

    // Indistinguishable from a token that does not exist at all.
    let unknown = format!("/v1/tokens/{}", ulid::Ulid::new());
    assert_eq!(
        read,
        assert_problem(app.get(&bob, &unknown).await, 404, "token_not_found").await
    );
    assert_eq!(
        events,
        assert_problem(
            app.get(&bob, &format!("{unknown}/events")).await,
            404,
            "token_not_found"
        )
        .await
    );
    assert_eq!(
        revoke,
        assert_problem(app.delete(&bob, &unknown).await, 404, "token_not_found").await
    );

    // Alice's token is untouched and nothing was recorded for bob's attempts.
    let mine: Value = app.get(&alice, &path).await.json().await.expect("json");
    assert_eq!(mine["status"], "active");
    assert_eq!(mine["revoked_at"], Value::Null);
    assert_eq!(app.state.store.log.len(), 1);
}

#[tokio::test]
async fn an_auditor_has_no_tokens_of_others_through_the_token_api() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let audra = app.login("audra").await;
    let (token, _) = app.create_token(&alice, &create_body("alice's")).await;
    let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
    let list: Value = app
        .get(&audra, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list, json!({"tokens": []}));
    assert_problem(app.get(&audra, &path).await, 404, "token_not_found").await;
    assert_problem(app.delete(&audra, &path).await, 404, "token_not_found").await;
}

#[tokio::test]
async fn a_non_auditor_gets_403_on_the_audit_log() {
    let app = TestApp::spawn().await;
    for user in ["alice", "bob"] {
        let session = app.login(user).await;
        for query in ["", "?after=0", "?limit=1", "?limit=0"] {
            let res = app.get(&session, &format!("/v1/audit/events{query}")).await;
            assert_problem(res, 403, "auditor_only").await;
        }
    }
    let res = app
        .client
        .get(app.url("/v1/audit/events"))
        .send()
        .await
        .expect("GET");
    assert_problem(res, 401, "unauthenticated").await;
}

/// Creates `n` tokens for alice (and revokes every third), returning the count of events.
async fn fill_log(app: &TestApp, n: usize) -> u64 {
    let alice = app.login("alice").await;
    let mut events = 0;
    for i in 0..n {
        let (token, _) = app
            .create_token(&alice, &create_body(&format!("t{i}")))
            .await;
        events += 1;
        if i % 3 == 0 {
            let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
            assert_eq!(app.delete(&alice, &path).await.status(), 204);
            events += 1;
        }
    }
    events
}

#[tokio::test]
async fn an_auditor_pages_through_every_event_with_after_and_next_after() {
    let app = TestApp::spawn().await;
    let total = fill_log(&app, 10).await; // 14 events
    assert_eq!(total, 14);
    let audra = app.login("audra").await;

    let mut seen = Vec::new();
    let mut after = 0u64;
    let mut pages = 0;
    loop {
        let res = app
            .get(&audra, &format!("/v1/audit/events?after={after}&limit=4"))
            .await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.expect("json");
        let events = page["events"].as_array().expect("array");
        assert!(events.len() <= 4);
        seen.extend(events.iter().map(|e| e["seq"].as_u64().expect("seq")));
        pages += 1;
        match page["next_after"].as_u64() {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    seen.last().copied(),
                    "next_after is the last seq of the page"
                );
                after = next;
            }
            None => {
                assert_eq!(page["next_after"], Value::Null);
                break;
            }
        }
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    assert_eq!(pages, 4);

    // Defaults: from the start, up to 100, no next page here.
    let all: Value = app
        .get(&audra, "/v1/audit/events")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["events"].as_array().expect("array").len(), 14);
    assert_eq!(all["next_after"], Value::Null);
    // Past the end: empty, no next page.
    let past: Value = app
        .get(&audra, "/v1/audit/events?after=14")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(past, json!({"events": [], "next_after": null}));
    let far: Value = app
        .get(&audra, &format!("/v1/audit/events?after={}", u64::MAX))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(far, json!({"events": [], "next_after": null}));
    // A page that ends exactly at the head has no next page.
    let last: Value = app
        .get(&audra, "/v1/audit/events?after=10&limit=4")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(last["events"].as_array().expect("array").len(), 4);
    assert_eq!(last["next_after"], Value::Null);
}

#[tokio::test]
async fn the_default_audit_page_is_100_events_and_the_largest_1000() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bodies: Vec<Value> = (0..120).map(|i| create_body(&format!("t{i}"))).collect();
    let creations = bodies
        .iter()
        .map(|body| app.post_json(&alice, "/v1/tokens", body));
    for res in futures::future::join_all(creations).await {
        assert_eq!(res.status(), 201);
    }
    let audra = app.login("audra").await;
    let page: Value = app
        .get(&audra, "/v1/audit/events")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["events"].as_array().expect("array").len(), 100);
    assert_eq!(page["next_after"], 100);
    let page: Value = app
        .get(&audra, "/v1/audit/events?limit=1000")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["events"].as_array().expect("array").len(), 120);
    assert_eq!(page["next_after"], Value::Null);
    let page: Value = app
        .get(&audra, "/v1/audit/events?limit=1")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["events"].as_array().expect("array").len(), 1);
    assert_eq!(page["next_after"], 1);
}

#[tokio::test]
async fn audit_limit_outside_1_to_1000_or_garbage_is_422() {
    let app = TestApp::spawn().await;
    let audra = app.login("audra").await;
    for limit in [
        "0",
        "1001",
        "-1",
        "abc",
        "",
        "1.5",
        "99999999999999999999999",
    ] {
        let res = app
            .get(&audra, &format!("/v1/audit/events?limit={limit}"))
            .await;
        let problem = assert_problem(res, 422, "invalid_limit").await;
        assert_eq!(problem["field"], "limit");
    }
    for after in ["-1", "x", "", "1e3", "18446744073709551616"] {
        let res = app
            .get(&audra, &format!("/v1/audit/events?after={after}"))
            .await;
        let problem = assert_problem(res, 422, "invalid_after").await;
        assert_eq!(problem["field"], "after");
    }
}
