//! Expiry by the injected clock: `expires_at` is `created_at`
//! plus calendar months, clamped to the end of a shorter month; a token is
//! `active` before that instant and `expired` from it on.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::TestApp;

fn body(expiration: &str) -> Value {
    json!({"description": format!("expires {expiration}"), "expiration": expiration,
           "scopes": ["read"], "workspaces": ["acme"]})
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("RFC 3339")
}

/// Creates a token with the clock at `created`, returning its `expires_at`.
async fn expires_at(created: &str, expiration: &str) -> Value {
    let app = TestApp::spawn_at(created).await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &body(expiration)).await;
    assert_eq!(token["created_at"], created);
    assert_eq!(token["expiration"], expiration);
    token["expires_at"].clone()
}

#[tokio::test]
async fn each_of_the_seven_presets_adds_its_calendar_months() {
    let app = TestApp::spawn_at("2026-08-31T23:59:59.999Z").await;
    let alice = app.login("alice").await;
    let cases = [
        ("1m", json!("2026-09-30T23:59:59.999Z")),
        ("2m", json!("2026-10-31T23:59:59.999Z")),
        ("3m", json!("2026-11-30T23:59:59.999Z")),
        ("6m", json!("2027-02-28T23:59:59.999Z")),
        ("1y", json!("2027-08-31T23:59:59.999Z")),
        ("2y", json!("2028-08-31T23:59:59.999Z")),
        ("never", json!(null)),
    ];
    for (expiration, want) in cases {
        let (token, _) = app.create_token(&alice, &body(expiration)).await;
        assert_eq!(token["expiration"], expiration);
        assert_eq!(token["expires_at"], want, "{expiration}");
        assert_eq!(token["status"], "active");
        // The stored token says the same after a round trip.
        let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
        let stored: Value = app.get(&alice, &path).await.json().await.expect("json");
        assert_eq!(stored["expires_at"], want, "{expiration} stored");
    }
}

#[tokio::test]
async fn one_month_after_january_31st_is_the_last_day_of_february() {
    assert_eq!(
        expires_at("2026-01-31T10:00:00Z", "1m").await,
        "2026-02-28T10:00:00Z"
    );
    // In a leap year, the 29th.
    assert_eq!(
        expires_at("2028-01-31T10:00:00Z", "1m").await,
        "2028-02-29T10:00:00Z"
    );
}

#[tokio::test]
async fn one_year_after_february_29th_is_february_28th() {
    assert_eq!(
        expires_at("2024-02-29T00:00:00Z", "1y").await,
        "2025-02-28T00:00:00Z"
    );
    assert_eq!(
        expires_at("2024-02-29T12:30:00Z", "2y").await,
        "2026-02-28T12:30:00Z"
    );
    // Four years on would land on a 29th again, but no preset is that long;
    // 2y from 29 Feb 2028 is 28 Feb 2030.
    assert_eq!(
        expires_at("2028-02-29T23:59:59Z", "2y").await,
        "2030-02-28T23:59:59Z"
    );
}

#[tokio::test]
async fn month_ends_clamp_and_years_roll_over() {
    let cases = [
        ("2026-03-31T08:00:00Z", "1m", "2026-04-30T08:00:00Z"),
        ("2026-05-31T08:00:00Z", "1m", "2026-06-30T08:00:00Z"),
        ("2026-12-31T23:00:00Z", "2m", "2027-02-28T23:00:00Z"),
        ("2026-11-30T00:00:00Z", "3m", "2027-02-28T00:00:00Z"),
        ("2027-11-30T00:00:00Z", "3m", "2028-02-29T00:00:00Z"),
        ("2026-08-29T00:00:00Z", "6m", "2027-02-28T00:00:00Z"),
        ("2026-02-28T06:00:00Z", "1m", "2026-03-28T06:00:00Z"),
        ("2026-01-15T00:00:00.001Z", "1y", "2027-01-15T00:00:00.001Z"),
    ];
    for (created, expiration, want) in cases {
        assert_eq!(
            expires_at(created, expiration).await,
            want,
            "{created} + {expiration}"
        );
    }
}

#[tokio::test]
async fn a_token_is_active_before_expires_at_and_expired_from_that_instant_on() {
    let app = TestApp::spawn_at("2026-01-31T10:00:00Z").await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &body("1m")).await;
    let (forever, _) = app.create_token(&alice, &body("never")).await;
    let expires = ts(token["expires_at"].as_str().expect("expires_at"));
    assert_eq!(expires, ts("2026-02-28T10:00:00Z"));
    let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
    let status_at = |at: Timestamp| {
        let app = &app;
        let path = path.clone();
        async move {
            app.clock.set(at);
            let session = app.login("alice").await; // sessions last 12 hours
            let one: Value = app.get(&session, &path).await.json().await.expect("json");
            let list: Value = app
                .get(&session, "/v1/tokens")
                .await
                .json()
                .await
                .expect("json");
            let listed = list["tokens"]
                .as_array()
                .expect("array")
                .iter()
                .find(|t| t["id"] == one["id"])
                .expect("listed")["status"]
                .clone();
            assert_eq!(one["status"], listed, "get and list agree");
            one["status"].as_str().expect("status").to_owned()
        }
    };
    assert_eq!(status_at(ts("2026-02-01T00:00:00Z")).await, "active");
    assert_eq!(
        status_at(expires - SignedDuration::from_millis(1)).await,
        "active"
    );
    assert_eq!(status_at(expires).await, "expired");
    assert_eq!(
        status_at(expires + SignedDuration::from_millis(1)).await,
        "expired"
    );
    assert_eq!(status_at(ts("2030-01-01T00:00:00Z")).await, "expired");
    // `never` stays active, however far the clock moves.
    app.clock.set(ts("2126-01-01T00:00:00Z"));
    let session = app.login("alice").await;
    let path = format!("/v1/tokens/{}", forever["id"].as_str().expect("id"));
    let never: Value = app.get(&session, &path).await.json().await.expect("json");
    assert_eq!(never["status"], "active");
    assert_eq!(never["expires_at"], Value::Null);
    // Expiry is computed, not recorded: nothing was appended for it.
    assert_eq!(app.state.store.log.len(), 2);
}

#[tokio::test]
async fn expiry_is_judged_by_the_clock_at_the_time_of_the_read_not_of_the_creation() {
    let app = TestApp::spawn_at("2026-06-30T12:00:00Z").await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &body("1m")).await;
    assert_eq!(token["expires_at"], "2026-07-30T12:00:00Z");
    let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
    app.clock.set(ts("2026-07-30T11:59:59.999Z"));
    let session = app.login("alice").await;
    let t: Value = app.get(&session, &path).await.json().await.expect("json");
    assert_eq!(t["status"], "active");
    app.clock.advance(SignedDuration::from_millis(1));
    let t: Value = app.get(&session, &path).await.json().await.expect("json");
    assert_eq!(t["status"], "expired");
    // Moving the clock back (a stepped clock) makes it active again: status is
    // a function of the clock, never stored.
    app.clock.set(ts("2026-07-30T11:00:00Z"));
    let t: Value = app.get(&session, &path).await.json().await.expect("json");
    assert_eq!(t["status"], "active");
}
