//! Notification webhooks, signed as Standard Webhooks
//! (<https://www.standardwebhooks.com>): the body is the JSON of
//! [`payload`]; the headers are `webhook-id` (the notification id, the same
//! on every retry), `webhook-timestamp` (unix seconds of the attempt) and
//! `webhook-signature`: `v1,` and the base64 HMAC-SHA256, keyed with the
//! secret's bytes, of `{webhook-id}.{webhook-timestamp}.{body}`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use ulid::Ulid;

use super::{Kind, Notification};

/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Standard Webhooks secret: `whsec_` and the base64 of the key. Its
/// `Debug` prints nothing of it.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the webhook secret must start with `whsec_`")]
    MissingPrefix,
    #[error("the webhook secret's part after `whsec_` must be base64")]
    NotBase64,
    #[error("the webhook secret's key must be 24 to 64 bytes")]
    BadLength,
}

impl FromStr for WebhookSecret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, SecretError> {
        let encoded = s
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(WebhookSecret(key))
    }
}

/// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn signature(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// What is POSTed (and published on NATS) for a notification.
#[derive(Serialize)]
pub struct Payload<'a> {
    /// `notification.<kind>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened or fell due (RFC 3339).
    pub timestamp: jiff::Timestamp,
    pub data: PayloadData<'a>,
}

#[derive(Serialize)]
pub struct PayloadData<'a> {
    pub id: Ulid,
    pub kind: Kind,
    pub user_id: &'a str,
    pub token_id: Ulid,
    pub at: jiff::Timestamp,
    pub detail: &'a str,
}

pub fn payload(n: &Notification) -> Payload<'_> {
    Payload {
        kind: format!("notification.{}", n.kind.as_str()),
        timestamp: n.at,
        data: PayloadData {
            id: n.id,
            kind: n.kind,
            user_id: &n.user_id,
            token_id: n.token_id,
            at: n.at,
            detail: &n.detail,
        },
    }
}

/// Why a POST did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("the receiver answered {0}")]
    Status(u16),
    #[error("cannot reach the receiver: {0}")]
    Unreachable(String),
}

/// The webhook receiver and how to sign for it.
#[derive(Clone)]
pub struct Webhook {
    url: reqwest::Url,
    secret: WebhookSecret,
    client: reqwest::Client,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl Webhook {
    pub fn new(url: reqwest::Url, secret: WebhookSecret) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Webhook {
            url,
            secret,
            client,
        })
    }

    /// The receiver's address, for logs (without any credentials in it).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    /// POSTs `body` as message `id`, signed at `timestamp` (unix seconds).
    pub async fn post(&self, id: &str, timestamp: i64, body: Vec<u8>) -> Result<(), PostError> {
        let signature = signature(&self.secret, id, timestamp, &body);
        let res = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            // Without the URL, which may carry credentials in its query.
            .map_err(|e| PostError::Unreachable(e.without_url().to_string()))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(PostError::Status(res.status().as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example in the Standard Webhooks specification's reference tests.
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            .parse()
            .expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_without_its_prefix_or_in_bad_base64_is_refused() {
        assert_eq!(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                .parse::<WebhookSecret>()
                .err(),
            Some(SecretError::MissingPrefix)
        );
        assert_eq!(
            "whsec_!!!".parse::<WebhookSecret>().err(),
            Some(SecretError::NotBase64)
        );
        assert_eq!(
            "whsec_AAAA".parse::<WebhookSecret>().err(),
            Some(SecretError::BadLength)
        );
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            .parse()
            .expect("secret");
        assert_eq!(format!("{secret:?}"), "WebhookSecret(…)");
    }
}
