//! What a workspace id may be: the directory refuses any other, so a token
//! can only ever be granted ids of this form, and a request record keeps
//! only such an id (any other a call names is recorded as `null`).

/// Longest workspace id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The rule in words, for error messages.
pub const ID_RULE: &str = "1 to 64 ASCII letters, digits, '-' or '_'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_plain_ascii_names() {
        for ok in ["acme", "globex", "Acme_Corp-2", "a", &"x".repeat(64)] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "acme corp",
            "acme/records",
            "a.b",
            "acme\u{202e}",
            "ünï",
            "%41",
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
