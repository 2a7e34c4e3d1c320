//! `/v1/tokens/{id}/requests`: a token's request records,
//! newest first, paged by an opaque cursor; and `/requests/stats`, counts per
//! hour or day split by status class, for the settings UI's chart. Only the
//! token's owner may read them (anyone else gets the same 404 as for an
//! unknown token). Records past the retention are never returned, swept or
//! not.

use axum::Json;
use axum::extract::{Query, State};
use enspace_core::RequestRecord;
use enspace_http::ApiError;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::routes::own_token::OwnToken;
use crate::routes::query_time::parse_time;
use crate::state::AppState;
use enspace_usage::cursor::Cursor;
use enspace_usage::index::{DAY_MS, HOUR_MS, Upper, key_ms};
use enspace_usage::retention_cutoff;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
/// Most buckets one stats answer may have (a year of hours).
pub const MAX_BUCKETS: u64 = 24 * 366;

#[derive(Deserialize)]
pub struct PageQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RequestPage {
    requests: Vec<RequestRecord>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RequestStats {
    /// `hour` or `day`.
    #[schema(example = "hour")]
    bucket: &'static str,
    /// Every bucket of the window, oldest first, zeros included.
    buckets: Vec<StatsBucket>,
    /// Records of this token that API nodes had to drop (their queue was
    /// full and this token held the most of it), in the hours the window
    /// touches: calls that were made but are missing from the logs.
    dropped: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StatsBucket {
    /// The bucket's start (UTC, on the hour or at midnight).
    #[schema(value_type = String, format = DateTime)]
    start: Timestamp,
    total: u64,
    /// 1xx–3xx.
    success: u64,
    /// 4xx.
    client_error: u64,
    /// 5xx.
    server_error: u64,
}

/// `[from, to)`: `to` defaults to now, `from` to `to` minus `default_span`.
fn window(
    now: Timestamp,
    from: Option<&str>,
    to: Option<&str>,
    default_span: SignedDuration,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let from = parse_time("from", from)?;
    let to = parse_time("to", to)?.unwrap_or(now);
    let from = match from {
        Some(from) => from,
        None => to.checked_sub(default_span).unwrap_or(Timestamp::MIN),
    };
    if from > to {
        return Err(ApiError::invalid(
            "invalid_window",
            "from",
            "`from` must not be after `to`",
        ));
    }
    Ok((from, to))
}

/// A token's request records in a window, newest first.
#[utoipa::path(get, path = "/v1/tokens/{id}/requests", tag = "request-logs",
    security(("session" = []), ("session_cookie" = [])),
    params(
        ("id" = String, Path, description = "The token id (a ULID)"),
        ("from" = Option<String>, Query, format = DateTime, description = "Start of the window, inclusive (RFC 3339); default `to` minus 24 hours"),
        ("to" = Option<String>, Query, format = DateTime, description = "End of the window, exclusive (RFC 3339); default now"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Records per page (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page; it carries the window's start"),
    ),
    responses(
        (status = 200, description = "A page of records, newest first; follow `next_cursor` until it is null", body = RequestPage),
        enspace_http::responses::OwnToken,
        (status = 422, response = inline(enspace_http::responses::Unprocessable)),
    )
)]
pub async fn list_requests(
    State(state): State<AppState>,
    OwnToken { token, .. }: OwnToken,
    Query(q): Query<PageQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let now = state.clock.now();
    let (from, to) = window(
        now,
        q.from.as_deref(),
        q.to.as_deref(),
        SignedDuration::from_hours(24),
    )?;
    let limit = super::paging::limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|text| {
            Cursor::decode(text).map_err(|_| {
                ApiError::invalid(
                    "invalid_cursor",
                    "cursor",
                    "`cursor` must be the `next_cursor` of an earlier page",
                )
            })
        })
        .transpose()?;
    let (mut from_ms, to_ms) = (key_ms(from), key_ms(to));
    let upper = match cursor {
        None => Upper::To(to_ms),
        Some(c) => {
            if q.from.is_some() && c.from_ms != from_ms {
                return Err(ApiError::invalid(
                    "cursor_mismatch",
                    "cursor",
                    "this cursor belongs to a window with another `from`",
                ));
            }
            from_ms = c.from_ms;
            if to_ms <= c.position.at_ms {
                Upper::To(to_ms)
            } else {
                Upper::Before(c.position)
            }
        }
    };
    let window_from = from_ms;
    let token = token.id;
    // Past the retention nothing is returned, even before the sweep runs.
    let cutoff = key_ms(retention_cutoff(now, state.config.request_retention));
    // Read here, or where the token's partition is served.
    let page = state
        .usage
        .page(token, from_ms.max(cutoff), upper, limit)
        .await?;
    let next_cursor = page.next.map(|position| {
        Cursor {
            from_ms: window_from,
            position,
        }
        .encode()
    });
    Ok(Json(RequestPage {
        requests: page.records,
        next_cursor,
    }))
}

/// Request counts of a token per hour or day, split by status class, and
/// how many of its records API nodes had to drop.
#[utoipa::path(get, path = "/v1/tokens/{id}/requests/stats", tag = "request-logs",
    security(("session" = []), ("session_cookie" = [])),
    params(
        ("id" = String, Path, description = "The token id (a ULID)"),
        ("from" = Option<String>, Query, format = DateTime, description = "Start of the window, inclusive (RFC 3339); default `to` minus 24 hours (hour) or 30 days (day)"),
        ("to" = Option<String>, Query, format = DateTime, description = "End of the window, exclusive (RFC 3339); default now"),
        ("bucket" = Option<String>, Query, description = "`hour` (default) or `day`; buckets are aligned to UTC"),
    ),
    responses(
        (status = 200, description = "Counts per bucket, oldest first", body = RequestStats),
        enspace_http::responses::OwnToken,
        (status = 422, response = inline(enspace_http::responses::Unprocessable)),
    )
)]
pub async fn request_stats(
    State(state): State<AppState>,
    OwnToken { token, .. }: OwnToken,
    Query(q): Query<StatsQuery>,
) -> Result<Json<RequestStats>, ApiError> {
    let (bucket, bucket_ms, default_span) = match q.bucket.as_deref() {
        None | Some("hour") => ("hour", HOUR_MS, SignedDuration::from_hours(24)),
        Some("day") => ("day", DAY_MS, SignedDuration::from_hours(30 * 24)),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_bucket",
                "bucket",
                "`bucket` is `hour` or `day`",
            ));
        }
    };
    let now = state.clock.now();
    let (from, to) = window(now, q.from.as_deref(), q.to.as_deref(), default_span)?;
    let cutoff = key_ms(retention_cutoff(now, state.config.request_retention));
    let (from_ms, to_ms) = (key_ms(from).max(cutoff), key_ms(to));
    let first = from_ms - from_ms % bucket_ms;
    if to_ms > first && (to_ms - first).div_ceil(bucket_ms) > MAX_BUCKETS {
        return Err(ApiError::invalid(
            "window_too_large",
            "from",
            format!("at most {MAX_BUCKETS} buckets: narrow the window or use `bucket=day`"),
        ));
    }
    let stats = state
        .usage
        .stats(token.id, from_ms, to_ms, bucket_ms)
        .await?;
    let buckets = stats
        .buckets
        .into_iter()
        .filter_map(|b| {
            let start = Timestamp::from_millisecond(i64::try_from(b.start_ms).ok()?).ok()?;
            Some(StatsBucket {
                start,
                total: b.counts.total,
                success: b.counts.success,
                client_error: b.counts.client_error,
                server_error: b.counts.server_error,
            })
        })
        .collect();
    Ok(Json(RequestStats {
        bucket,
        buckets,
        dropped: stats.dropped,
    }))
}
