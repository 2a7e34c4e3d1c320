//! `/v1/decoys`: tokens that are alarms (contract §18). A decoy has the
//! format of any token, is recorded like one (`token_created` with
//! `decoy`), and never grants anything: API nodes answer its use exactly
//! as they answer an unknown token, record the call under the decoy, and
//! its owner is told (`decoy_used`). Decoys have no scopes, no workspaces
//! and no expiry; they are not listed among the owner's tokens, in any
//! workspace admin's inventory, or counted against the token cap, and a
//! user holds at most [`MAX_DECOYS_PER_USER`] active ones.

use axum::Json;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use enspace_core::token::RevokeReason;
use enspace_core::{Expiration, PatSecret, TokenStatus, TokenView};
use enspace_http::{ApiError, ApiJson, blocking};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::auth::Caller;
use crate::routes::own_token::path_id;
use crate::routes::tokens::{command_error, valid_description};
use crate::state::AppState;
use enspace_store::commands::{Command, CreateToken};

/// Active decoys one user may hold.
pub const MAX_DECOYS_PER_USER: usize = 20;

/// A decoy as its owner sees it; never the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Decoy)]
pub struct DecoyJson {
    id: Ulid,
    description: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    revoked_at: Option<Timestamp>,
    /// `active` or `revoked` (a decoy never expires).
    status: TokenStatus,
    /// The last time someone used it (each use is also a `decoy_used`
    /// notification, at most one per address and hour), or null.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_used_at: Option<Timestamp>,
}

/// A decoy as the API shows it, with its last use.
fn decoy_json(view: TokenView, now: Timestamp, last_used_at: Option<Timestamp>) -> DecoyJson {
    DecoyJson {
        status: view.status(now),
        id: view.id,
        description: view.description,
        created_at: view.created_at,
        revoked_at: view.revoked_at,
        last_used_at,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDecoyRequest {
    /// 1 to 100 characters after trimming, as a token's description; for
    /// its owner only (say where the decoy was planted).
    #[schema(
        min_length = 1,
        max_length = 100,
        example = "In the CI secrets of repo billing"
    )]
    description: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DecoyCreatedResponse {
    #[schema(value_type = DecoyJson)]
    decoy: DecoyJson,
    /// `ens_pat_…`, like any token's: shown here once and never again.
    #[schema(pattern = "^ens_pat_[0-9A-Za-z]{38}$")]
    secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DecoyList {
    /// Newest first, revoked ones included.
    decoys: Vec<DecoyJson>,
}

/// Make a decoy: a secret in the format of any token that never grants
/// anything and tells its owner whenever it is used. At most 20 active
/// decoys per user: one more is `422` `decoy_limit_reached`.
#[utoipa::path(post, path = "/v1/decoys", tag = "decoys", security(("session" = []), ("session_cookie" = [])),
    request_body = CreateDecoyRequest,
    responses(
        (status = 201, description = "Made; the only answer that carries its secret", body = DecoyCreatedResponse),
        enspace_http::responses::SignedIn,
        enspace_http::responses::JsonBody,
    )
)]
pub async fn create_decoy(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateDecoyRequest>,
) -> Result<Response, ApiError> {
    let description = valid_description(&req.description)?;
    let active = {
        let (state, user) = (state.clone(), caller.user.id.clone());
        blocking(move || {
            let now = state.clock.now();
            let views = state.store.projections.tokens_of_user(&user)?;
            Ok::<_, ApiError>(
                views
                    .iter()
                    .filter(|v| v.decoy && v.status(now) == TokenStatus::Active)
                    .count(),
            )
        })
        .await?
    };
    if active >= MAX_DECOYS_PER_USER {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "decoy_limit_reached",
            format!(
                "you hold {MAX_DECOYS_PER_USER} active decoys, the most allowed; revoke one first"
            ),
        ));
    }
    let secret = PatSecret::generate();
    let view = state
        .writer
        .execute(Command::CreateToken(CreateToken {
            token_id: Ulid::nil(), // named by the writer
            actor: caller.user.id.clone(),
            description,
            expiration: Expiration::Never,
            scopes: Vec::new(),
            workspaces: Vec::new(),
            secret_hash: secret.hash(),
            allowed_cidrs: Vec::new(),
            not_before: None,
            self_rotate: false,
            decoy: true,
        }))
        .await
        .map_err(command_error)?;
    tracing::info!(decoy.id = %view.id, user.id = %view.user_id, "made decoy {}", view.id);
    let body = DecoyCreatedResponse {
        decoy: DecoyJson {
            status: TokenStatus::Active,
            id: view.id,
            description: view.description,
            created_at: view.created_at,
            revoked_at: None,
            last_used_at: None,
        },
        secret: secret.expose().to_owned(),
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The caller's decoys, newest first, revoked ones included.
#[utoipa::path(get, path = "/v1/decoys", tag = "decoys", security(("session" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The caller's decoys, newest first", body = DecoyList),
        enspace_http::responses::SignedIn,
    )
)]
pub async fn list_decoys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<DecoyList>, ApiError> {
    let user = caller.user.id;
    let projections = state.store.projections.clone();
    let mut views = blocking(move || projections.tokens_of_user(&user)).await?;
    views.retain(|v| v.decoy);
    let ids: Vec<Ulid> = views.iter().map(|v| v.id).collect();
    // Read here, or where each decoy's partition is served.
    let mut last_used = state.usage.last_used(&ids).await?;
    let now = state.clock.now();
    let decoys = views
        .into_iter()
        .map(|v| {
            let used = last_used.remove(&v.id).flatten();
            decoy_json(v, now, used)
        })
        .collect();
    Ok(Json(DecoyList { decoys }))
}

fn decoy_not_found() -> ApiError {
    ApiError::not_found("decoy_not_found", "no decoy with this id among yours")
}

/// Revoke a decoy: from then on its use is an unknown token's, and nobody
/// is told. Revoking it again changes nothing.
#[utoipa::path(delete, path = "/v1/decoys/{id}", tag = "decoys", security(("session" = []), ("session_cookie" = [])),
    params(("id" = String, Path, description = "The decoy id (a ULID)")),
    responses(
        (status = 204, description = "Revoked"),
        enspace_http::responses::OwnToken,
    )
)]
pub async fn revoke_decoy(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&params).ok_or_else(decoy_not_found)?;
    let projections = state.store.projections.clone();
    let user = caller.user.id.clone();
    let decoy = blocking(move || projections.token(id))
        .await?
        .filter(|t| t.user_id == user && t.decoy)
        .ok_or_else(decoy_not_found)?;
    if decoy.revoked_at.is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    state
        .writer
        .execute(Command::RevokeToken {
            token_id: id,
            actor: caller.user.id.clone(),
            reason: RevokeReason::User,
        })
        .await
        .map_err(command_error)?;
    tracing::info!(decoy.id = %id, user.id = %caller.user.id, "revoked decoy {id}");
    Ok(StatusCode::NO_CONTENT)
}

/// Tells the owner of `decoy` that it was presented to this control plane
/// (introspection, self-rotation): the caller gets an unknown token's
/// answer, the owner a `decoy_used` notification. Failing to tell is
/// logged, never answered: the caller must learn nothing.
pub(crate) async fn tell_use(state: &AppState, decoy: &TokenView, used: enspace_notify::DecoyUse) {
    let (notifications, tokens) = (state.notifications.clone(), state.store.projections.clone());
    let made = state.metrics.notifications.made.clone();
    let told = blocking(move || notifications.tell_decoy_uses(&[used], &tokens)).await;
    match told {
        Ok(n) => made.inc_by(n as u64),
        Err(e) => {
            tracing::error!(decoy.id = %decoy.id, error = ?e, "telling a decoy's use failed");
            0
        }
    };
}
