//! Device cookies (OWASP's "Slow down online guessing attacks with device
//! cookies"): a successful sign-in leaves a signed, HttpOnly cookie naming
//! the user, `enspace_device`, sent back only to `/v1/session`. A client
//! presenting a valid one for the user it signs in as has signed in as that
//! user before: it is judged on its own device's failures only, so no one
//! else's failures keep it out. A device cookie with too many failures is
//! itself locked (judged as an unknown client) for the window.
//!
//! The cookie is `v1.<user id>.<random id>.<HMAC-SHA256>`, the parts in
//! base64url; nothing is stored server-side. The key is derived from the
//! event signing key, so every control-plane process of a cluster accepts
//! the cookies of the others; without one, it is random per process.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use sha2::Sha256;

pub const DEVICE_COOKIE: &str = "enspace_device";
/// How long a browser keeps its device cookie.
pub const DEVICE_COOKIE_TTL: SignedDuration = SignedDuration::from_hours(365 * 24);
const VERSION: &str = "v1";
/// Longest cookie value looked at.
const MAX_LEN: usize = 512;

/// A device's random id, the key its failures are counted under.
pub type DeviceId = [u8; 16];

/// Issues and checks device cookies.
#[derive(Clone)]
pub struct DeviceCookies {
    key: [u8; 32],
}

impl std::fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceCookies(..)")
    }
}

impl DeviceCookies {
    /// Keyed by `secret` (the event signing key's seed), or by a random key
    /// when there is none.
    pub fn new(secret: Option<&[u8; 32]>) -> Self {
        let key = match secret {
            Some(secret) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
                    .expect("HMAC takes a key of any length");
                mac.update(b"enspace device cookie key v1");
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut key = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                key
            }
        };
        DeviceCookies { key }
    }

    fn mac(&self, user_id: &str, id: &DeviceId) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(VERSION.as_bytes());
        mac.update(&[0]);
        mac.update(user_id.as_bytes());
        mac.update(&[0]);
        mac.update(id);
        mac
    }

    /// A new device cookie's value for `user_id`.
    pub fn issue(&self, user_id: &str) -> String {
        let mut id = DeviceId::default();
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let tag = self.mac(user_id, &id).finalize().into_bytes();
        format!(
            "{VERSION}.{}.{}.{}",
            B64.encode(user_id),
            B64.encode(id),
            B64.encode(tag)
        )
    }

    /// The id of the device whose valid cookie for `user_id` the request
    /// carries, if it carries one.
    pub fn presented(&self, headers: &HeaderMap, user_id: &str) -> Option<DeviceId> {
        cookies(headers, DEVICE_COOKIE).find_map(|value| self.check(value, user_id))
    }

    fn check(&self, value: &str, user_id: &str) -> Option<DeviceId> {
        if value.len() > MAX_LEN {
            return None;
        }
        let mut parts = value.split('.');
        let (Some(VERSION), Some(user), Some(id), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if B64.decode(user).ok()? != user_id.as_bytes() {
            return None;
        }
        let id: DeviceId = B64.decode(id).ok()?.try_into().ok()?;
        let tag = B64.decode(tag).ok()?;
        self.mac(user_id, &id).verify_slice(&tag).ok()?;
        Some(id)
    }

    /// `Set-Cookie` for a device cookie: sent back to the sign-in route only.
    pub fn set_cookie(value: &str, secure: bool) -> Option<HeaderValue> {
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{DEVICE_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/v1/session; Max-Age={}{secure}",
            DEVICE_COOKIE_TTL.as_secs()
        ))
        .ok()
    }
}

/// The values of every cookie named `name` the request carries.
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("enspace_session=x; {DEVICE_COOKIE}={value}"))
                .expect("header"),
        );
        headers
    }

    #[test]
    fn a_cookie_issued_for_a_user_is_that_users_device_and_no_one_elses() {
        let devices = DeviceCookies::new(Some(&[7; 32]));
        let value = devices.issue("alice");
        let id = devices.presented(&with_cookie(&value), "alice");
        assert!(id.is_some());
        assert_eq!(devices.presented(&with_cookie(&value), "bob"), None);
        // Another process with the same signing key accepts it; another key does not.
        assert_eq!(
            DeviceCookies::new(Some(&[7; 32])).presented(&with_cookie(&value), "alice"),
            id
        );
        assert_eq!(
            DeviceCookies::new(Some(&[8; 32])).presented(&with_cookie(&value), "alice"),
            None
        );
        assert_ne!(
            devices.issue("alice"),
            value,
            "each sign-in a new device id"
        );
    }

    #[test]
    fn a_forged_or_altered_cookie_is_no_device() {
        let devices = DeviceCookies::new(Some(&[7; 32]));
        let value = devices.issue("alice");
        let parts: Vec<&str> = value.split('.').collect();
        let as_bob = format!("v1.{}.{}.{}", B64.encode("bob"), parts[2], parts[3]);
        let other_id = format!("v1.{}.{}.{}", parts[1], B64.encode([1u8; 16]), parts[3]);
        for forged in [
            as_bob.as_str(),
            other_id.as_str(),
            "v1.YWxpY2U.AAAAAAAAAAAAAAAAAAAAAA.AAAA",
            "garbage",
            "",
            &format!("{value}.extra"),
            &"a".repeat(4096),
        ] {
            assert_eq!(
                devices.presented(&with_cookie(forged), "alice"),
                None,
                "{forged}"
            );
            assert_eq!(
                devices.presented(&with_cookie(forged), "bob"),
                None,
                "{forged}"
            );
        }
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_only_for_the_sign_in_route() {
        let header = DeviceCookies::set_cookie("v", true).expect("header");
        let text = header.to_str().expect("ascii");
        assert!(text.starts_with(
            "enspace_device=v; HttpOnly; SameSite=Strict; Path=/v1/session; Max-Age="
        ));
        assert!(text.ends_with("; Secure"));
    }
}
