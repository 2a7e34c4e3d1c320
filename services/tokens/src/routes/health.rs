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
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not ready yet", body = Object),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (log, projections) = (state.store.log.clone(), state.store.projections.clone());
    // The log's head, when the projections hold all of it.
    let caught_up = enspace_http::blocking(move || {
        let head = log.head()?.0;
        Ok::<_, crate::store::StoreError>((projections.last_seq()? >= head).then_some(head))
    })
    .await;
    let nats_ok = state
        .nats
        .get()
        .is_none_or(|client| client.connection_state() == async_nats::connection::State::Connected);
    match caught_up {
        Ok(Some(head)) if nats_ok => {
            Json(json!({"status": "ready", "event_log_seq": head})).into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        )
            .into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    enspace_http::metrics::render(&state.metrics.registry)
}
