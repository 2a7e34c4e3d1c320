//! ENSPACE tokens control plane: the event-sourced token lifecycle, sessions,
//! the management and audit API.

pub mod auth;
pub mod commands;
pub mod directory;
pub mod metrics;
pub mod replication;
pub mod routes;
pub mod state;
pub mod store;

use axum::Router;
use axum::routing::{get, post};

pub use state::{AppState, Config};

use routes::{audit, health, introspect, me, session, tokens, ui};

/// The token service's routes, with `extra` routes (e.g. an API node's in
/// `enspace serve`) merged in, wearing the shared layers.
pub fn app(state: AppState, extra: Router) -> Router {
    let routes = Router::new()
        .route(
            "/v1/session",
            post(session::create_session).delete(session::delete_session),
        )
        .route("/v1/me", get(me::get_me))
        .route("/v1/workspaces", get(me::list_workspaces))
        .route(
            "/v1/tokens",
            post(tokens::create_token).get(tokens::list_tokens),
        )
        .route(
            "/v1/tokens/{id}",
            get(tokens::get_token)
                .delete(tokens::revoke_token)
                .put(tokens::edit_token)
                .patch(tokens::edit_token),
        )
        .route("/v1/tokens/{id}/events", get(tokens::token_events))
        .route("/v1/audit/events", get(audit::list_events))
        .route("/v1/introspect", post(introspect::introspect_token))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(ui::routes())
        .with_state(state.clone())
        .merge(extra);
    enspace_http::layers::harden(routes, state.metrics.http.clone())
}

/// The token service alone.
pub fn router(state: AppState) -> Router {
    app(state, Router::new())
}
