//! The projection runner's error policy, from outside: a projection that
//! cannot fold an event is never skipped in silence. The control plane's
//! `/readyz` answers 503 `projections_lagging` and the failure is counted in
//! `enspace_projection_errors`, while the write itself stands.

use std::time::Duration;

use jiff::SignedDuration;
use serde_json::json;

use crate::support::{TestApp, create_body, eventually};

#[tokio::test]
async fn a_notification_index_that_cannot_be_read_makes_readyz_503_and_is_counted_while_the_write_stands()
 {
    let app = TestApp::spawn_at("2026-03-01T10:00:00Z").await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("expiring")).await;
    let id = token["id"].as_str().expect("id").to_owned();
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ready.status(), 200);

    let (data, clock) = app.stop().await;
    {
        let tamper = enspace_store::tamper::Tamper::open(data.path()).expect("open the store");
        let garbled = tamper.garble_tree("notifications_due").expect("garble");
        assert!(garbled > 0, "the token's expiry reminders were indexed");
    }
    let app = TestApp::spawn_with(data, clock).await;
    let alice = app.login("alice").await;
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ready.status(), 200, "nothing to fold yet");
    assert_eq!(
        app.counter("enspace_projection_errors_total{projection=\"notifications\"}")
            .await,
        0
    );

    // A rotation moves the token's reminders: the notification fold reads
    // the garbled index and fails.
    app.clock.advance(SignedDuration::from_secs(1));
    let rotated = app
        .post_json(
            &alice,
            &format!("/v1/tokens/{id}/rotate"),
            &json!({"overlap": "1d"}),
        )
        .await;
    assert_eq!(rotated.status(), 201, "the write itself stands");
    let body = eventually(Duration::from_secs(20), "/readyz 503", || async {
        let res = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("GET");
        (res.status() == 503).then_some(res)
    })
    .await;
    let problem: serde_json::Value = body.json().await.expect("problem json");
    assert_eq!(problem["code"], "projections_lagging");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("notifications")),
        "{problem}"
    );
    eventually(Duration::from_secs(20), "the failure counted", || async {
        (app.counter("enspace_projection_errors_total{projection=\"notifications\"}")
            .await
            >= 1)
            .then_some(())
    })
    .await;
    // The token state is whole: the old token points at its successor.
    let old = app.get_ok(&alice, &format!("/v1/tokens/{id}")).await;
    assert!(old["replaced_by"].is_string(), "{old}");
    app.stop().await;
}
