//! The settings UI after creation, in headless Chromium: the Regenerate
//! dialog (rotation with an overlap, its secret shown once, its refusal
//! inline), the links between a regenerated token and its successor, why a
//! token was revoked, the expiring-soon banner and the notification bell.
//! Screenshots of every state go under `target/ui-screenshots/`.

use std::time::Duration;

use enspace_core::Clock;
use enspace_core::secret::SecretHash;
use enspace_core::token::RevokeReason;
use enspace_store::commands::{Command, SYSTEM_ACTOR};
use fantoccini::key::Key;
use jiff::SignedDuration;
use serde_json::{Value, json};
use ulid::Ulid;

use crate::support::app::ApiClient;
use crate::support::browser::Ui;
use crate::support::{ServeApp, TestApp, eventually, node};

const ERP: &str = "ERP Integration";

fn erp(expiration: &str) -> Value {
    json!({"description": ERP, "expiration": expiration,
           "scopes": ["read", "write"], "workspaces": ["acme", "globex"]})
}

fn id(token: &Value) -> String {
    token["id"].as_str().expect("id").to_owned()
}

/// The node learns of a change within a few seconds (it follows the log).
async fn until_node_answers(api: &ApiClient, secret: &str, want: u16) {
    node::wait_status(api, secret, want, Duration::from_secs(10)).await;
}

/// Nothing the page did broke its own Content-Security-Policy or threw.
async fn assert_page_kept_its_policy(ui: &Ui) {
    let log = ui.browser_log().await;
    assert!(!log.contains("Content Security Policy"), "{log}");
    assert!(!log.contains("Uncaught"), "{log}");
}

/// alice signed in on the Tokens tab at `base`, the table showing `rows`.
async fn alice_on_tokens(base: &str, name: &'static str, rows: usize) -> Ui {
    let ui = Ui::start(base, name).await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    wait_rows(&ui, rows).await;
    ui
}

async fn wait_rows(ui: &Ui, rows: usize) {
    ui.until(
        &format!("{rows} rows"),
        &format!("document.querySelectorAll('#tokens-table tbody tr').length === {rows}"),
    )
    .await;
}

/// The text of the table row of token `id`.
async fn row_text(ui: &Ui, id: &str) -> String {
    ui.text(&format!("#tokens-table tr[data-token-id='{id}']"))
        .await
}

/// The text of the status cell of token `id`, as one line.
async fn status_text(ui: &Ui, id: &str) -> String {
    ui.js_str(&format!(
        "document.querySelector(\"tr[data-token-id='{id}'] .cell-status\").textContent"
    ))
    .await
}

/// Submits the open regenerate dialog and reads the secret it then shows.
async fn submit_for_secret(ui: &Ui) -> String {
    ui.click("#rotate-submit").await;
    ui.until(
        "the secret",
        "document.querySelector('#token-secret') && document.querySelector('#token-secret').textContent",
    )
    .await
    .as_str()
    .expect("secret text")
    .to_owned()
}

/// Closes the secret view with Done; the secret is gone from the page.
async fn done_and_forgotten(ui: &Ui, secret: &str) {
    ui.click("#secret-done").await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    let html = ui.js_str("document.documentElement.outerHTML").await;
    assert!(!html.contains(secret), "the secret left the page");
}

/// Regenerates `token` in the UI with `overlap` (a radio's value); answers
/// the new secret, still on screen.
async fn regenerate(ui: &Ui, token: &str, overlap: &str) -> String {
    ui.click(&format!("#regenerate-{token}")).await;
    ui.wait("#rotate-dialog[open]").await;
    ui.click(&format!("label[for='rotate-overlap-{overlap}']"))
        .await;
    submit_for_secret(ui).await
}

// ---------------------------------------------------------------------------
// Regenerate

/// Regenerate with a one-hour overlap: the new secret is shown once, the
/// table links the two tokens and says until when the old one works, the
/// API records `replaced_by`, and both secrets work on the API node.
#[tokio::test]
async fn regenerate_with_an_hours_overlap_keeps_both_secrets_working_and_links_the_tokens() {
    let serve = ServeApp::spawn(None).await;
    let alice = serve.login("alice").await;
    let (old, old_secret) = serve.create_token(&alice, &erp("6m")).await;
    let old_id = id(&old);
    let ui = alice_on_tokens(&serve.base, "rotate-overlap", 1).await;
    ui.shot("01-tokens").await;

    ui.click(&format!("#regenerate-{old_id}")).await;
    ui.wait("#rotate-dialog[open]").await;
    let intro = ui.text("#rotate-dialog").await;
    assert!(intro.contains(ERP), "{intro}");
    assert!(intro.contains("same description, scopes and workspaces"));
    assert_eq!(
        ui.focused().await,
        "rotate-overlap-1d",
        "the default overlap"
    );
    assert_eq!(
        ui.js_str("document.querySelector('#rotate-expiration').value")
            .await,
        "6m",
        "the same expiration by default"
    );
    ui.click("label[for='rotate-overlap-1h']").await;
    assert!(
        ui.text("#rotate-overlap-hint")
            .await
            .contains("keeps working until")
    );
    ui.click("label[for='rotate-overlap-0']").await;
    assert!(ui.text("#rotate-overlap-hint").await.contains("at once"));
    ui.click("label[for='rotate-overlap-1h']").await;
    ui.shot("02-regenerate-dialog").await;

    let new_secret = submit_for_secret(&ui).await;
    assert!(new_secret.starts_with("ens_pat_") && new_secret.len() == 46);
    assert_ne!(new_secret, old_secret);
    assert!(
        ui.text("#secret-warning")
            .await
            .contains("will not be shown again")
    );
    assert!(
        ui.text("#rotate-outcome")
            .await
            .contains("keeps working until")
    );
    assert_eq!(ui.focused().await, "copy-secret");
    ui.click("#copy-secret").await;
    ui.until(
        "the copy confirmation",
        "document.querySelector('#copy-status').textContent.includes('Copied')",
    )
    .await;
    ui.shot("03-new-secret-once").await;
    done_and_forgotten(&ui, &new_secret).await;

    // The API: the successor replaces the old one, which ends in an hour.
    let tokens = serve.tokens(&alice).await;
    assert_eq!(tokens.len(), 2);
    let (new, old_now) = (&tokens[0], &tokens[1]);
    let new_id = id(new);
    assert_eq!(old_now["id"], old["id"]);
    assert_eq!(old_now["replaced_by"], new["id"]);
    assert_eq!(new["replaces"], old["id"]);
    assert_eq!(old_now["status"], "active");
    assert_eq!(
        ui.focused().await,
        format!("token-{new_id}"),
        "focus on the new token"
    );

    // The table: both rows, linked; the old one says until when it works
    // and can no longer be regenerated (but still revoked).
    wait_rows(&ui, 2).await;
    let old_row = row_text(&ui, &old_id).await;
    assert!(
        old_row.contains(&format!("Replaced by …{}", &new_id[20..])),
        "{old_row}"
    );
    assert!(old_row.contains("works until"), "{old_row}");
    let new_row = row_text(&ui, &new_id).await;
    assert!(
        new_row.contains(&format!("Replaces …{}", &old_id[20..])),
        "{new_row}"
    );
    assert_eq!(
        ui.js(&format!(
            "!document.querySelector('#regenerate-{old_id}') && !!document.querySelector('#revoke-{old_id}') && !!document.querySelector('#regenerate-{new_id}')"
        ))
        .await,
        json!(true)
    );
    // The link moves focus to the other row.
    ui.click(&format!(
        "tr[data-token-id='{new_id}'] [data-token-ref='{old_id}']"
    ))
    .await;
    assert_eq!(ui.focused().await, format!("token-{old_id}"));
    ui.shot("04-linked-tokens").await;

    // Both secrets work on the embedded API node during the overlap.
    until_node_answers(&serve, &new_secret, 200).await;
    assert_eq!(node::status(&serve, &old_secret).await, 200);
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// Regenerate with "stop the old token now": the node refuses the old
/// secret at once, the new one works, and the old row says it stopped.
#[tokio::test]
async fn regenerate_with_no_overlap_stops_the_old_secret_at_once() {
    let serve = ServeApp::spawn(None).await;
    let alice = serve.login("alice").await;
    let (old, old_secret) = serve.create_token(&alice, &erp("1y")).await;
    let old_id = id(&old);
    until_node_answers(&serve, &old_secret, 200).await;
    let ui = alice_on_tokens(&serve.base, "rotate-now", 1).await;

    let new_secret = regenerate(&ui, &old_id, "0").await;
    assert!(
        ui.text("#rotate-outcome")
            .await
            .contains("stops working at once")
    );
    done_and_forgotten(&ui, &new_secret).await;
    until_node_answers(&serve, &old_secret, 401).await;
    until_node_answers(&serve, &new_secret, 200).await;

    wait_rows(&ui, 2).await;
    let old_row = row_text(&ui, &old_id).await;
    assert!(old_row.contains("Replaced by"), "{old_row}");
    assert!(old_row.contains("stopped working"), "{old_row}");
    assert!(old_row.contains("Expired"), "{old_row}");
    assert_eq!(
        ui.js(&format!(
            "!document.querySelector('#regenerate-{old_id}') && !document.querySelector('#revoke-{old_id}')"
        ))
        .await,
        json!(true),
        "nothing more to do with the old token"
    );
    let tokens = serve.tokens(&alice).await;
    assert_eq!(tokens[1]["replaced_by"], tokens[0]["id"]);
    assert_eq!(tokens[1]["status"], "expired");
    assert_eq!(tokens[0]["expiration"], "1y");
    ui.shot("01-old-token-stopped").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// The token is revoked (elsewhere) after the page loaded: Regenerate shows
/// the server's 422 inside the dialog, creates nothing and shows no secret;
/// closing it shows the token as revoked.
#[tokio::test]
async fn regenerating_a_token_revoked_meanwhile_shows_the_refusal_inline_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &erp("3m")).await;
    let token_id = id(&token);
    let ui = alice_on_tokens(&app.base, "rotate-refused", 1).await;
    let res = app.delete(&alice, &format!("/v1/tokens/{token_id}")).await;
    assert_eq!(res.status(), 204);

    ui.click(&format!("#regenerate-{token_id}")).await;
    ui.wait("#rotate-dialog[open]").await;
    ui.click("#rotate-submit").await;
    ui.until(
        "the inline error",
        "!document.querySelector('#rotate-error').hidden",
    )
    .await;
    let error = ui.text("#rotate-error").await;
    assert!(error.contains("was not regenerated"), "{error}");
    assert!(error.contains("no longer active"), "{error}");
    assert_eq!(
        ui.js_str("document.querySelector('#rotate-error').dataset.code")
            .await,
        "token_inactive"
    );
    assert_eq!(
        ui.js("document.querySelector('#rotate-dialog').open && !document.querySelector('#token-secret') && document.querySelector('#rotate-submit').disabled")
            .await,
        json!(true),
        "still the form, no secret, nothing to retry"
    );
    assert_eq!(ui.focused().await, "rotate-cancel");
    assert_eq!(ui.text("#rotate-cancel").await, "Close");
    ui.shot("01-refused-inline").await;
    let tokens = app.tokens(&alice).await;
    assert_eq!(tokens.len(), 1, "nothing was created");
    assert_eq!(tokens[0]["replaced_by"], Value::Null);

    ui.press(Key::Escape).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    ui.until(
        "the revoked row",
        &format!("document.querySelector(\"tr[data-token-id='{token_id}'] .status\").textContent === 'Revoked'"),
    )
    .await;
    assert!(
        status_text(&ui, &token_id)
            .await
            .contains("Revoked · by you")
    );
    assert_eq!(ui.focused().await, format!("token-{token_id}"));
    ui.shot("02-closed-shows-revoked").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// Under a workspace policy the regenerate dialog offers only the
/// expirations it allows, says why, and picks the longest allowed one when
/// the token's own preset is over it; the rotation goes through.
#[tokio::test]
async fn regenerate_offers_only_the_expirations_the_workspace_policy_allows() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &erp("6m")).await;
    let token_id = id(&token);
    let bob = app.login("bob").await;
    let res = app
        .client
        .put(app.url("/v1/workspaces/acme/policy"))
        .bearer_auth(&bob)
        .json(&json!({"max_lifetime": "3m", "require_expiration": true}))
        .send()
        .await
        .expect("PUT policy");
    assert_eq!(res.status(), 200);
    let ui = alice_on_tokens(&app.base, "rotate-policy", 1).await;

    ui.click(&format!("#regenerate-{token_id}")).await;
    ui.wait("#rotate-dialog[open]").await;
    ui.until(
        "the policy note",
        "!document.querySelector('#rotate-policy-note').hidden",
    )
    .await;
    let enabled = ui
        .js("[...document.querySelectorAll('#rotate-expiration option')].filter(o => !o.disabled).map(o => o.value)")
        .await;
    assert_eq!(enabled, json!(["1m", "2m", "3m"]));
    assert_eq!(
        ui.js_str("document.querySelector('#rotate-expiration').value")
            .await,
        "3m",
        "6 months is over the policy: the longest allowed instead"
    );
    let note = ui.text("#rotate-policy-note").await;
    assert!(note.contains("Acme Corp allows at most 3 months"), "{note}");
    ui.shot("01-policy-limits-the-expiration").await;
    ui.click("#rotate-submit").await;
    ui.wait("#token-secret").await;
    let tokens = app.tokens(&alice).await;
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["expiration"], "3m");
    assert_eq!(tokens[0]["replaces"], json!(token_id));
    ui.close().await;
}

/// Regenerate with the keyboard alone: the dialog opens on the overlap
/// choice, arrows pick another, Tab reaches the expiration and the buttons,
/// Escape gives focus back, and the secret view works as after a create.
#[tokio::test]
async fn keyboard_only_regenerate() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (old, _) = app.create_token(&alice, &erp("3m")).await;
    let old_id = id(&old);
    let ui = alice_on_tokens(&app.base, "rotate-keyboard", 1).await;

    // From the row's Logs link, Tab reaches Insights, Timeline, then Regenerate.
    ui.js(&format!(
        "document.querySelector(\"tr[data-token-id='{old_id}'] .cell-actions a\").focus() || true"
    ))
    .await;
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, format!("insights-{old_id}"));
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, format!("timeline-{old_id}"));
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, format!("regenerate-{old_id}"));
    ui.press(Key::Enter).await;
    ui.wait("#rotate-dialog[open]").await;
    assert_eq!(ui.focused().await, "rotate-overlap-1d");
    ui.press(Key::Escape).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;
    assert_eq!(ui.focused().await, format!("regenerate-{old_id}"));

    ui.press(Key::Enter).await;
    ui.wait("#rotate-dialog[open]").await;
    ui.press(Key::Right).await; // 1 day → 7 days
    assert_eq!(ui.focused().await, "rotate-overlap-7d");
    assert_eq!(
        ui.js_str("document.querySelector('#rotate-overlap-7d').checked")
            .await,
        "true"
    );
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "rotate-expiration");
    ui.press(Key::Down).await; // 3 months → 6 months
    assert_eq!(
        ui.js_str("document.querySelector('#rotate-expiration').value")
            .await,
        "6m"
    );
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "rotate-cancel");
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "rotate-submit");
    // Focus is trapped: Tab from the last control goes to the first.
    ui.press(Key::Tab).await;
    assert_eq!(
        ui.js_str("document.activeElement.classList.contains('dialog-close')")
            .await,
        "true"
    );
    ui.shift_tab().await;
    assert_eq!(ui.focused().await, "rotate-submit");
    ui.shot("01-regenerate-by-keyboard").await;
    ui.press(Key::Enter).await;
    ui.wait("#token-secret").await;
    assert_eq!(ui.focused().await, "copy-secret");
    ui.press(Key::Tab).await;
    assert_eq!(ui.focused().await, "secret-done");
    ui.press(Key::Enter).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;

    let tokens = app.tokens(&alice).await;
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["expiration"], "6m");
    assert_eq!(tokens[1]["replaced_by"], tokens[0]["id"]);
    let old_end: jiff::Timestamp = tokens[1]["expires_at"]
        .as_str()
        .expect("end")
        .parse()
        .expect("ts");
    assert_eq!(
        old_end,
        app.clock
            .now()
            .checked_add(SignedDuration::from_hours(7 * 24))
            .expect("ts"),
        "the old token works 7 more days"
    );
    assert_eq!(ui.focused().await, format!("token-{}", id(&tokens[0])));
    ui.shot("02-regenerated-by-keyboard").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

// ---------------------------------------------------------------------------
// Why a token was revoked

/// A long URL full of markup, as anyone reporting a leak may send.
fn hostile_url() -> String {
    format!(
        "javascript:window.pwned=1//<script>window.pwned=2</script><img src=x onerror=\"window.pwned=3\">{}",
        "/very-long-path".repeat(20)
    )
}

/// Each revocation reason reads as words; a leak report's URL shows as
/// inert text (no link, no markup), cut short on screen but complete in
/// the DOM.
#[tokio::test]
async fn revoked_tokens_say_why_and_show_a_leak_url_as_inert_text() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let url = hostile_url();
    let mut ids = Vec::new();
    for name in ["By me", "Leaked", "Leaked quietly", "Left", "By admin"] {
        let (token, secret) = app
            .create_token(
                &alice,
                &json!({"description": name, "expiration": "3m", "scopes": ["read"], "workspaces": ["acme"]}),
            )
            .await;
        let token_id: Ulid = id(&token).parse().expect("ulid");
        let command = match name {
            "By me" => None,
            "Leaked" => Some(Command::RevokeLeaked {
                secret_hash: SecretHash::of(&secret),
                url: Some(url.clone()),
            }),
            "Leaked quietly" => Some(Command::RevokeLeaked {
                secret_hash: SecretHash::of(&secret),
                url: None,
            }),
            "Left" => Some(Command::RevokeToken {
                token_id,
                actor: SYSTEM_ACTOR.to_owned(),
                reason: RevokeReason::MembershipRemoved,
            }),
            _ => Some(Command::AdminRevoke {
                token_id,
                actor: "bob".to_owned(),
                workspace: "acme".to_owned(),
            }),
        };
        match command {
            Some(command) => {
                app.state.writer.execute(command).await.expect("revoke");
            }
            None => {
                let res = app.delete(&alice, &format!("/v1/tokens/{token_id}")).await;
                assert_eq!(res.status(), 204);
            }
        }
        ids.push(token_id.to_string());
    }
    let tokens = app.tokens(&alice).await;
    let leaked = tokens
        .iter()
        .find(|t| t["description"] == "Leaked")
        .expect("leaked");
    assert_eq!(leaked["revoked_reason"], "leaked");
    assert_eq!(leaked["leak_url"], json!(url));

    let ui = alice_on_tokens(&app.base, "revoked-why", 5).await;
    let want = [
        "Revoked · by you",
        "Revoked · leaked",
        "Revoked · leaked",
        "Revoked · membership removed",
        "Revoked · by an admin",
    ];
    for (token_id, want) in ids.iter().zip(want) {
        let status = status_text(&ui, token_id).await;
        assert!(status.starts_with(want), "{want} in {status}");
        let row = row_text(&ui, token_id).await;
        assert!(
            !row.contains("Regenerate"),
            "a revoked token is not regenerated"
        );
    }
    let leaked_row = format!("tr[data-token-id='{}']", ids[1]);
    let shown = ui
        .js(&format!(
            "(() => {{ const row = document.querySelector(\"{leaked_row}\"); \
               const text = row.querySelector('.leak-url-text'); \
               return {{ text: text.textContent, title: text.title, \
                         links: [...row.querySelectorAll('a')].map(a => a.textContent), \
                         markup: row.querySelectorAll('script, img').length, \
                         cut: text.parentElement.scrollWidth > text.parentElement.clientWidth, \
                         pwned: window.pwned === undefined ? null : window.pwned }}; }})()"
        ))
        .await;
    assert_eq!(shown["text"], json!(url), "the URL, verbatim, as text");
    assert_eq!(shown["title"], json!(url));
    assert_eq!(
        shown["links"],
        json!(["Logs", "Insights", "Timeline"]),
        "the URL is not a link"
    );
    assert_eq!(shown["markup"], json!(0));
    assert_eq!(
        shown["cut"],
        json!(true),
        "a long URL is cut short on screen"
    );
    assert_eq!(shown["pwned"], Value::Null);
    assert!(!row_text(&ui, &ids[2]).await.contains("Reported at"));
    ui.shot("01-revocation-reasons").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

// ---------------------------------------------------------------------------
// Expiring soon

/// Creates `description` (1 month) as if it had been created `days_ago`:
/// it expires about 30 − `days_ago` days from now.
async fn create_dated(app: &TestApp, now: jiff::Timestamp, days_ago: i64, description: &str) {
    app.clock.set(
        now.checked_sub(SignedDuration::from_hours(24 * days_ago))
            .expect("ts"),
    );
    let session = app.login("alice").await;
    app.create_token(
        &session,
        &json!({"description": description, "expiration": "1m", "scopes": ["read"], "workspaces": ["acme"]}),
    )
    .await;
    app.clock.set(now);
}

/// The banner counts the active tokens that expire within 7 days and names
/// the soonest; it is absent otherwise, and once dismissed stays away for
/// the browser session.
#[tokio::test]
async fn expiring_soon_banner_appears_within_7_days_and_is_dismissed_for_the_session() {
    let app = TestApp::spawn().await;
    let now = app.clock.now();
    // A month from now: not soon.
    create_dated(&app, now, 0, "Monthly").await;
    let ui = alice_on_tokens(&app.base, "expiring", 1).await;
    assert_eq!(
        ui.js("!document.querySelector('#expiring-banner')").await,
        json!(true),
        "no banner for a token expiring in a month"
    );
    ui.shot("01-no-banner").await;

    // Created 27 and 25 days ago: they expire in 1 to 4 and 3 to 6 days.
    create_dated(&app, now, 27, "Soonest").await;
    create_dated(&app, now, 25, "Soon").await;
    ui.goto("/settings/dev/tokens").await;
    wait_rows(&ui, 3).await;
    let banner = ui.text("#expiring-banner").await;
    assert!(banner.contains("2 tokens expire within 7 days"), "{banner}");
    assert!(banner.contains("The soonest, Soonest, expires"), "{banner}");
    assert!(!banner.contains("Monthly"));
    ui.shot("02-banner").await;

    ui.click("#expiring-dismiss").await;
    ui.until(
        "the banner to go",
        "!document.querySelector('#expiring-banner')",
    )
    .await;
    assert_eq!(ui.focused().await, "new-token");
    ui.goto("/settings/dev/tokens").await;
    wait_rows(&ui, 3).await;
    assert_eq!(
        ui.js("!document.querySelector('#expiring-banner')").await,
        json!(true),
        "dismissed for the session"
    );
    ui.shot("03-dismissed").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

// ---------------------------------------------------------------------------
// The bell

/// Against a server without `GET /v1/notifications` (it answers 404, as
/// before the route existed; the page's fetch is wrapped to answer so) the
/// bell shows no count and the page no error; its panel says there is
/// nothing, and Escape closes it.
#[tokio::test]
async fn bell_without_the_notifications_route_shows_no_count_and_no_error() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    // Something to tell, which the page must not learn here.
    let (_, secret) = app.create_token(&alice, &erp("3m")).await;
    app.state
        .writer
        .execute(Command::RevokeLeaked {
            secret_hash: SecretHash::of(&secret),
            url: None,
        })
        .await
        .expect("revoke leaked");
    let ui = Ui::start(&app.base, "bell-absent").await;
    ui.goto("/settings/dev/tokens").await;
    ui.wait("#signin-username").await;
    ui.js(
        "(() => { const real = window.fetch; window.notificationCalls = 0; \
           window.fetch = (url, init) => { \
             if (String(url).startsWith('/v1/notifications')) { \
               window.notificationCalls += 1; \
               return Promise.resolve(new Response(JSON.stringify({type: 'about:blank', title: 'Not Found', status: 404, detail: 'no such route', code: 'not_found'}), \
                 {status: 404, headers: {'Content-Type': 'application/problem+json'}})); } \
             return real(url, init); }; return true; })()",
    )
    .await;
    ui.sign_in("alice").await;
    wait_rows(&ui, 1).await;
    ui.until("the first poll", "window.notificationCalls > 0")
        .await;
    assert_eq!(
        ui.js("document.querySelector('#notifications-badge').hidden")
            .await,
        json!(true)
    );
    assert_eq!(
        ui.js_str("document.querySelector('#notifications-button').getAttribute('aria-label')")
            .await,
        "Notifications"
    );
    assert_eq!(
        ui.js(
            "document.querySelectorAll('.callout-error:not([hidden]), .empty-error, .toast').length"
        )
        .await,
        json!(0),
        "no error shown"
    );
    ui.click("#notifications-button").await;
    ui.wait("#notifications-empty").await;
    assert_eq!(
        ui.js_str("document.querySelector('#notifications-button').getAttribute('aria-expanded')")
            .await,
        "true"
    );
    ui.shot("01-bell-empty").await;
    ui.press(Key::Escape).await;
    assert_eq!(ui.focused().await, "notifications-button");
    assert_eq!(
        ui.js("document.querySelector('#notifications-panel').hidden")
            .await,
        json!(true)
    );
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

/// alice's notifications, once the service has made `n`.
async fn wait_notifications(app: &TestApp, session: &str, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(10),
        &format!("{n} notifications"),
        || async {
            let list = app.notifications(session).await;
            (list.len() >= n).then_some(list)
        },
    )
    .await
}

/// Two notifications (a leak report with a hostile URL, a revocation by the
/// system): the bell's badge and label count them, the panel lists kind,
/// token and detail (as text), and opening one marks it read on the server
/// and lowers the count.
#[tokio::test]
async fn bell_counts_unread_notifications_lists_them_and_marks_one_read() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let url = hostile_url();
    let (_, leaked) = app
        .create_token(
            &alice,
            &json!({"description": "Deploy key", "expiration": "3m", "scopes": ["read"], "workspaces": ["acme"]}),
        )
        .await;
    app.state
        .writer
        .execute(Command::RevokeLeaked {
            secret_hash: SecretHash::of(&leaked),
            url: Some(url.clone()),
        })
        .await
        .expect("revoke leaked");
    // A minute later (the clock stands still otherwise, and two
    // notifications at one instant have no order of their own).
    app.clock.advance(SignedDuration::from_mins(1));
    let (left, _) = app.create_token(&alice, &erp("3m")).await;
    app.state
        .writer
        .execute(Command::RevokeToken {
            token_id: id(&left).parse().expect("ulid"),
            actor: SYSTEM_ACTOR.to_owned(),
            reason: RevokeReason::MembershipRemoved,
        })
        .await
        .expect("revoke by the system");
    let list = wait_notifications(&app, &alice, 2).await;
    assert_eq!(list.len(), 2);

    let ui = alice_on_tokens(&app.base, "bell", 2).await;
    ui.until(
        "the badge",
        "document.querySelector('#notifications-badge').textContent === '2' && !document.querySelector('#notifications-badge').hidden",
    )
    .await;
    assert_eq!(
        ui.js_str("document.querySelector('#notifications-button').getAttribute('aria-label')")
            .await,
        "Notifications, 2 unread"
    );
    ui.shot("01-bell-badge").await;
    ui.click("#notifications-button").await;
    ui.wait("#notifications-list").await;
    let items = ui
        .js(
            "[...document.querySelectorAll('#notifications-list .notification-item')].map(b => ({ \
               kind: b.dataset.kind, unread: b.classList.contains('unread'), \
               text: b.textContent }))",
        )
        .await;
    let items = items.as_array().expect("items").clone();
    assert_eq!(items.len(), 2);
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| i["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["revoked", "leaked"], "newest first");
    assert!(items.iter().all(|i| i["unread"] == json!(true)));
    let revoked = items[0]["text"].as_str().expect("text");
    assert!(
        revoked.contains("Unread: Revoked · ERP Integration"),
        "{revoked}"
    );
    let leak = items[1]["text"].as_str().expect("text");
    assert!(leak.contains("Reported leaked · Deploy key"), "{leak}");
    assert!(
        leak.contains(&url),
        "the URL in the detail, as text: {leak}"
    );
    assert_eq!(
        ui.js("document.querySelectorAll('#notifications-panel a, #notifications-panel script, #notifications-panel img').length")
            .await,
        json!(0)
    );
    assert_eq!(ui.js("window.pwned === undefined").await, json!(true));
    ui.shot("02-bell-list").await;

    let first = list[0]["id"].as_str().expect("id").to_owned();
    ui.click(&format!("#notification-{first}")).await;
    ui.until(
        "the count to drop",
        "document.querySelector('#notifications-badge').textContent === '1'",
    )
    .await;
    assert_eq!(
        ui.js_str("document.querySelector('#notifications-button').getAttribute('aria-label')")
            .await,
        "Notifications, 1 unread"
    );
    assert_eq!(
        ui.js(&format!(
            "document.querySelector('#notification-{first}').classList.contains('unread')"
        ))
        .await,
        json!(false)
    );
    assert_eq!(ui.focused().await, format!("notification-{first}"));
    let now = wait_notifications(&app, &alice, 2).await;
    let read: Vec<bool> = now.iter().map(|n| n["read"] == json!(true)).collect();
    assert_eq!(read, [true, false], "marked read on the server");
    ui.shot("03-bell-one-read").await;
    ui.press(Key::Escape).await;
    assert_eq!(ui.focused().await, "notifications-button");
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}

// ---------------------------------------------------------------------------
// Narrow screens

/// A phone-sized window: the links, reasons, banner and bell fit without
/// sideways scrolling, and the regenerate dialog fits the screen.
#[tokio::test]
async fn narrow_screen_regenerate_links_and_reasons() {
    let app = TestApp::spawn().await;
    let now = app.clock.now();
    create_dated(&app, now, 27, "Soonest").await;
    let alice = app.login("alice").await;
    let (old, _) = app.create_token(&alice, &erp("1y")).await;
    let res = app
        .post_json(
            &alice,
            &format!("/v1/tokens/{}/rotate", id(&old)),
            &json!({"overlap": "1d"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let (_, leaked) = app
        .create_token(
            &alice,
            &json!({"description": "Leaked", "expiration": "3m", "scopes": ["read"], "workspaces": ["acme"]}),
        )
        .await;
    app.state
        .writer
        .execute(Command::RevokeLeaked {
            secret_hash: SecretHash::of(&leaked),
            url: Some(hostile_url()),
        })
        .await
        .expect("revoke leaked");

    let ui = Ui::start_sized(&app.base, "rotate-narrow", 390, 844).await;
    ui.goto("/settings/dev/tokens").await;
    ui.sign_in("alice").await;
    wait_rows(&ui, 4).await;
    ui.wait("#expiring-banner").await;
    let overflow = "document.documentElement.scrollWidth > window.innerWidth + 1";
    assert_eq!(ui.js(overflow).await, json!(false), "no sideways scrolling");
    ui.shot("01-tokens").await;
    ui.js("window.scrollTo(0, document.body.scrollHeight) || true")
        .await;
    ui.shot("02-tokens-end").await;

    let tokens = app.tokens(&alice).await;
    let successor = tokens
        .iter()
        .find(|t| t["replaces"] == old["id"])
        .map(id)
        .expect("the successor");
    ui.click(&format!("#regenerate-{successor}")).await;
    ui.wait("#rotate-dialog[open]").await;
    let fits = "(() => { const r = document.querySelector('dialog').getBoundingClientRect(); \
                return r.left >= 0 && r.right <= window.innerWidth; })()";
    assert_eq!(ui.js(fits).await, json!(true));
    ui.shot("03-regenerate-dialog").await;
    ui.press(Key::Escape).await;
    ui.until("the dialog to close", "!document.querySelector('dialog')")
        .await;

    ui.click("#notifications-button").await;
    ui.wait("#notifications-list").await;
    let fits = "(() => { const r = document.querySelector('#notifications-panel').getBoundingClientRect(); \
                return r.left >= 0 && r.right <= window.innerWidth; })()";
    assert_eq!(ui.js(fits).await, json!(true));
    assert_eq!(ui.js(overflow).await, json!(false));
    ui.shot("04-bell").await;
    assert_page_kept_its_policy(&ui).await;
    ui.close().await;
}
