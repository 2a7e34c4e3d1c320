//! What an API node (embedded in `enspace serve`, or `enspace api-node`)
//! answers a token: one read of a workspace's records.

use std::time::Duration;

use super::app::ApiClient;
use super::eventually;

/// The records of `acme`, the route every node serves.
pub const RECORDS: &str = "/api/v1/workspaces/acme/records";

/// The status a node answers a read of `acme` with `secret`; 0 if it did
/// not answer at all (a node being killed or not up yet).
pub async fn status(api: &ApiClient, secret: &str) -> u16 {
    status_in(api, secret, "acme").await
}

/// The status a node answers a read of workspace `ws` with `secret`; 0 if
/// it did not answer at all.
pub async fn status_in(api: &ApiClient, secret: &str, ws: &str) -> u16 {
    api.client
        .get(api.url(&format!("/api/v1/workspaces/{ws}/records")))
        .bearer_auth(secret)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls until a read of `acme` with `secret` answers `want`, or panics
/// after `timeout`.
pub async fn wait_status(api: &ApiClient, secret: &str, want: u16, timeout: Duration) {
    eventually(timeout, &format!("{} answers {want}", api.base), || async {
        (status(api, secret).await == want).then_some(())
    })
    .await;
}
