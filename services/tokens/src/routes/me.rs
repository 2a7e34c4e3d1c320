//! `GET /v1/me` and `GET /v1/workspaces`.

use axum::Json;
use axum::extract::State;
use enspace_core::WorkspacePolicy;
use enspace_http::ApiError;
use serde::Serialize;

use crate::auth::Caller;
use crate::state::AppState;
use enspace_accounts::directory::User;

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "session", security(("session" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The caller", body = User), (status = 401, response = inline(enspace_http::responses::Unauthorized)),
        (status = 403, response = inline(enspace_http::responses::Forbidden)))
)]
pub async fn get_me(caller: Caller) -> Json<User> {
    Json(caller.user)
}

/// A workspace of the caller's, with the token policy new tokens for it
/// must obey.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MyWorkspace {
    id: String,
    name: String,
    policy: WorkspacePolicy,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Workspaces {
    workspaces: Vec<MyWorkspace>,
}

/// The caller's own workspaces, with their token policies.
#[utoipa::path(get, path = "/v1/workspaces", tag = "session", security(("session" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The caller's workspaces", body = Workspaces),
        enspace_http::responses::SignedIn,
    )
)]
pub async fn list_workspaces(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Workspaces>, ApiError> {
    let projections = state.store.projections.clone();
    let workspaces = enspace_http::blocking(move || {
        let mut workspaces = Vec::with_capacity(caller.user.workspaces.len());
        for ws in caller.user.workspaces {
            workspaces.push(MyWorkspace {
                policy: projections.policy(&ws.id)?,
                id: ws.id,
                name: ws.name,
            });
        }
        Ok::<_, enspace_store::StoreError>(workspaces)
    })
    .await?;
    Ok(Json(Workspaces { workspaces }))
}
