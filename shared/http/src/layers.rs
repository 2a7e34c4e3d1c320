//! The layers every ENSPACE router wears, so that no route can answer with
//! anything but problem details on error, or be made to panic into a 5xx
//! without it being logged.

use std::any::Any;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{ApiError, BODY_LIMIT, HttpMetrics};

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::internal("a handler panicked").into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

/// Adds the fallback, body limit, problem-details mapping, panic catcher,
/// request metrics and baseline security headers to a finished router.
pub fn harden(router: Router, metrics: HttpMetrics) -> Router {
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .layer(axum::middleware::map_response(
            crate::error::ensure_problem_body,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}
