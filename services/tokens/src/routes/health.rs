//! `GET /healthz`, `GET /readyz` and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers, every projection has folded the whole log,
/// and NATS is connected where it is used.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let head = state.store.log.head().map(|(seq, _)| seq);
    let projected = state.store.projections.last_seq();
    let nats_ok = state
        .nats
        .get()
        .is_none_or(|client| client.connection_state() == async_nats::connection::State::Connected);
    match (head, projected) {
        (Ok(head), Ok(projected)) if projected >= head && nats_ok => {
            Json(json!({"status": "ready", "event_log_seq": head})).into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    enspace_http::metrics::render(&state.metrics.registry)
}
