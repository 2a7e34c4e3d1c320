//! `GET /healthz`, `GET /readyz` and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Object))
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers, every projection has folded the whole log,
/// and NATS is connected where it is used.
// A projection that failed to fold answers 503 `projections_lagging` until
// the projection runner has folded it again from the log.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not ready: `not_ready` (the detail says what is missing) or `projections_lagging` (a projection failed to fold and is being folded again from the log)",
            body = enspace_http::ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (log, projections) = (state.store.log.clone(), state.store.projections.clone());
    // The log's head, and whether the projections hold all of it.
    let read = enspace_http::blocking(move || {
        let head = log.head()?.0;
        Ok::<_, enspace_store::StoreError>((head, projections.last_seq()? >= head))
    })
    .await;
    let nats_ok = state
        .nats
        .get()
        .is_none_or(|client| client.connection_state() == async_nats::connection::State::Connected);
    let lagging = state.metrics.projections.lagging();
    if !lagging.is_empty() {
        return enspace_http::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "projections_lagging",
            format!(
                "not ready: folding {} failed; it is being folded again from the event log",
                lagging.join(", ")
            ),
        )
        .into_response();
    }
    let why = match read {
        Ok((head, true)) if nats_ok => {
            return Json(json!({"status": "ready", "event_log_seq": head})).into_response();
        }
        Ok((_, true)) => "NATS is not connected",
        Ok((_, false)) => "the projections are catching up with the event log",
        Err(_) => "the store cannot be read",
    };
    not_ready(why).into_response()
}

/// `503` with code `not_ready` and what is missing.
fn not_ready(why: &str) -> enspace_http::ApiError {
    enspace_http::ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        format!("not ready: {why}"),
    )
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    enspace_http::metrics::render(&state.metrics.registry)
}
