//! ENSPACE API node: the personal-access-token auth layer, the local token
//! replica it verifies against (fed from JetStream, or in-process in
//! `enspace serve`), and the example `records` resource.

pub mod auth;
pub mod beats;
pub mod chain;
pub mod example;
pub mod feed;
pub mod freshness;
pub mod metrics;
pub mod rate_limit;
pub mod refused;
pub mod replica;
pub mod request_records;
pub mod scopes;
mod table;
pub mod verify;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use enspace_core::Clock;
use prometheus_client::registry::Registry;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use example::records;

pub use auth::{Auth, AuthParts, require_token};
pub use enspace_core::RecordSink;
pub use freshness::Freshness;
pub use rate_limit::TokenRateLimit;
pub use replica::TokenReplica;
pub use verify::VerifiedToken;

/// An API node's state: one `Arc`, cloned for every request.
#[derive(Clone)]
pub struct NodeState(Arc<NodeParts>);

impl std::ops::Deref for NodeState {
    type Target = NodeParts;
    fn deref(&self) -> &NodeParts {
        &self.0
    }
}

pub struct NodeParts {
    pub auth: Auth,
    pub records: Arc<records::RecordStore>,
    pub clock: Arc<dyn Clock>,
    /// Whether the replica may answer token calls (caught up, and heard
    /// from the control plane within the staleness bound).
    pub freshness: Arc<Freshness>,
}

impl NodeState {
    pub fn new(
        node_id: &str,
        clock: Arc<dyn Clock>,
        registry: &mut Registry,
        sink: Option<Arc<dyn RecordSink>>,
        freshness: Arc<Freshness>,
    ) -> Self {
        let metrics = metrics::NodeMetrics::register(registry);
        Self::with_metrics(node_id, clock, metrics, sink, freshness)
    }

    /// As [`new`](Self::new), with metrics registered beforehand (so that a
    /// record sink can count into them).
    pub fn with_metrics(
        node_id: &str,
        clock: Arc<dyn Clock>,
        metrics: metrics::NodeMetrics,
        sink: Option<Arc<dyn RecordSink>>,
        freshness: Arc<Freshness>,
    ) -> Self {
        Self::with_options(
            node_id,
            clock,
            metrics,
            sink,
            freshness,
            NodeOptions::default(),
        )
    }

    /// As [`with_metrics`](Self::with_metrics), with the node's limits.
    pub fn with_options(
        node_id: &str,
        clock: Arc<dyn Clock>,
        metrics: metrics::NodeMetrics,
        sink: Option<Arc<dyn RecordSink>>,
        freshness: Arc<Freshness>,
        options: NodeOptions,
    ) -> Self {
        let rate_limit = options
            .token_rate_limit
            .map(|per_second| Arc::new(TokenRateLimit::new(per_second, clock.clone())));
        NodeState(Arc::new(NodeParts {
            auth: Auth::new(AuthParts {
                replica: Arc::new(TokenReplica::new()),
                clock: clock.clone(),
                node_id: Arc::from(node_id),
                metrics,
                sink,
                freshness: freshness.clone(),
                rate_limit,
                refused: Arc::default(),
            }),
            records: records::new_store(),
            clock,
            freshness,
        }))
    }

    pub fn replica(&self) -> &Arc<TokenReplica> {
        &self.auth.replica
    }

    /// The per-token rate limit, when the node has one (its owner runs
    /// [`TokenRateLimit::prune_forever`]).
    pub fn rate_limit(&self) -> Option<&Arc<TokenRateLimit>> {
        self.auth.rate_limit.as_ref()
    }
}

/// An API node's limits.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Calls per second one token may make (bursts of twice as many).
    pub token_rate_limit: Option<std::num::NonZeroU32>,
}

/// The example API's documented routes (utoipa-axum `routes!`: every
/// route is in the OpenAPI document).
pub fn api_router() -> OpenApiRouter<NodeState> {
    OpenApiRouter::new()
        .routes(routes!(records::list_records, records::create_record))
        .routes(routes!(
            records::get_record,
            records::update_record,
            records::delete_record
        ))
}

/// The example API (`/api/v1/…`) behind the auth layer, unwrapped, for
/// mounting into another router.
pub fn api_routes(node: NodeState) -> Router {
    let (router, _) = api_router().split_for_parts();
    router
        .route_layer(axum::middleware::from_fn_with_state(
            node.auth.clone(),
            require_token,
        ))
        .with_state(node)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready while token calls can be answered: the replica has caught up and,
/// with a staleness bound, has heard from the control plane within it.
async fn readyz(State(node): State<NodeState>) -> Response {
    let tokens = node.replica().len();
    if node.freshness.usable() {
        Json(json!({"status": "ready", "tokens": tokens})).into_response()
    } else {
        // A problem, as every error answer: its code says which.
        let (code, detail) = if node.freshness.caught_up() {
            (
                "token_state_stale",
                format!(
                    "not ready: token state last confirmed {:.1} s ago ({tokens} tokens held)",
                    node.freshness.staleness_seconds()
                ),
            )
        } else {
            (
                "catching_up",
                format!("not ready: catching up with the token events ({tokens} tokens so far)"),
            )
        };
        enspace_http::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail).into_response()
    }
}

/// A standalone API node: the API plus `/healthz`, `/readyz`, `/metrics`.
pub fn router(node: NodeState, registry: Arc<Registry>, http: enspace_http::HttpMetrics) -> Router {
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(node.clone())
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { enspace_http::metrics::render(&registry) }
            }),
        );
    enspace_http::layers::harden(api_routes(node).merge(ops), http)
}
