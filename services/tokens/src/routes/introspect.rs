//! `POST /v1/introspect` (RFC 7662) for API nodes written in other
//! languages: form field `token`, caller authenticated with
//! `Authorization: Bearer $ENSPACE_INTERNAL_KEY`. A token's fences are
//! enforced here as on every API node (`enspace_core::fence`): before its
//! `not_before` it is not active, and a token with address ranges is
//! active only for a `client_ip` inside them (the caller's client, which
//! only the calling node knows).

use axum::Json;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use enspace_core::{PatSecret, TokenStatus};
use enspace_http::ApiError;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct IntrospectForm {
    token: Option<String>,
    /// The address of the client that presented the token. Required for a
    /// token with `allowed_cidrs`: without it, or from outside them, such a
    /// token is not active.
    #[schema(example = "192.0.2.7")]
    client_ip: Option<String>,
}

/// RFC 7662 answer: only `active` when the token is not active.
#[derive(Serialize, Default, utoipa::ToSchema)]
pub struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// When the token started working (RFC 7662 `nbf`), if it was made
    /// with `not_before`.
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    /// The client address ranges the token may be used from, if it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_cidrs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspaces: Option<Vec<String>>,
}

pub(crate) fn internal_caller(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_internal_key",
            "this call needs `Authorization: Bearer <internal key>`",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"enspace-internal\"",
        )
    };
    let expected = state
        .config
        .internal_key
        .as_deref()
        .ok_or_else(unauthorized)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// RFC 7662 token introspection for API nodes in other languages.
#[utoipa::path(post, path = "/v1/introspect", tag = "introspection",
    security(("internal_key" = [])),
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Whether the token is active, and what it grants", body = Introspection),
        enspace_http::responses::JsonBody,
        (status = 401, response = inline(enspace_http::responses::Unauthorized)),
        (status = 503, response = inline(enspace_http::responses::Unavailable)),
    )
)]
pub async fn introspect_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<IntrospectForm>,
) -> Result<Json<Introspection>, ApiError> {
    internal_caller(&state, &headers)?;
    enspace_cluster::barrier::catch_up(state.cluster.get(), &state.metrics.cluster.read_barriers)
        .await?;
    let token = form
        .token
        .ok_or_else(|| ApiError::invalid("missing_field", "token", "`token` is required"))?;
    let Ok(secret) = token.parse::<PatSecret>() else {
        return Ok(Json(Introspection::default()));
    };
    let (projections, hash) = (state.store.projections.clone(), secret.hash());
    let view = enspace_http::blocking(move || projections.token_by_hash(&hash)).await?;
    let now = state.clock.now();
    let client_ip = form
        .client_ip
        .as_deref()
        .and_then(|ip| ip.trim().parse().ok());
    if let Some(decoy) = view.as_ref().filter(|v| v.decoy) {
        let used = enspace_notify::DecoyUse {
            token_id: decoy.id,
            at: now,
            client_ip: client_ip
                .map(|ip: std::net::IpAddr| ip.to_string())
                .unwrap_or_default(),
            user_agent: None,
            call: "introspection (POST /v1/introspect)".into(),
            node: "control plane".into(),
        };
        super::decoys::tell_use(&state, decoy, used).await;
        return Ok(Json(Introspection::default()));
    }
    let Some(view) = view.filter(|v| {
        v.status(now) == TokenStatus::Active && fenced_in(v, client_ip, now.as_millisecond())
    }) else {
        return Ok(Json(Introspection::default()));
    };
    Ok(Json(Introspection {
        active: true,
        scope: Some(
            view.scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        token_type: Some("personal_access_token"),
        sub: Some(view.user_id.clone()),
        username: Some(view.user_id),
        jti: Some(view.id.to_string()),
        iat: Some(view.created_at.as_second()),
        exp: view.expires_at.map(|t| t.as_second()),
        nbf: view.not_before.map(|t| t.as_second()),
        allowed_cidrs: (!view.allowed_cidrs.is_empty()).then_some(view.allowed_cidrs),
        workspaces: Some(view.workspaces),
    }))
}

/// Whether the token's fences let a call from `client_ip` at `now_ms`
/// through, by the rules every API node applies.
fn fenced_in(
    view: &enspace_core::TokenView,
    client_ip: Option<std::net::IpAddr>,
    now_ms: i64,
) -> bool {
    let fence = enspace_core::fence::Fence::new(&view.allowed_cidrs, view.not_before);
    fence.is_none_or(|f| f.check(client_ip, now_ms).is_ok())
}
