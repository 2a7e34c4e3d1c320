//! The extractor for routes under `/v1/tokens/{id}`: the signed-in caller
//! and their own token with that id, or 404 before the handler runs. A
//! malformed id, an unknown token and someone else's token answer alike.
//! A decoy is not a token here: it lives under `/v1/decoys`.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use enspace_core::TokenView;
use enspace_http::ApiError;
use ulid::Ulid;

use crate::auth::Caller;
use crate::state::AppState;

pub struct OwnToken {
    pub caller: Caller,
    pub token: TokenView,
}

pub fn token_not_found() -> ApiError {
    ApiError::not_found("token_not_found", "no token with this id among yours")
}

/// The `{id}` of the path, if it is a ULID.
pub(crate) fn path_id(params: &RawPathParams) -> Option<Ulid> {
    params
        .iter()
        .find(|(name, _)| *name == "id")
        .and_then(|(_, value)| Ulid::from_string(value).ok())
}

impl FromRequestParts<AppState> for OwnToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| token_not_found())?;
        let id = path_id(&params).ok_or_else(token_not_found)?;
        let projections = state.store.projections.clone();
        let token = enspace_http::blocking(move || projections.token(id))
            .await?
            .filter(|t| t.user_id == caller.user.id && !t.decoy)
            .ok_or_else(token_not_found)?;
        Ok(OwnToken { caller, token })
    }
}
