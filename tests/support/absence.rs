//! Checking that something did NOT happen without trusting a sleep: after
//! the action that must tell nothing, do something that MUST tell (a
//! marker) through the same pipeline, wait until the marker shows, and only
//! then assert the absence on what was observed with it.

use std::future::Future;
use std::time::Duration;

use super::eventually;

/// How long a marker may take to show.
pub const MARKER_WAIT: Duration = Duration::from_secs(30);

/// Runs `marker` (an action that must be seen), then polls `seen` until it
/// answers `Some` (the marker has shown) and hands that observation back:
/// anything the earlier action told would be in it by now.
pub async fn after_marker<T, M, F, Fut>(what: &str, marker: M, seen: F) -> T
where
    M: Future<Output = ()>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    marker.await;
    eventually(MARKER_WAIT, &format!("the marker: {what}"), seen).await
}
