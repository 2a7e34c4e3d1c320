//! `POST /v1/secret-scanning/github`: GitHub's secret-scanning partner
//! endpoint. GitHub posts the strings it found that look like our tokens,
//! signed with one of its keys (`--github-keys`); each active token among
//! them is revoked at once and labelled `true_positive`.
//!
//! Without `--github-keys` the route answers `404`
//! `secret_scanning_not_configured`: nothing could check who is calling.
//!
//! Anyone can post here, so the body is read only for a post that names a
//! key GitHub publishes with a well-formed signature (anything else is `401`
//! before a byte of it is read), a few at a time, at most 1 MiB, and all of
//! it within [`READ_DEADLINE`]: however many connections post, the bodies
//! held in memory are at most [`GITHUB_BODIES_AT_ONCE`] MiB.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use enspace_core::SecretHash;
use enspace_http::{ApiError, ProblemDetails};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::leaks::{
    Finding, GITHUB_BODIES_AT_ONCE, Outcome, SignatureError, Via, revoke_leaked, visible_leak_url,
};
use crate::state::AppState;

/// Largest body GitHub may post.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Most matches in one post.
pub const MAX_MATCHES: usize = 1000;
/// Matches decided at once (the writer records them in shared flushes).
const AT_ONCE: usize = 32;
/// How long a post waits for one of the body slots before `503`.
const SLOT_WAIT: Duration = Duration::from_secs(5);
/// The whole body must arrive within this (1 MiB at 100 KiB/s), so that a
/// slow sender cannot keep a body slot.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);

pub const KEY_ID_HEADER: &str = "github-public-key-identifier";
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// One string GitHub found.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct GithubMatch {
    /// What GitHub found: usually one of our tokens.
    token: String,
    /// The token type registered with GitHub; answered back as `token_type`.
    #[serde(rename = "type")]
    token_type: String,
    /// Where it was found; recorded in the revocation when it is an http(s)
    /// URL of at most 2048 characters (whitespace and characters that hide
    /// or reorder text percent-encoded).
    #[serde(default)]
    url: Option<String>,
    /// What kind of place it was found in (`content`, `commit`, …).
    #[serde(default)]
    source: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SecretScanningLabel)]
pub enum Label {
    /// An active ENSPACE token, now revoked.
    TruePositive,
    /// Not one of our tokens, or not active any more.
    FalsePositive,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GithubLabel {
    /// Hex SHA-256 of the reported string.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    token_hash: String,
    token_type: String,
    label: Label,
}

fn not_configured() -> ApiError {
    ApiError::not_found(
        "secret_scanning_not_configured",
        "this service takes no GitHub secret-scanning reports: it was started without --github-keys",
    )
}

/// An answer given without the whole body read: the connection closes
/// after it.
fn unread(e: ApiError) -> ApiError {
    e.with_header(axum::http::header::CONNECTION, "close")
}

fn bad_signature(e: SignatureError) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        format!("{e}: sign the raw body with a key GitHub publishes for secret scanning"),
    )
}

fn outcome<E>(finding: &Result<Finding, E>) -> Outcome {
    match finding {
        Ok(Finding::Revoked(_)) => Outcome::Revoked,
        Ok(Finding::NotActive) => Outcome::NotActive,
        Err(_) => Outcome::Failed,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// GitHub secret-scanning reports (the partner program's format). Each
/// match answers one label, in the order posted; an active ENSPACE token is
/// revoked at once with reason `leaked` and the match's `url` in the event.
/// At most 1000 matches and 1 MiB per post; the body is read only once the
/// headers name a GitHub key and carry a well-formed signature.
#[utoipa::path(post, path = "/v1/secret-scanning/github", tag = "leaks",
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "The `key_identifier` of the GitHub key that signed the body"),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 of the DER ECDSA P-256 signature of the SHA-256 of the raw body"),
    ),
    request_body = Vec<GithubMatch>,
    responses(
        (status = 200, description = "One label per match, in order", body = Vec<GithubLabel>),
        (status = 400, response = inline(enspace_http::responses::BadRequest)),
        (status = 401, description = "A signature header is missing, names no known key, or does not match the body (`invalid_signature`)",
            body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "Started without `--github-keys` (`secret_scanning_not_configured`)",
            body = ProblemDetails, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time (`body_timeout`)",
            body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Over 1 MiB (`body_too_large`) or over 1000 matches (`too_many_matches`)",
            body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, response = inline(enspace_http::responses::Unprocessable)),
        (status = 503, response = inline(enspace_http::responses::Unavailable))
    )
)]
pub async fn report_github_matches(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<GithubLabel>>, ApiError> {
    let keys = state
        .config
        .github_keys
        .as_ref()
        .ok_or_else(not_configured)?;
    let refused = |e| {
        state
            .metrics
            .leak_reports
            .count(Via::Github, Outcome::Refused);
        bad_signature(e)
    };
    let claim = keys
        .claim(
            header(&headers, KEY_ID_HEADER),
            header(&headers, SIGNATURE_HEADER),
        )
        // The body is not read, so the connection is not kept for another
        // request: hyper would read and drop the rest of it first.
        .map_err(|e| unread(refused(e)))?;
    let matches: Vec<GithubMatch> = {
        let _slot = tokio::time::timeout(
            SLOT_WAIT,
            state.leak_reports.github_bodies.clone().acquire_owned(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            state
                .metrics
                .leak_reports
                .count(Via::Github, Outcome::Limited);
            tracing::warn!(
                "a GitHub secret-scanning post waited {SLOT_WAIT:?} for one of the \
                 {GITHUB_BODIES_AT_ONCE} body slots; answered 503"
            );
            unread(
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "too many reports are being read; post again after the time in Retry-After",
                )
                .retry_after(1),
            )
        })?;
        // Checked in the pieces it came in: only a body GitHub signed is
        // ever put in one piece (to be parsed).
        let body = enspace_http::body::read_chunks(body, BODY_LIMIT, Some(READ_DEADLINE))
            .await
            .map_err(|e| unread(e.into()))?;
        claim.verify_parts(body.iter()).map_err(refused)?;
        enspace_http::json::parse(&body.concat())?
    };
    if matches.len() > MAX_MATCHES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_matches",
            format!("post at most {MAX_MATCHES} matches at once"),
        ));
    }
    let writer = &state.writer;
    let metrics = &state.metrics.leak_reports;
    let decided: Vec<_> = futures::stream::iter(matches)
        .map(|m| async move {
            let url = m.url.as_deref().and_then(|u| {
                let kept = visible_leak_url(u);
                if kept.as_deref() != Some(u) {
                    tracing::info!(
                        kept = kept.is_some(),
                        "GitHub's URL for a match breaks the leak URL rules (scheme, length, \
                         hidden characters): {}",
                        if kept.is_some() {
                            "recorded percent-encoded"
                        } else {
                            "dropped"
                        }
                    );
                }
                kept
            });
            let finding = revoke_leaked(writer, &m.token, url).await;
            metrics.count(Via::Github, outcome(&finding));
            if let Ok(Finding::Revoked(view)) = &finding {
                let source = m.source.as_deref().unwrap_or("an unnamed place");
                tracing::info!(token.id = %view.id, user.id = %view.user_id, leak.source = ?source,
                    "revoked token {}: GitHub secret scanning found it ({source:?})", view.id);
            }
            finding.map(|finding| GithubLabel {
                token_hash: SecretHash::of(&m.token).to_hex(),
                token_type: m.token_type,
                label: match finding {
                    Finding::Revoked(_) => Label::TruePositive,
                    Finding::NotActive => Label::FalsePositive,
                },
            })
        })
        .buffered(AT_ONCE)
        .collect()
        .await;
    let mut labels = Vec::with_capacity(decided.len());
    for label in decided {
        labels.push(label.map_err(|e| {
            tracing::warn!(error = %e, "a GitHub secret-scanning report could not be recorded; GitHub will post it again");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "writer_unavailable",
                "the reports could not be recorded right now; post them again after the time in Retry-After",
            )
            .retry_after(1)
        })?);
    }
    Ok(Json(labels))
}
