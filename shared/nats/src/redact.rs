//! URLs as they may be shown in a log line or an error message: with the
//! password of `user:password@` replaced by `***`, and a bare `secret@`
//! (NATS takes a token there) likewise.

/// `url`, or a comma-separated list of them (a NATS cluster), without the
/// secrets of its user info.
pub fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

/// The message for a connection to `url` (`NATS_URL`) that failed.
pub fn cannot_connect(url: &str) -> String {
    format!("cannot connect to NATS at {} (NATS_URL)", redact_url(url))
}

fn redact_one(url: &str) -> String {
    // The authority starts after `scheme://` (or at the start when there is
    // no scheme) and ends at the first `/`, `?` or `#`; the user info is
    // what comes before its last `@`.
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let user_info = &authority[..at];
    let shown = match user_info.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..start], &url[start + at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_in_urls_are_replaced_and_the_rest_kept() {
        assert_eq!(
            redact_url("nats://enspace-node:S3cretPW@nats.example.com:4222"),
            "nats://enspace-node:***@nats.example.com:4222"
        );
        assert_eq!(
            redact_url("nats://s3cr3t-token@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
        assert_eq!(
            redact_url("nats://a:p@w@d@h1:4222, nats://b:q@h2:4222"),
            "nats://a:***@h1:4222, nats://b:***@h2:4222"
        );
        assert_eq!(
            redact_url("https://u:pw@example.com/hook?x=a@b"),
            "https://u:***@example.com/hook?x=a@b"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("u:pw@host:4222"), "u:***@host:4222");
        assert_eq!(redact_url(""), "");
    }
}
