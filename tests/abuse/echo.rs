//! Error bodies never repeat what looks like a secret, nor a field name
//! longer than 64 characters: a secret pasted as a JSON key does not come
//! back (not even unauthenticated, at sign-in), and a 60 KB key is not
//! returned twice.

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::support::{TestApp, assert_problem};

async fn post_raw(
    app: &TestApp,
    session: Option<&str>,
    path: &str,
    body: String,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(session) = session {
        req = req.bearer_auth(session);
    }
    req.send().await.expect("POST")
}

/// The problem's text, after checking it is a 422 `unknown_field`.
async fn unknown_field(res: reqwest::Response) -> (Value, String) {
    let body = assert_problem(res, 422, "unknown_field").await;
    let text = body.to_string();
    (body, text)
}

#[tokio::test]
async fn a_secret_pasted_as_a_key_never_comes_back_even_unauthenticated_at_sign_in() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (_, pat) = app
        .create_token(&alice, &crate::support::create_body("leak"))
        .await;
    for key in [
        pat.as_str(),
        alice.as_str(),
        "ENS_PAT_lookalike",
        "my-ens_sess_x",
    ] {
        let sign_in = format!(r#"{{"username":"alice","password":"x","{key}":1}}"#);
        let (body, text) = unknown_field(post_raw(&app, None, "/v1/session", sign_in).await).await;
        assert!(!text.to_ascii_lowercase().contains("ens_pat_"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("ens_sess_"), "{text}");
        assert!(body.get("field").is_none(), "no field named: {text}");
        let create = format!(
            r#"{{"description":"d","expiration":"3m","scopes":["read"],"workspaces":["acme"],"{key}":1}}"#
        );
        let (_, text) =
            unknown_field(post_raw(&app, Some(&alice), "/v1/tokens", create).await).await;
        assert!(!text.contains(key), "{text}");
    }
}

#[tokio::test]
async fn a_field_name_over_64_characters_is_not_repeated_and_one_of_64_is() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    // As long as the sign-in route takes (16 KiB).
    let huge = "k".repeat(15 * 1024);
    let res = post_raw(&app, None, "/v1/session", format!(r#"{{"{huge}":1}}"#)).await;
    let (_, text) = unknown_field(res).await;
    assert!(
        text.len() < 1024,
        "the answer stays small: {} bytes",
        text.len()
    );
    assert!(!text.contains(&"k".repeat(65)), "{text}");

    let over = "f".repeat(65);
    let body = format!(
        r#"{{"description":"d","expiration":"3m","scopes":["read"],"workspaces":["acme"],"{over}":1}}"#
    );
    let (problem, text) =
        unknown_field(post_raw(&app, Some(&alice), "/v1/tokens", body).await).await;
    assert!(
        problem.get("field").is_none() && !text.contains(&over),
        "{text}"
    );

    let at_limit = "f".repeat(64);
    let body = format!(
        r#"{{"description":"d","expiration":"3m","scopes":["read"],"workspaces":["acme"],"{at_limit}":1}}"#
    );
    let (problem, _) = unknown_field(post_raw(&app, Some(&alice), "/v1/tokens", body).await).await;
    assert_eq!(problem["field"], at_limit.as_str());
}
