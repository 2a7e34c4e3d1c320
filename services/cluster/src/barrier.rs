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
//!
//! The barrier runs only once the caller is authenticated (by session, the
//! control plane's caller extractor, or by the internal key for introspection): an
//! unauthenticated request costs no JetStream call and no wait.

use std::time::Duration;

use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use enspace_http::ApiError;
use prometheus_client::metrics::counter::Counter;

use super::handle::ClusterHandle;

/// How long a read waits for this process to catch up.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long one question to the stream may take: one asked while NATS
/// elects the stream's leader is never answered, so it is asked again.
const ASK: Duration = Duration::from_millis(300);

/// Whether a request answers with token state: the routes, and the methods
/// that answer with it.
pub fn reads_token_state(method: &Method, path: &str) -> bool {
    let answers_with_state = method == Method::GET
        || method == Method::HEAD
        || method == Method::POST
        || method == Method::DELETE;
    answers_with_state
        && [
            "/v1/tokens",
            "/v1/audit",
            "/v1/introspect",
            "/v1/workspaces",
        ]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

fn behind(why: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %why, "cannot catch up with the token events stream before answering");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "replica_behind",
        "this process cannot confirm it holds the latest token state; try again after the time in Retry-After",
    )
    .retry_after(1)
}

/// Marks a request that has passed the barrier, so it is not asked twice.
#[derive(Clone, Copy)]
struct CaughtUp;

/// For an authenticated request: catches up first if it reads token state
/// (once per request). A no-op outside a cluster and on the writer.
pub async fn before_answering(
    cluster: Option<&ClusterHandle>,
    asked: &Counter,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    if parts.extensions.get::<CaughtUp>().is_some()
        || !reads_token_state(&parts.method, parts.uri.path())
    {
        return Ok(());
    }
    catch_up(cluster, asked).await?;
    parts.extensions.insert(CaughtUp);
    Ok(())
}

/// Waits until this process's follower has read everything the token
/// events stream holds now. A no-op outside a cluster and on the writer.
pub async fn catch_up(cluster: Option<&ClusterHandle>, asked: &Counter) -> Result<(), ApiError> {
    let Some(cluster) = cluster else {
        return Ok(());
    };
    if cluster.role.is_writer() {
        return Ok(());
    }
    asked.inc();
    let reached = tokio::time::timeout(CATCH_UP, async {
        loop {
            match tokio::time::timeout(ASK, crate::event_stream::tip(&cluster.js)).await {
                Ok(Ok(tip)) => {
                    let mut followed = cluster.followed.clone();
                    return followed
                        .wait_for(|f| f.reached(tip))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot ask the token events stream how far it is");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => {}
            }
            // Became the writer meanwhile: its log holds every change.
            if cluster.role.is_writer() {
                return Ok(());
            }
        }
    })
    .await;
    match reached {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(behind(e)),
        Err(_) => Err(behind("timed out")),
    }
}
