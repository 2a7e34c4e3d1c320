//! Descriptions refuse the invisible characters that change how text reads
//! (Unicode format characters, Cf, and line and paragraph separators, Zl
//! and Zp), besides control characters.

use serde_json::json;

use crate::support::{TestApp, assert_problem};

#[tokio::test]
async fn bidi_overrides_zero_width_and_separator_characters_are_422_invalid_description() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for c in [
        '\u{202E}',  // right-to-left override
        '\u{2066}',  // left-to-right isolate
        '\u{200B}',  // zero-width space
        '\u{200D}',  // zero-width joiner
        '\u{FEFF}',  // byte-order mark
        '\u{00AD}',  // soft hyphen
        '\u{2028}',  // line separator
        '\u{2029}',  // paragraph separator
        '\u{E0041}', // tag latin capital a
    ] {
        let body = json!({"description": format!("ERP{c}Integration"), "expiration": "3m",
                          "scopes": ["read"], "workspaces": ["acme"]});
        let res = app.post_json(&alice, "/v1/tokens", &body).await;
        let problem = assert_problem(res, 422, "invalid_description").await;
        assert_eq!(problem["field"], "description", "U+{:04X}", c as u32);
    }
    let list: serde_json::Value = app
        .get(&alice, "/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["tokens"], json!([]), "nothing was created");
}

#[tokio::test]
async fn letters_marks_and_symbols_of_any_script_are_still_accepted() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for description in [
        "Intégration ERP",
        "ערוץ נתונים",
        "連携 トークン",
        "CI 🚀 deploy",
        "Ключ API",
    ] {
        let body = json!({"description": description, "expiration": "3m",
                          "scopes": ["read"], "workspaces": ["acme"]});
        let res = app.post_json(&alice, "/v1/tokens", &body).await;
        assert_eq!(res.status(), 201, "{description}");
    }
}
