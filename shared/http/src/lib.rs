//! HTTP pieces every ENSPACE service shares: RFC 9457 problem details, the
//! JSON body extractor, request metrics and the layers every router wears.

pub mod blocking;
pub mod body;
pub mod client_addr;
pub mod error;
pub mod json;
pub mod layers;
pub mod metrics;
pub mod responses;
pub mod server;

pub use blocking::blocking;
pub use client_addr::{ClientAddr, TrustedProxies};
pub use error::{ApiError, PROBLEM_JSON, ProblemDetails};
pub use json::{ApiJson, BODY_LIMIT};
pub use metrics::HttpMetrics;
