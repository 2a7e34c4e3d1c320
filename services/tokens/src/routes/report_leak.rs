//! `POST /v1/tokens/report-leak`: anyone who finds a token can have it
//! revoked. The answer is `202` whatever the token (garbage, unknown,
//! revoked or live), and the revocation runs after the answer, so neither
//! the answer nor its timing tells what the token was.

use axum::extract::State;
use axum::http::StatusCode;
use enspace_core::PatSecret;
use enspace_http::{ApiError, ApiJson, ClientAddr};
use serde::Deserialize;

use crate::leaks::{Finding, Outcome, REPORTS_IN_FLIGHT, Via, revoke_leaked, usable_leak_url};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    /// The token found, `ens_pat_…`.
    #[schema(example = "ens_pat_…")]
    token: String,
    /// Where it was found: http or https, at most 2048 characters, without
    /// whitespace, control, format (bidirectional, zero-width) or line and
    /// paragraph separator characters.
    #[serde(default)]
    #[schema(max_length = 2048, example = "https://paste.example.com/abc")]
    url: Option<String>,
}

/// Report a leaked token; no sign-in needed. Always `202`: the answer says
/// nothing about the token. An active token is revoked within moments with
/// reason `leaked`. Each client address may report 10 times a minute
/// (`--leak-report-limit`); more answer `429` with `Retry-After`.
#[utoipa::path(post, path = "/v1/tokens/report-leak", tag = "leaks",
    request_body = LeakReport,
    responses(
        (status = 202, description = "Received; whatever the token was"),
        enspace_http::responses::JsonBody,
        (status = 429, response = inline(enspace_http::responses::TooManyRequests)),
    )
)]
pub async fn report_leak(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    body: Result<ApiJson<LeakReport>, ApiError>,
) -> Result<StatusCode, ApiError> {
    if let Some(limit) = &state.leak_reports.limit {
        limit.check(ip).map_err(|secs| {
            state
                .metrics
                .leak_reports
                .count(Via::Public, Outcome::Limited);
            ApiError::too_many(
                "too_many_reports",
                secs,
                "too many leak reports from this address; try again after the time in Retry-After",
            )
        })?;
    }
    let ApiJson(report) = body?;
    if report.url.as_deref().is_some_and(|u| !usable_leak_url(u)) {
        return Err(ApiError::invalid(
            "invalid_url",
            "url",
            "`url` must be an http or https URL of at most 2048 characters, without whitespace, \
             control, format or line and paragraph separator characters (such as U+202E)",
        ));
    }
    // Not one of our tokens by its shape: nothing to look up.
    let metrics = state.metrics.leak_reports.clone();
    let Ok(secret) = report.token.parse::<PatSecret>() else {
        metrics.count(Via::Public, Outcome::NotActive);
        return Ok(StatusCode::ACCEPTED);
    };
    let Ok(permit) = state.leak_reports.in_flight.clone().try_acquire_owned() else {
        metrics.count(Via::Public, Outcome::Dropped);
        tracing::warn!("dropped a leak report: {REPORTS_IN_FLIGHT} are being checked already");
        return Ok(StatusCode::ACCEPTED);
    };
    let writer = state.writer.clone();
    let from = ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string());
    tokio::spawn(async move {
        let _permit = permit;
        match revoke_leaked(&writer, secret.expose(), report.url).await {
            Ok(Finding::Revoked(view)) => {
                metrics.count(Via::Public, Outcome::Revoked);
                tracing::info!(token.id = %view.id, user.id = %view.user_id, client.ip = %from,
                    "revoked token {}: reported leaked from {from}", view.id);
            }
            Ok(Finding::NotActive) => metrics.count(Via::Public, Outcome::NotActive),
            Err(e) => {
                metrics.count(Via::Public, Outcome::Failed);
                tracing::warn!(error = %e, token.hash = %secret.hash().to_hex(), client.ip = %from,
                    "a leak report from {from} could not be recorded");
            }
        }
    });
    Ok(StatusCode::ACCEPTED)
}
