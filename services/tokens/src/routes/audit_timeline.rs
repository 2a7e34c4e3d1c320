//! `GET /v1/audit/tokens/{id}/timeline`: one token's incident timeline —
//! its events, then what its calls did from its creation on (within the
//! request retention), marked where it was revoked and where it was
//! reported leaked. For auditors, and for the token's owner.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use enspace_accounts::directory::Role;
use enspace_core::token::RevokeReason;
use enspace_core::{AuditEvent, TokenView};
use enspace_http::ApiError;
use jiff::Timestamp;
use serde::Serialize;
use ulid::Ulid;

use crate::auth::Caller;
use crate::routes::own_token::token_not_found;
use crate::state::AppState;
use enspace_usage::index::key_ms;
use enspace_usage::insights::Summary;
use enspace_usage::reads::{Timeline, TimelineQuery};
use enspace_usage::retention_cutoff;

/// Client IPs listed, at most (the most calls first).
const MAX_CLIENT_IPS: usize = 100;

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenTimeline {
    #[schema(value_type = String)]
    token_id: Ulid,
    user_id: String,
    description: String,
    /// The token's events, in seq order, as `GET /v1/audit/events` gives
    /// them.
    events: Vec<AuditEvent>,
    /// When it was created, revoked and reported leaked.
    marks: Marks,
    /// What its calls did from its creation on.
    activity: Activity,
    /// What its calls did from the leak report on (a leaked token only).
    #[serde(skip_serializing_if = "Option::is_none")]
    since_leak: Option<SinceLeak>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Marks {
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<Timestamp>,
    revoked_reason: Option<RevokeReason>,
    /// When a leak report revoked it.
    #[schema(value_type = Option<String>, format = DateTime)]
    leaked_at: Option<Timestamp>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Activity {
    /// The window's start: the token's creation, or the start of the
    /// request retention if that is later (older records are gone).
    #[schema(value_type = String, format = DateTime)]
    from: Timestamp,
    /// The window's end: now.
    #[schema(value_type = String, format = DateTime)]
    to: Timestamp,
    calls: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    first_call: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_call: Option<Timestamp>,
    /// Calls per UTC day, days with calls only, oldest first.
    per_day: Vec<Day>,
    per_status: PerStatus,
    /// Calls per client IP, the most calls first (at most 100).
    per_client_ip: Vec<ClientIpCalls>,
    /// Calls that named a workspace, per workspace.
    per_workspace: Vec<WorkspaceCalls>,
    /// Records the API nodes could not log (their queue was full).
    dropped: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Day {
    #[schema(value_type = String, format = DateTime)]
    day: Timestamp,
    total: u64,
    success: u64,
    client_error: u64,
    server_error: u64,
}

/// Calls by what they were answered; `invalid_token` (401: revoked,
/// expired) and `rate_limited` (429) are also counted in `client_error`.
#[derive(Serialize, utoipa::ToSchema, Default)]
pub struct PerStatus {
    /// 1xx–3xx.
    success: u64,
    /// 4xx.
    client_error: u64,
    /// 5xx.
    server_error: u64,
    invalid_token: u64,
    rate_limited: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientIpCalls {
    client_ip: String,
    calls: u64,
    #[schema(value_type = String, format = DateTime)]
    first: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    last: Timestamp,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceCalls {
    workspace: String,
    /// Calls the token's scopes and workspaces allowed.
    allowed: u64,
    /// Calls refused 403.
    denied: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SinceLeak {
    calls: u64,
    per_client_ip: Vec<ClientIpCalls>,
}

fn time(ms: u64) -> Option<Timestamp> {
    Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}

fn client_ips(summary: &Summary) -> Vec<ClientIpCalls> {
    let mut ips: Vec<ClientIpCalls> = summary
        .ips
        .iter()
        .filter_map(|(ip, seen)| {
            Some(ClientIpCalls {
                client_ip: ip.clone(),
                calls: seen.count,
                first: time(seen.first_ms)?,
                last: time(seen.last_ms)?,
            })
        })
        .collect();
    ips.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.client_ip.cmp(&b.client_ip)));
    ips.truncate(MAX_CLIENT_IPS);
    ips
}

/// A token's events, its marks, and what its calls did, for auditors and
/// for its owner.
#[utoipa::path(get, path = "/v1/audit/tokens/{id}/timeline", tag = "audit",
    security(("session" = []), ("session_cookie" = [])),
    params(("id" = String, Path, description = "The token id (a ULID)")),
    responses(
        (status = 200, description = "The token's events and activity", body = TokenTimeline),
        enspace_http::responses::OwnToken,
    )
)]
pub async fn token_timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenTimeline>, ApiError> {
    let id = Ulid::from_string(&id).map_err(|_| token_not_found())?;
    let auditor = caller.user.role == Role::Auditor;
    let keys = state.keys()?;
    let store = state.store.clone();
    let (token, events) = enspace_http::blocking(move || {
        let Some(token) = store.projections.token(id)? else {
            return Ok((None, Vec::new()));
        };
        let events = store
            .events_of(id)?
            .iter()
            .map(|e| e.audit(&keys))
            .collect();
        Ok::<_, enspace_store::StoreError>((Some(token), events))
    })
    .await?;
    let token: TokenView = token
        .filter(|t| auditor || t.user_id == caller.user.id)
        .ok_or_else(token_not_found)?;
    let now = state.clock.now();
    let cutoff = retention_cutoff(now, state.config.request_retention);
    let from = token.created_at.max(cutoff);
    let leaked_at = token
        .revoked_at
        .filter(|_| token.revoked_reason == Some(RevokeReason::Leaked));
    let (from_ms, to_ms) = (key_ms(from), key_ms(now).saturating_add(1));
    let leak_ms = leaked_at.map(|at| key_ms(at).max(from_ms));
    let Timeline {
        days,
        summary,
        leak,
        dropped,
    } = state
        .usage
        .timeline(TimelineQuery {
            token: id,
            from_ms,
            to_ms,
            leak_ms,
        })
        .await?;

    let mut per_status = PerStatus {
        invalid_token: summary.invalid_token,
        rate_limited: summary.rate_limited,
        ..PerStatus::default()
    };
    let mut per_day = Vec::new();
    for bucket in days.into_iter().filter(|b| b.counts.total > 0) {
        per_status.success += bucket.counts.success;
        per_status.client_error += bucket.counts.client_error;
        per_status.server_error += bucket.counts.server_error;
        if let Some(day) = time(bucket.start_ms) {
            per_day.push(Day {
                day,
                total: bucket.counts.total,
                success: bucket.counts.success,
                client_error: bucket.counts.client_error,
                server_error: bucket.counts.server_error,
            });
        }
    }
    let calls = per_day.iter().map(|d| d.total).sum();
    let first_call = summary
        .ips
        .values()
        .map(|s| s.first_ms)
        .min()
        .and_then(time);
    let last_call = summary.ips.values().map(|s| s.last_ms).max().and_then(time);
    let per_workspace: BTreeMap<&String, _> = summary.workspaces.iter().collect();
    let per_workspace = per_workspace
        .into_iter()
        .map(|(ws, tally)| WorkspaceCalls {
            workspace: ws.clone(),
            allowed: tally.allowed,
            denied: tally.denied,
        })
        .collect();
    let since_leak = leak.map(|leak| SinceLeak {
        calls: leak.ips.values().map(|s| s.count).sum::<u64>() + leak.other_ip_calls,
        per_client_ip: client_ips(&leak),
    });
    Ok(Json(TokenTimeline {
        token_id: token.id,
        user_id: token.user_id.clone(),
        description: token.description.clone(),
        events,
        marks: Marks {
            created_at: token.created_at,
            revoked_at: token.revoked_at,
            revoked_reason: token.revoked_reason,
            leaked_at,
        },
        activity: Activity {
            from,
            to: now,
            calls,
            first_call,
            last_call,
            per_day,
            per_status,
            per_client_ip: client_ips(&summary),
            per_workspace,
            dropped,
        },
        since_leak,
    }))
}
