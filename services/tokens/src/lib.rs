//! ENSPACE tokens control plane: the event-sourced token lifecycle, sessions,
//! the management and audit API.

pub mod auth;
pub mod control_plane;
pub mod membership;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub use enspace_leaks as leaks;
pub use enspace_store::key_file as signing_key;
pub mod state;
pub mod token_quota;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use control_plane::{ControlPlane, ControlPlaneConfig};
pub use state::{AppState, Config};

use routes::{
    audit, audit_moments, audit_timeline, decoys, event_key, health, insights, introspect, me,
    notifications as notes, report_leak, requests, rotate, secret_scanning, self_rotate, session,
    tokens, workspaces,
};

/// The token service's documented routes. Built with utoipa-axum's
/// `routes!`, so every route here is in the OpenAPI document.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(
            // Bodies anyone may send (sign-in, leak reports): a few KiB is
            // all they need, so that many connections cannot hold much.
            OpenApiRouter::new()
                .routes(routes!(session::create_session, session::delete_session))
                .routes(routes!(report_leak::report_leak))
                .layer(axum::extract::DefaultBodyLimit::max(
                    routes::UNAUTHENTICATED_BODY_LIMIT,
                )),
        )
        // Reads its body itself, a few at a time (see the route).
        .routes(routes!(secret_scanning::report_github_matches))
        .routes(routes!(me::get_me))
        .routes(routes!(me::list_workspaces))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(
            tokens::get_token,
            tokens::revoke_token,
            tokens::replace_token,
            tokens::patch_token
        ))
        .routes(routes!(tokens::token_events))
        .routes(routes!(rotate::rotate_token))
        .routes(routes!(self_rotate::rotate_self))
        .routes(routes!(decoys::create_decoy, decoys::list_decoys))
        .routes(routes!(decoys::revoke_decoy))
        .routes(routes!(workspaces::list_workspace_tokens))
        .routes(routes!(workspaces::revoke_workspace_token))
        .routes(routes!(workspaces::get_policy, workspaces::put_policy))
        .routes(routes!(requests::list_requests))
        .routes(routes!(requests::request_stats))
        .routes(routes!(insights::token_insights))
        .routes(routes!(notes::list_notifications))
        .routes(routes!(notes::read_notification))
        .routes(routes!(audit::list_events))
        .routes(routes!(audit_moments::audit_state))
        .routes(routes!(audit_moments::audit_changes))
        .routes(routes!(audit_timeline::token_timeline))
        .routes(routes!(introspect::introspect_token))
        .routes(routes!(event_key::get_event_key))
        .routes(routes!(event_key::rotate_event_key))
        .routes(routes!(routes::cluster::get_cluster))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The token service's routes, the settings UI, and `extra` routes (an API
/// node's in `enspace serve`) merged in, wearing the shared layers;
/// `GET /v1/openapi.json` serves `doc`, which should describe them all.
pub fn app(state: AppState, extra: Router, doc: &utoipa::openapi::OpenApi) -> Router {
    let (api, _) = api_router().split_for_parts();
    let routes = api
        .merge(enspace_ui::routes())
        .with_state(state.clone())
        .route(
            "/v1/openapi.json",
            axum::routing::get(openapi::get_openapi)
                .layer(axum::Extension(openapi::OpenApiJson::new(doc))),
        )
        .merge(extra);
    enspace_http::layers::harden(routes, state.metrics.http.clone())
}

/// The token service alone, documenting itself.
pub fn router(state: AppState) -> Router {
    let doc = openapi::document([api_router().into_openapi()]);
    app(state, Router::new(), &doc)
}
