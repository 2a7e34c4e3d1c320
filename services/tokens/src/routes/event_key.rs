//! `GET /v1/event-key`: the public half of the key that signs every token
//! event and heartbeat, for pinning on API nodes (`--event-key`). Public:
//! a public key is no secret.

use axum::Json;
use axum::extract::State;
use enspace_core::signing::EventKeyJson;
use enspace_http::ApiError;

use crate::state::AppState;

/// The event signing key's public half.
#[utoipa::path(get, path = "/v1/event-key", tag = "operations",
    responses(
        (status = 200, description = "The public event key", body = EventKeyJson),
        (status = 404, response = inline(enspace_http::responses::NotFound)),
    )
)]
pub async fn get_event_key(State(state): State<AppState>) -> Result<Json<EventKeyJson>, ApiError> {
    state
        .config
        .event_signer
        .as_ref()
        .map(|signer| Json(signer.public().to_json()))
        .ok_or_else(|| ApiError::not_found("no_event_key", "this process signs no events"))
}
