//! The settings UI in a real headless Chromium driven over
//! WebDriver: sign in, the Dev tab's Tokens and Request Logs, the create and
//! revoke dialogs, keyboard use and narrow screens. Every test saves
//! screenshots of the states it passes through under
//! `target/ui-screenshots/`.
//!
//! Each test starts its own chromedriver on a free port with a fresh
//! profile (`support::browser`); browser tests run one at a time (two cores).

use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::support::browser::{Ui, WAIT};
use crate::support::{ServeApp, TestApp, eventually};

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn page_and_assets_are_served_with_a_strict_policy() {
    let app = TestApp::spawn().await;
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
    let mut page = String::new();
    for path in [
        "/",
        "/settings",
        "/settings/dev/tokens",
        "/settings/dev/logs?token=x",
    ] {
        let res = app.client.get(app.url(path)).send().await.expect("GET");
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&res, "content-security-policy"), csp);
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        assert_eq!(header(&res, "referrer-policy"), "no-referrer");
        assert_eq!(header(&res, "cache-control"), "no-cache");
        page = res.text().await.expect("page");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external URL"
    );
    let css_path = page
        .split("href=\"")
        .map(|s| s.split('"').next().unwrap_or(""))
        .find(|s| s.ends_with("/app.css"))
        .expect("stylesheet link")
        .to_owned();
    let mut assets = vec![
        (css_path.clone(), "text/css; charset=utf-8"),
        (css_path.replace("app.css", "favicon.svg"), "image/svg+xml"),
    ];
    // The entry module and every module it imports.
    for module in [
        "app.js",
        "api.js",
        "chart.js",
        "dialogs.js",
        "dom.js",
        "logs.js",
        "notifications.js",
        "rotate.js",
        "router.js",
        "state.js",
        "tokens.js",
    ] {
        assets.push((
            css_path.replace("app.css", module),
            "text/javascript; charset=utf-8",
        ));
    }
    for (path, ty) in assets {
        let path = path.as_str();
        let res = app.client.get(app.url(path)).send().await.expect("GET");
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "content-type"), ty, "{path}");
        assert_eq!(
            header(&res, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        let etag = header(&res, "etag").to_owned();
        let body = res.text().await.expect("asset");
        assert!(
            !body.contains("https://"),
            "{path} loads nothing from outside"
        );
        let again = app
            .client
            .get(app.url(path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("GET");
        assert_eq!(again.status(), 304, "{path} revalidates");
    }
    // An older build's URL still works but is not cached for good.
    let res = app
        .client
        .get(app.url("/assets/0000000000000000/app.js"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "cache-control"), "no-cache");
    let res = app
        .client
        .get(app.url("/assets/0000000000000000/secrets.txt"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 404);
    assert_eq!(header(&res, "content-type"), "application/problem+json");
    let res = app.client.head(app.url("/")).send().await.expect("HEAD");
    assert_eq!(res.status(), 200);
    let res = app.client.post(app.url("/")).send().await.expect("POST");
    assert_eq!(res.status(), 405);
}

// ---------------------------------------------------------------------------
// The settings flow with the mouse, one behaviour per test: sign-in errors,
// the empty state, the create dialog with every control, validation (ours
// and the server's), the secret shown once, the table, revoke, deep links,
// sign out.

/// The token the flow tests create: a dated expiration, two scopes, two
/// workspaces.
const ERP: &str = "ERP Integration";

/// alice signed in on the Tokens tab, in a browser of her own.
async fn alice_on_tokens(app: &TestApp, name: &'static str) -> Ui {
    let ui = Ui::start(&app.base, name).await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui
}

/// Opens the create dialog from its button on the Tokens tab.
async fn open_create_dialog(ui: &Ui, button: &str) {
    ui.click(button).await;
    ui.wait("#create-dialog[open]").await;
}

/// Fills the open create dialog for [`ERP`]: 6 months, read and write,
/// Acme and Globex.
async fn fill_erp(ui: &Ui) {
    ui.fill("#token-description", ERP).await;
    ui.wait("#token-expiration")
        .await
        .select_by_value("6m")
        .await
        .expect("select 6m");
    ui.click("label[for=token-scope-read]").await;
    ui.click("label[for=token-scope-write]").await;
    ui.click("label[for=token-workspace-acme]").await;
    ui.click("label[for=token-workspace-globex]").await;
}

/// Submits the create dialog and reads the secret it then shows.
async fn submit_for_secret(ui: &Ui) -> String {
    ui.click("#create-submit").await;
    let secret = ui
        .until("the secret", "document.querySelector('#token-secret') && document.querySelector('#token-secret').textContent")
        .await;
    secret.as_str().expect("secret text").to_owned()
}

/// Creates [`ERP`] in the UI from the empty Tokens tab; returns its secret.
async fn create_erp_in_ui(ui: &Ui) -> String {
    open_create_dialog(ui, "#create-first-token").await;
    fill_erp(ui).await;
    submit_for_secret(ui).await
}

/// Creates [`ERP`] and then "Mobile App" (never expires, read, Acme) through
/// the API: the list shows Mobile App first.
async fn create_two_tokens(app: &TestApp, session: &str) {
    app.create_token(
        session,
        &json!({"description": ERP, "expiration": "6m", "scopes": ["read", "write"], "workspaces": ["acme", "globex"]}),
    )
    .await;
    app.create_token(
        session,
        &json!({"description": "Mobile App", "expiration": "never", "scopes": ["read"], "workspaces": ["acme"]}),
    )
    .await;
}

/// Nothing the page did broke its own Content-Security-Policy or threw.
async fn assert_page_kept_its_policy(ui: &Ui) {
    let log = ui.browser_log().await;
    assert!(!log.contains("Content Security Policy"), "{log}");
    assert!(!log.contains("Uncaught"), "{log}");
}

/// Sign-in errors are shown inline: missing fields first, then a wrong
/// password; the right one signs in.
#[tokio::test]
async fn sign_in_reports_missing_fields_and_a_wrong_password() {
    let app = TestApp::spawn().await;
    let ui = Ui::start(&app.base, "sign-in").await;
    ui.goto("/").await;
    ui.wait("#signin-username").await;
    ui.shot("01-sign-in").await;
    ui.click("#signin-submit").await;
    assert_eq!(
        ui.text("#signin-username-error").await,
        "Enter your username."
    );
    assert_eq!(ui.focused().await, "signin-username");
    ui.fill("#signin-username", "alice").await;
    ui.fill("#signin-password", "not-her-password").await;
    ui.click("#signin-submit").await;
    ui.until(
        "the wrong-password error",
        "!document.querySelector('#signin-error').hidden",
    )
    .await;
    assert!(
        ui.text("#signin-error")
            .await
            .contains("Wrong username or password")
    );
    assert!(
        ui.js_str("document.querySelector('#signin-username-error').hidden")
            .await
            == "true"
    );
    ui.shot("02-sign-in-error").await;
    ui.fill("#signin-password", "alice-password").await;
    ui.click("#signin-submit").await;
    ui.wait(".avatar").await;
    assert_eq!(ui.text(".avatar").await, "A");
    assert!(ui.text("main h1").await.contains("Welcome, Alice"));
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// Avatar → menu → User Settings → Dev → Tokens (the default tab), which
/// starts empty with a call to create the first token.
#[tokio::test]
async fn account_menu_leads_to_the_empty_tokens_tab() {
    let app = TestApp::spawn().await;
    let ui = Ui::start(&app.base, "menu").await;
    ui.goto("/").await;
    ui.sign_in("alice").await;
    ui.click("#account-button").await;
    assert_eq!(
        ui.js_str("document.querySelector('#account-button').getAttribute('aria-expanded')")
            .await,
        "true"
    );
    ui.shot("03-account-menu").await;
    ui.click("#menu-settings").await;
    ui.until("the settings page", "location.pathname === '/settings'")
        .await;
    ui.click("#tab-dev").await;
    ui.until(
        "the Dev tab",
        "location.pathname === '/settings/dev/tokens'",
    )
    .await;
    assert_eq!(
        ui.js_str("document.querySelector('#tab-dev-tokens').getAttribute('aria-selected')")
            .await,
        "true"
    );
    let empty = ui.text("#tokens-empty").await;
    assert!(empty.contains("No personal access tokens yet"), "{empty}");
    assert!(empty.contains("Create your first token"));
    ui.shot("04-tokens-empty").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// The create dialog checks every field before anything is sent, and each
/// control works: description, expiration (No expiration shows the warning,
/// a dated one hides it and names the day), scopes, workspaces.
#[tokio::test]
async fn create_dialog_checks_every_field_before_sending() {
    let app = TestApp::spawn().await;
    let ui = alice_on_tokens(&app, "create-validation").await;
    open_create_dialog(&ui, "#create-first-token").await;
    assert_eq!(ui.focused().await, "token-description");
    let placeholder = ui
        .js_str("document.querySelector('#token-description').placeholder")
        .await;
    assert!(placeholder.contains("ERP Integration") && placeholder.contains("Mobile App"));
    let options = ui
        .js("[...document.querySelectorAll('#token-expiration option')].map(o => o.textContent)")
        .await;
    assert_eq!(
        options,
        json!([
            "1 month",
            "2 months",
            "3 months",
            "6 months",
            "1 year",
            "2 years",
            "No expiration"
        ])
    );
    let scopes = ui.text("#create-dialog fieldset").await;
    assert!(scopes.contains("Pick the minimum"), "{scopes}");
    assert!(scopes.contains("List, search and view"), "{scopes}");
    assert!(scopes.contains("Create and update"), "{scopes}");
    ui.click("#create-submit").await;
    let codes = ui
        .js("['description','expiration','scopes','workspaces'].map(f => document.querySelector('#token-' + f + '-error').dataset.code || null)")
        .await;
    assert_eq!(
        codes,
        json!([
            "invalid_description",
            null,
            "invalid_scopes",
            "invalid_workspaces"
        ])
    );
    assert_eq!(ui.focused().await, "token-description");
    ui.shot("05-create-validation").await;
    assert!(app.tokens(&app.login("alice").await).await.is_empty());

    // A description over 100 characters, and control characters, are refused too.
    ui.fill("#token-description", &"x".repeat(101)).await;
    ui.until(
        "the length error",
        "document.querySelector('#token-description-error').textContent.includes('100')",
    )
    .await;

    ui.fill("#token-description", ERP).await;
    ui.until(
        "the description error to clear",
        "document.querySelector('#token-description-error').hidden",
    )
    .await;
    assert_eq!(
        ui.js_str("document.querySelector('#no-expiration-warning').hidden")
            .await,
        "true"
    );
    ui.wait("#token-expiration")
        .await
        .select_by_value("never")
        .await
        .expect("select never");
    ui.until(
        "the no-expiration warning",
        "!document.querySelector('#no-expiration-warning').hidden",
    )
    .await;
    assert!(
        ui.text("#no-expiration-warning")
            .await
            .contains("security risk")
    );
    ui.click("label[for=token-scope-read]").await;
    ui.click("label[for=token-scope-write]").await;
    ui.click("label[for=token-workspace-acme]").await;
    ui.click("label[for=token-workspace-globex]").await;
    ui.shot("06-create-no-expiration-warning").await;
    ui.wait("#token-expiration")
        .await
        .select_by_value("6m")
        .await
        .expect("select 6m");
    ui.until(
        "the warning to go",
        "document.querySelector('#no-expiration-warning').hidden",
    )
    .await;
    assert!(
        ui.text("#token-expiration-hint")
            .await
            .contains("will expire on")
    );
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// When the server still refuses (here a stale workspace list: the request
/// names a workspace alice lacks), its problem detail is shown inline at the
/// field.
#[tokio::test]
async fn create_dialog_shows_the_servers_refusal_inline() {
    let app = TestApp::spawn().await;
    let ui = alice_on_tokens(&app, "create-refused").await;
    open_create_dialog(&ui, "#create-first-token").await;
    fill_erp(&ui).await;
    ui.js(r#"(() => {
        window.__realFetch = window.fetch;
        window.fetch = (url, init) => {
            if (url === '/v1/tokens' && init && init.method === 'POST') {
                const body = JSON.parse(init.body);
                body.workspaces = ['initech'];
                init = { ...init, body: JSON.stringify(body) };
            }
            return window.__realFetch(url, init);
        };
        return true;
    })()"#)
        .await;
    ui.click("#create-submit").await;
    ui.until("the server's refusal", "document.querySelector('#token-workspaces-error').dataset.code === 'workspace_not_allowed'")
        .await;
    let detail = ui.text("#token-workspaces-error").await;
    assert!(detail.contains("workspaces you belong to"), "{detail}");
    ui.shot("07-create-server-refused").await;
    ui.js("(() => { window.fetch = window.__realFetch; return true; })()")
        .await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// A created token's secret is shown once, with its warning, and the Copy
/// button puts it on the clipboard; the token has what the dialog chose.
#[tokio::test]
async fn new_secret_is_shown_once_and_copied() {
    let app = TestApp::spawn().await;
    let ui = alice_on_tokens(&app, "secret").await;
    let secret = create_erp_in_ui(&ui).await;
    assert!(
        secret.starts_with("ens_pat_") && secret.len() == 46,
        "{secret}"
    );
    let warning = ui.text("#secret-warning").await;
    assert!(warning.contains("will not be shown again"), "{warning}");
    assert!(warning.contains("password manager") && warning.contains("environment variable"));
    assert_eq!(ui.focused().await, "copy-secret");
    ui.click("#copy-secret").await;
    ui.until(
        "the copy confirmation",
        "document.querySelector('#copy-status').textContent.includes('Copied')",
    )
    .await;
    assert_eq!(ui.text("#copy-secret").await, "Copied");
    let clipboard = ui
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             navigator.clipboard.readText().then(done, e => done('unreadable: ' + e));",
            vec![],
        )
        .await
        .expect("read clipboard");
    assert_eq!(
        clipboard,
        json!(secret),
        "the Copy button put the secret on the clipboard"
    );
    ui.shot("08-secret-shown-once").await;

    // The token was created as configured (the secret is a real one).
    let alice = app.login("alice").await;
    let tokens = app.tokens(&alice).await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["description"], ERP);
    assert_eq!(tokens[0]["expiration"], "6m");
    assert_eq!(tokens[0]["scopes"], json!(["read", "write"]));
    assert_eq!(tokens[0]["workspaces"], json!(["acme", "globex"]));
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// Closing the secret dialog removes the secret from the page; it was never
/// stored or in the URL, and focus goes back to the page.
#[tokio::test]
async fn closed_secret_leaves_no_trace() {
    let app = TestApp::spawn().await;
    let ui = alice_on_tokens(&app, "secret-closed").await;
    let secret = create_erp_in_ui(&ui).await;
    ui.click("#secret-done").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    let leaks = ui
        .js(&format!(
            r#"(() => {{
                const s = {secret:?};
                const inStorage = (st) => Object.keys(st).some(k => k.includes(s) || (st.getItem(k) || '').includes(s));
                return {{
                    dom: document.documentElement.outerHTML.includes(s),
                    text: document.body.innerText.includes(s),
                    local: inStorage(localStorage),
                    session: inStorage(sessionStorage),
                    url: location.href.includes(s),
                    history: JSON.stringify(history.state || null).includes(s),
                    title: document.title.includes(s),
                }};
            }})()"#
        ))
        .await;
    assert_eq!(
        leaks,
        json!({"dom": false, "text": false, "local": false, "session": false,
               "url": false, "history": false, "title": false})
    );
    assert_eq!(
        ui.focused().await,
        "new-token",
        "focus goes back to the page"
    );
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// The table shows each token's configuration; a token without expiration
/// says "Never"; Escape closes the secret dialog and forgets the secret.
#[tokio::test]
async fn tokens_table_shows_each_tokens_configuration() {
    let app = TestApp::spawn().await;
    let ui = alice_on_tokens(&app, "table").await;
    create_erp_in_ui(&ui).await;
    ui.click("#secret-done").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    let row = ui.text("#tokens-table tbody tr").await;
    for want in [
        ERP,
        "read",
        "write",
        "Acme Corp, Globex",
        "Never used",
        "Active",
        "Revoke",
    ] {
        assert!(row.contains(want), "{want} in {row}");
    }
    assert!(!row.contains("delete"));

    // A second token without expiration: the table says "Never".
    open_create_dialog(&ui, "#new-token").await;
    ui.fill("#token-description", "Mobile App").await;
    ui.wait("#token-expiration")
        .await
        .select_by_value("never")
        .await
        .expect("select never");
    ui.click("#token-scope-read").await;
    ui.click("#token-workspace-acme").await;
    ui.click("#create-submit").await;
    ui.wait("#token-secret").await;
    ui.press(Key::Escape).await;
    ui.until(
        "Escape to close the secret",
        "!document.querySelector('dialog') && !document.body.innerHTML.includes('ens_pat_')",
    )
    .await;
    ui.until(
        "two rows",
        "document.querySelectorAll('#tokens-table tbody tr').length === 2",
    )
    .await;
    let first = ui.text("#tokens-table tbody tr:first-child").await;
    assert!(
        first.contains("Mobile App") && first.contains("Never"),
        "{first}"
    );
    assert_eq!(
        ui.text("#tokens-table tbody tr:first-child .cell-expires")
            .await,
        "Never"
    );
    ui.shot("09-tokens-table").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// Revoke asks first; declining changes nothing, confirming revokes the
/// token (the row and the API say so) and says so in a toast.
#[tokio::test]
async fn revoke_asks_first_and_can_be_declined() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    create_two_tokens(&app, &alice).await;
    let ui = alice_on_tokens(&app, "revoke").await;
    ui.until(
        "two rows",
        "document.querySelectorAll('#tokens-table tbody tr').length === 2",
    )
    .await;
    ui.click("#tokens-table tbody tr:nth-child(2) .revoke")
        .await;
    ui.wait("#revoke-dialog[open]").await;
    assert!(ui.text("#revoke-dialog").await.contains(ERP));
    assert_eq!(ui.focused().await, "revoke-cancel");
    ui.shot("10-revoke-confirmation").await;
    ui.click("#revoke-cancel").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    assert!(
        app.tokens(&alice)
            .await
            .iter()
            .all(|t| t["status"] == "active")
    );
    ui.click("#tokens-table tbody tr:nth-child(2) .revoke")
        .await;
    ui.click("#revoke-confirm").await;
    ui.until("the revoked status", "document.querySelector('#tokens-table tbody tr:nth-child(2) .status').textContent === 'Revoked'")
        .await;
    ui.until(
        "the toast",
        "document.querySelector('#toasts').textContent.includes('Revoked')",
    )
    .await;
    ui.shot("11-token-revoked").await;
    let tokens = app.tokens(&alice).await;
    assert_eq!(tokens[1]["description"], ERP);
    assert_eq!(tokens[1]["status"], "revoked");
    assert_eq!(tokens[0]["status"], "active");
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// Reload keeps the place, and a deep link opens the Request Logs tab.
#[tokio::test]
async fn reload_and_deep_links_keep_the_place() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    create_two_tokens(&app, &alice).await;
    let ui = alice_on_tokens(&app, "deep-links").await;
    ui.goto("/settings/dev/tokens").await;
    ui.until(
        "the table after reload",
        "document.querySelectorAll('#tokens-table tbody tr').length === 2",
    )
    .await;
    ui.goto("/settings/dev/logs").await;
    ui.wait("#logs-token").await;
    assert_eq!(
        ui.js_str("document.querySelector('#tab-dev-logs').getAttribute('aria-selected')")
            .await,
        "true"
    );
    assert!(ui.text("#retention-note").await.contains("90 days"));
    ui.until(
        "the logs view to settle",
        "document.querySelector('#logs-empty, #logs-table, #logs-chart .chart-error, .empty-error')",
    )
    .await;
    ui.shot("12-request-logs").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// Signing out returns to the sign-in page with a notice, and the settings
/// are behind sign-in again.
#[tokio::test]
async fn signing_out_returns_to_sign_in() {
    let app = TestApp::spawn().await;
    let ui = alice_on_tokens(&app, "sign-out").await;
    ui.click("#account-button").await;
    ui.click("#menu-signout").await;
    ui.wait("#signin-username").await;
    assert!(ui.text("main").await.contains("You have signed out"));
    ui.shot("13-signed-out").await;
    ui.goto("/settings/dev/tokens").await;
    ui.wait("#signin-username").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// Keyboard only: sign in, menu, tabs with arrow keys, the create dialog
/// (focus moves in, is trapped, Escape closes and gives focus back).
#[tokio::test]
async fn keyboard_only_token_creation() {
    let app = TestApp::spawn().await;
    let ui = Ui::start(&app.base, "keyboard").await;
    ui.goto("/").await;
    ui.wait("#signin-username").await;
    ui.until("focus on username", "document.activeElement.id === 'signin-username' || (document.querySelector('#signin-username').focus(), false)")
        .await;
    ui.type_text("bob").await;
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "signin-password");
    ui.type_text("bob-password").await;
    ui.press(Key::Enter).await;
    ui.wait(".avatar").await;
    ui.until(
        "focus on the heading",
        "document.activeElement.tagName === 'H1'",
    )
    .await;

    // Back to the avatar, open the menu with the keyboard.
    ui.shift_tab().await;
    assert_eq!(ui.focused().await, "account-button");
    ui.press(Key::Enter).await;
    assert_eq!(ui.focused().await, "menu-settings");
    ui.press(Key::Down).await;
    assert_eq!(ui.focused().await, "menu-signout");
    ui.press(Key::Escape).await;
    assert_eq!(ui.focused().await, "account-button");
    assert_eq!(
        ui.js_str("document.querySelector('#account-menu').hidden")
            .await,
        "true"
    );
    ui.press(Key::Down).await;
    assert_eq!(ui.focused().await, "menu-settings");
    ui.press(Key::Enter).await;
    ui.until("the settings page", "location.pathname === '/settings'")
        .await;

    // Tabs: Tab into the tablist, arrows between tabs.
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "tab-profile");
    ui.press(Key::Right).await;
    ui.until(
        "the Dev tab",
        "location.pathname === '/settings/dev/tokens'",
    )
    .await;
    assert_eq!(ui.focused().await, "tab-dev");
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "tab-dev-tokens");
    ui.press(Key::Right).await;
    ui.until("Decoys", "location.pathname === '/settings/dev/decoys'")
        .await;
    assert_eq!(ui.focused().await, "tab-dev-decoys");
    ui.press(Key::Right).await;
    ui.until("Request Logs", "location.pathname === '/settings/dev/logs'")
        .await;
    assert_eq!(ui.focused().await, "tab-dev-logs");
    ui.press(Key::Home).await;
    ui.until("Tokens", "location.pathname === '/settings/dev/tokens'")
        .await;
    ui.wait("#create-first-token").await;
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "create-first-token");

    // Escape closes the dialog and gives focus back.
    ui.press(Key::Enter).await;
    ui.wait("#create-dialog[open]").await;
    assert_eq!(ui.focused().await, "token-description");
    ui.press(Key::Escape).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    assert_eq!(ui.focused().await, "create-first-token");

    // Create a token with keys only.
    ui.press(Key::Enter).await;
    ui.wait("#create-dialog[open]").await;
    assert_eq!(ui.focused().await, "token-description");
    ui.type_text("CI pipeline").await;
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "token-expiration");
    ui.press(Key::Down).await; // 3 months → 6 months
    assert_eq!(
        ui.js_str("document.querySelector('#token-expiration').value")
            .await,
        "6m"
    );
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "token-scope-read");
    ui.type_text(" ").await;
    ui.press(Key::Tab).await;
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "token-scope-delete");
    ui.type_text(" ").await;
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "token-workspace-acme");
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "token-workspace-initech");
    ui.type_text(" ").await;
    // The optional fences, left empty.
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "token-allowed_cidrs");
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "token-not_before");
    // A date and time's parts may be stops of their own: Tab past them.
    for _ in 0..8 {
        if ui.focused().await != "token-not_before" {
            break;
        }
        ui.press(Key::Tab).await;
    }
    // "Lets a machine rotate itself", left unticked.
    assert_eq!(ui.focused().await, "token-self_rotate");
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "BUTTON", "Cancel");
    ui.press(Key::Tab).await; // Create token
    assert_eq!(ui.focused().await, "create-submit");
    // Focus is trapped: Tab from the last control goes to the first.
    ui.press(Key::Tab).await;
    assert!(
        ui.js_str("document.activeElement.classList.contains('dialog-close')")
            .await
            == "true"
    );
    ui.shift_tab().await;
    assert_eq!(ui.focused().await, "create-submit");
    ui.shot("01-create-by-keyboard").await;
    ui.press(Key::Enter).await;
    ui.wait("#token-secret").await;
    assert_eq!(ui.focused().await, "copy-secret");
    ui.press(Key::Enter).await;
    ui.until(
        "the copy confirmation",
        "document.querySelector('#copy-status').textContent.length > 0",
    )
    .await;
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "secret-done");
    ui.press(Key::Enter).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    assert_eq!(ui.focused().await, "new-token");

    let bob = app.login("bob").await;
    let tokens = app.tokens(&bob).await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["description"], "CI pipeline");
    assert_eq!(tokens[0]["expiration"], "6m");
    assert_eq!(tokens[0]["scopes"], json!(["read", "delete"]));
    assert_eq!(tokens[0]["workspaces"], json!(["initech"]));
    ui.shot("02-created-by-keyboard").await;

    // Revoke by keyboard too: the confirmation starts on Cancel.
    let id = tokens[0]["id"].as_str().expect("id").to_owned();
    ui.js(&format!(
        "document.querySelector('#revoke-{id}').focus() || true"
    ))
    .await;
    ui.press(Key::Enter).await;
    ui.wait("#revoke-dialog[open]").await;
    assert_eq!(ui.focused().await, "revoke-cancel");
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "revoke-confirm");
    ui.press(Key::Enter).await;
    ui.until(
        "the revoked status",
        "document.querySelector('#tokens-table .status').textContent === 'Revoked'",
    )
    .await;
    assert_eq!(ui.focused().await, format!("token-{id}"));
    ui.close().await;
}

/// A phone-sized window: the table turns into labelled cards and the dialog
/// fits the screen.
#[tokio::test]
async fn narrow_screen() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    app.create_token(
        &alice,
        &json!({"description": "ERP Integration", "expiration": "1y",
                "scopes": ["read", "write"], "workspaces": ["acme", "globex"]}),
    )
    .await;
    app.create_token(
        &alice,
        &json!({"description": "Mobile App", "expiration": "never",
                "scopes": ["read"], "workspaces": ["acme"]}),
    )
    .await;
    let ui = Ui::start_sized(&app.base, "narrow", 390, 844).await;
    ui.goto("/settings/dev/tokens").await;
    ui.wait("#signin-username").await;
    ui.shot("01-sign-in").await;
    ui.sign_in("alice").await;
    ui.until(
        "the table",
        "document.querySelectorAll('#tokens-table tbody tr').length === 2",
    )
    .await;
    let layout = ui
        .js(
            "(() => { const td = document.querySelector('#tokens-table tbody td'); \
              return { overflow: document.documentElement.scrollWidth > window.innerWidth + 1, \
                       label: getComputedStyle(td, '::before').content, \
                       display: getComputedStyle(td).display }; })()",
        )
        .await;
    assert_eq!(
        layout["overflow"],
        json!(false),
        "no sideways scrolling: {layout}"
    );
    assert_eq!(
        layout["label"],
        json!("\"Scopes\""),
        "cells are labelled: {layout}"
    );
    ui.shot("02-tokens").await;
    ui.click("#new-token").await;
    ui.wait("#create-dialog[open]").await;
    let fits = ui
        .js(
            "(() => { const r = document.querySelector('#create-dialog').getBoundingClientRect(); \
              return r.left >= 0 && r.right <= window.innerWidth; })()",
        )
        .await;
    assert_eq!(fits, json!(true));
    ui.shot("03-create-dialog").await;
    ui.press(Key::Escape).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;

    // The session ends elsewhere (signed out in another tab): the next call
    // brings the sign-in page back, with a word of why, at the same address.
    let cookie = ui
        .client
        .get_named_cookie("enspace_session")
        .await
        .expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    let res = app.delete(cookie.value(), "/v1/session").await;
    assert_eq!(res.status(), 204);
    ui.click("#tab-dev-logs").await;
    ui.wait("#signin-username").await;
    assert!(ui.text("main").await.contains("Your session has ended"));
    assert_eq!(ui.js_str("location.pathname").await, "/settings/dev/logs");
    ui.shot("04-session-ended").await;
    ui.sign_in("alice").await;
    ui.wait("#logs-token").await;
    ui.close().await;
}

// ---------------------------------------------------------------------------
// Request Logs against the whole product in one process (`enspace serve`:
// token service, API node and request-log indexer).

/// Real calls through the API node with a token created in the UI show up
/// in the table and the chart; period switching and paging work.
#[tokio::test]
async fn request_logs_show_real_calls() {
    let serve = ServeApp::spawn(None).await;
    let alice = serve.api.login("alice").await;
    let ui = Ui::start_sized(&serve.api.base, "logs", 1280, 1500).await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui.click("#create-first-token").await;
    ui.fill("#token-description", "Reporting job").await;
    ui.click("#token-scope-read").await;
    ui.click("#token-workspace-acme").await;
    ui.click("#create-submit").await;
    let secret = ui
        .until("the secret", "document.querySelector('#token-secret') && document.querySelector('#token-secret').textContent")
        .await
        .as_str()
        .expect("secret")
        .to_owned();
    ui.click("#secret-done").await;

    // 60 allowed reads in acme and 3 refused calls in globex (not granted).
    // The first read is repeated until the node knows the new token; calls
    // with a token it does not know yet are not logged, so exactly 60 are.
    let http = reqwest::Client::new();
    let call = |ws: &'static str| {
        http.get(serve.api.url(&format!("/api/v1/workspaces/{ws}/records")))
            .bearer_auth(&secret)
            .send()
    };
    eventually(WAIT, "the node to know the token", || async {
        let res = call("acme").await.ok()?;
        (res.status() == 200).then_some(())
    })
    .await;
    for _ in 1..60 {
        assert_eq!(call("acme").await.expect("API call").status(), 200);
    }
    // The service's clock stands still unless moved: the refused calls come last.
    serve.clock.advance(jiff::SignedDuration::from_millis(5));
    for _ in 0..3 {
        assert_eq!(call("globex").await.expect("API call").status(), 403);
    }

    // Records reach the index asynchronously: wait until the API has them all.
    let tokens: Value = serve
        .api
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("tokens");
    let token_id = tokens["tokens"][0]["id"].as_str().expect("id").to_owned();
    eventually(WAIT, "63 indexed records", || async {
        let page: Value = serve
            .api
            .get(
                &alice,
                &format!("/v1/tokens/{token_id}/requests?limit=1000&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"),
            )
            .await
            .json()
            .await
            .ok()?;
        (page["requests"].as_array()?.len() == 63).then_some(())
    })
    .await;

    ui.click("#tab-dev-logs").await;
    ui.wait("#logs-token").await;
    assert!(
        ui.text("#logs-token option:checked")
            .await
            .contains("Reporting job")
    );
    ui.until(
        "63 records in the chart",
        "document.querySelector('#logs-chart').dataset.total === '63'",
    )
    .await;
    assert_eq!(
        ui.js_str("document.querySelector('#logs-chart').dataset.errors")
            .await,
        "3"
    );
    assert_eq!(ui.text("[data-series=success]").await, "60");
    assert_eq!(ui.text("[data-series=client_error]").await, "3");
    assert!(
        ui.js("document.querySelectorAll('#logs-chart rect.bar-success').length > 0")
            .await
            == json!(true)
    );
    // First page: 50 rows, newest first (the refused globex calls).
    ui.until(
        "50 rows",
        "document.querySelectorAll('#logs-table tbody tr').length === 50",
    )
    .await;
    let first = ui.text("#logs-table tbody tr:first-child").await;
    assert!(
        first.contains("GET")
            && first.contains("/api/v1/workspaces/globex/records")
            && first.contains("403"),
        "{first}"
    );
    assert!(first.contains("Globex") && first.contains("ms"), "{first}");
    ui.shot("01-request-logs").await;
    ui.click("#logs-more").await;
    ui.until(
        "63 rows",
        "document.querySelectorAll('#logs-table tbody tr').length === 63",
    )
    .await;
    assert_eq!(
        ui.js_str("document.querySelector('#logs-more').hidden")
            .await,
        "true"
    );
    let ids = ui
        .js("new Set([...document.querySelectorAll('#logs-table tbody tr')].map(r => r.dataset.requestId)).size")
        .await;
    assert_eq!(ids, json!(63), "every record exactly once");
    ui.shot("02-request-logs-all").await;

    // Period switching: a custom range in the past is empty; Last hour is not.
    ui.click("label[for=logs-period-custom]").await;
    ui.wait("#logs-custom:not([hidden])").await;
    ui.js("(() => { const d = new Date(Date.now() - 3 * 86400e3); const pad = n => String(n).padStart(2, '0'); \
           const f = x => `${x.getFullYear()}-${pad(x.getMonth()+1)}-${pad(x.getDate())}T${pad(x.getHours())}:${pad(x.getMinutes())}`; \
           document.querySelector('#logs-from').value = f(d); \
           document.querySelector('#logs-to').value = f(new Date(d.getTime() + 86400e3)); return true; })()")
        .await;
    ui.click("#logs-apply").await;
    ui.wait("#logs-empty").await;
    assert!(
        ui.text("#logs-empty")
            .await
            .contains("No requests in this period")
    );
    assert_eq!(
        ui.js_str("document.querySelector('#logs-chart').dataset.total")
            .await,
        "0"
    );
    assert!(ui.js_str("location.search").await.contains("period=custom"));
    ui.shot("03-request-logs-empty-period").await;
    ui.click("label[for=logs-period-1h]").await;
    ui.until(
        "the last hour",
        "document.querySelector('#logs-chart').dataset.total === '63'",
    )
    .await;
    ui.until(
        "rows again",
        "document.querySelectorAll('#logs-table tbody tr').length === 50",
    )
    .await;
    ui.click("label[for=logs-period-7d]").await;
    ui.until("7 days by day", "Number(document.querySelector('#logs-chart').dataset.buckets) >= 7 && document.querySelector('#logs-chart').dataset.total === '63'")
        .await;
    // Reload keeps the token and the period.
    let url = ui.js_str("location.pathname + location.search").await;
    assert!(url.contains("period=7d"), "{url}");
    ui.goto(&url).await;
    ui.until("the same view", "document.querySelector('#logs-period-7d') && document.querySelector('#logs-period-7d').checked")
        .await;
    ui.close().await;
}

/// The limits as the settings UI shows them: the token list by pages of
/// 100, descriptions isolated in `<bdi>`, and a notice in Request Logs when
/// an API node dropped records of the token.
#[tokio::test]
async fn token_pages_isolated_descriptions_and_the_dropped_records_notice() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = crate::support::serve::service_args(data.path(), None);
    args.limits.record_queue_capacity = 1;
    let serve = ServeApp::spawn_with(args, data).await;
    let alice = serve.api.login("alice").await;
    for n in 0..104 {
        serve
            .api
            .create_token(&alice, &json!({"description": format!("Token {n}"), "expiration": "3m", "scopes": ["read"], "workspaces": ["acme"]}))
            .await;
    }
    let (newest, secret) = serve
        .api
        .create_token(&alice, &json!({"description": "גיבוי nightly", "expiration": "3m", "scopes": ["read"], "workspaces": ["acme"]}))
        .await;
    let id = newest["id"].as_str().expect("id").to_owned();
    // Fast calls through a one-record queue: most are dropped, and counted.
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let res = http
            .get(serve.api.url("/api/v1/workspaces/acme/records"))
            .bearer_auth(&secret)
            .send()
            .await
            .expect("API call");
        assert_eq!(res.status(), 200);
    }
    let now = enspace_core::Clock::now(&serve.clock);
    let window = format!(
        "from={}&to={}",
        now - jiff::SignedDuration::from_hours(2),
        now + jiff::SignedDuration::from_hours(2)
    );
    let dropped = eventually(WAIT, "every call indexed or counted as dropped", || async {
        let stats: Value = serve
            .api
            .get(&alice, &format!("/v1/tokens/{id}/requests/stats?{window}"))
            .await
            .json()
            .await
            .ok()?;
        let indexed: u64 = stats["buckets"]
            .as_array()?
            .iter()
            .filter_map(|b| b["total"].as_u64())
            .sum();
        let dropped = stats["dropped"].as_u64()?;
        (indexed + dropped == 200 && dropped > 0).then_some(dropped)
    })
    .await;

    let ui = Ui::start(&serve.api.base, "limits").await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    ui.until(
        "100 rows",
        "document.querySelectorAll('#tokens-table tbody tr').length === 100",
    )
    .await;
    assert_eq!(
        ui.js_str("document.querySelector('#tokens-table tbody tr:first-child .token-name bdi').textContent")
            .await,
        "גיבוי nightly"
    );
    ui.shot("01-first-page").await;
    ui.click("#tokens-more").await;
    ui.until(
        "105 rows",
        "document.querySelectorAll('#tokens-table tbody tr').length === 105",
    )
    .await;
    assert_eq!(
        ui.js("document.querySelector('#tokens-more') === null")
            .await,
        json!(true)
    );

    ui.goto(&format!("/settings/dev/logs?token={id}&period=24h"))
        .await;
    ui.until("the dropped notice", "document.querySelector('#logs-dropped') && !document.querySelector('#logs-dropped').hidden")
        .await;
    assert_eq!(
        ui.js_str("document.querySelector('#logs-dropped').dataset.dropped")
            .await,
        dropped.to_string()
    );
    assert!(
        ui.text("#logs-dropped")
            .await
            .contains("missing from the log")
    );
    ui.shot("02-dropped-notice").await;
    ui.close().await;
}
