//! The error responses every route documents, as reusable OpenAPI
//! responses: each is problem details (RFC 9457).

use crate::ProblemDetails;

macro_rules! problem_response {
    ($name:ident, $description:literal) => {
        #[derive(utoipa::ToResponse)]
        #[response(description = $description, content_type = "application/problem+json")]
        pub struct $name(pub ProblemDetails);
    };
}

problem_response!(
    BadRequest,
    "The body is not JSON (`malformed_json`) or the request cannot be read"
);
problem_response!(Unauthorized, "Missing or invalid credentials");
problem_response!(
    Forbidden,
    "Authenticated, but not allowed (e.g. `pat_not_allowed`, `auditor_only`, `csrf_rejected`)"
);
problem_response!(NotFound, "No such resource among the caller's own");
problem_response!(MethodNotAllowed, "The route does not take this method");
problem_response!(
    PayloadTooLarge,
    "The body is over 64 KiB (`body_too_large`)"
);
problem_response!(
    UnsupportedMediaType,
    "The body is not `application/json` (`unsupported_media_type`)"
);
problem_response!(
    Unprocessable,
    "A well-formed request that breaks a rule; `field` names it"
);
problem_response!(
    Unavailable,
    "The service cannot take the request right now (the store, or every password hashing slot at sign-in, is busy; or no process serving a token's request logs answered, `request_logs_unavailable`); retry, after `Retry-After` seconds when given"
);

/// `429`: a limit was reached; retry after `Retry-After` seconds.
#[derive(utoipa::ToResponse)]
#[response(
    description = "Too many requests (`too_many_attempts` at sign-in, `rate_limited` on an API node); retry after `Retry-After` seconds",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))
)]
pub struct TooManyRequests(pub ProblemDetails);

/// `401` from the token auth layer of an API node.
#[derive(utoipa::ToResponse)]
#[response(
    description = "No, malformed, wrong-checksum, unknown, expired or revoked token (`invalid_token`), or a token before its `not_before` (`token_not_yet_valid`)",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"`"))
)]
pub struct InvalidToken(pub ProblemDetails);

/// `403` from the token auth layer of an API node.
#[derive(utoipa::ToResponse)]
#[response(
    description = "The token lacks the scope (`insufficient_scope`) or the workspace (`workspace_not_allowed`), or the call comes from a client address outside the token's `allowed_cidrs` (`address_not_allowed`)",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer error=\"insufficient_scope\", scope=\"…\"` when a scope is missing"))
)]
pub struct TokenForbidden(pub ProblemDetails);

/// `429` from an API node's per-token rate limit.
#[derive(utoipa::ToResponse)]
#[response(
    description = "The token went over the node's per-token rate limit (`rate_limited`); the call is still logged",
    content_type = "application/problem+json",
    headers(
        ("Retry-After" = u64, description = "Seconds to wait before the token may call again"),
        ("RateLimit-Policy" = String, description = "`\"per-token\";q=<2N>;w=2`: N calls a second, bursts of 2N"),
        ("RateLimit" = String, description = "`\"per-token\";r=0;t=<seconds>`")
    )
)]
pub struct RateLimited(pub ProblemDetails);

/// A set of error responses that routes of one kind share, listed once:
/// `responses((status = 200, ...), SignedIn, JsonBody)` in a route's
/// `#[utoipa::path]`.
macro_rules! response_group {
    ($(#[$doc:meta])* $name:ident: $($status:literal => $response:ty),+ $(,)?) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                std::collections::BTreeMap::from([$((
                    $status.to_string(),
                    <$response as utoipa::ToResponse>::response().1,
                )),+])
            }
        }
    };
}

response_group!(
    /// What any call of a signed-in user can answer: no or a wrong session
    /// (401), a role or CSRF refusal (403), a store that cannot answer (503).
    SignedIn:
    401 => Unauthorized,
    403 => Forbidden,
    503 => Unavailable,
);
response_group!(
    /// What a route taking a JSON body can answer about the body.
    JsonBody:
    400 => BadRequest,
    413 => PayloadTooLarge,
    415 => UnsupportedMediaType,
    422 => Unprocessable,
);
response_group!(
    /// What a route about one of the caller's own tokens (`{id}` in its
    /// path) can answer: a malformed id (400), someone else's or no such
    /// token (404), and what [`SignedIn`] can.
    OwnToken:
    400 => BadRequest,
    401 => Unauthorized,
    403 => Forbidden,
    404 => NotFound,
    503 => Unavailable,
);
response_group!(
    /// What any call an API node authenticates with a token can answer:
    /// an unreadable path or query (400), a token that does not verify
    /// (401), one without the scope or workspace (403), a caller over its
    /// rate (429).
    ByToken:
    400 => BadRequest,
    401 => InvalidToken,
    403 => TokenForbidden,
    429 => RateLimited,
);
