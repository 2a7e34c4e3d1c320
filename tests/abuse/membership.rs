//! A token whose owner left the directory, or one of the token's
//! workspaces, stops working once the control plane restarts with the new
//! directory: it is revoked with reason `membership_removed` by `system`.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::app::ApiClient;
use crate::support::{EnspaceProcess, node};

/// A directory file of the demo users (their demo passwords) in `workspaces`.
fn write_directory(path: &Path, users: &[(&str, &[&str])]) {
    let users: Vec<Value> = users
        .iter()
        .map(|(id, workspaces)| {
            let hash = enspace_accounts::directory::hash_password(&format!("{id}-password"))
                .expect("hash");
            json!({"id": id, "name": id, "role": "user", "workspaces": workspaces,
                   "password_hash": hash})
        })
        .collect();
    let file = json!({
        "workspaces": [{"id": "acme", "name": "Acme Corp"}, {"id": "globex", "name": "Globex"}],
        "users": users,
    });
    std::fs::write(path, file.to_string()).expect("write directory");
}

/// `enspace serve` on `data` with this directory file; the process and a
/// client of it.
fn start(data: &Path, directory: &Path) -> (EnspaceProcess, ApiClient) {
    let process = EnspaceProcess::start(
        &[
            "serve",
            "--data",
            data.to_str().expect("utf-8"),
            "--directory",
            directory.to_str().expect("utf-8"),
        ],
        &[],
    );
    let api = ApiClient::from_base(&process.base);
    (process, api)
}

async fn token(app: &ApiClient, session: &str, workspaces: &[&str]) -> (String, String) {
    let (token, secret) = app
        .create_token(
            session,
            &json!({"description": "membership", "expiration": "3m",
                    "scopes": ["read"], "workspaces": workspaces}),
        )
        .await;
    (token["id"].as_str().expect("id").to_owned(), secret)
}

async fn events(app: &ApiClient, session: &str, id: &str) -> Vec<Value> {
    let body: Value = app
        .get(session, &format!("/v1/tokens/{id}/events"))
        .await
        .json()
        .await
        .expect("events");
    body["events"].as_array().expect("array").clone()
}

#[tokio::test]
async fn a_restart_with_a_changed_directory_revokes_tokens_of_removed_users_and_workspaces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let directory = dir.path().join("directory.json");
    write_directory(
        &directory,
        &[("alice", &["acme", "globex"]), ("bob", &["acme"])],
    );
    let data = tempfile::tempdir().expect("data");
    let (mut process, app) = start(data.path(), &directory);
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let (kept, kept_secret) = token(&app, &alice, &["acme"]).await;
    let (both, both_secret) = token(&app, &alice, &["acme", "globex"]).await;
    let (_, bobs_secret) = token(&app, &bob, &["acme"]).await;
    assert_eq!(node::status_in(&app, &both_secret, "globex").await, 200);
    assert_eq!(node::status_in(&app, &bobs_secret, "acme").await, 200);
    process.terminate();

    // Bob leaves the directory, Alice leaves globex.
    write_directory(&directory, &[("alice", &["acme"])]);
    let (mut process, app) = start(data.path(), &directory);
    assert_eq!(node::status_in(&app, &kept_secret, "acme").await, 200);
    assert_eq!(node::status_in(&app, &both_secret, "globex").await, 401);
    assert_eq!(
        node::status_in(&app, &both_secret, "acme").await,
        401,
        "tokens are never edited: the whole token goes"
    );
    assert_eq!(node::status_in(&app, &bobs_secret, "acme").await, 401);
    let logs = process.logs();
    assert!(
        logs.contains(&format!("revoked token {both} of alice")),
        "the revocation is logged: {logs}"
    );

    let alice = app.login("alice").await;
    let history = events(&app, &alice, &both).await;
    let revoked = history.last().expect("events");
    assert_eq!(revoked["type"], "token_revoked");
    assert_eq!(revoked["actor"], "system");
    assert_eq!(revoked["data"]["reason"], "membership_removed");
    assert_eq!(revoked["data"]["user_id"], "alice");
    assert_eq!(events(&app, &alice, &kept).await.len(), 1, "untouched");
    let shown: Value = app
        .get(&alice, &format!("/v1/tokens/{both}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["status"], "revoked");
    process.terminate();

    // A second start with the same directory records nothing more.
    let (_process, app) = start(data.path(), &directory);
    let alice = app.login("alice").await;
    assert_eq!(events(&app, &alice, &both).await.len(), 2);
}

#[test]
fn a_directory_may_not_name_a_user_system() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("directory.json");
    write_directory(&path, &[("system", &["acme"])]);
    let err = enspace_accounts::directory::Directory::load(&path).expect_err("refused");
    assert!(matches!(
        err,
        enspace_accounts::directory::DirectoryError::Invalid { .. }
    ));
}
