//! `GET /v1/audit/state?at=T` and `GET /v1/audit/changes?from=&to=`: the
//! log's answers about moments, for auditors.

use axum::Json;
use axum::extract::{Query, State};
use enspace_core::audit_state::{ChangeGroups, StateFilter, TokenAtMoment};
use enspace_http::ApiError;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::auth::Auditor;
use crate::routes::paging;
use crate::routes::query_time::required_time;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct StateQuery {
    at: Option<String>,
    workspace: Option<String>,
    user: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditState {
    /// The moment asked about.
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// The tokens that existed then, by id.
    tokens: Vec<TokenAtMoment>,
    /// Pass as `after` for the next page; null on the last.
    #[schema(value_type = Option<String>)]
    next_after: Option<Ulid>,
}

/// A filter's text: at most this long, and with no control characters.
const MAX_FILTER: usize = 256;

fn filter_value(field: &'static str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_FILTER || v.chars().any(char::is_control) => {
            Err(ApiError::invalid(
                "invalid_filter",
                field,
                format!("`{field}` is 1 to {MAX_FILTER} bytes with no control characters"),
            ))
        }
        v => Ok(v),
    }
}

/// Every token as it stood at a moment: owner, scopes, workspaces and
/// status (active, rotated, expired, revoked with its reason), folded from
/// the log alone by the service's own rules.
#[utoipa::path(get, path = "/v1/audit/state", tag = "audit", security(("session" = []), ("session_cookie" = [])),
    params(
        ("at" = String, Query, format = DateTime, description = "The moment (RFC 3339)"),
        ("workspace" = Option<String>, Query, description = "Only tokens that could reach this workspace"),
        ("user" = Option<String>, Query, description = "Only this user's tokens"),
        ("after" = Option<String>, Query, description = "`next_after` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Tokens per page (default 1000)"),
    ),
    responses(
        (status = 200, description = "The tokens that existed at `at`, as they stood then", body = AuditState),
        enspace_http::responses::SignedIn,
        (status = 400, response = inline(enspace_http::responses::BadRequest)),
        (status = 422, response = inline(enspace_http::responses::Unprocessable)),
    )
)]
pub async fn audit_state(
    State(state): State<AppState>,
    _auditor: Auditor,
    Query(q): Query<StateQuery>,
) -> Result<Json<AuditState>, ApiError> {
    let at = required_time("at", q.at.as_deref())?;
    let filter = StateFilter {
        workspace: filter_value("workspace", q.workspace)?,
        user: filter_value("user", q.user)?,
    };
    let after = q
        .after
        .as_deref()
        .map(|s| {
            Ulid::from_string(s).map_err(|_| {
                ApiError::invalid("invalid_after", "after", "`after` is a token id (a ULID)")
            })
        })
        .transpose()?;
    let limit = paging::limit(q.limit.as_deref(), 1000, 10_000)?;
    let store = state.store.clone();
    let page = enspace_http::blocking(move || store.state_at(at, &filter, after, limit)).await?;
    Ok(Json(AuditState {
        at,
        tokens: page.tokens,
        next_after: page.next_after,
    }))
}

#[derive(Deserialize)]
pub struct ChangesQuery {
    from: Option<String>,
    to: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditChanges {
    #[schema(value_type = String, format = DateTime)]
    from: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    to: Timestamp,
    #[serde(flatten)]
    groups: ChangeGroups,
    /// Pass as `after` for the next page; null on the last.
    next_after: Option<u64>,
}

/// The events in `[from, to)`, grouped by what they did: tokens created,
/// revoked and rotated, and workspace policies set.
#[utoipa::path(get, path = "/v1/audit/changes", tag = "audit", security(("session" = []), ("session_cookie" = [])),
    params(
        ("from" = String, Query, format = DateTime, description = "Start, inclusive (RFC 3339)"),
        ("to" = String, Query, format = DateTime, description = "End, exclusive (RFC 3339)"),
        ("after" = Option<u64>, Query, description = "`next_after` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Events per page (default 100)"),
    ),
    responses(
        (status = 200, description = "The events between the two moments, grouped", body = AuditChanges),
        enspace_http::responses::SignedIn,
        (status = 400, response = inline(enspace_http::responses::BadRequest)),
        (status = 422, response = inline(enspace_http::responses::Unprocessable)),
    )
)]
pub async fn audit_changes(
    State(state): State<AppState>,
    _auditor: Auditor,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<AuditChanges>, ApiError> {
    let from = required_time("from", q.from.as_deref())?;
    let to = required_time("to", q.to.as_deref())?;
    if from > to {
        return Err(ApiError::invalid(
            "invalid_window",
            "from",
            "`from` must not be after `to`",
        ));
    }
    let after = paging::after_seq(q.after.as_deref())?;
    let limit = paging::limit(q.limit.as_deref(), 100, 1000)?;
    let store = state.store.clone();
    let keys = state.keys()?;
    let page = enspace_http::blocking(move || store.changes_between(from, to, after, limit, &keys))
        .await?;
    Ok(Json(AuditChanges {
        from,
        to,
        groups: page.groups,
        next_after: page.next_after,
    }))
}
