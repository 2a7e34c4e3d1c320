//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod absence;
pub mod app;
pub mod browser;
pub mod cluster;
pub mod conformance;
pub mod distributed;
pub mod github;
pub mod nats;
pub mod node;
pub mod poison;
pub mod process;
pub mod queues;
pub mod records;
pub mod serve;
pub mod webhook;

pub use app::TestApp;
pub use nats::NatsServer;
#[allow(unused_imports)]
pub use process::EnspaceProcess;
pub use serve::ServeApp;

use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn create_body(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "expiration": "3m",
        "scopes": ["read", "write"],
        "workspaces": ["acme"],
    })
}

/// Opens the sled database in `dir` once whoever had it open (a stopped
/// `TestApp`'s last connections, its writer thread, a killed process) has
/// let go of its lock.
pub async fn open_db(dir: &std::path::Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match enspace_store::sled_config(dir).open() {
            Ok(db) => return db,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the database in {} stayed locked: {e}",
                    dir.display()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Opens the request index's sled database in `dir` (a database of its own)
/// once whoever had it open has let go of its lock.
pub async fn open_requests_db(dir: &std::path::Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match enspace_usage::db::requests_sled_config(dir).open() {
            Ok(db) => return db,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the request index in {} stayed locked: {e}",
                    dir.display()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Asserts that `res` is an RFC 9457 problem with this status and `code`,
/// carrying every member the contract names; returns the body.
pub async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    let got = res.status().as_u16();
    let content_type = res
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.expect("problem body");
    assert_eq!(got, status, "status of {text}");
    assert_eq!(
        content_type, "application/problem+json",
        "content type of {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).expect("problem body is JSON");
    for member in ["type", "title", "detail", "code"] {
        assert!(
            body[member].as_str().is_some_and(|s| !s.is_empty()),
            "`{member}` is a non-empty string in {text}"
        );
    }
    assert_eq!(body["status"], status, "`status` member of {text}");
    assert_eq!(body["code"], code, "`code` of {text}");
    body
}

/// Asserts that `res` has this status and a JSON body; returns the body.
pub async fn assert_json(res: reqwest::Response, status: u16) -> serde_json::Value {
    let got = res.status().as_u16();
    let text = res.text().await.expect("body");
    assert_eq!(got, status, "status of {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `dir` whose bytes contain `needle` anywhere.
pub fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let needle = needle.as_bytes();
    files_under(dir)
        .into_iter()
        .filter(|path| {
            let bytes = std::fs::read(path).expect("read file");
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}
