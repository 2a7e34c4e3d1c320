//! Reads on a process that is not the writer see every change acknowledged
//! anywhere before they began: before a route that reads token state
//! answers, the process asks the token events stream for its last sequence
//! and waits until its follower has read that far in that same stream
//! (events and foreign messages alike; its log then holds every event among
//! them; a stream deleted and refilled is read again). (The writer needs no
//! barrier: it acknowledges nothing before its own log holds it.) A process
//! that cannot catch up in time answers `503` with `Retry-After` rather
//! than an old state: a token revoked elsewhere is never shown, or
//! introspected, as active here.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use enspace_http::ApiError;

use crate::state::AppState;

/// How long a read waits for this process to catch up.
const CATCH_UP: Duration = Duration::from_secs(2);

/// The routes whose answers come from token state.
fn reads_token_state(path: &str) -> bool {
    [
        "/v1/tokens",
        "/v1/audit",
        "/v1/introspect",
        "/v1/workspaces",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
}

fn behind(why: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %why, "cannot catch up with the token events stream before answering");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "replica_behind",
        "this process cannot confirm it holds the latest token state; try again after the time in Retry-After",
    )
    .retry_after(1)
    .into_response()
}

/// The middleware: a no-op outside a cluster and on the writer.
pub async fn catch_up_first(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(cluster) = state.cluster.get() else {
        return next.run(request).await;
    };
    let method = request.method();
    let answers_with_state = method == Method::GET
        || method == Method::HEAD
        || method == Method::POST
        || method == Method::DELETE;
    if cluster.role.is_writer() || !answers_with_state || !reads_token_state(request.uri().path()) {
        return next.run(request).await;
    }
    let reached = tokio::time::timeout(CATCH_UP, async {
        let tip = crate::event_stream::tip(&cluster.js)
            .await
            .map_err(|e| e.to_string())?;
        let mut followed = cluster.followed.clone();
        followed
            .wait_for(|f| f.reached(tip))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    match reached {
        Ok(Ok(())) => next.run(request).await,
        Ok(Err(e)) => behind(e),
        Err(_) => behind("timed out"),
    }
}
