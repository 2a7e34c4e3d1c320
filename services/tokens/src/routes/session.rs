//! `POST /v1/session` (sign in) and `DELETE /v1/session` (sign out).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use enspace_core::SessionSecret;
use enspace_http::{ApiError, ApiJson};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, SESSION_COOKIE};
use crate::directory::User;
use crate::state::AppState;
use crate::store::sessions::SessionRecord;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    username: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionCreated {
    /// `ens_sess_…`: send it as `Authorization: Bearer`, or rely on the cookie.
    session: String,
    user: User,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
}

const MAX_CREDENTIAL_LEN: usize = 1024;

/// Sign in; answers the session and sets the `enspace_session` cookie.
#[utoipa::path(post, path = "/v1/session", tag = "session",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in", body = SessionCreated),
        (status = 400, response = inline(enspace_http::responses::BadRequest)),
        (status = 401, response = inline(enspace_http::responses::Unauthorized)),
        (status = 413, response = inline(enspace_http::responses::PayloadTooLarge)),
        (status = 415, response = inline(enspace_http::responses::UnsupportedMediaType)),
        (status = 422, response = inline(enspace_http::responses::Unprocessable))
    )
)]
pub async fn create_session(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    if body.username.len() > MAX_CREDENTIAL_LEN || body.password.len() > MAX_CREDENTIAL_LEN {
        return Err(ApiError::invalid(
            "credentials_too_long",
            "password",
            "username and password are at most 1024 bytes",
        ));
    }
    let directory = state.directory.clone();
    let user =
        tokio::task::spawn_blocking(move || directory.authenticate(&body.username, &body.password))
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_credentials",
                    "wrong username or password",
                )
            })?;
    let secret = SessionSecret::generate();
    let expires_at = state
        .clock
        .now()
        .checked_add(state.config.session_ttl)
        .map_err(ApiError::internal)?;
    state
        .store
        .sessions
        .insert(
            &secret.hash(),
            &SessionRecord {
                user_id: user.id.clone(),
                expires_at,
            },
        )
        .map_err(ApiError::unavailable)?;
    tracing::info!(user.id = %user.id, "signed in {}", user.id);
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        secret.expose(),
        state.config.session_ttl.as_secs()
    );
    let mut response = Json(SessionCreated {
        session: secret.expose().to_owned(),
        user,
        expires_at,
    })
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Sign out: the session stops working at once.
#[utoipa::path(delete, path = "/v1/session", tag = "session", security(("session" = []), ("session_cookie" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, response = inline(enspace_http::responses::Unauthorized)),
        (status = 403, response = inline(enspace_http::responses::Forbidden))
    )
)]
pub async fn delete_session(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    state
        .store
        .sessions
        .remove(&caller.session)
        .map_err(ApiError::unavailable)?;
    let cookie = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
