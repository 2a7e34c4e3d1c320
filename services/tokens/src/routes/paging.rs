//! The `limit` query parameter of every paged list: 1 to `max`, `default`
//! when absent, else 422 `invalid_limit` naming the range.

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
