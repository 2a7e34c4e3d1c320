//! The auth layer any axum API can mount with [`require_token`]: it verifies
//! `Authorization: Bearer ens_pat_…` against the local replica, needs the
//! scope the HTTP method implies (GET/HEAD read, POST/PUT/PATCH write,
//! DELETE delete) and, where the route has a `{ws}` segment, that workspace.
//! Handlers get the identity through the [`VerifiedToken`] extractor. Every
//! call whose token resolves to a known token id, allowed or denied, is
//! handed to the request-record sink once with its final status, its path,
//! workspace and user agent kept within bounds (`enspace_core::record_bounds`);
//! a call refused before a token is known is counted instead (`refused`).
//! A decoy's secret is answered exactly as an unknown token is (same
//! status, body and headers, no rate limit), and its call recorded under
//! the decoy, which is how its owner hears of it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use enspace_core::{Clock, RecordSink, RequestRecord, Scope, record_bounds};
use enspace_http::ApiError;
use ulid::Ulid;

use crate::freshness::Freshness;
use crate::metrics::NodeMetrics;
use crate::rate_limit::{Decision, TokenRateLimit};
use crate::refused::RefusedBeforeToken;
use crate::replica::TokenReplica;
use crate::verify::{Rejection, VerifiedToken, verify};

/// Everything the auth layer needs. Cloned for every request, so it is one
/// `Arc`: one reference count to touch, not one per field.
#[derive(Clone)]
pub struct Auth(Arc<AuthParts>);

pub struct AuthParts {
    pub replica: Arc<TokenReplica>,
    pub clock: Arc<dyn Clock>,
    pub node_id: Arc<str>,
    pub metrics: NodeMetrics,
    pub sink: Option<Arc<dyn RecordSink>>,
    pub freshness: Arc<Freshness>,
    /// Calls per second per token, when the node limits them.
    pub rate_limit: Option<Arc<TokenRateLimit>>,
    /// This hour's count of calls refused before a token was known.
    pub refused: Arc<RefusedBeforeToken>,
}

impl Auth {
    pub fn new(parts: AuthParts) -> Self {
        Auth(Arc::new(parts))
    }
}

impl std::ops::Deref for Auth {
    type Target = AuthParts;
    fn deref(&self) -> &AuthParts {
        &self.0
    }
}

struct PendingRecord {
    token: VerifiedToken,
    method: String,
    path: String,
    path_truncated: bool,
    client_ip: String,
    user_agent: Option<String>,
}

pub fn scope_for(method: &Method) -> Scope {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Scope::Read,
        Method::DELETE => Scope::Delete,
        _ => Scope::Write,
    }
}

fn rejection_response(rejection: &Rejection) -> Response {
    match rejection {
        Rejection::InsufficientScope(scope) => {
            let challenge = format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                scope.as_str()
            );
            let mut response = ApiError::forbidden(
                "insufficient_scope",
                format!(
                    "this call needs a token with the `{}` scope",
                    scope.as_str()
                ),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
        Rejection::WorkspaceNotAllowed => ApiError::forbidden(
            "workspace_not_allowed",
            "this token is not granted this workspace",
        )
        .into_response(),
        Rejection::AddressNotAllowed => ApiError::forbidden(
            "address_not_allowed",
            "this token may not be used from this client address",
        )
        .into_response(),
        Rejection::NotYetValid => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_not_yet_valid",
            "this token is not valid yet; it starts working at its `not_before` time",
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")
        .into_response(),
        other => {
            let detail = match other {
                Rejection::Missing => {
                    "send a personal access token as `Authorization: Bearer ens_pat_…`"
                }
                Rejection::Malformed(_) => "the token is malformed or its checksum is wrong",
                Rejection::Expired => "the token has expired",
                Rejection::Revoked => "the token has been revoked",
                _ => "the token is not valid",
            };
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", detail)
                .with_header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")
                .into_response()
        }
    }
}

/// Middleware (mount with `route_layer` so `{ws}` is known): verifies the
/// token, then runs the handler, then records the call.
pub async fn require_token(
    State(auth): State<Auth>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    if !auth.freshness.usable() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "token_state_stale",
            "this node's copy of token state is not known to be current; try again shortly",
        )
        .with_header(header::RETRY_AFTER, "1")
        .into_response();
    }
    let start = Instant::now();
    let workspace = params
        .iter()
        .find(|(name, _)| *name == "ws")
        .map(|(_, value)| value);
    let needed = scope_for(req.method());
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let now = auth.clock.now();
    let verdict = verify(
        &auth.replica,
        authorization,
        now.as_millisecond(),
        needed,
        workspace,
        || enspace_http::client_addr::client_addr(req.extensions(), req.headers()),
    );
    auth.metrics.observe_verification(
        verdict.rejection.as_ref().map_or("ok", Rejection::outcome),
        start.elapsed(),
    );
    if verdict.token.is_none()
        && let Some(reason) = verdict
            .rejection
            .as_ref()
            .and_then(RefusedBeforeToken::reason)
        && let Some(hour) = auth.refused.count(reason, now.as_millisecond())
    {
        hour.log(&auth.node_id);
    }
    // What a request record needs is taken before the request moves on, and
    // only when the call resolved to a token and records are kept.
    let pending = match (&auth.sink, &verdict.token) {
        (Some(_), Some(token)) => {
            let (path, path_truncated) = record_bounds::path(req.uri().path());
            Some(PendingRecord {
                token: token.clone(),
                method: req.method().as_str().to_owned(),
                path: path.to_owned(),
                path_truncated,
                client_ip: enspace_http::client_addr::client_addr(req.extensions(), req.headers())
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                user_agent: req
                    .headers()
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| record_bounds::user_agent(s).to_owned()),
            })
        }
        _ => None,
    };
    // Every call of a known token counts against its rate, allowed or not;
    // a decoy's is answered as an unknown token's, which has no rate.
    let decision = match (&auth.rate_limit, &verdict.token, &verdict.rejection) {
        (_, _, Some(Rejection::Decoy)) => None,
        (Some(limit), Some(token), _) => Some(limit.check(token.token_id)),
        _ => None,
    };
    let mut response = match (verdict.rejection, verdict.token, decision) {
        (_, _, Some(Decision::Limited { retry_after_secs })) => {
            auth.metrics.rate_limited.inc();
            ApiError::too_many(
                "rate_limited",
                retry_after_secs,
                "this token made more calls than this node allows; slow down and retry after the time in Retry-After",
            )
            .into_response()
        }
        (None, Some(token), _) => {
            req.extensions_mut().insert(token);
            next.run(req).await
        }
        (Some(rejection), _, _) => rejection_response(&rejection),
        (None, None, _) => rejection_response(&Rejection::Unknown),
    };
    if let (Some(limit), Some(decision)) = (&auth.rate_limit, decision) {
        limit.describe(decision, response.headers_mut());
    }
    if let (Some(sink), Some(p)) = (&auth.sink, pending) {
        sink.record(RequestRecord {
            id: Ulid::new(),
            token_id: p.token.token_id,
            user_id: p.token.user_id.to_string(),
            at: now,
            node: auth.node_id.to_string(),
            method: p.method,
            path: p.path,
            path_truncated: p.path_truncated,
            workspace: workspace
                .and_then(record_bounds::workspace)
                .map(str::to_owned),
            status: response.status().as_u16(),
            duration_ms: (start.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0,
            client_ip: p.client_ip,
            user_agent: p.user_agent,
        });
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<VerifiedToken>()
            .cloned()
            .ok_or_else(|| {
                ApiError::internal("VerifiedToken used on a route without require_token")
            })
    }
}
