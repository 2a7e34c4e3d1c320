//! Who is calling the management API: the signed-in user behind a session
//! given as `Authorization: Bearer ens_sess_…` or as the `enspace_session`
//! cookie. A personal access token is refused here (`403` `pat_not_allowed`):
//! the one management call a token may make, rotating itself, takes it
//! through its own extractor ([`crate::routes::self_rotate`]).
//! Cookie-authenticated changes must come from our own origin.
//! In a cluster, a caller once known waits at the read barrier
//! ([`enspace_cluster::barrier`]) before a route that reads token state.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use enspace_core::secret::{PAT_PREFIX, SESSION_PREFIX};
use enspace_core::{SecretHash, SessionSecret};
use enspace_http::ApiError;

use crate::state::AppState;
use enspace_accounts::directory::{Role, User};

pub const SESSION_COOKIE: &str = "enspace_session";

/// The authenticated caller of a management route.
pub struct Caller {
    pub user: User,
    pub session: SecretHash,
}

/// An authenticated caller whose role is `auditor`.
pub struct Auditor(pub Caller);

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `enspace_session` cookie's value: the first cookie of that name in
/// the `Cookie` headers, as sent (no percent-decoding). Kept by hand rather
/// than through `axum-extra`'s `CookieJar`, which would keep the last cookie
/// of a name and percent-decode it, and add a dependency for these lines.
pub fn session_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request reached us over TLS: `--secure-cookies` says every
/// request does (a TLS proxy in front), otherwise the proxy's
/// `X-Forwarded-Proto: https` or `Forwarded: proto=https` does. (The service
/// itself serves plain HTTP.)
pub fn came_over_tls(headers: &header::HeaderMap, secure_cookies: bool) -> bool {
    if secure_cookies {
        return true;
    }
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([';', ',']))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(k, v)| {
            k.eq_ignore_ascii_case("proto") && v.trim_matches('"').eq_ignore_ascii_case("https")
        });
    forwarded_proto || forwarded
}

/// Whether `origin` (the `Origin` header) is this site: the same host, by
/// `https`, or by `http` unless the request is known to have come over TLS.
fn is_own_origin(origin: &str, host: &str, tls: bool) -> bool {
    let Ok(origin) = origin.parse::<axum::http::Uri>() else {
        return false;
    };
    let scheme_ok = match origin.scheme_str() {
        Some(scheme) => {
            scheme.eq_ignore_ascii_case("https") || (!tls && scheme.eq_ignore_ascii_case("http"))
        }
        None => false,
    };
    // An origin is a scheme and an authority, nothing after it.
    let bare = origin.path_and_query().is_none_or(|p| p.as_str() == "/");
    scheme_ok
        && bare
        && origin
            .authority()
            .is_some_and(|a| a.as_str().eq_ignore_ascii_case(host))
}

/// A state-changing call authenticated by cookie must come from this origin.
fn check_same_origin(parts: &Parts, secure_cookies: bool) -> Result<(), ApiError> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let header_str = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    let csrf = || ApiError::forbidden("csrf_rejected", "cross-site request refused");
    if let Some(site) = header_str(header::HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Err(csrf());
    }
    if let (Some(origin), Some(host)) = (header_str(header::ORIGIN), header_str(header::HOST))
        && !is_own_origin(origin, host, came_over_tls(&parts.headers, secure_cookies))
    {
        return Err(csrf());
    }
    Ok(())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let pat_not_allowed = || {
            ApiError::forbidden(
                "pat_not_allowed",
                "a personal access token cannot manage tokens; sign in with a session",
            )
        };
        let presented = match bearer(parts) {
            Some(token) if token.starts_with(PAT_PREFIX) => return Err(pat_not_allowed()),
            Some(token) => token,
            None => {
                let cookie = session_cookie(parts).ok_or_else(ApiError::unauthenticated)?;
                if cookie.starts_with(PAT_PREFIX) {
                    return Err(pat_not_allowed());
                }
                check_same_origin(parts, state.config.secure_cookies)?;
                cookie
            }
        };
        if !presented.starts_with(SESSION_PREFIX) {
            return Err(ApiError::unauthenticated());
        }
        let secret = SessionSecret::parse(presented).ok_or_else(ApiError::unauthenticated)?;
        let hash = secret.hash();
        let now = state.clock.now();
        let sessions = state.store.sessions.clone();
        let mut record =
            enspace_http::blocking(move || sessions.get(&hash, now).map_err(ApiError::unavailable))
                .await?;
        if record.is_none()
            && let Some(cluster) = state.cluster.get()
        {
            // Signed in on another process a moment ago: not copied here yet.
            record = cluster
                .sessions
                .lookup(&hash)
                .await
                .map_err(ApiError::unavailable)?
                .filter(|r| r.expires_at > now);
            if let Some(found) = &record {
                let (sessions, found) = (state.store.sessions.clone(), found.clone());
                enspace_http::blocking(move || {
                    sessions
                        .insert(&hash, &found, usize::MAX)
                        .map_err(ApiError::unavailable)
                })
                .await?;
                // A sign-out copied here between the lookup and the insert
                // would be undone by it: look again, now that it is held.
                if cluster
                    .sessions
                    .lookup(&hash)
                    .await
                    .map_err(ApiError::unavailable)?
                    .is_none()
                {
                    let sessions = state.store.sessions.clone();
                    enspace_http::blocking(move || {
                        sessions.remove(&hash).map_err(ApiError::unavailable)
                    })
                    .await?;
                    record = None;
                }
            }
        }
        let record = record.ok_or_else(ApiError::unauthenticated)?;
        let user = state
            .directory
            .user(&record.user_id)
            .cloned()
            .ok_or_else(ApiError::unauthenticated)?;
        // Only now that the caller is known: reading token state on a
        // follower first catches up with the stream.
        enspace_cluster::barrier::before_answering(
            state.cluster.get(),
            &state.metrics.cluster.read_barriers,
            parts,
        )
        .await?;
        Ok(Caller {
            user,
            session: hash,
        })
    }
}

impl FromRequestParts<AppState> for Auditor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.user.role != Role::Auditor {
            return Err(ApiError::forbidden(
                "auditor_only",
                "only users with the auditor role may read the audit log",
            ));
        }
        Ok(Auditor(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_host_by_http_or_https_is_this_origin() {
        let host = "tokens.example:8080";
        assert!(is_own_origin("http://tokens.example:8080", host, false));
        assert!(is_own_origin("https://tokens.example:8080", host, false));
        assert!(is_own_origin("HTTP://Tokens.Example:8080", host, false));
        assert!(is_own_origin("https://tokens.example:8080", host, true));
        assert!(!is_own_origin("http://tokens.example:8080", host, true));
        for other in [
            "ftp://tokens.example:8080",
            "ws://tokens.example:8080",
            "tokens.example:8080",
            "null",
            "http://tokens.example:8081",
            "https://evil.example",
            "http://tokens.example:8080.evil.example",
            "http://evil@tokens.example:8080",
            "http://tokens.example:8080/path",
            "http://tokens.example:8080 ",
            "",
        ] {
            assert!(!is_own_origin(other, host, false), "{other}");
        }
    }
}
