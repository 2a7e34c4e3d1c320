//! A user holds a bounded number of active tokens, exactly, even when
//! creating many at once; and the list of tokens pages.

use std::collections::HashSet;

use futures::future::join_all;
use jiff::SignedDuration;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem};

fn body(n: usize, expiration: &str) -> Value {
    json!({"description": format!("token {n}"), "expiration": expiration,
           "scopes": ["read"], "workspaces": ["acme"]})
}

/// Creates `n` tokens for the session, 25 at a time; their ids.
async fn create_many(app: &TestApp, session: &str, n: usize, expiration: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let bodies: Vec<Value> = chunk.iter().map(|i| body(*i, expiration)).collect();
        let created = join_all(bodies.iter().map(|b| app.create_token(session, b))).await;
        ids.extend(
            created
                .into_iter()
                .map(|(t, _)| t["id"].as_str().expect("id").to_owned()),
        );
    }
    ids
}

async fn create(app: &TestApp, session: &str, expiration: &str) -> reqwest::Response {
    app.post_json(session, "/v1/tokens", &body(0, expiration))
        .await
}

#[tokio::test]
async fn the_201st_active_token_is_422_and_expiry_or_revocation_make_room() {
    let app = TestApp::spawn_at("2026-03-01T08:00:00Z").await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let short = create_many(&app, &alice, 1, "1m").await;
    let long = create_many(&app, &alice, 199, "3m").await;
    let refused = create(&app, &alice, "never").await;
    let problem = assert_problem(refused, 422, "token_limit_reached").await;
    assert!(problem["detail"].as_str().expect("detail").contains("200"));
    assert_eq!(
        create(&app, &bob, "3m").await.status(),
        201,
        "another user is not affected"
    );

    // The one-month token expires: a place frees up.
    app.clock.advance(SignedDuration::from_hours(32 * 24));
    let alice = app.login("alice").await;
    assert_eq!(create(&app, &alice, "3m").await.status(), 201);
    assert_problem(create(&app, &alice, "3m").await, 422, "token_limit_reached").await;
    assert_eq!(short.len(), 1);

    // Revoking one frees another.
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{}", long[0]))
            .await
            .status(),
        204
    );
    assert_eq!(create(&app, &alice, "3m").await.status(), 201);
    assert_problem(create(&app, &alice, "3m").await, 422, "token_limit_reached").await;
}

async fn rotate(app: &TestApp, session: &str, id: &str, overlap: &str) -> reqwest::Response {
    let path = format!("/v1/tokens/{id}/rotate");
    app.post_json(session, &path, &json!({"overlap": overlap}))
        .await
}

#[tokio::test]
async fn at_the_cap_a_rotation_without_overlap_takes_the_old_place_and_one_with_overlap_is_422() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let ids = create_many(&app, &alice, 200, "3m").await;
    // An overlap would make 201 live tokens for an hour: refused.
    assert_problem(
        rotate(&app, &alice, &ids[0], "1h").await,
        422,
        "token_limit_reached",
    )
    .await;
    // Without one the successor takes the old token's place, again and again.
    let res = rotate(&app, &alice, &ids[0], "0").await;
    assert_eq!(res.status(), 201);
    let successor: Value = res.json().await.expect("json");
    let successor = successor["token"]["id"].as_str().expect("id").to_owned();
    assert_eq!(rotate(&app, &alice, &successor, "0").await.status(), 201);
    assert_problem(create(&app, &alice, "3m").await, 422, "token_limit_reached").await;
    // Chained rotations with overlap cannot pile up tokens past the cap.
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{}", ids[1]))
            .await
            .status(),
        204
    );
    assert_eq!(rotate(&app, &alice, &ids[2], "30d").await.status(), 201);
    assert_problem(
        rotate(&app, &alice, &ids[3], "30d").await,
        422,
        "token_limit_reached",
    )
    .await;
}

#[tokio::test]
async fn thirty_concurrent_creations_at_190_tokens_give_exactly_ten() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    create_many(&app, &alice, 190, "3m").await;
    let statuses: Vec<u16> = join_all((0..30).map(|_| create(&app, &alice, "3m")))
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        20,
        "{statuses:?}"
    );
    let all: Value = app
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["tokens"].as_array().expect("array").len(), 200);
}

async fn page(app: &TestApp, session: &str, query: &str) -> Value {
    let res = app.get(session, &format!("/v1/tokens?{query}")).await;
    assert_eq!(res.status(), 200, "{query}");
    res.json().await.expect("json")
}

fn ids(list: &Value) -> Vec<String> {
    list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn pages_of_the_token_list_yield_every_token_once_newest_first() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mut created = create_many(&app, &alice, 120, "3m").await;
    create_many(&app, &bob, 3, "3m").await;
    created.sort();
    created.reverse();
    let whole = page(&app, &alice, "").await;
    assert_eq!(
        ids(&whole),
        created,
        "without limit: the whole list, newest first"
    );
    assert!(
        whole.get("next_cursor").is_none(),
        "shaped as it always was"
    );

    let mut paged = Vec::new();
    let mut query = "limit=50".to_owned();
    let mut sizes = Vec::new();
    loop {
        let p = page(&app, &alice, &query).await;
        sizes.push(ids(&p).len());
        paged.extend(ids(&p));
        match p.get("next_cursor") {
            Some(Value::String(cursor)) => query = format!("limit=50&cursor={cursor}"),
            Some(Value::Null) => break,
            other => panic!("a page always has next_cursor: {other:?}"),
        }
    }
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(paged, created);
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 120);

    let default_page = page(&app, &alice, &format!("cursor={}", created[0])).await;
    assert_eq!(
        ids(&default_page),
        created[1..101].to_vec(),
        "a cursor alone pages by 100"
    );
}

#[tokio::test]
async fn bad_limits_and_cursors_on_the_token_list_are_422_never_a_5xx() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for limit in ["0", "101", "-1", "abc", "1e3", "", "99999999999999999999"] {
        let res = app.get(&alice, &format!("/v1/tokens?limit={limit}")).await;
        assert_problem(res, 422, "invalid_limit").await;
    }
    let long = "A".repeat(5000);
    for cursor in [
        "garbage",
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
        long.as_str(),
        "%00",
        "ens_pat_x",
    ] {
        let res = app
            .get(&alice, &format!("/v1/tokens?limit=10&cursor={cursor}"))
            .await;
        let problem = assert_problem(res, 422, "invalid_cursor").await;
        assert!(!problem.to_string().contains("ens_pat_"));
    }
}

#[tokio::test]
async fn the_cap_counts_the_tokens_made_before_a_restart() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    create_many(&app, &alice, 200, "never").await;
    let (data, clock) = app.stop().await;
    let app = TestApp::spawn_with(data, clock).await;
    let alice = app.login("alice").await;
    assert_problem(create(&app, &alice, "3m").await, 422, "token_limit_reached").await;
}
