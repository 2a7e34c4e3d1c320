//! Fences in the settings UI, in a real headless Chromium
//! (`support::browser`): the create dialog's "Allowed addresses" and "Not
//! before" fields, checked as the API checks them, the fenced token's row,
//! and Insights offering the addresses a token was used from as the
//! narrower token's fence. Screenshots of every state go under
//! `target/ui-screenshots/`.

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::browser::Ui;

async fn tokens_of(app: &TestApp, session: &str) -> Vec<Value> {
    app.tokens(session).await
}

/// The `data-code` of a field's error, or null when it shows none.
async fn error_code(ui: &Ui, field: &str) -> Value {
    ui.js(&format!(
        "(() => {{ const e = document.querySelector('#token-{field}-error'); return e.hidden ? null : (e.dataset.code || null); }})()"
    ))
    .await
}

/// Sets the `datetime-local` field as a user picking a date would.
async fn set_not_before(ui: &Ui, local: &str) {
    ui.js(&format!(
        "(() => {{ const el = document.querySelector('#token-not_before'); el.value = '{local}'; el.dispatchEvent(new Event('change')); return true; }})()"
    ))
    .await;
}

/// A `datetime-local` value `days` from the browser's now.
async fn local_in_days(ui: &Ui, days: u32) -> String {
    ui.js_str(&format!(
        "(() => {{ const d = new Date(Date.now() + {days} * 86400000); d.setSeconds(0, 0); \
         const p = (n) => String(n).padStart(2, '0'); \
         return `${{d.getFullYear()}}-${{p(d.getMonth() + 1)}}-${{p(d.getDate())}}T${{p(d.getHours())}}:${{p(d.getMinutes())}}`; }})()"
    ))
    .await
}

#[tokio::test]
async fn create_dialog_fences_a_token_and_checks_addresses_and_start_as_the_api_does() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let ui = Ui::start(&app.base, "fences-create").await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui.click("#create-first-token").await;
    ui.wait("#create-dialog[open]").await;
    ui.fill("#token-description", "Office sync").await;
    ui.click("label[for=token-scope-read]").await;
    ui.click("label[for=token-workspace-acme]").await;
    let hint = ui.text("#token-allowed_cidrs-hint").await;
    assert!(hint.contains("at most 32"), "{hint}");

    // Host bits set, then a range that is not one: refused before sending.
    ui.fill("#token-allowed_cidrs", "203.0.113.7/24").await;
    ui.click("#create-submit").await;
    assert_eq!(
        error_code(&ui, "allowed_cidrs").await,
        "invalid_allowed_cidrs"
    );
    assert!(
        ui.text("#token-allowed_cidrs-error")
            .await
            .contains("host bits")
    );
    assert_eq!(ui.focused().await, "token-allowed_cidrs");
    ui.shot("01-host-bits").await;
    ui.fill("#token-allowed_cidrs", "2001:db8::/129").await;
    ui.click("#create-submit").await;
    assert!(
        ui.text("#token-allowed_cidrs-error")
            .await
            .contains("prefix length of 0 to 128")
    );
    let many: Vec<String> = (0..33).map(|i| format!("10.0.{i}.0/24")).collect();
    ui.js(&format!(
        "(() => {{ const el = document.querySelector('#token-allowed_cidrs'); el.value = {}; el.dispatchEvent(new Event('input')); return true; }})()",
        json!(many.join("\n"))
    ))
    .await;
    // Flagged once, the field is checked again as it changes.
    ui.until(
        "33 ranges refused",
        "document.querySelector('#token-allowed_cidrs-error').textContent.includes('at most 32')",
    )
    .await;
    assert!(tokens_of(&app, &alice).await.is_empty(), "nothing sent yet");

    // A start more than 90 days ahead.
    ui.js(
        "(() => { const el = document.querySelector('#token-allowed_cidrs'); el.value = '203.0.113.0/24\\n2001:db8::/32'; el.dispatchEvent(new Event('input')); return true; })()",
    )
    .await;
    let far = local_in_days(&ui, 95).await;
    set_not_before(&ui, &far).await;
    ui.click("#create-submit").await;
    assert_eq!(error_code(&ui, "not_before").await, "invalid_not_before");
    assert_eq!(error_code(&ui, "allowed_cidrs").await, Value::Null);
    assert_eq!(ui.focused().await, "token-not_before");
    ui.shot("02-too-far").await;

    let soon = local_in_days(&ui, 10).await;
    set_not_before(&ui, &soon).await;
    let sent_at = ui
        .js_str(&format!("new Date('{soon}').toISOString()"))
        .await;
    ui.click("#create-submit").await;
    ui.wait("#token-secret").await;
    let summary = ui.text("#created-fences").await;
    assert!(
        summary.contains("Only from 203.0.113.0/24, 2001:db8::/32"),
        "{summary}"
    );
    assert!(summary.contains("Starts"), "{summary}");
    ui.shot("03-created-fenced").await;
    ui.click("#secret-done").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;

    let tokens = tokens_of(&app, &alice).await;
    assert_eq!(tokens.len(), 1);
    let token = &tokens[0];
    assert_eq!(
        token["allowed_cidrs"],
        json!(["203.0.113.0/24", "2001:db8::/32"])
    );
    let ts = |v: &str| v.parse::<jiff::Timestamp>().expect("RFC 3339");
    assert_eq!(
        ts(token["not_before"].as_str().expect("not_before")),
        ts(&sent_at),
        "the start picked, in UTC"
    );
    let id = token["id"].as_str().expect("id");
    let row = ui.text(&format!("#fences-{id}")).await;
    assert!(row.contains("Only from 203.0.113.0/24"), "{row}");
    ui.shot("04-fenced-row").await;

    // A token made without fences sends neither field.
    ui.click("#new-token").await;
    ui.wait("#create-dialog[open]").await;
    ui.fill("#token-description", "Anywhere").await;
    ui.click("label[for=token-scope-read]").await;
    ui.click("label[for=token-workspace-acme]").await;
    ui.click("#create-submit").await;
    ui.wait("#token-secret").await;
    assert_eq!(
        ui.js("document.querySelector('#created-fences') === null")
            .await,
        json!(true)
    );
    let plain = tokens_of(&app, &alice).await;
    assert_eq!(plain[0]["description"], "Anywhere");
    assert_eq!(plain[0]["allowed_cidrs"], Value::Null);
    assert_eq!(plain[0]["not_before"], Value::Null);
    ui.close().await;
}
