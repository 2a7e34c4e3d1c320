//! `GET /v1/cluster`: which control-plane process writes, under which
//! lease term, and how far each process's log is. For operators (the
//! internal key) and auditors.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use enspace_http::ApiError;

use crate::auth::Auditor;
use crate::state::AppState;
use enspace_cluster::members::{self, ClusterView};

/// The cluster's writer, lease term and members.
#[utoipa::path(get, path = "/v1/cluster", tag = "operations",
    security(("internal_key" = []), ("session" = []), ("session_cookie" = [])),
    responses(
        (status = 200, description = "The writer, the lease term and each process's head", body = ClusterView),
        enspace_http::responses::SignedIn,
        (status = 404, response = inline(enspace_http::responses::NotFound)),
    )
)]
pub async fn get_cluster(
    State(state): State<AppState>,
    mut parts: Parts,
) -> Result<Json<ClusterView>, ApiError> {
    if super::introspect::internal_caller(&state, &parts.headers).is_err() {
        Auditor::from_request_parts(&mut parts, &state).await?;
    }
    let cluster = state.cluster.get().ok_or_else(|| {
        ApiError::not_found(
            "not_clustered",
            "this process is not one of a cluster of control-plane processes",
        )
    })?;
    let view = members::view(&cluster.lease, &cluster.members, &cluster.assignment)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(view))
}
