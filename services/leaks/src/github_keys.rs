//! GitHub's secret-scanning public keys (`--github-keys FILE`) and the check
//! of a report's signature against them.
//!
//! The file is the JSON document GitHub publishes at
//! `https://api.github.com/meta/public_keys/secret_scanning`:
//! `{"public_keys": [{"key_identifier", "key" (PEM SubjectPublicKeyInfo),
//! "is_current"}]}`. A report names its key in `Github-Public-Key-Identifier`
//! and carries `Github-Public-Key-Signature`: base64 of a DER-encoded ECDSA
//! P-256 signature over the SHA-256 of the raw body.
//!
//! Keys are rotated by GitHub: when a report names a key the file does not
//! hold, the file is read again (at most once every [`RELOAD_EVERY`]), so an
//! operator refreshes keys by rewriting the file, without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use p256::ecdsa::signature::DigestVerifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The least time between two readings of the key file prompted by an
/// unknown key identifier.
pub const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// Longest key identifier or signature header considered (GitHub's are a
/// 64-character hex identifier and about 96 characters of base64).
const MAX_HEADER_LEN: usize = 1024;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the GitHub key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the GitHub key file {path} is not GitHub's public key document: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("key {key_identifier} in the GitHub key file {path} is not a PEM P-256 public key")]
    Key {
        path: PathBuf,
        key_identifier: String,
    },
    #[error("the GitHub key file {path} holds no keys")]
    Empty { path: PathBuf },
}

/// Why a report's signature is refused. Every variant answers `401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Github-Public-Key-Identifier header is missing")]
    MissingKeyId,
    #[error("the Github-Public-Key-Signature header is missing")]
    MissingSignature,
    #[error("no GitHub key has this identifier")]
    UnknownKey,
    #[error("the signature is not base64 of a DER ECDSA signature")]
    MalformedSignature,
    #[error("the signature does not match the body")]
    BadSignature,
}

#[derive(Deserialize)]
struct KeyDocument {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
    #[serde(default)]
    is_current: bool,
}

/// The keys of one reading of the file, by identifier.
struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    current: usize,
}

fn parse(path: &Path, bytes: &[u8]) -> Result<KeySet, KeyFileError> {
    let doc: KeyDocument = serde_json::from_slice(bytes).map_err(|source| KeyFileError::Json {
        path: path.to_owned(),
        source,
    })?;
    if doc.public_keys.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_owned(),
        });
    }
    let mut keys = HashMap::with_capacity(doc.public_keys.len());
    let mut current = 0;
    for published in doc.public_keys {
        let key = VerifyingKey::from_public_key_pem(published.key.trim()).map_err(|_| {
            KeyFileError::Key {
                path: path.to_owned(),
                key_identifier: published.key_identifier.clone(),
            }
        })?;
        current += usize::from(published.is_current);
        keys.insert(published.key_identifier, key);
    }
    Ok(KeySet { keys, current })
}

fn read(path: &Path) -> Result<KeySet, KeyFileError> {
    let bytes = std::fs::read(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &bytes)
}

/// GitHub's secret-scanning keys, read from a file and re-read when a
/// report names a key the last reading did not hold.
pub struct GithubKeys {
    path: PathBuf,
    keys: RwLock<Arc<KeySet>>,
    last_read: Mutex<Instant>,
}

impl std::fmt::Debug for GithubKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubKeys")
            .field("path", &self.path)
            .field("keys", &self.len())
            .finish()
    }
}

impl GithubKeys {
    /// Reads the key file; refuses a file that is unreadable, not GitHub's
    /// document, holds a key that is not a P-256 public key, or no key.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let set = read(path)?;
        tracing::info!(
            keys = set.keys.len(),
            current = set.current,
            "read {} GitHub secret-scanning keys from {}",
            set.keys.len(),
            path.display()
        );
        Ok(GithubKeys {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(set)),
            last_read: Mutex::new(Instant::now()),
        })
    }

    /// How many keys the last reading held.
    pub fn len(&self) -> usize {
        self.snapshot().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the file again if the last reading is old enough; a file that
    /// has become unusable keeps the keys already held.
    fn reload_if_due(&self) -> Arc<KeySet> {
        {
            let mut last = self
                .last_read
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < RELOAD_EVERY {
                return self.snapshot();
            }
            *last = Instant::now();
        }
        match read(&self.path) {
            Ok(set) => {
                tracing::info!(
                    keys = set.keys.len(),
                    "read the GitHub secret-scanning keys again from {}",
                    self.path.display()
                );
                let set = Arc::new(set);
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = set.clone();
                set
            }
            Err(e) => {
                tracing::warn!(error = %e, "kept the GitHub keys already read");
                self.snapshot()
            }
        }
    }

    /// Checks that `signature` (the `Github-Public-Key-Signature` header) is
    /// the key `key_id`'s signature of `body`.
    pub fn verify(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        self.claim(key_id, signature)?.verify(body)
    }

    /// What can be checked before the body is read: both headers are there,
    /// the key is one GitHub publishes, and the signature is well-formed.
    pub fn claim(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
    ) -> Result<Claim, SignatureError> {
        let key_id = key_id
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(SignatureError::MissingKeyId)?;
        let signature = signature
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(SignatureError::MissingSignature)?;
        if key_id.len() > MAX_HEADER_LEN {
            return Err(SignatureError::UnknownKey);
        }
        if signature.len() > MAX_HEADER_LEN {
            return Err(SignatureError::MalformedSignature);
        }
        let mut set = self.snapshot();
        if !set.keys.contains_key(key_id) {
            set = self.reload_if_due();
        }
        let key = *set.keys.get(key_id).ok_or(SignatureError::UnknownKey)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .map_err(|_| SignatureError::MalformedSignature)?;
        let signature = DerSignature::try_from(der.as_slice())
            .map_err(|_| SignatureError::MalformedSignature)?;
        Ok(Claim { key, signature })
    }
}

/// A report's key and signature, checked as far as they can be without its
/// body.
pub struct Claim {
    key: VerifyingKey,
    signature: DerSignature,
}

impl Claim {
    /// Checks the signature against the raw body.
    pub fn verify(&self, body: &[u8]) -> Result<(), SignatureError> {
        self.verify_parts([body])
    }

    /// Checks the signature against the raw body, in the parts it came in.
    pub fn verify_parts<'a>(
        &self,
        parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), SignatureError> {
        let mut digest = Sha256::new();
        for part in parts {
            digest.update(part);
        }
        let signature = p256::ecdsa::Signature::try_from(self.signature.clone())
            .map_err(|_| SignatureError::MalformedSignature)?;
        self.key
            .verify_digest(digest, &signature)
            .map_err(|_| SignatureError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::EncodePublicKey;

    const KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";

    /// A fixed key: the tests need no random source.
    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32].into()).expect("a valid scalar")
    }

    fn document(keys: &[(&str, &SigningKey)]) -> String {
        let public_keys: Vec<_> = keys
            .iter()
            .map(|(id, key)| {
                serde_json::json!({
                    "key_identifier": id,
                    "key": key.verifying_key()
                        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
                        .expect("pem"),
                    "is_current": true,
                })
            })
            .collect();
        serde_json::json!({ "public_keys": public_keys }).to_string()
    }

    fn key_file(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("github-keys.json");
        std::fs::write(&path, contents).expect("write");
        (dir, path)
    }

    fn sign(key: &SigningKey, body: &[u8]) -> String {
        let signature: p256::ecdsa::Signature = key.sign(body);
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }

    #[test]
    fn a_signature_by_the_named_key_over_the_body_is_accepted() {
        let key = signing_key(7);
        let (_dir, path) = key_file(&document(&[(KEY_ID, &key)]));
        let keys = GithubKeys::load(&path).expect("loads");
        let body = br#"[{"token":"x","type":"t","url":"u","source":"s"}]"#;
        let signature = sign(&key, body);
        assert_eq!(keys.verify(Some(KEY_ID), Some(&signature), body), Ok(()));
    }

    #[test]
    fn a_tampered_body_another_key_or_a_missing_header_is_refused() {
        let key = signing_key(7);
        let other = signing_key(9);
        let (_dir, path) = key_file(&document(&[(KEY_ID, &key), ("other", &other)]));
        let keys = GithubKeys::load(&path).expect("loads");
        let body = br#"[{"token":"x"}]"#;
        let signature = sign(&key, body);
        assert_eq!(
            keys.verify(Some(KEY_ID), Some(&signature), br#"[{"token":"y"}]"#),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            keys.verify(Some("other"), Some(&signature), body),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            keys.verify(Some("nope"), Some(&signature), body),
            Err(SignatureError::UnknownKey)
        );
        assert_eq!(
            keys.verify(None, Some(&signature), body),
            Err(SignatureError::MissingKeyId)
        );
        assert_eq!(
            keys.verify(Some(KEY_ID), None, body),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            keys.verify(Some(KEY_ID), Some("not base64!"), body),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            keys.verify(Some(KEY_ID), Some("AAAA"), body),
            Err(SignatureError::MalformedSignature)
        );
    }

    #[test]
    fn a_high_s_signature_is_accepted_as_go_s_ecdsa_may_produce_one() {
        // GitHub signs with a library that does not normalise s; (r, n - s)
        // is as valid a signature as (r, s).
        let key = signing_key(7);
        let (_dir, path) = key_file(&document(&[(KEY_ID, &key)]));
        let keys = GithubKeys::load(&path).expect("loads");
        let body = b"[]";
        let signature: p256::ecdsa::Signature = key.sign(body);
        let (r, s) = signature.split_scalars();
        let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).expect("signature");
        let encoded = base64::engine::general_purpose::STANDARD.encode(flipped.to_der().as_bytes());
        assert_eq!(keys.verify(Some(KEY_ID), Some(&encoded), body), Ok(()));
    }

    #[test]
    fn a_file_that_is_not_a_key_document_is_refused_at_load() {
        for contents in [
            "not json",
            r#"{"public_keys": []}"#,
            r#"{"public_keys": [{"key_identifier": "a", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "is_current": true}]}"#,
            r#"{"keys": []}"#,
        ] {
            let (_dir, path) = key_file(contents);
            assert!(GithubKeys::load(&path).is_err(), "{contents}");
        }
        assert!(matches!(
            GithubKeys::load(Path::new("/nonexistent/github-keys.json")),
            Err(KeyFileError::Read { .. })
        ));
    }

    #[test]
    fn a_key_added_to_the_file_is_found_once_the_reload_interval_has_passed() {
        let key = signing_key(7);
        let rotated = signing_key(11);
        let (_dir, path) = key_file(&document(&[(KEY_ID, &key)]));
        let keys = GithubKeys::load(&path).expect("loads");
        std::fs::write(&path, document(&[(KEY_ID, &key), ("rotated", &rotated)])).expect("write");
        let body = b"[]";
        let signature = sign(&rotated, body);
        assert_eq!(
            keys.verify(Some("rotated"), Some(&signature), body),
            Err(SignatureError::UnknownKey),
            "not re-read within the interval"
        );
        *keys.last_read.lock().expect("lock") = Instant::now() - RELOAD_EVERY;
        assert_eq!(keys.verify(Some("rotated"), Some(&signature), body), Ok(()));
        assert_eq!(keys.len(), 2);
    }
}
