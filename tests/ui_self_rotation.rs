//! Self-rotation in the settings UI, in a real headless Chromium
//! (`support::browser`): the create dialog's "Lets a machine rotate itself"
//! checkbox sends `self_rotate` only when ticked, the new token's summary
//! and row say it rotates itself, and the secret shown can then do so. Screenshots go under `target/ui-screenshots/`.

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::browser::Ui;

/// Fills the create dialog's required fields (read, acme).
async fn fill_required(ui: &Ui, description: &str) {
    ui.fill("#token-description", description).await;
    ui.click("label[for=token-scope-read]").await;
    ui.click("label[for=token-workspace-acme]").await;
}

#[tokio::test]
async fn create_dialog_checkbox_makes_a_token_that_can_rotate_itself_and_unticked_sends_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let ui = Ui::start(&app.base, "self-rotate-create").await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui.click("#create-first-token").await;
    ui.wait("#create-dialog[open]").await;
    let label = ui.text("label[for=token-self_rotate]").await;
    assert!(label.contains("Lets a machine rotate itself"), "{label}");
    assert_eq!(
        ui.js("document.querySelector('#token-self_rotate').checked")
            .await,
        json!(false),
        "off by default"
    );
    fill_required(&ui, "CI runner").await;
    ui.click("label[for=token-self_rotate]").await;
    assert_eq!(
        ui.js("document.querySelector('#token-self_rotate').checked")
            .await,
        json!(true)
    );
    ui.shot("01-ticked").await;
    ui.click("#create-submit").await;
    let secret = ui
        .until(
            "the secret",
            "document.querySelector('#token-secret') && document.querySelector('#token-secret').textContent",
        )
        .await;
    let secret = secret.as_str().expect("secret").to_owned();
    let summary = ui.text("#created-self-rotate").await;
    assert!(summary.contains("/v1/tokens/self/rotate"), "{summary}");
    ui.shot("02-created").await;
    ui.click("#secret-done").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;

    let tokens = app.tokens(&alice).await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["self_rotate"], true);
    let row = ui
        .text(&format!(
            "#self-rotate-{}",
            tokens[0]["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(row, "Rotates itself");
    ui.shot("03-row").await;
    // The secret the dialog showed rotates itself.
    let res = app
        .post_json(&secret, "/v1/tokens/self/rotate", &json!({"overlap": "0"}))
        .await;
    assert_eq!(res.status(), 201);
    let rotated: Value = res.json().await.expect("json");
    assert_eq!(rotated["token"]["replaces"], tokens[0]["id"]);

    // Unticked, the token may not.
    ui.click("#new-token").await;
    ui.wait("#create-dialog[open]").await;
    fill_required(&ui, "Dashboard").await;
    ui.click("#create-submit").await;
    ui.wait("#token-secret").await;
    assert_eq!(
        ui.js("document.querySelector('#created-self-rotate') === null")
            .await,
        json!(true)
    );
    let tokens = app.tokens(&alice).await;
    let plain = tokens
        .iter()
        .find(|t| t["description"] == "Dashboard")
        .expect("the plain token");
    assert_eq!(plain["self_rotate"], false);
    ui.close().await;
}
