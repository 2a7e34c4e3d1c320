//! Times in query parameters: RFC 3339, else 422 `invalid_time` naming the
//! parameter.

use enspace_http::ApiError;
use jiff::Timestamp;

pub fn parse_time(field: &'static str, value: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|s| {
            s.parse::<Timestamp>().map_err(|_| {
                ApiError::invalid(
                    "invalid_time",
                    field,
                    format!("`{field}` must be an RFC 3339 time, e.g. 2026-11-28T10:00:00Z"),
                )
            })
        })
        .transpose()
}

/// A parameter that must be there.
pub fn required_time(field: &'static str, value: Option<&str>) -> Result<Timestamp, ApiError> {
    parse_time(field, value)?.ok_or_else(|| {
        ApiError::invalid(
            "missing_time",
            field,
            format!("`{field}` is required: an RFC 3339 time, e.g. 2026-11-28T10:00:00Z"),
        )
    })
}
