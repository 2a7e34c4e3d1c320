//! `GET /v1/me` and `GET /v1/workspaces`.

use axum::Json;
use serde::Serialize;

use crate::auth::Caller;
use crate::directory::{User, Workspace};

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "session", security(("session" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The caller", body = User), (status = 401, response = inline(enspace_http::responses::Unauthorized)),
        (status = 403, response = inline(enspace_http::responses::Forbidden)))
)]
pub async fn get_me(caller: Caller) -> Json<User> {
    Json(caller.user)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Workspaces {
    workspaces: Vec<Workspace>,
}

/// The caller's own workspaces.
#[utoipa::path(get, path = "/v1/workspaces", tag = "session", security(("session" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The caller's workspaces", body = Workspaces), (status = 401, response = inline(enspace_http::responses::Unauthorized)),
        (status = 403, response = inline(enspace_http::responses::Forbidden)))
)]
pub async fn list_workspaces(caller: Caller) -> Json<Workspaces> {
    Json(Workspaces {
        workspaces: caller.user.workspaces,
    })
}
