//! Decoys in the settings UI (contract §18), in a real headless Chromium
//! (`support::browser`): Settings › Dev › Decoys lists them, the create
//! dialog asks only a description and shows the secret once with what a
//! decoy is, a decoy is never among the tokens, its use on the API node
//! embedded in `enspace serve` is refused as an unknown token's and shows
//! as a "Decoy used" notification in the bell's panel, and revoking one
//! asks first. Screenshots go under `target/ui-screenshots/`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::browser::Ui;
use crate::support::node::RECORDS;
use crate::support::{ServeApp, TestApp, create_body, eventually};

/// Every wait on the service (the node learning the decoy, the indexer
/// telling its use), generously bounded.
const WAIT: Duration = Duration::from_secs(15);
const PLANTED: &str = "In the CI secrets of repo billing";
const THIEF: &str = "thief-agent/1.0";

/// A read of `acme` on the embedded API node with `secret`, as the thief.
async fn use_secret(serve: &ServeApp, secret: &str) -> (u16, Value) {
    let res = serve
        .api
        .client
        .get(serve.api.url(RECORDS))
        .bearer_auth(secret)
        .header("user-agent", THIEF)
        .send()
        .await
        .expect("API call");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The rows of the decoys table: `id status` joined by `|`.
const DECOY_ROWS: &str = "[...document.querySelectorAll('#decoys-table tbody tr')].map(r => r.dataset.decoyId + ' ' + r.querySelector('.status').textContent).join('|')";

#[tokio::test]
async fn a_decoy_made_in_the_ui_shows_once_is_no_token_trips_a_notification_and_is_revoked() {
    let serve = ServeApp::spawn(None).await;
    let alice = serve.api.login("alice").await;
    let (token, _) = serve.api.create_token(&alice, &create_body("ERP")).await;

    let ui = Ui::start(&serve.api.base, "decoys").await;
    ui.goto("/settings/dev/decoys").await;
    ui.sign_in("alice").await;
    ui.wait("#tab-dev-decoys[aria-selected='true']").await;
    ui.wait("#decoys-empty").await;
    ui.shot("01-empty").await;

    // The dialog asks a description only, and says what a decoy is.
    ui.click("#create-first-decoy").await;
    ui.wait("#decoy-dialog[open]").await;
    assert_eq!(ui.focused().await, "decoy-description");
    assert_eq!(
        ui.js("document.querySelectorAll('#decoy-form input, #decoy-form select, #decoy-form textarea').length")
            .await,
        json!(1),
        "a description, nothing else"
    );
    let explained = ui.text("#decoy-explainer").await;
    assert!(
        explained.contains("never grants access")
            && explained.contains("once per address per hour"),
        "{explained}"
    );
    ui.click("#decoy-submit").await;
    ui.until(
        "the missing description",
        "document.querySelector('#decoy-description-error').dataset.code === 'invalid_description'",
    )
    .await;
    assert_eq!(ui.focused().await, "decoy-description");
    assert_eq!(
        ui.js("document.querySelector('#decoy-description').getAttribute('aria-invalid')")
            .await,
        json!("true")
    );
    ui.shot("02-missing-description").await;
    ui.fill("#decoy-description", PLANTED).await;
    ui.click("#decoy-submit").await;
    let secret = ui
        .until(
            "the secret",
            "document.querySelector('#decoy-secret') && document.querySelector('#decoy-secret').textContent",
        )
        .await
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(
        secret.starts_with("ens_pat_") && secret.len() == 46,
        "a decoy looks like any token: {secret}"
    );
    assert_eq!(ui.focused().await, "copy-decoy-secret");
    let warning = ui.text("#decoy-secret-warning").await;
    assert!(warning.contains("will not be shown again"), "{warning}");
    let explained = ui.text("#decoy-secret-explainer").await;
    assert!(
        explained.contains("never grants access")
            && explained.contains("once per address per hour")
            && explained.contains("where a thief would look"),
        "{explained}"
    );
    ui.click("#copy-decoy-secret").await;
    ui.until(
        "the copy confirmation",
        "document.querySelector('#decoy-copy-status').textContent.includes('Copied')",
    )
    .await;
    ui.shot("03-secret-once").await;
    ui.click("#decoy-secret-done").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    assert_eq!(
        ui.js(&format!(
            "document.documentElement.outerHTML.includes({secret:?}) || document.body.innerText.includes({secret:?})"
        ))
        .await,
        json!(false),
        "the secret went with its dialog"
    );

    // Listed among the decoys, active and never used; not among the tokens.
    let decoys = serve.api.get_ok(&alice, "/v1/decoys").await;
    let decoy = decoys["decoys"][0].clone();
    let id = decoy["id"].as_str().expect("id").to_owned();
    assert_eq!(decoy["description"], PLANTED);
    ui.until(
        "the decoy listed",
        &format!("{DECOY_ROWS} === '{id} Active'"),
    )
    .await;
    assert_eq!(ui.focused().await, "new-decoy", "focus back on the page");
    let row = ui.text(&format!("tr[data-decoy-id='{id}']")).await;
    assert!(row.contains(PLANTED) && row.contains("Never used"), "{row}");
    assert!(ui.text("#decoys-count").await.contains("1 of 20"));
    ui.shot("04-listed").await;
    let tokens = serve.api.tokens(&alice).await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["id"], token["id"]);
    ui.click("#tab-dev-tokens").await;
    ui.until(
        "the tokens list",
        "document.querySelectorAll('#tokens-table tbody tr').length === 1",
    )
    .await;
    assert_eq!(
        ui.js(&format!(
            "!!document.querySelector(\"[data-token-id='{id}']\") || document.querySelector('#tokens-table').textContent.includes({PLANTED:?})"
        ))
        .await,
        json!(false),
        "a decoy is never among the tokens"
    );
    ui.shot("05-not-a-token").await;

    // Used on the API node: refused exactly as an unknown token, and told.
    let unknown = enspace_core::PatSecret::generate();
    let (status, unknown_body) = use_secret(&serve, unknown.expose()).await;
    assert_eq!(status, 401);
    let notification = eventually(WAIT, "a decoy_used notification", || async {
        let (status, body) = use_secret(&serve, &secret).await;
        assert_eq!(status, 401, "a decoy never grants access");
        assert_eq!(body["code"], unknown_body["code"], "{body}");
        serve
            .api
            .notifications(&alice)
            .await
            .into_iter()
            .find(|n| n["kind"] == "decoy_used")
    })
    .await;
    assert_eq!(notification["token_id"], json!(id));
    let detail = notification["detail"].as_str().expect("detail");
    assert!(
        detail.contains(THIEF) && detail.contains(PLANTED),
        "{detail}"
    );

    // The page polls every minute; a reload shows it at once.
    ui.goto("/settings/dev/decoys").await;
    ui.until(
        "the unread badge",
        "document.querySelector('#notifications-badge').textContent === '1' && !document.querySelector('#notifications-badge').hidden",
    )
    .await;
    ui.wait(&format!("tr[data-decoy-id='{id}']")).await;
    ui.click("#notifications-button").await;
    let item = ui.text(".notification-item[data-kind='decoy_used']").await;
    assert!(item.contains("Decoy used"), "{item}");
    assert!(item.contains(PLANTED), "the decoy named: {item}");
    assert!(item.contains(THIEF), "the detail as text: {item}");
    ui.shot("06-decoy-used").await;
    ui.press(fantoccini::key::Key::Escape).await;
    assert_eq!(ui.focused().await, "notifications-button");

    // The list says it was tripped (the indexed call is its last use).
    ui.until(
        "the last use",
        &format!("!!document.querySelector(\"tr[data-decoy-id='{id}'] .tripped\")"),
    )
    .await;
    ui.shot("07-tripped").await;

    // Revoke asks first; cancel keeps it, confirm revokes it.
    ui.click(&format!("#revoke-decoy-{id}")).await;
    ui.wait("#decoy-revoke-dialog[open]").await;
    assert_eq!(ui.focused().await, "decoy-revoke-cancel");
    assert_eq!(
        ui.js("document.querySelector('#decoy-revoke-dialog').getAttribute('role')")
            .await,
        json!("alertdialog")
    );
    assert!(ui.text("#decoy-revoke-dialog").await.contains(PLANTED));
    ui.click("#decoy-revoke-cancel").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    assert_eq!(ui.focused().await, format!("decoy-{id}"));
    ui.click(&format!("#revoke-decoy-{id}")).await;
    ui.wait("#decoy-revoke-dialog[open]").await;
    ui.shot("08-revoke-asks").await;
    ui.click("#decoy-revoke-confirm").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    ui.until(
        "the decoy revoked",
        &format!("{DECOY_ROWS} === '{id} Revoked'"),
    )
    .await;
    assert_eq!(ui.focused().await, format!("decoy-{id}"));
    assert_eq!(
        ui.js(&format!("!!document.querySelector('#revoke-decoy-{id}')"))
            .await,
        json!(false),
        "nothing left to revoke"
    );
    assert!(ui.text("#decoys-count").await.contains("0 of 20"));
    ui.shot("09-revoked").await;
    let decoys = serve.api.get_ok(&alice, "/v1/decoys").await;
    assert_eq!(decoys["decoys"][0]["status"], "revoked");
    assert_eq!(use_secret(&serve, &secret).await.0, 401);
    ui.close().await;
}

#[tokio::test]
async fn the_create_dialog_shows_the_apis_refusal_past_twenty_decoys() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for i in 0..20 {
        let res = app
            .post_json(
                &alice,
                "/v1/decoys",
                &json!({"description": format!("decoy {i}")}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    let ui = Ui::start(&app.base, "decoys-limit").await;
    ui.goto("/settings/dev/decoys").await;
    ui.sign_in("alice").await;
    ui.until(
        "twenty decoys",
        "document.querySelectorAll('#decoys-table tbody tr').length === 20",
    )
    .await;
    let count = ui.text("#decoys-count").await;
    assert!(
        count.contains("20 of 20") && count.contains("Revoke one"),
        "{count}"
    );
    ui.click("#new-decoy").await;
    ui.wait("#decoy-dialog[open]").await;
    ui.fill("#decoy-description", "one too many").await;
    ui.click("#decoy-submit").await;
    let error = ui
        .until(
            "the refusal",
            "!document.querySelector('#decoy-create-error').hidden && document.querySelector('#decoy-create-error').dataset.code",
        )
        .await;
    assert_eq!(error, json!("decoy_limit_reached"));
    let text = ui.text("#decoy-create-error").await;
    assert!(
        text.contains("was not created") && text.contains("revoke one first"),
        "the problem's detail: {text}"
    );
    assert_eq!(ui.focused().await, "decoy-submit");
    ui.shot("01-limit").await;
    ui.close().await;
}
