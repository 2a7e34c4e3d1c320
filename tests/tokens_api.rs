//! Token lifecycle over real HTTP.

use serde_json::{Value, json};

use crate::support::{TestApp, create_body};

#[tokio::test]
async fn created_token_is_listed_newest_first_without_its_secret() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (first, _) = app.create_token(&alice, &create_body("first")).await;
    let (second, secret) = app.create_token(&alice, &create_body("second")).await;
    let res = app.get(&alice, "/v1/tokens").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("body");
    assert!(!text.contains(&secret));
    let list: Value = serde_json::from_str(&text).expect("json");
    let ids: Vec<&Value> = list["tokens"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(ids, vec![&second["id"], &first["id"]]);
    assert_eq!(list["tokens"][0]["status"], "active");
    assert_eq!(list["tokens"][0]["scopes"], json!(["read", "write"]));
}

fn id_of(token: &Value) -> &str {
    token["id"].as_str().expect("token id")
}

#[tokio::test]
async fn create_answers_201_with_location_no_store_the_token_and_its_secret() {
    let app = TestApp::spawn_at("2026-11-28T10:00:00.123Z").await;
    let alice = app.login("alice").await;
    let res = app
        .post_json(
            &alice,
            "/v1/tokens",
            &json!({"description": "ERP Integration", "expiration": "3m",
                    "scopes": ["read", "write"], "workspaces": ["acme"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
    let body: Value = res.json().await.expect("json");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 2, "only token and secret: {keys:?}");
    let token = &body["token"];
    assert_eq!(location, format!("/v1/tokens/{}", id_of(token)));
    assert!(ulid::Ulid::from_string(id_of(token)).is_ok());
    let mut shape = token.clone();
    shape["id"] = json!("<id>");
    assert_eq!(
        shape,
        json!({
            "id": "<id>",
            "description": "ERP Integration",
            "expiration": "3m",
            "scopes": ["read", "write"],
            "workspaces": ["acme"],
            "created_at": "2026-11-28T10:00:00.123Z",
            "expires_at": "2027-02-28T10:00:00.123Z",
            "revoked_at": null,
            "status": "active",
            "last_used_at": null,
            "replaces": null,
            "replaced_by": null,
            "revoked_reason": null,
            "leak_url": null,
            "allowed_cidrs": null,
            "not_before": null,
            "self_rotate": false,
        })
    );
    assert!(
        body["secret"]
            .as_str()
            .expect("secret")
            .starts_with("ens_pat_")
    );
    // The Location names the token as GET shows it.
    let fetched = app.get(&alice, &location).await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.json::<Value>().await.expect("json"), *token);
}

#[tokio::test]
async fn list_shows_only_the_callers_tokens_newest_first_with_every_status() {
    let app = TestApp::spawn_at("2026-01-01T00:00:00Z").await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (expiring, _) = app.create_token(&alice, &json!({"description": "expiring", "expiration": "1m", "scopes": ["read"], "workspaces": ["acme"]})).await;
    let (revoked, _) = app.create_token(&alice, &create_body("revoked")).await;
    app.create_token(&bob, &create_body("bob's")).await;
    let (active, _) = app.create_token(&alice, &json!({"description": "forever", "expiration": "never", "scopes": ["read"], "workspaces": ["globex"]})).await;
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{}", id_of(&revoked)))
            .await
            .status(),
        204
    );
    app.clock.set("2026-02-15T00:00:00Z".parse().expect("ts"));
    let alice = app.login("alice").await;
    let list: Value = app
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    let tokens = list["tokens"].as_array().expect("array");
    let seen: Vec<(&str, &str)> = tokens
        .iter()
        .map(|t| (id_of(t), t["status"].as_str().expect("status")))
        .collect();
    assert_eq!(
        seen,
        vec![
            (id_of(&active), "active"),
            (id_of(&revoked), "revoked"),
            (id_of(&expiring), "expired"),
        ]
    );
    assert_eq!(tokens[0]["expires_at"], Value::Null);
    let bob_list: Value = app
        .get(&app.login("bob").await, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(bob_list["tokens"].as_array().expect("array").len(), 1);
    assert_eq!(bob_list["tokens"][0]["description"], "bob's");
}

#[tokio::test]
async fn list_of_a_user_without_tokens_is_empty() {
    let app = TestApp::spawn().await;
    let bob = app.login("bob").await;
    let res = app.get(&bob, "/v1/tokens").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"tokens": []})
    );
}

#[tokio::test]
async fn revoke_answers_204_and_the_token_is_revoked_at_that_instant() {
    let app = TestApp::spawn_at("2026-05-01T12:00:00Z").await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("to revoke")).await;
    let path = format!("/v1/tokens/{}", id_of(&token));
    app.clock
        .set("2026-05-01T12:34:56.789Z".parse().expect("ts"));
    let res = app.delete(&alice, &path).await;
    assert_eq!(res.status(), 204);
    assert!(res.text().await.expect("body").is_empty());
    let after: Value = app.get(&alice, &path).await.json().await.expect("json");
    assert_eq!(after["status"], "revoked");
    assert_eq!(after["revoked_at"], "2026-05-01T12:34:56.789Z");
    assert_eq!(after["created_at"], token["created_at"]);
    assert_eq!(after["expires_at"], token["expires_at"]);
}

#[tokio::test]
async fn revoking_again_answers_204_and_records_nothing_new() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let audra = app.login("audra").await;
    let (token, _) = app.create_token(&alice, &create_body("twice")).await;
    let path = format!("/v1/tokens/{}", id_of(&token));
    assert_eq!(app.delete(&alice, &path).await.status(), 204);
    let first: Value = app.get(&alice, &path).await.json().await.expect("json");
    app.clock.advance(jiff::SignedDuration::from_mins(5));
    for _ in 0..3 {
        assert_eq!(app.delete(&alice, &path).await.status(), 204);
    }
    let again: Value = app.get(&alice, &path).await.json().await.expect("json");
    assert_eq!(
        again["revoked_at"], first["revoked_at"],
        "the first revocation stands"
    );
    let events: Value = app
        .get(&alice, &format!("{path}/events"))
        .await
        .json()
        .await
        .expect("json");
    let types: Vec<&str> = events["events"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["token_created", "token_revoked"]);
    let audit: Value = app
        .get(&audra, "/v1/audit/events")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(audit["events"].as_array().expect("array").len(), 2);
    assert_eq!(app.state.store.log.len(), 2);
}

#[tokio::test]
async fn concurrent_revocations_of_one_token_record_one_event() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("raced")).await;
    let path = format!("/v1/tokens/{}", id_of(&token));
    let revokes = (0..20).map(|_| app.delete(&alice, &path));
    for res in futures::future::join_all(revokes).await {
        assert_eq!(res.status(), 204);
    }
    assert_eq!(app.state.store.log.len(), 2);
}

#[tokio::test]
async fn an_expired_token_can_still_be_revoked() {
    let app = TestApp::spawn_at("2026-01-01T00:00:00Z").await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &json!({"description": "old", "expiration": "1m", "scopes": ["read"], "workspaces": ["acme"]})).await;
    app.clock.set("2026-03-01T00:00:00Z".parse().expect("ts"));
    let alice = app.login("alice").await;
    let path = format!("/v1/tokens/{}", id_of(&token));
    let before: Value = app.get(&alice, &path).await.json().await.expect("json");
    assert_eq!(before["status"], "expired");
    assert_eq!(app.delete(&alice, &path).await.status(), 204);
    let after: Value = app.get(&alice, &path).await.json().await.expect("json");
    assert_eq!(after["status"], "revoked");
    assert_eq!(after["revoked_at"], "2026-03-01T00:00:00Z");
}

#[tokio::test]
async fn token_events_tell_its_history_in_order() {
    let app = TestApp::spawn_at("2026-06-01T09:00:00Z").await;
    let alice = app.login("alice").await;
    let (other, _) = app.create_token(&alice, &create_body("other")).await;
    let (token, secret) = app.create_token(&alice, &json!({"description": "history", "expiration": "1y", "scopes": ["delete", "read"], "workspaces": ["globex"]})).await;
    app.clock.set("2026-06-01T10:00:00Z".parse().expect("ts"));
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{}", id_of(&token)))
            .await
            .status(),
        204
    );
    let res = app
        .get(&alice, &format!("/v1/tokens/{}/events", id_of(&token)))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let events = body["events"].as_array().expect("array");
    assert_eq!(events.len(), 2);
    let (created, revoked) = (&events[0], &events[1]);
    assert_eq!(created["seq"], 2);
    assert_eq!(created["type"], "token_created");
    assert_eq!(created["actor"], "alice");
    assert_eq!(created["token_id"], token["id"]);
    assert_eq!(created["at"], "2026-06-01T09:00:00Z");
    assert_eq!(created["data"]["description"], "history");
    assert_eq!(created["data"]["scopes"], json!(["read", "delete"]));
    assert_eq!(created["data"]["workspaces"], json!(["globex"]));
    assert_eq!(created["data"]["expiration"], "1y");
    assert_eq!(created["data"]["expires_at"], "2027-06-01T09:00:00Z");
    assert_eq!(created["data"]["user_id"], "alice");
    // Only the secret's SHA-256 is recorded.
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    assert_eq!(created["data"]["secret_hash"], hash);
    assert_eq!(revoked["seq"], 3);
    assert_eq!(revoked["type"], "token_revoked");
    assert_eq!(revoked["at"], "2026-06-01T10:00:00Z");
    assert_eq!(
        revoked["prev_hash"], created["hash"],
        "the chain runs through this token's events"
    );
    for e in events {
        assert!(ulid::Ulid::from_string(e["id"].as_str().expect("id")).is_ok());
        assert!(!e["payload"].as_str().expect("payload").is_empty());
        assert_eq!(e["hash"].as_str().expect("hash").len(), 64);
        assert_eq!(e["prev_hash"].as_str().expect("prev").len(), 64);
    }
    // The other token's history is its own.
    let other_events: Value = app
        .get(&alice, &format!("/v1/tokens/{}/events", id_of(&other)))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(other_events["events"].as_array().expect("array").len(), 1);
    assert_eq!(other_events["events"][0]["seq"], 1);
}

#[tokio::test]
async fn times_are_rfc3339_in_utc() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("utc")).await;
    for field in ["created_at", "expires_at"] {
        let s = token[field].as_str().expect("time");
        assert!(s.ends_with('Z'), "{field} = {s}");
        assert!(s.parse::<jiff::Timestamp>().is_ok(), "{field} = {s}");
    }
}
