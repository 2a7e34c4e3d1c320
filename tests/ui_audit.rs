//! The settings UI's Audit tab (auditors only) and a token's Timeline, in a
//! real headless Chromium: the chain verified in the browser (hashes by
//! WebCrypto, Ed25519 signatures against the served key), every token as it
//! stood at a chosen moment, the history between two moments, a token's
//! timeline from the state table and, for an owner, from the Tokens list.

use jiff::SignedDuration;
use serde_json::Value;

use crate::support::browser::Ui;
use crate::support::{TestApp, create_body};

const START: &str = "2026-03-01T10:00:00Z";
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// Sets a datetime-local input to the UTC instant `iso`, in the browser's
/// own time zone.
async fn set_moment(ui: &Ui, css: &str, iso: &str) {
    ui.js(&format!(
        "(() => {{ const d = new Date('{iso}'); \
         document.querySelector('{css}').value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); \
         return true; }})()"
    ))
    .await;
}

/// Clicks "Verify the chain" and waits until it says verified, with `count`.
async fn verify_chain(ui: &Ui, count: &str) {
    ui.click("#audit-verify").await;
    let status = ui
        .until("the chain verified", "document.querySelector('#audit-chain-status').textContent.includes('Verified') && document.querySelector('#audit-chain-status').textContent")
        .await;
    assert!(
        status.as_str().is_some_and(|s| s.contains(count)),
        "{status}"
    );
}

fn row_statuses() -> &'static str {
    "[...document.querySelectorAll('#audit-state-table tbody tr')].map(r => r.dataset.tokenId + ' ' + r.querySelector('.status').textContent).sort().join('|')"
}

#[tokio::test]
async fn an_auditor_verifies_the_chain_sees_a_moment_and_the_history_and_opens_a_timeline() {
    let app = TestApp::spawn_at(START).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (a, _) = app.create_token(&alice, &create_body(HOSTILE)).await;
    let (b, _) = app.create_token(&bob, &create_body("bob's")).await;
    let (a, b) = (
        a["id"].as_str().expect("id").to_owned(),
        b["id"].as_str().expect("id").to_owned(),
    );
    app.clock.advance(SignedDuration::from_hours(1));
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{a}"))
            .await
            .status(),
        204
    );
    let audra = app.login("audra").await;
    let events = app.get_ok(&audra, "/v1/audit/events?limit=1000").await;
    let head = events["events"]
        .as_array()
        .expect("events")
        .last()
        .expect("an event")["hash"]
        .as_str()
        .expect("hash")
        .to_owned();

    let ui = Ui::start(&app.base, "audit").await;
    ui.goto("/settings/audit").await;
    ui.sign_in("audra").await;
    ui.wait("#tab-audit[aria-selected='true']").await;
    ui.shot("01-audit").await;

    verify_chain(&ui, "3 events").await;
    assert_eq!(ui.text("#audit-chain-head").await, head);
    ui.shot("02-verified").await;

    set_moment(&ui, "#audit-at", "2026-03-01T10:30:00Z").await;
    ui.click("#audit-state-submit").await;
    let rows = ui
        .until(
            "two tokens",
            &format!(
                "document.querySelectorAll('#audit-state-table tbody tr').length === 2 && {}",
                row_statuses()
            ),
        )
        .await;
    let mut want = [format!("{a} active"), format!("{b} active")];
    want.sort();
    assert_eq!(rows, Value::String(want.join("|")));
    assert_eq!(
        ui.js("document.querySelectorAll('#audit-state-table img').length")
            .await,
        0,
        "a description is text, never markup"
    );
    assert!(ui.text("#audit-state-table").await.contains(HOSTILE));

    set_moment(&ui, "#audit-at", "2026-03-01T11:30:00Z").await;
    ui.click("#audit-state-submit").await;
    let mut want = [format!("{a} revoked"), format!("{b} active")];
    want.sort();
    let expected = want.join("|");
    ui.until("A revoked", &format!("{} === '{expected}'", row_statuses()))
        .await;
    ui.fill("#audit-user", "bob").await;
    ui.click("#audit-state-submit").await;
    ui.until(
        "bob's alone",
        &format!("{} === '{b} active'", row_statuses()),
    )
    .await;
    ui.shot("03-state").await;

    set_moment(&ui, "#audit-from", "2026-03-01T09:00:00Z").await;
    set_moment(&ui, "#audit-to", "2026-03-01T12:00:00Z").await;
    ui.click("#audit-history-submit").await;
    ui.until(
        "the history",
        "document.querySelectorAll('#audit-group-created li').length === 2",
    )
    .await;
    assert_eq!(
        ui.js("document.querySelectorAll('#audit-group-revoked li').length")
            .await,
        1
    );
    assert!(ui.text("#audit-group-revoked").await.contains(&a));
    ui.shot("04-history").await;

    ui.click(&format!("#audit-group-revoked a[href*='{a}']"))
        .await;
    ui.until(
        "the timeline",
        "document.querySelectorAll('#timeline-events li').length === 2",
    )
    .await;
    let timeline = ui.text("#timeline").await;
    assert!(
        timeline.contains("token_created") && timeline.contains("token_revoked"),
        "{timeline}"
    );
    assert!(timeline.contains("No calls recorded"), "{timeline}");
    ui.shot("05-timeline").await;
    ui.close().await;
}

#[tokio::test]
async fn a_user_has_no_audit_tab_and_opens_the_timeline_of_an_own_token() {
    let app = TestApp::spawn_at(START).await;
    let alice = app.login("alice").await;
    let (a, _) = app.create_token(&alice, &create_body("ci")).await;
    let a = a["id"].as_str().expect("id").to_owned();

    let ui = Ui::start(&app.base, "timeline-owner").await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui.click(&format!("#timeline-{a}")).await;
    ui.until(
        "the timeline",
        "document.querySelectorAll('#timeline-events li').length === 1",
    )
    .await;
    assert_eq!(ui.js("!!document.querySelector('#tab-audit')").await, false);
    assert_eq!(
        ui.js("!!document.querySelector('#tab-dev-timeline[aria-selected=\"true\"]')")
            .await,
        true
    );
    ui.shot("01-own-timeline").await;

    // The Audit tab's page, asked for by URL, says whom it is for.
    ui.goto("/settings/audit").await;
    ui.wait("#audit-not-auditor").await;
    assert_eq!(ui.js("!!document.querySelector('#tab-audit')").await, false);
    ui.close().await;
}

#[tokio::test]
async fn the_browser_check_follows_a_key_rotation_and_shows_it() {
    let app = TestApp::spawn_at(START).await;
    let alice = app.login("alice").await;
    app.create_token(&alice, &create_body("before")).await;
    let before: Value = app.event_key().await;
    let rotated = app
        .client
        .post(app.url("/v1/event-key/rotate"))
        .bearer_auth("test-internal-key")
        .send()
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.expect("json");
    app.create_token(&alice, &create_body("after")).await;

    let ui = Ui::start(&app.base, "audit-rotation").await;
    ui.goto("/settings/audit").await;
    ui.sign_in("audra").await;
    verify_chain(&ui, "3 events").await;
    let notes = ui.text("#audit-key-rotations").await;
    assert!(notes.contains("rotated at seq 2"), "{notes}");
    assert!(
        notes.contains(before["key_id"].as_str().expect("id"))
            && notes.contains(rotated["event_key"]["key_id"].as_str().expect("id")),
        "{notes}"
    );
    ui.shot("01-rotated").await;
}

/// The state table shows each token's fences and self-rotation, and marks
/// a decoy (which has no scopes or workspaces); the timelines say the same.
#[tokio::test]
async fn the_state_table_and_timeline_show_fences_and_mark_decoys() {
    let app = TestApp::spawn_at(START).await;
    let alice = app.login("alice").await;
    let (fenced, _) = app
        .create_token(
            &alice,
            &serde_json::json!({"description": "office sync", "expiration": "3m", "scopes": ["read"],
                "workspaces": ["acme"], "allowed_cidrs": ["203.0.113.0/24", "2001:db8::/32"],
                "not_before": "2026-03-02T10:00:00Z", "self_rotate": true}),
        )
        .await;
    let (plain, _) = app.create_token(&alice, &create_body("plain")).await;
    let res = app
        .post_json(
            &alice,
            "/v1/decoys",
            &serde_json::json!({"description": "planted in CI"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let decoy: Value = res.json().await.expect("json");
    let ids = [&fenced["id"], &plain["id"], &decoy["decoy"]["id"]]
        .map(|v| v.as_str().expect("id").to_owned());
    let [fenced, plain, decoy] = ids;

    let ui = Ui::start(&app.base, "audit-fences").await;
    ui.goto("/settings/audit").await;
    ui.sign_in("audra").await;
    set_moment(&ui, "#audit-at", "2026-03-01T10:30:00Z").await;
    ui.click("#audit-state-submit").await;
    ui.until(
        "three tokens",
        "document.querySelectorAll('#audit-state-table tbody tr').length === 3",
    )
    .await;
    let heads = ui
        .js_str("[...document.querySelectorAll('#audit-state-table thead th')].map(t => t.textContent).join(',')")
        .await;
    assert!(heads.contains("Fences"), "{heads}");
    let row = |id: &str| format!("#audit-state-table tr[data-token-id='{id}']");
    let fences = ui.text(&format!("{} .cell-fences", row(&fenced))).await;
    assert!(
        fences.contains("Only from 203.0.113.0/24, 2001:db8::/32"),
        "{fences}"
    );
    assert!(
        fences.contains("Not before") && fences.contains("Rotates itself"),
        "{fences}"
    );
    assert_eq!(
        ui.text(&format!("{} .cell-fences", row(&plain))).await,
        "None"
    );
    assert_eq!(
        ui.text(&format!("{} .badge-decoy", row(&decoy))).await,
        "decoy"
    );
    assert_eq!(
        ui.js("document.querySelectorAll('#audit-state-table .badge-decoy').length")
            .await,
        1,
        "only the decoy is marked"
    );
    ui.js("document.querySelector('#audit-state-table').scrollIntoView() || true")
        .await;
    ui.shot("01-state-fences-decoy").await;

    ui.click(&format!("{} a", row(&decoy))).await;
    ui.wait("#timeline-decoy").await;
    assert_eq!(ui.text("#timeline h2 .badge-decoy").await, "decoy");
    ui.shot("02-decoy-timeline").await;
    ui.goto(&format!("/settings/audit/timeline?token={fenced}"))
        .await;
    let fences = ui.text("#timeline-fences").await;
    assert!(
        fences.contains("203.0.113.0/24") && fences.contains("Rotates itself"),
        "{fences}"
    );
    assert_eq!(
        ui.js("document.querySelector('#timeline-decoy') === null")
            .await,
        true
    );
    ui.shot("03-fenced-timeline").await;
    ui.close().await;
}
