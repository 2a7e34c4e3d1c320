//! The settings UI's Insights tab, Workspace tokens tab and the policies in
//! the create dialog, in a real headless Chromium (`support::browser`):
//! insights after real calls through the API node of `enspace serve`, the
//! narrower token created from the suggestion, a workspace admin's list,
//! revoke and policy form, the create dialog offering only what the
//! policies allow, hostile descriptions, and a narrow screen. Screenshots of
//! every state go under `target/ui-screenshots/`.

use std::time::Duration;

use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::browser::{Ui, WAIT};
use crate::support::{ServeApp, TestApp, eventually};

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

fn id_of(token: &Value) -> String {
    token["id"].as_str().expect("token id").to_owned()
}

async fn json_of(res: reqwest::Response) -> Value {
    let status = res.status();
    let body: Value = res.json().await.expect("json body");
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// A GET of `ws`'s records with `secret` through the API node; its status.
async fn read_records(api: &ApiClient, ws: &str, secret: &str) -> u16 {
    api.client
        .get(api.url(&format!("/api/v1/workspaces/{ws}/records")))
        .bearer_auth(secret)
        .send()
        .await
        .expect("API call")
        .status()
        .as_u16()
}

/// Reads acme until the node knows the token: exactly one logged call.
async fn until_known(api: &ApiClient, secret: &str) {
    eventually(
        Duration::from_secs(20),
        "the node knows the token",
        || async { (read_records(api, "acme", secret).await == 200).then_some(()) },
    )
    .await;
}

/// Waits until the token's insights count `n` allowed and denied calls.
async fn until_counted(api: &ApiClient, session: &str, id: &str, n: u64) {
    eventually(WAIT, &format!("insights of {n} calls"), || async {
        let body = json_of(api.get(session, &format!("/v1/tokens/{id}/insights")).await).await;
        let counted = body["calls"]["allowed"].as_u64()? + body["calls"]["denied"].as_u64()?;
        (counted == n).then_some(())
    })
    .await;
}

async fn set_policy(api: &ApiClient, session: &str, ws: &str, policy: &Value) {
    let res = api
        .client
        .put(api.url(&format!("/v1/workspaces/{ws}/policy")))
        .bearer_auth(session)
        .json(policy)
        .send()
        .await
        .expect("PUT policy");
    json_of(res).await;
}

/// The row of `id` in bob's view of acme, as the API has it.
async fn acme_row(api: &ApiClient, bob: &str, id: &str) -> Value {
    let body = json_of(api.get(bob, "/v1/workspaces/acme/tokens").await).await;
    body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no token {id} in {body}"))
}

async fn expiration_options(ui: &Ui) -> Value {
    ui.js("Array.from(document.querySelectorAll('#token-expiration option')).map((o) => o.value)")
        .await
}

async fn no_injected_elements(ui: &Ui) {
    assert_eq!(
        ui.js("document.querySelectorAll('img, [onerror]').length")
            .await,
        json!(0),
        "a description became markup"
    );
}

// ---------------------------------------------------------------------------
// Insights

/// A read/write/delete token on acme and globex, used only for reads of
/// acme (and refused reads of initech): the Insights tab counts them per
/// scope and workspace, lists the client IP, suggests read on acme, and
/// "Create a narrower token" opens the create dialog prefilled with that,
/// which creates it.
#[tokio::test]
async fn insights_suggest_read_on_acme_and_prefill_a_narrower_token() {
    let serve = ServeApp::spawn(None).await;
    let alice = serve.login("alice").await;
    let (token, secret) = serve
        .create_token(
            &alice,
            &json!({"description": "Broad sync", "expiration": "6m",
                    "scopes": ["read", "write", "delete"], "workspaces": ["acme", "globex"]}),
        )
        .await;
    let id = id_of(&token);
    until_known(&serve, &secret).await;
    for _ in 0..2 {
        assert_eq!(read_records(&serve, "acme", &secret).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(read_records(&serve, "initech", &secret).await, 403);
    }
    until_counted(&serve, &alice, &id, 5).await;

    let ui = Ui::start_sized(&serve.base, "insights", 1280, 1600).await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui.click(&format!("#insights-{id}")).await;
    ui.wait("#insights-suggestion").await;
    assert_eq!(
        ui.js_str("location.pathname + location.search").await,
        format!("/settings/dev/insights?token={id}")
    );
    assert_eq!(
        ui.js("Array.from(document.querySelectorAll('#insights-suggested-scopes [data-scope]')).map((e) => e.dataset.scope)")
            .await,
        json!(["read"])
    );
    assert_eq!(
        ui.js("Array.from(document.querySelectorAll('#insights-suggested-workspaces [data-workspace]')).map((e) => e.dataset.workspace)")
            .await,
        json!(["acme"])
    );
    assert_eq!(ui.text("#insights-allowed .stat-value").await, "3");
    assert_eq!(ui.text("#insights-denied .stat-value").await, "2");
    let cell = |table: &str, key: &str, cell: &str| {
        format!("document.querySelector('#{table} tr[data-key=\"{key}\"] .{cell}').textContent")
    };
    assert_eq!(
        ui.js_str(&cell("insights-scopes-table", "read", "cell-allowed"))
            .await,
        "3"
    );
    assert_eq!(
        ui.js_str(&cell("insights-scopes-table", "read", "cell-denied"))
            .await,
        "2"
    );
    assert_eq!(
        ui.js_str(&cell("insights-scopes-table", "write", "cell-granted"))
            .await,
        "Yes Unused"
    );
    assert_eq!(
        ui.js_str(&cell("insights-workspaces-table", "initech", "cell-denied"))
            .await,
        "2"
    );
    assert_eq!(
        ui.js_str(&cell(
            "insights-workspaces-table",
            "initech",
            "cell-granted"
        ))
        .await,
        "No"
    );
    assert_eq!(
        ui.js_str(&cell("insights-workspaces-table", "globex", "cell-allowed"))
            .await,
        "0"
    );
    assert_eq!(
        ui.js("Array.from(document.querySelectorAll('#insights-ips-table tbody tr')).map((r) => [r.dataset.ip, r.querySelector('td').textContent])")
            .await,
        json!([["127.0.0.1", "5"]])
    );
    assert!(
        ui.text("#insights-unused-grants")
            .await
            .contains("Write, Delete, Globex")
    );
    assert_eq!(ui.text("#insights-suggested-cidrs").await, "127.0.0.1/32");
    ui.shot("01-suggestion").await;

    ui.click("#insights-narrow").await;
    ui.wait("#create-dialog[open]").await;
    assert_eq!(
        ui.js_str("document.querySelector('#token-description').value")
            .await,
        "Broad sync (narrowed)"
    );
    assert_eq!(
        ui.js(
            "Array.from(document.querySelectorAll('#create-form input:checked')).map((b) => b.id)"
        )
        .await,
        json!(["token-scope-read", "token-workspace-acme"])
    );
    // The addresses its calls came from are the narrower token's fence.
    assert_eq!(
        ui.js_str("document.querySelector('#token-allowed_cidrs').value")
            .await,
        "127.0.0.1/32"
    );
    ui.shot("02-prefilled-create-dialog").await;
    ui.click("#create-submit").await;
    ui.wait("#token-secret").await;
    ui.click("#secret-done").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    assert!(
        ui.text("#insights-narrow-status")
            .await
            .contains("revoke this one")
    );
    assert_eq!(ui.focused().await, "insights-narrow");
    ui.shot("03-narrower-created").await;
    let tokens = json_of(serve.get(&alice, "/v1/tokens").await).await;
    let narrowed = &tokens["tokens"][0];
    assert_eq!(narrowed["description"], "Broad sync (narrowed)");
    assert_eq!(narrowed["scopes"], json!(["read"]));
    assert_eq!(narrowed["workspaces"], json!(["acme"]));
    assert_eq!(narrowed["allowed_cidrs"], json!(["127.0.0.1/32"]));
    assert_eq!(narrowed["status"], "active");
    ui.close().await;
}

/// A token never used, with a description that is markup: the Insights tab
/// says there is nothing to suggest (no "Create a narrower token"), and the
/// description is text in the token picker; the admin's view and revoke
/// dialog show it as text too.
#[tokio::test]
async fn hostile_descriptions_stay_text_and_an_unused_token_gets_no_suggestion() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app
        .create_token(
            &alice,
            &json!({"description": HOSTILE, "expiration": "1m", "scopes": ["read"], "workspaces": ["acme"]}),
        )
        .await;
    let id = id_of(&token);

    let ui = Ui::start(&app.base, "insights-hostile").await;
    ui.goto(&format!("/settings/dev/insights?token={id}")).await;
    ui.sign_in("alice").await;
    ui.wait("#insights-unused").await;
    assert!(
        ui.text("#insights-suggestion")
            .await
            .contains("Nothing to suggest")
    );
    assert_eq!(
        ui.js("document.querySelector('#insights-narrow') === null")
            .await,
        json!(true)
    );
    assert_eq!(
        ui.js_str("document.querySelector('#insights-token option:checked').textContent")
            .await,
        format!("\u{2068}{HOSTILE}\u{2069}")
    );
    no_injected_elements(&ui).await;
    ui.shot("01-unused-hostile").await;
    ui.close().await;

    let ui = Ui::start(&app.base, "workspace-tokens-hostile").await;
    ui.goto("/settings/dev/workspace-tokens").await;
    ui.sign_in("bob").await;
    let name = format!("#ws-token-{id}");
    ui.wait(&name).await;
    assert_eq!(
        ui.js_str(&format!("document.querySelector('{name}').textContent"))
            .await,
        HOSTILE
    );
    ui.click(&format!("#admin-revoke-{id}")).await;
    ui.wait("#admin-revoke-dialog[open]").await;
    assert!(ui.text("#admin-revoke-dialog").await.contains(HOSTILE));
    no_injected_elements(&ui).await;
    ui.shot("01-admin-view-hostile").await;
    ui.press(Key::Escape).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    ui.close().await;
}

// ---------------------------------------------------------------------------
// Workspace admins

/// alice administers nothing: no Workspace tokens tab, and its address says
/// it is for admins. bob, admin of acme, sees alice's acme token (not her
/// globex one) with its owner, revokes it after confirming, and the API
/// has it revoked with reason admin.
#[tokio::test]
async fn only_an_admin_sees_workspace_tokens_and_revokes_one() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (acme, _) = app
        .create_token(
            &alice,
            &json!({"description": "Acme sync", "expiration": "3m", "scopes": ["read", "write"], "workspaces": ["acme"]}),
        )
        .await;
    let (globex, _) = app
        .create_token(
            &alice,
            &json!({"description": "Globex report", "expiration": "3m", "scopes": ["read"], "workspaces": ["globex"]}),
        )
        .await;
    let (acme_id, globex_id) = (id_of(&acme), id_of(&globex));

    let ui = Ui::start(&app.base, "workspace-tokens-alice").await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui.wait("#tab-dev-insights").await;
    assert_eq!(
        ui.js("document.querySelector('#tab-dev-workspace-tokens') === null")
            .await,
        json!(true)
    );
    ui.goto("/settings/dev/workspace-tokens").await;
    ui.wait("#workspace-tokens-not-admin").await;
    ui.shot("01-not-an-admin").await;
    ui.close().await;

    let ui = Ui::start(&app.base, "workspace-tokens-bob").await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("bob").await;
    ui.click("#tab-dev-workspace-tokens").await;
    ui.wait("#workspace-tokens-table").await;
    assert_eq!(
        ui.js_str("location.pathname").await,
        "/settings/dev/workspace-tokens"
    );
    assert_eq!(
        ui.js("Array.from(document.querySelectorAll('#workspace-tokens-table tbody tr')).map((r) => r.dataset.tokenId)")
            .await,
        json!([acme_id])
    );
    let row = format!("#workspace-tokens-table tr[data-token-id=\"{acme_id}\"]");
    assert!(
        ui.text(&format!("{row} .cell-owner"))
            .await
            .contains("Alice")
    );
    assert_eq!(
        ui.js(&format!(
            "document.querySelector('{row} .noncompliant') === null"
        ))
        .await,
        json!(true)
    );
    ui.shot("01-workspace-tokens").await;

    ui.click(&format!("#admin-revoke-{acme_id}")).await;
    ui.wait("#admin-revoke-dialog[open]").await;
    assert_eq!(ui.focused().await, "admin-revoke-cancel");
    assert!(ui.text("#admin-revoke-dialog").await.contains("Acme sync"));
    ui.shot("02-revoke-dialog").await;
    ui.click("#admin-revoke-confirm").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    ui.wait(&format!("{row} .status-revoked")).await;
    assert_eq!(
        ui.js_str(&format!(
            "document.querySelector('{row} .revoked-reason').dataset.reason"
        ))
        .await,
        "admin"
    );
    ui.shot("03-revoked").await;
    ui.close().await;

    let row = acme_row(&app, &bob, &acme_id).await;
    assert_eq!(row["status"], "revoked");
    assert_eq!(row["revoked_reason"], "admin");
    let own = json_of(app.get(&alice, &format!("/v1/tokens/{globex_id}")).await).await;
    assert_eq!(own["status"], "active", "the globex token is untouched");
}

/// bob sets "at most 3 months" in the policy form: alice's older 6-month
/// acme token shows as non-compliant; alice's create dialog offers 1, 2
/// and 3 months with acme checked (saying why), every expiration with only
/// globex; and when the policy tightens while her dialog is open, the
/// server's policy_violation shows under the expiration, which then offers
/// what the new policy allows.
#[tokio::test]
async fn a_policy_set_in_the_form_limits_the_create_dialog() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (old, _) = app
        .create_token(
            &alice,
            &json!({"description": "Old ERP", "expiration": "6m", "scopes": ["read"], "workspaces": ["acme"]}),
        )
        .await;
    let old_id = id_of(&old);

    let ui = Ui::start_sized(&app.base, "policy-bob", 1280, 1000).await;
    ui.goto("/settings/dev/workspace-tokens").await;
    ui.sign_in("bob").await;
    ui.wait("#policy-form").await;
    assert_eq!(
        ui.js_str("document.querySelector('#policy-max-lifetime').value")
            .await,
        ""
    );
    ui.shot("01-no-policy").await;
    ui.wait("#policy-max-lifetime")
        .await
        .select_by_value("3m")
        .await
        .expect("select 3m");
    assert_eq!(
        ui.js("[document.querySelector('#policy-require-expiration').checked, document.querySelector('#policy-require-expiration').disabled]")
            .await,
        json!([true, true]),
        "a limit implies expiry"
    );
    ui.click("#policy-save").await;
    ui.until(
        "the saved policy",
        "document.querySelector('#policy-current').textContent.includes('at most 3 months')",
    )
    .await;
    assert!(ui.text("#toasts").await.contains("Saved the token policy"));
    let row = format!("#workspace-tokens-table tr[data-token-id=\"{old_id}\"]");
    ui.wait(&format!("{row} .noncompliant")).await;
    ui.wait("#workspace-noncompliant").await;
    ui.shot("02-policy-saved-non-compliant").await;
    ui.close().await;
    assert_eq!(
        json_of(app.get(&bob, "/v1/workspaces/acme/policy").await).await,
        json!({"max_lifetime": "3m", "require_expiration": true})
    );
    assert_eq!(acme_row(&app, &bob, &old_id).await["compliant"], false);

    let ui = Ui::start(&app.base, "policy-alice").await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui.click("#new-token").await;
    ui.wait("#create-dialog[open]").await;
    let all = json!(["1m", "2m", "3m", "6m", "1y", "2y", "never"]);
    assert_eq!(expiration_options(&ui).await, all);
    ui.click("label[for=token-workspace-acme]").await;
    assert_eq!(expiration_options(&ui).await, json!(["1m", "2m", "3m"]));
    assert_eq!(
        ui.js_str("document.querySelector('#token-expiration').value")
            .await,
        "3m"
    );
    assert!(
        ui.text("#token-expiration-policy")
            .await
            .contains("Acme Corp allows at most 3 months")
    );
    ui.shot("01-acme-offers-three-months").await;
    ui.click("label[for=token-workspace-acme]").await;
    ui.click("label[for=token-workspace-globex]").await;
    assert_eq!(expiration_options(&ui).await, all);
    assert_eq!(
        ui.js("document.querySelector('#token-expiration-policy').hidden")
            .await,
        json!(true)
    );
    ui.shot("02-globex-offers-all").await;

    // The policy tightens while the dialog is open: the server refuses.
    ui.click("label[for=token-workspace-acme]").await;
    ui.fill("#token-description", "New ERP").await;
    ui.click("label[for=token-scope-read]").await;
    set_policy(
        &app,
        &bob,
        "acme",
        &json!({"max_lifetime": "1m", "require_expiration": true}),
    )
    .await;
    ui.click("#create-submit").await;
    ui.until("the refusal under the expiration", "document.querySelector('#token-expiration-error') && !document.querySelector('#token-expiration-error').hidden")
        .await;
    assert_eq!(
        ui.js_str("document.querySelector('#token-expiration-error').dataset.code")
            .await,
        "policy_violation"
    );
    assert_eq!(ui.focused().await, "token-expiration");
    ui.until(
        "the new policy's choices",
        "document.querySelectorAll('#token-expiration option').length === 1",
    )
    .await;
    assert_eq!(expiration_options(&ui).await, json!(["1m"]));
    ui.shot("03-policy-violation-inline").await;
    ui.click("#create-submit").await;
    ui.wait("#token-secret").await;
    ui.close().await;
    let tokens = json_of(app.get(&alice, "/v1/tokens").await).await;
    assert_eq!(tokens["tokens"][0]["description"], "New ERP");
    assert_eq!(tokens["tokens"][0]["expiration"], "1m");
}

// ---------------------------------------------------------------------------
// Narrow screens and the keyboard

/// At 390 px wide, the Insights tab and the Workspace tokens tab (policy
/// form and table) fit without sideways scrolling, table cells labelled;
/// the narrower token is created from the keyboard.
#[tokio::test]
async fn insights_and_workspace_tokens_fit_a_narrow_screen() {
    let serve = ServeApp::spawn(None).await;
    let alice = serve.login("alice").await;
    let (token, secret) = serve
        .create_token(
            &alice,
            &json!({"description": "Nightly export", "expiration": "6m",
                    "scopes": ["read", "write"], "workspaces": ["acme", "globex"]}),
        )
        .await;
    let id = id_of(&token);
    until_known(&serve, &secret).await;
    until_counted(&serve, &alice, &id, 1).await;
    let overflow = "(() => { const td = document.querySelector('main tbody td'); \
                    return { overflow: document.documentElement.scrollWidth > window.innerWidth + 1, \
                             label: td && getComputedStyle(td, '::before').content }; })()";

    let ui = Ui::start_sized(&serve.base, "insights-narrow", 390, 844).await;
    ui.goto(&format!("/settings/dev/insights?token={id}")).await;
    ui.sign_in("alice").await;
    ui.wait("#insights-narrow").await;
    let layout = ui.js(overflow).await;
    assert_eq!(layout["overflow"], json!(false), "{layout}");
    assert_eq!(layout["label"], json!("\"Granted\""), "{layout}");
    ui.shot("01-insights").await;
    ui.js("document.querySelector('#insights-narrow').focus()")
        .await;
    ui.press(Key::Enter).await;
    ui.wait("#create-dialog[open]").await;
    assert_eq!(ui.focused().await, "token-description");
    ui.shot("02-prefilled-dialog").await;
    ui.press(Key::Escape).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    assert_eq!(ui.focused().await, "insights-narrow");
    ui.close().await;

    let ui = Ui::start_sized(&serve.base, "workspace-tokens-narrow", 390, 844).await;
    ui.goto("/settings/dev/workspace-tokens").await;
    ui.sign_in("bob").await;
    ui.wait("#workspace-tokens-table").await;
    ui.wait("#policy-form").await;
    let layout = ui.js(overflow).await;
    assert_eq!(layout["overflow"], json!(false), "{layout}");
    assert_eq!(layout["label"], json!("\"Owner\""), "{layout}");
    ui.shot("01-workspace-tokens").await;
    ui.close().await;
}
