//! `GET /v1/event-key`: the public half of the key that signs every token
//! event and heartbeat, for pinning on API nodes (`--event-key`), with the
//! keys that signed the log before it. Public: a public key is no secret.
//!
//! `POST /v1/event-key/rotate` (the internal key: an operator's call):
//! rotates the key. The rotation is an event signed by the old key naming
//! the new one; API nodes, the other control-plane processes and auditors
//! follow it from the log.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use enspace_core::signing::EventKeyJson;
use enspace_http::ApiError;
use enspace_store::keyring::{Keyring, KeyringError};
use serde::Serialize;

use crate::routes::introspect::internal_caller;
use crate::state::AppState;

fn keys(state: &AppState) -> Result<Keyring, ApiError> {
    state
        .keys()
        .map_err(|_| ApiError::not_found("no_event_key", "this process signs no events"))
}

/// The event signing key's public half, and the earlier ones.
#[utoipa::path(get, path = "/v1/event-key", tag = "operations",
    responses(
        (status = 200, description = "The public event key, and the keys before it", body = EventKeyJson),
        (status = 404, response = inline(enspace_http::responses::NotFound)),
    )
)]
pub async fn get_event_key(State(state): State<AppState>) -> Result<Json<EventKeyJson>, ApiError> {
    let keys = keys(&state)?;
    let json = enspace_http::blocking(move || keys.public_json()).await?;
    Ok(Json(json))
}

/// What a rotation answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rotated {
    /// The seq of the `signing_key_rotated` event: events after it are
    /// signed by the new key.
    pub seq: u64,
    /// The keys now, as `GET /v1/event-key` serves them.
    pub event_key: EventKeyJson,
}

/// Rotates the event signing key (an operator's call, with the internal
/// key).
#[utoipa::path(post, path = "/v1/event-key/rotate", tag = "operations",
    security(("internal_key" = [])),
    responses(
        (status = 201, description = "Rotated: the new key signs every event after `seq`", body = Rotated),
        (status = 401, response = inline(enspace_http::responses::Unauthorized)),
        (status = 404, response = inline(enspace_http::responses::NotFound)),
        (status = 503, response = inline(enspace_http::responses::Unavailable)),
    )
)]
pub async fn rotate_event_key(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Rotated>), ApiError> {
    internal_caller(&state, &headers)?;
    let keys = keys(&state)?;
    let (_, seq) = keys.rotate(&state.writer).await.map_err(|e| match e {
        KeyringError::NotRecorded(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_rotated",
            format!("the rotation was not recorded: {why}; try again"),
        ),
        other => ApiError::internal(other),
    })?;
    let json = enspace_http::blocking(move || keys.public_json()).await?;
    Ok((
        StatusCode::CREATED,
        Json(Rotated {
            seq,
            event_key: json,
        }),
    ))
}
