//! `/v1/tokens/{id}/insights`: what a token's calls over the retention
//! window used and were refused, per scope and workspace, the client IPs
//! they came from, and the narrowest scopes and workspaces that would have
//! allowed every allowed call. Read from the indexer's insight counters
//! (`enspace_usage::insights`), never from a scan of the window's records.
//! Only the token's owner may read them.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use enspace_core::Scope;
use enspace_http::ApiError;
use jiff::Timestamp;
use serde::Serialize;

use crate::routes::own_token::OwnToken;
use crate::state::AppState;
use enspace_usage::index::key_ms;
use enspace_usage::insights::{Summary, Tally};
use enspace_usage::retention_cutoff;

/// Client IPs listed, at most (the most recently seen).
pub const MAX_CLIENT_IPS: usize = 100;

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenInsights {
    /// The window's start: now minus the request retention.
    #[schema(value_type = String, format = DateTime)]
    from: Timestamp,
    /// The window's end: now.
    #[schema(value_type = String, format = DateTime)]
    to: Timestamp,
    /// The token's calls in the window by what the API node did with them.
    calls: CallCounts,
    /// Read, write and delete, in that order, granted or not.
    scopes: Vec<ScopeInsight>,
    /// The token's granted workspaces (in the token's order), then every
    /// other workspace a call asked for (refused), by name.
    workspaces: Vec<WorkspaceInsight>,
    /// The client IPs the token's calls came from (every call, whatever its
    /// outcome), most recently seen first; at most 100 (the 100 most
    /// recently seen; `client_ips_seen` says how many there were).
    #[schema(max_items = 100)]
    client_ips: Vec<ClientIp>,
    /// Distinct client IPs seen in the window (`client_ips` lists at most 100).
    client_ips_seen: u64,
    /// Calls whose IP is not counted apart: an hour keeps at most 256
    /// distinct IPs per token; calls from further ones are counted here only.
    client_ip_calls_unlisted: u64,
    suggestion: Suggestion,
}

/// The token's calls in the window: each is exactly one of `allowed`,
/// `denied`, `invalid_token` and `rate_limited`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CallCounts {
    /// Calls that passed the scope and workspace checks (any status but
    /// 401, 403 and 429, whatever the resource then answered).
    allowed: u64,
    /// Calls the node refused with 403: the scope or the workspace was not
    /// granted.
    denied: u64,
    /// Calls answered 401 because the token was revoked or expired; they
    /// count for no scope or workspace.
    invalid_token: u64,
    /// Calls answered 429 (rate limited before the checks); they count for
    /// no scope or workspace.
    rate_limited: u64,
    /// Of the allowed and denied calls, those to workspaces not listed in
    /// `workspaces` (an hour keeps at most 64 workspaces per token apart).
    unlisted_workspace_calls: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScopeInsight {
    scope: Scope,
    /// Whether the token has this scope.
    granted: bool,
    /// Calls needing this scope (GET/HEAD read, POST/PUT/PATCH write,
    /// DELETE delete) that were allowed.
    allowed: u64,
    /// Calls needing this scope that were refused (for the scope, or for
    /// the workspace).
    denied: u64,
    /// The newest allowed call needing this scope; null if none.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used: Option<Timestamp>,
    /// The newest refused call needing this scope; null if none.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_denied: Option<Timestamp>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WorkspaceInsight {
    workspace: String,
    /// Whether the token is granted this workspace.
    granted: bool,
    /// Calls to this workspace that were allowed.
    allowed: u64,
    /// Calls to this workspace that were refused (for the workspace, or for
    /// the scope).
    denied: u64,
    /// The newest allowed call to this workspace; null if none.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used: Option<Timestamp>,
    /// The newest refused call to this workspace; null if none.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_denied: Option<Timestamp>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientIp {
    ip: String,
    #[schema(value_type = String, format = DateTime)]
    first_seen: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    last_seen: Timestamp,
    count: u64,
}

/// The narrowest grant that would have allowed every allowed call of the
/// window: the scopes and the workspaces those calls used, and the client
/// address ranges they came from. All empty when no call was allowed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    /// In the order read, write, delete.
    scopes: Vec<Scope>,
    /// By name.
    workspaces: Vec<String>,
    /// At most 8 client address ranges covering every address that made an
    /// allowed call: each address alone (/32, /128), several sharing a /24
    /// (IPv6: a /48) as that block, the closest ranges merged while there
    /// would be more than 8. IPv4 first, in address order; empty when no
    /// call was allowed. Made to be passed as a new token's `allowed_cidrs`.
    #[schema(max_items = 8, example = json!(["192.0.2.0/24", "198.51.100.7/32"]))]
    allowed_cidrs: Vec<String>,
}

fn time(ms: u64) -> Option<Timestamp> {
    if ms == 0 {
        return None;
    }
    Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}

fn scope_insight(scope: Scope, granted: bool, tally: Tally) -> ScopeInsight {
    ScopeInsight {
        scope,
        granted,
        allowed: tally.allowed,
        denied: tally.denied,
        last_used: time(tally.last_allowed_ms),
        last_denied: time(tally.last_denied_ms),
    }
}

fn workspace_insight(workspace: String, granted: bool, tally: Tally) -> WorkspaceInsight {
    WorkspaceInsight {
        workspace,
        granted,
        allowed: tally.allowed,
        denied: tally.denied,
        last_used: time(tally.last_allowed_ms),
        last_denied: time(tally.last_denied_ms),
    }
}

fn answer(
    granted_scopes: &[Scope],
    granted_workspaces: &[String],
    summary: Summary,
    from: Timestamp,
    to: Timestamp,
) -> TokenInsights {
    let Summary {
        scopes: tallies,
        mut workspaces,
        other_workspaces,
        invalid_token,
        rate_limited,
        ips,
        other_ip_calls,
    } = summary;
    // `Summary::scopes` is in the order of `Scope::ALL`.
    let scopes: Vec<ScopeInsight> = Scope::ALL
        .into_iter()
        .zip(tallies)
        .map(|(s, tally)| scope_insight(s, granted_scopes.contains(&s), tally))
        .collect();
    let mut listed = Vec::with_capacity(granted_workspaces.len() + workspaces.len());
    let mut seen = BTreeSet::new();
    for ws in granted_workspaces {
        if seen.insert(ws.as_str()) {
            let tally = workspaces.remove(ws).unwrap_or_default();
            listed.push(workspace_insight(ws.clone(), true, tally));
        }
    }
    let mut others: Vec<(String, Tally)> = workspaces.into_iter().collect();
    others.sort_by(|a, b| a.0.cmp(&b.0));
    listed.extend(
        others
            .into_iter()
            .map(|(ws, tally)| workspace_insight(ws, false, tally)),
    );
    let suggestion = Suggestion {
        scopes: scopes
            .iter()
            .filter(|s| s.allowed > 0)
            .map(|s| s.scope)
            .collect(),
        workspaces: {
            let mut used: Vec<String> = listed
                .iter()
                .filter(|w| w.allowed > 0)
                .map(|w| w.workspace.clone())
                .collect();
            used.sort();
            used
        },
        allowed_cidrs: enspace_core::fence::suggest_cidrs(
            ips.iter()
                .filter(|(_, seen)| seen.allowed > 0)
                .filter_map(|(ip, _)| ip.parse::<std::net::IpAddr>().ok()),
        )
        .iter()
        .map(ToString::to_string)
        .collect(),
    };
    let client_ips_seen = ips.len() as u64;
    let mut ips: Vec<(String, enspace_usage::insights::Seen)> = ips.into_iter().collect();
    ips.sort_by(|a, b| b.1.last_ms.cmp(&a.1.last_ms).then_with(|| a.0.cmp(&b.0)));
    ips.truncate(MAX_CLIENT_IPS);
    let client_ips = ips
        .into_iter()
        .map(|(ip, seen)| ClientIp {
            ip,
            first_seen: time(seen.first_ms).unwrap_or(Timestamp::UNIX_EPOCH),
            last_seen: time(seen.last_ms).unwrap_or(Timestamp::UNIX_EPOCH),
            count: seen.count,
        })
        .collect();
    let calls = CallCounts {
        allowed: scopes.iter().map(|s| s.allowed).sum(),
        denied: scopes.iter().map(|s| s.denied).sum(),
        invalid_token,
        rate_limited,
        unlisted_workspace_calls: other_workspaces.allowed + other_workspaces.denied,
    };
    TokenInsights {
        from,
        to,
        calls,
        scopes,
        workspaces: listed,
        client_ips,
        client_ips_seen,
        client_ip_calls_unlisted: other_ip_calls,
        suggestion,
    }
}

/// What a token's calls over the retention window used and were refused,
/// where they came from, and the narrowest grant that would have done.
#[utoipa::path(get, path = "/v1/tokens/{id}/insights", tag = "request-logs",
    security(("session" = []), ("session_cookie" = [])),
    params(
        ("id" = String, Path, description = "The token id (a ULID)"),
    ),
    responses(
        (status = 200, description = "The token's insights over the request retention window", body = TokenInsights),
        enspace_http::responses::OwnToken,
    )
)]
pub async fn token_insights(
    State(state): State<AppState>,
    OwnToken { token, .. }: OwnToken,
) -> Result<Json<TokenInsights>, ApiError> {
    let now = state.clock.now();
    let from = retention_cutoff(now, state.config.request_retention);
    let (id, cutoff_ms) = (token.id, key_ms(from));
    let summary = state.usage.insights(id, cutoff_ms).await?;
    Ok(Json(answer(
        &token.scopes,
        &token.workspaces,
        summary,
        from,
        now,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use enspace_usage::insights::Seen;

    fn tally(allowed: u64, denied: u64) -> Tally {
        Tally {
            allowed,
            denied,
            last_allowed_ms: allowed * 1000,
            last_denied_ms: denied * 1000,
        }
    }

    #[test]
    fn the_suggestion_is_what_allowed_calls_used() {
        let mut summary = Summary {
            scopes: [tally(5, 0), tally(0, 0), tally(0, 2)],
            ..Default::default()
        };
        summary.workspaces.insert("acme".into(), tally(5, 1));
        summary.workspaces.insert("zeta".into(), tally(0, 1));
        summary.workspaces.insert("beta".into(), tally(0, 3));
        for i in 0..150u64 {
            summary.ips.insert(
                format!("10.0.0.{i}"),
                Seen {
                    count: 1,
                    allowed: 1,
                    first_ms: i + 1,
                    last_ms: i + 1,
                },
            );
        }
        let now = Timestamp::now();
        let out = answer(
            &Scope::ALL,
            &["acme".into(), "globex".into()],
            summary,
            now,
            now,
        );
        assert_eq!(out.suggestion.scopes, vec![Scope::Read]);
        assert_eq!(out.suggestion.workspaces, vec!["acme".to_owned()]);
        assert_eq!(out.suggestion.allowed_cidrs, ["10.0.0.0/24"]);
        let names: Vec<(&str, bool)> = out
            .workspaces
            .iter()
            .map(|w| (w.workspace.as_str(), w.granted))
            .collect();
        assert_eq!(
            names,
            [
                ("acme", true),
                ("globex", true),
                ("beta", false),
                ("zeta", false)
            ]
        );
        assert_eq!((out.calls.allowed, out.calls.denied), (5, 2));
        assert_eq!(out.client_ips.len(), MAX_CLIENT_IPS);
        assert_eq!(out.client_ips_seen, 150);
        assert_eq!(out.client_ips[0].ip, "10.0.0.149");
        assert!(out.scopes[1].last_used.is_none());
        let none = answer(&[Scope::Read], &[], Summary::default(), now, now);
        assert!(none.suggestion.scopes.is_empty() && none.suggestion.workspaces.is_empty());
        assert!(none.suggestion.allowed_cidrs.is_empty());
    }
}
