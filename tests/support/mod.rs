//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod app;
pub mod process;

pub use app::TestApp;
#[allow(unused_imports)]
pub use process::EnspaceProcess;

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
