//! Token lifecycle over real HTTP (contract §3).

use serde_json::{Value, json};

use crate::support::{TestApp, create_body};

#[tokio::test]
async fn created_token_is_listed_newest_first_without_its_secret() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (first, _) = app.create_token(&alice, &create_body("first")).await;
    let (second, secret) = app.create_token(&alice, &create_body("second")).await;
    let res = app.get(&alice, "/v1/tokens").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("body");
    assert!(!text.contains(&secret));
    let list: Value = serde_json::from_str(&text).expect("json");
    let ids: Vec<&Value> = list["tokens"].as_array().expect("array").iter().map(|t| &t["id"]).collect();
    assert_eq!(ids, vec![&second["id"], &first["id"]]);
    assert_eq!(list["tokens"][0]["status"], "active");
    assert_eq!(list["tokens"][0]["scopes"], json!(["read", "write"]));
}
