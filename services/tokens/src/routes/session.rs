//! `POST /v1/session` (sign in) and `DELETE /v1/session` (sign out).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use enspace_core::SessionSecret;
use enspace_http::{ApiError, ApiJson, ClientAddr};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, SESSION_COOKIE, came_over_tls};
use crate::state::AppState;
use enspace_accounts::credentials::{
    Attempt, DeviceCookies, HashError, Throttled, loggable_user_name,
};
use enspace_accounts::directory::User;
use enspace_store::sessions::SessionRecord;

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

/// `Set-Cookie` for the session (or, with no secret, its removal); `Secure`
/// when the request came over TLS or the service is told it always does.
fn session_cookie(secret: Option<&str>, max_age_secs: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}",
        secret.unwrap_or_default()
    ))
    .ok()
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

fn throttled(throttled: Throttled) -> ApiError {
    ApiError::too_many(
        "too_many_attempts",
        throttled.retry_after_secs,
        "too many failed sign-ins; try again after the time in Retry-After",
    )
}

/// Sign in; answers the session and sets the `enspace_session` cookie, and
/// the `enspace_device` cookie that marks this client as one that signed in
/// as this user.
///
/// A client with that device cookie is judged on its own failures only (10
/// within 5 minutes lock the cookie). Any other client: after 30 failed
/// attempts from one client address, or 10 for one user name from one
/// address, within 5 minutes, attempts answer `429` until the oldest failure
/// is 5 minutes old; after 10 for one user name from anywhere, each attempt
/// is held back, 1 s and doubling up to 16 s, but not refused. Passwords are
/// checked a few at a time; a sign-in that gets no free slot (within 2
/// seconds, or at once after recent unsuccessful attempts by its user name
/// or address) answers `503`.
#[utoipa::path(post, path = "/v1/session", tag = "session",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in", body = SessionCreated,
            headers(("Set-Cookie" = String, description = "`enspace_session=…; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200` and `enspace_device=…; HttpOnly; SameSite=Strict; Path=/v1/session; Max-Age=31536000`, each with `; Secure` over TLS"))),
        enspace_http::responses::JsonBody,
        (status = 401, response = inline(enspace_http::responses::Unauthorized)),
        (status = 429, response = inline(enspace_http::responses::TooManyRequests)),
        (status = 503, response = inline(enspace_http::responses::Unavailable)),
    )
)]
pub async fn create_session(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    if body.username.len() > MAX_CREDENTIAL_LEN || body.password.len() > MAX_CREDENTIAL_LEN {
        return Err(ApiError::invalid(
            "credentials_too_long",
            "password",
            "username and password are at most 1024 bytes",
        ));
    }
    let guard = &state.sign_in;
    let shown = loggable_user_name(&body.username);
    let from = ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
    let username = body.username.clone();
    let attempt = Attempt {
        user: &username,
        ip,
        device: guard.devices.presented(&headers, &username),
    };
    let refuse = |throttled: Throttled| {
        guard.metrics.count("throttled");
        let by = throttled.by.as_str();
        tracing::warn!(
            user.name = %shown,
            client.ip = %from,
            throttled.by = by,
            retry_after_secs = throttled.retry_after_secs,
            "throttled sign-in for {shown} from {from}: too many failed attempts for this {by}"
        );
        self::throttled(throttled)
    };
    let mut admitted = guard
        .throttle
        .check(&attempt, state.clock.now())
        .map_err(refuse)?;
    if !admitted.delay.is_zero() {
        guard.metrics.slowed.inc();
        tracing::warn!(user.name = %shown, client.ip = %from, delay_ms = admitted.delay.as_millis() as u64,
            "slowed sign-in for {shown} from {from} by {:?}: many recent failures for this user name from clients it has not signed in from",
            admitted.delay);
        tokio::time::sleep(admitted.delay).await;
        // Whatever failed meanwhile counts: the limits are checked again.
        admitted = guard
            .throttle
            .check(&attempt, state.clock.now())
            .map_err(refuse)?;
    }
    let user = match guard
        .hashing
        .authenticate(
            state.directory.clone(),
            body.username,
            body.password,
            admitted.standing,
            admitted.known_device,
        )
        .await
    {
        Ok(Some(user)) => user,
        Ok(None) => {
            guard
                .throttle
                .record_failure(&attempt, &admitted, state.clock.now());
            guard.metrics.count("failed");
            tracing::warn!(user.name = %shown, client.ip = %from, device.known = admitted.known_device,
                "failed sign-in for {shown} from {from}");
            return Err(invalid_credentials());
        }
        Err(HashError::Busy) => {
            guard
                .throttle
                .record_busy(&attempt, &admitted, state.clock.now());
            guard.metrics.count("busy");
            tracing::warn!(user.name = %shown, client.ip = %from,
                "sign-in for {shown} from {from} refused: every password hashing slot is busy");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sign_in_busy",
                "too many sign-ins at once; try again after the time in Retry-After",
            )
            .retry_after(1));
        }
        Err(e @ HashError::Failed(_)) => return Err(ApiError::internal(e)),
    };
    let secret = SessionSecret::generate();
    let expires_at = state
        .clock
        .now()
        .checked_add(state.config.session_ttl)
        .map_err(ApiError::internal)?;
    let record = SessionRecord {
        user_id: user.id.clone(),
        expires_at,
    };
    let ended = state
        .store
        .sessions
        .insert(
            &secret.hash(),
            &record,
            state.config.limits.max_sessions_per_user,
        )
        .map_err(ApiError::unavailable)?;
    if let Some(cluster) = state.cluster.get() {
        cluster
            .sessions
            .signed_in(&secret.hash(), &record, &ended)
            .await
            .map_err(ApiError::unavailable)?;
    }
    let ended = ended.len();
    guard.metrics.count("ok");
    tracing::info!(user.id = %user.id, client.ip = %from, "signed in {} from {from}", user.id);
    if ended > 0 {
        tracing::info!(user.id = %user.id, sessions.ended = ended,
            "ended the {ended} oldest sessions of {}: at most {} at once", user.id,
            state.config.limits.max_sessions_per_user);
    }
    let tls = came_over_tls(&headers, state.config.secure_cookies);
    let cookie = session_cookie(
        Some(secret.expose()),
        state.config.session_ttl.as_secs(),
        tls,
    );
    let user_id = user.id.clone();
    let mut response = Json(SessionCreated {
        session: secret.expose().to_owned(),
        user,
        expires_at,
    })
    .into_response();
    let device = DeviceCookies::set_cookie(&guard.devices.issue(&user_id), tls);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in [cookie, device].into_iter().flatten() {
        headers.append(header::SET_COOKIE, cookie);
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
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    state
        .store
        .sessions
        .remove(&caller.session)
        .map_err(ApiError::unavailable)?;
    if let Some(cluster) = state.cluster.get() {
        cluster
            .sessions
            .signed_out(&caller.session)
            .await
            .map_err(ApiError::unavailable)?;
    }
    let cookie = session_cookie(
        None,
        0,
        came_over_tls(&headers, state.config.secure_cookies),
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// How often ended sessions are swept: a tenth of a session's life, between
/// a second and ten minutes.
pub fn sweep_interval(session_ttl: jiff::SignedDuration) -> std::time::Duration {
    (session_ttl.unsigned_abs() / 10).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(600),
    )
}
