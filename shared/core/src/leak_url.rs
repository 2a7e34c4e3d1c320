//! Where a leaked token was found, as recorded and shown: an `http` or
//! `https` URL of at most 2048 characters holding no whitespace and nothing
//! that hides or reorders text (the rule descriptions follow: no control,
//! format or bidirectional, line or paragraph separator character).
//!
//! The public report route refuses any other URL (`422 invalid_url`).
//! GitHub's are not refused, since the revocation must happen whatever the
//! URL: their offending characters are percent-encoded, as a browser sends
//! them (the same address, now visible), and a URL that still breaks the
//! rules (another scheme, too long) is dropped. A notification showing a URL
//! with such an escape says so.

use crate::text::hides_or_reorders;

/// Longest leak URL recorded.
pub const MAX_LEAK_URL_LEN: usize = 2048;

fn forbidden(c: char) -> bool {
    c.is_whitespace() || hides_or_reorders(c)
}

/// Whether `url` may be recorded as where a token leaked.
pub fn usable_leak_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"))
        && !rest.is_empty()
        && url.len() <= MAX_LEAK_URL_LEN
        && !url.chars().any(forbidden)
}

/// GitHub's `url` as it may be recorded: with whitespace and characters
/// that hide or reorder text percent-encoded; `None` when it still breaks
/// the rules.
pub fn visible_leak_url(url: &str) -> Option<String> {
    if url.len() > MAX_LEAK_URL_LEN {
        return None;
    }
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if forbidden(c) {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    usable_leak_url(&out).then_some(out)
}

/// Whether a recorded URL holds a percent-escape of a character that hides
/// or reorders text (one that [`visible_leak_url`] made visible, or that the
/// reporter sent escaped).
pub fn escapes_a_disguise(url: &str) -> bool {
    let bytes = url.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded)
        .chars()
        .any(|c| c != '\u{FFFD}' && hides_or_reorders(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_of_a_sane_length_without_hidden_characters_are_recorded() {
        assert!(usable_leak_url(
            "https://github.com/acme/app/blob/main/.env"
        ));
        assert!(usable_leak_url("HTTP://example.com/paste/1"));
        assert!(!usable_leak_url("javascript:alert(1)"));
        assert!(!usable_leak_url("ftp://example.com/x"));
        assert!(!usable_leak_url("https://"));
        assert!(!usable_leak_url("https://example.com/a b"));
        assert!(!usable_leak_url("https://example.com/\u{7}"));
        assert!(!usable_leak_url("https://example.com/\u{202E}exe.txt"));
        assert!(!usable_leak_url("https://example.com/a\u{200B}b"));
        assert!(!usable_leak_url("https://example.com/a\u{2028}b"));
        let long = format!("https://example.com/{}", "a".repeat(MAX_LEAK_URL_LEN));
        assert!(!usable_leak_url(&long));
        let edge = format!("https://e.com/{}", "a".repeat(MAX_LEAK_URL_LEN - 14));
        assert_eq!(edge.len(), MAX_LEAK_URL_LEN);
        assert!(usable_leak_url(&edge));
    }

    #[test]
    fn githubs_hidden_characters_are_percent_encoded_and_what_cannot_be_kept_is_dropped() {
        assert_eq!(
            visible_leak_url("https://github.com/a/b/blob/main/\u{202E}txt.exe").as_deref(),
            Some("https://github.com/a/b/blob/main/%E2%80%AEtxt.exe")
        );
        assert_eq!(
            visible_leak_url("https://github.com/a/my file").as_deref(),
            Some("https://github.com/a/my%20file")
        );
        assert_eq!(
            visible_leak_url("https://github.com/a/b").as_deref(),
            Some("https://github.com/a/b")
        );
        assert_eq!(visible_leak_url("javascript:alert(1)"), None);
        let long = format!("https://e.com/{}", "\u{202E}".repeat(600));
        assert!(long.len() <= MAX_LEAK_URL_LEN);
        assert_eq!(visible_leak_url(&long), None, "too long once encoded");
    }

    #[test]
    fn an_escaped_disguise_is_noticed_but_ordinary_escapes_are_not() {
        assert!(escapes_a_disguise("https://e.com/%E2%80%AEtxt.exe"));
        assert!(escapes_a_disguise("https://e.com/a%0Ab"));
        assert!(escapes_a_disguise("https://e.com/a%e2%80%8bb"));
        assert!(!escapes_a_disguise("https://e.com/my%20file%2Fx"));
        assert!(!escapes_a_disguise("https://e.com/caf%C3%A9"));
        assert!(!escapes_a_disguise("https://e.com/100%"));
        assert!(!escapes_a_disguise("https://e.com/%ZZ%E2"));
    }
}
