//! A stand-in for GitHub's secret scanning: a P-256 key made for the test,
//! the key file `--github-keys` reads, and signed posts of matches.

use std::path::{Path, PathBuf};

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use super::app::ApiClient;

pub const PATH: &str = "/v1/secret-scanning/github";
pub const KEY_ID: &str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";

pub struct FakeGithub {
    pub key: SigningKey,
    pub key_id: String,
    pub key_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeGithub {
    /// A fresh key, published in a key file as GitHub publishes its keys
    /// (with a second, older key beside it).
    pub fn new() -> Self {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let old = SigningKey::random(&mut rand::rngs::OsRng);
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("github-keys.json");
        let pem = |k: &SigningKey| {
            k.verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem")
        };
        let doc = json!({"public_keys": [
            {"key_identifier": "0000000000000000000000000000000000000000000000000000000000000001",
             "key": pem(&old), "is_current": false},
            {"key_identifier": KEY_ID, "key": pem(&key), "is_current": true},
        ]});
        std::fs::write(&key_file, doc.to_string()).expect("write key file");
        FakeGithub {
            key,
            key_id: KEY_ID.to_owned(),
            key_file,
            _dir: dir,
        }
    }

    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// Base64 of the DER signature of `body`, as GitHub sends it.
    pub fn sign(&self, body: &[u8]) -> String {
        sign_with(&self.key, body)
    }

    /// Posts `body` as it is, with these headers.
    pub async fn post_raw(
        &self,
        api: &ApiClient,
        body: Vec<u8>,
        key_id: Option<&str>,
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut req = api
            .client
            .post(api.url(PATH))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key_id) = key_id {
            req = req.header("Github-Public-Key-Identifier", key_id);
        }
        if let Some(signature) = signature {
            req = req.header("Github-Public-Key-Signature", signature);
        }
        req.send().await.expect("POST secret-scanning")
    }

    /// Posts `body`, signed by the current key.
    pub async fn post_signed(&self, api: &ApiClient, body: Vec<u8>) -> reqwest::Response {
        let signature = self.sign(&body);
        self.post_raw(api, body, Some(&self.key_id), Some(&signature))
            .await
    }

    /// Reports these strings as GitHub would, found at `url`.
    pub async fn report(&self, api: &ApiClient, tokens: &[&str], url: &str) -> reqwest::Response {
        self.post_signed(api, matches(tokens, url).to_string().into_bytes())
            .await
    }
}

pub fn sign_with(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// GitHub's body for these strings.
pub fn matches(tokens: &[&str], url: &str) -> Value {
    tokens
        .iter()
        .map(|t| {
            json!({"token": t, "type": "enspace_personal_access_token",
                   "url": url, "source": "content"})
        })
        .collect()
}
