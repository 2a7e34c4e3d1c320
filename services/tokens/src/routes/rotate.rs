//! `POST /v1/tokens/{id}/rotate`: a successor for a token, with the same
//! scopes and workspaces, the old one working beside it for the overlap
//! asked for.

use axum::extract::State;
use axum::response::Response;
use enspace_core::{Expiration, PatSecret};
use enspace_http::{ApiError, ApiJson, blocking};
use serde::Deserialize;
use ulid::Ulid;

use super::tokens::{TokenCreatedResponse, command_error, created, quota_error};
use crate::routes::own_token::OwnToken;
use crate::state::AppState;
use enspace_store::commands::{Command, RotateToken};

/// How long a rotated token keeps working beside its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
pub enum Overlap {
    #[serde(rename = "0")]
    None,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Overlap {
    const ALL: [(Overlap, &'static str); 5] = [
        (Overlap::None, "0"),
        (Overlap::Hour, "1h"),
        (Overlap::Day, "1d"),
        (Overlap::Week, "7d"),
        (Overlap::Month, "30d"),
    ];

    pub(crate) fn parse(s: &str) -> Option<Overlap> {
        Self::ALL
            .into_iter()
            .find(|(_, name)| *name == s)
            .map(|(o, _)| o)
    }

    pub(crate) fn duration(self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_hours(match self {
            Overlap::None => 0,
            Overlap::Hour => 1,
            Overlap::Day => 24,
            Overlap::Week => 7 * 24,
            Overlap::Month => 30 * 24,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateTokenRequest {
    /// How long the old token keeps working: `0` (it stops at once), `1h`,
    /// `1d`, `7d` or `30d`.
    #[schema(value_type = Overlap, example = "1h")]
    overlap: String,
    /// The new token's expiration; the old token's preset when absent.
    #[schema(value_type = Option<Expiration>, example = "3m")]
    #[serde(default)]
    expiration: Option<String>,
}

/// Rotate a token: a new token with the same description, scopes and
/// workspaces (and a new secret, shown once) replaces it; the old one keeps
/// working for the overlap, then stops on every API node. A revoked,
/// expired or already rotated token answers `422` `token_inactive`. With an
/// overlap the successor counts against the cap on active tokens (`422`
/// `token_limit_reached`); without one it takes the old token's place.
#[utoipa::path(post, path = "/v1/tokens/{id}/rotate", tag = "tokens", security(("session" = []), ("session_cookie" = [])),
    params(("id" = String, Path, description = "The token id (a ULID)")),
    request_body = RotateTokenRequest,
    responses(
        (status = 201, description = "The successor, with `replaces`; `Location` names it", body = TokenCreatedResponse,
            headers(("Location" = String, description = "/v1/tokens/{id}"))),
        enspace_http::responses::OwnToken,
        enspace_http::responses::JsonBody,
    )
)]
pub async fn rotate_token(
    State(state): State<AppState>,
    OwnToken { caller, token: old }: OwnToken,
    ApiJson(req): ApiJson<RotateTokenRequest>,
) -> Result<Response, ApiError> {
    let overlap = Overlap::parse(&req.overlap).ok_or_else(|| {
        ApiError::invalid(
            "invalid_overlap",
            "overlap",
            "`overlap` must be one of 0, 1h, 1d, 7d, 30d",
        )
    })?;
    let expiration = req
        .expiration
        .as_deref()
        .map(|e| {
            Expiration::parse(e).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_expiration",
                    "expiration",
                    "`expiration` must be one of 1m, 2m, 3m, 6m, 1y, 2y, never",
                )
            })
        })
        .transpose()?;
    if let Some(ws) = old.workspaces.iter().find(|ws| !caller.user.belongs_to(ws)) {
        return Err(ApiError::invalid(
            "workspace_not_allowed",
            "workspaces",
            format!("you no longer belong to the workspace `{ws}`; create a new token instead"),
        ));
    }
    let (view, secret) =
        replace_with_successor(&state, old.id, &caller.user.id, overlap, expiration, false).await?;
    tracing::info!(token.id = %view.id, replaces = %old.id, user.id = %view.user_id, "rotated token {}", old.id);
    Ok(created(&state, view, &secret))
}

/// Replaces `old` with a successor for `actor` (its owner): holds the
/// successor's place in the owner's quota, records the rotation, and answers
/// the successor with its secret. `by_itself`: the token asked for it.
pub(crate) async fn replace_with_successor(
    state: &AppState,
    old: Ulid,
    actor: &str,
    overlap: Overlap,
    expiration: Option<Expiration>,
    by_itself: bool,
) -> Result<(enspace_core::TokenView, PatSecret), ApiError> {
    let reservation = {
        let (state, user) = (state.clone(), actor.to_owned());
        let alone = overlap == Overlap::None;
        blocking(move || {
            state
                .quota
                .reserve_successor(&user, state.clock.now(), alone)
                .map_err(|e| quota_error(&state, e))
        })
        .await?
    };
    let secret = PatSecret::generate();
    let view = state
        .writer
        .execute(Command::RotateToken(RotateToken {
            token_id: old,
            successor: Ulid::nil(), // named by the writer
            actor: actor.to_owned(),
            overlap: overlap.duration(),
            expiration,
            secret_hash: secret.hash(),
            by_itself,
        }))
        .await
        .map_err(command_error)?;
    reservation.commit();
    Ok((view, secret))
}
