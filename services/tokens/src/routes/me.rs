//! `GET /v1/me` and `GET /v1/workspaces`.

use axum::Json;
use serde::Serialize;

use crate::auth::Caller;
use crate::directory::{User, Workspace};

pub async fn get_me(caller: Caller) -> Json<User> {
    Json(caller.user)
}

#[derive(Serialize)]
pub struct Workspaces {
    workspaces: Vec<Workspace>,
}

pub async fn list_workspaces(caller: Caller) -> Json<Workspaces> {
    Json(Workspaces {
        workspaces: caller.user.workspaces,
    })
}
