//! `POST /v1/tokens/self/rotate`: a token made with `self_rotate` rotates
//! itself, with itself as the bearer — the only management call a token may
//! make. The control plane verifies it from its projections (the secret's
//! hash to the token) and honours its fences as every API node does; the
//! rotation is then the owner's, as `POST /v1/tokens/{id}/rotate` is.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;
use enspace_core::fence::{Fence, Refusal};
use enspace_core::secret::PAT_PREFIX;
use enspace_core::{PatSecret, TokenStatus, TokenView};
use enspace_http::client_addr::client_addr;
use enspace_http::{ApiError, ApiJson, blocking};
use serde::Deserialize;

use super::rotate::Overlap;
use super::tokens::{TokenCreatedResponse, created};
use crate::state::AppState;

/// A `401` as API nodes answer a token that does not verify.
fn invalid_token(detail: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", detail)
        .with_header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")
}

/// The active token presented as the bearer, inside its fences.
pub struct SelfRotatingToken(pub TokenView);

impl FromRequestParts<AppState> for SelfRotatingToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| token.starts_with(PAT_PREFIX))
            .ok_or_else(|| {
                invalid_token(
                    "send the token that rotates itself as `Authorization: Bearer ens_pat_…`",
                )
            })?;
        let secret = presented
            .parse::<PatSecret>()
            .map_err(|_| invalid_token("the token is malformed or its checksum is wrong"))?;
        // Made on another process a moment ago: catch up with the stream.
        enspace_cluster::barrier::catch_up(
            state.cluster.get(),
            &state.metrics.cluster.read_barriers,
        )
        .await?;
        let (projections, hash) = (state.store.projections.clone(), secret.hash());
        let view = blocking(move || projections.token_by_hash(&hash))
            .await?
            .ok_or_else(|| invalid_token("the token is not valid"))?;
        let now = state.clock.now();
        if view.decoy {
            // Answered as an unknown token; its owner hears of it.
            let used = enspace_notify::DecoyUse {
                token_id: view.id,
                at: now,
                client_ip: client_addr(&parts.extensions, &parts.headers)
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                user_agent: parts
                    .headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|ua| enspace_core::record_bounds::user_agent(ua).to_owned()),
                call: "POST /v1/tokens/self/rotate".into(),
                node: "control plane".into(),
            };
            super::decoys::tell_use(state, &view, used).await;
            return Err(invalid_token("the token is not valid"));
        }
        match view.status(now) {
            TokenStatus::Active => {}
            TokenStatus::Expired => return Err(invalid_token("the token has expired")),
            TokenStatus::Revoked => return Err(invalid_token("the token has been revoked")),
        }
        if let Some(fence) = Fence::new(&view.allowed_cidrs, view.not_before) {
            let client = client_addr(&parts.extensions, &parts.headers);
            let checked = fence.check(client, now.as_millisecond());
            if let Err(refusal) = checked {
                tracing::warn!(token.id = %view.id, user.id = %view.user_id, client_ip = ?client, ?refusal, "self-rotation refused by the token's fences");
            }
            match checked {
                Ok(()) => {}
                Err(Refusal::NotYetValid) => {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "token_not_yet_valid",
                        "this token is not valid yet; it starts working at its `not_before` time",
                    )
                    .with_header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""));
                }
                Err(Refusal::AddressNotAllowed) => {
                    return Err(ApiError::forbidden(
                        "address_not_allowed",
                        "this token may not be used from this client address",
                    ));
                }
            }
        }
        if !view.self_rotate {
            tracing::info!(token.id = %view.id, user.id = %view.user_id, "self-rotation refused: the token was not created with self_rotate");
            return Err(ApiError::forbidden(
                "self_rotate_not_allowed",
                "this token was not created with `self_rotate`; its owner can rotate it with a session",
            ));
        }
        Ok(SelfRotatingToken(view))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfRotateRequest {
    /// How long the old token (the bearer) keeps working beside its
    /// successor: `0` (it stops at once) or `1h`.
    #[schema(value_type = String, pattern = "^(0|1h)$", example = "1h")]
    overlap: String,
}

/// A token rotates itself: the bearer must be an active token created with
/// `self_rotate` (`403` `self_rotate_not_allowed` otherwise), inside its
/// fences (`403` `address_not_allowed`, `401` `token_not_yet_valid`). The
/// answer is a rotation's: the successor, with the same description, scopes,
/// workspaces, fences and `self_rotate`, and a new secret shown once; the
/// old token keeps working for the overlap (at most an hour), then stops on
/// every API node. An already rotated token answers `422`
/// `token_inactive`; an unknown, revoked or expired one `401`
/// `invalid_token`. The owner is notified (`token_self_rotated`). No other
/// management route accepts a token.
#[utoipa::path(post, path = "/v1/tokens/self/rotate", tag = "tokens", security(("pat" = [])),
    request_body = SelfRotateRequest,
    responses(
        (status = 201, description = "The successor, with `replaces`; `Location` names it", body = TokenCreatedResponse,
            headers(("Location" = String, description = "/v1/tokens/{id}"))),
        (status = 401, response = inline(enspace_http::responses::InvalidToken)),
        (status = 403, description = "The token may not rotate itself (`self_rotate_not_allowed`), or the call comes from outside its `allowed_cidrs` (`address_not_allowed`)", content_type = "application/problem+json", body = enspace_http::ProblemDetails),
        enspace_http::responses::JsonBody,
        (status = 503, response = inline(enspace_http::responses::Unavailable)),
    )
)]
pub async fn rotate_self(
    State(state): State<AppState>,
    SelfRotatingToken(old): SelfRotatingToken,
    ApiJson(req): ApiJson<SelfRotateRequest>,
) -> Result<Response, ApiError> {
    let overlap = Overlap::parse(&req.overlap)
        .filter(|o| matches!(o, Overlap::None | Overlap::Hour))
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_overlap",
                "overlap",
                "`overlap` must be 0 or 1h: a token keeps working beside its own successor for at most an hour",
            )
        })?;
    let owner = state
        .directory
        .user(&old.user_id)
        .cloned()
        .ok_or_else(|| invalid_token("the token is not valid"))?;
    if let Some(ws) = old.workspaces.iter().find(|ws| !owner.belongs_to(ws)) {
        return Err(ApiError::invalid(
            "workspace_not_allowed",
            "workspaces",
            format!("the token's owner no longer belongs to the workspace `{ws}`"),
        ));
    }
    let (view, secret) =
        super::rotate::replace_with_successor(&state, old.id, &owner.id, overlap, None, true)
            .await?;
    tracing::info!(token.id = %view.id, replaces = %old.id, user.id = %view.user_id, "token {} rotated itself", old.id);
    Ok(created(&state, view, &secret))
}
