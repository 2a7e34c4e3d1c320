//! The paging query parameters: `limit` of every paged list (1 to `max`,
//! `default` when absent, else 422 `invalid_limit` naming the range) and
//! `after`, a seq, of pages of the event log.

use enspace_http::ApiError;

pub fn limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("invalid_limit", "limit", format!("`limit` is 1 to {max}"))
            }),
    }
}

/// The `after` query parameter of a page of the event log: a seq, 0 when
/// absent, else 422 `invalid_after`.
pub fn after_seq(value: Option<&str>) -> Result<u64, ApiError> {
    match value {
        None => Ok(0),
        Some(s) => s.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "invalid_after",
                "after",
                "`after` is a sequence number (0 or more)",
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_its_default_or_a_number_in_range() {
        assert_eq!(limit(None, 100, 1000).ok(), Some(100));
        assert_eq!(limit(Some("1000"), 100, 1000).ok(), Some(1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(limit(Some(bad), 100, 1000).is_err(), "{bad}");
        }
    }
}
