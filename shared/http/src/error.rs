//! The service's one error type and its mapping to RFC 9457 problem details.
//!
//! Every error response of every route goes through [`ApiError`], so every
//! body is `application/problem+json` with a stable `code`. A 5xx says
//! nothing of its cause to the client; the cause goes to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub field: Option<String>,
    /// Extra headers, e.g. `WWW-Authenticate` or `Allow`.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// RFC 9457 problem details, the body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProblemDetails {
    /// `urn:enspace:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(example = "urn:enspace:problem:invalid_expiration")]
    pub kind: String,
    pub title: String,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    /// Stable snake_case name of the problem.
    #[schema(pattern = "^[a-z][a-z0-9_]*$", example = "invalid_expiration")]
    pub code: String,
    /// The request field that broke a rule (422 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            title: status.canonical_reason().unwrap_or("Error"),
            detail: detail.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    /// `400`: the body is not JSON at all.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", detail)
    }

    /// `422`: a well-formed request breaks a rule about `field`.
    pub fn invalid(code: &'static str, field: &str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail);
        e.field = Some(field.to_owned());
        e
    }

    /// `429`: the caller must wait `retry_after_secs` (sent as `Retry-After`).
    pub fn too_many(code: &'static str, retry_after_secs: u64, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, detail).retry_after(retry_after_secs)
    }

    /// `503`: what the request needs cannot be had right now; the caller
    /// may try again after `retry_after_secs` (sent as `Retry-After`).
    pub fn service_unavailable(
        code: &'static str,
        retry_after_secs: u64,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail).retry_after(retry_after_secs)
    }

    /// Adds `Retry-After` in whole seconds (at least 1).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.headers
            .push((header::RETRY_AFTER, HeaderValue::from(secs.max(1))));
        self
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first: send a session as `Authorization: Bearer ens_sess_…` or the enspace_session cookie",
        )
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// `500`/`503` without a word of the cause; the cause is logged here, once.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server could not complete the request; it has been logged",
        )
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service cannot record changes right now; try again shortly",
        )
    }
}

/// Longest field name or value an error body may repeat.
pub const MAX_ECHO_CHARS: usize = 64;

/// Prefixes of ENSPACE secrets, which no error body may carry.
const SECRET_MARKERS: [&str; 2] = ["ens_pat_", "ens_sess_"];

/// A secret's prefix followed by at least one letter or digit (our own
/// messages name the prefixes as `ens_pat_…`, which is not a secret).
fn looks_like_a_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|marker| {
        lower.match_indices(marker).any(|(at, _)| {
            lower[at + marker.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// Whether an error body may repeat this piece of the request (a field
/// name or a value): at most 64 characters and nothing like a secret. A
/// secret pasted into the wrong place must not come back in the answer,
/// nor in whatever logs or screenshots hold the answer.
pub fn echoable(text: &str) -> bool {
    text.chars().count() <= MAX_ECHO_CHARS && !looks_like_a_secret(text)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The last line of defence: whoever built the error, a field that
        // may not be echoed goes, and so does a detail quoting a secret.
        let field = self.field.filter(|f| echoable(f));
        let detail = if looks_like_a_secret(&self.detail) {
            "the request was refused; it held something that looks like a secret, which is not repeated here".to_owned()
        } else {
            self.detail
        };
        let body = ProblemDetails {
            kind: format!("urn:enspace:problem:{}", self.code),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail,
            code: self.code.to_owned(),
            field,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

/// Turns any error response that is not already problem details (axum's own
/// rejections, a 405 from the router, a caught panic) into one.
pub async fn ensure_problem_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    let (code, detail): (&'static str, &str) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not take that method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", "the body is over 64 KiB"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as application/json",
        ),
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be read"),
        s if s.is_server_error() => (
            "internal_error",
            "the server could not complete the request; it has been logged",
        ),
        _ => ("request_rejected", "the request was rejected"),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = ApiError::new(status, code, detail).into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn detail(error: ApiError) -> String {
        let body = axum::body::to_bytes(error.into_response().into_body(), 1 << 16)
            .await
            .expect("body");
        let problem: ProblemDetails = serde_json::from_slice(&body).expect("problem");
        problem.detail
    }

    #[test]
    fn secret_like_text_and_long_names_are_not_echoable() {
        assert!(!echoable("ens_pat_0123456789abcdef"));
        assert!(!echoable("my ENS_SESS_x"));
        assert!(!echoable(&"a".repeat(65)));
        assert!(echoable(&"a".repeat(64)));
        assert!(echoable("send `Authorization: Bearer ens_pat_…`"));
    }

    #[tokio::test]
    async fn a_detail_quoting_a_secret_is_replaced_and_our_own_hints_are_kept() {
        let hint = detail(ApiError::unauthenticated()).await;
        assert!(hint.contains("ens_sess_…"), "{hint}");
        let leaked = detail(ApiError::new(
            StatusCode::BAD_REQUEST,
            "x",
            "got ens_pat_abc",
        ))
        .await;
        assert!(!leaked.contains("ens_pat_abc"), "{leaked}");
    }
}
