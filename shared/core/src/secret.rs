//! Secrets: personal access tokens (`ens_pat_…`) and session tokens (`ens_sess_…`).
//!
//! Invariant: the prefixes `ens_pat_` and `ens_sess_` never change. Secret
//! scanners recognise our tokens by them, and the PAT checksum lets them (and
//! us) reject a mistyped token offline, before any lookup.
//!
//! A secret's plaintext lives only inside these wrappers, whose `Debug` prints
//! nothing of it; storage only ever sees its SHA-256 ([`SecretHash`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::base62;

pub const PAT_PREFIX: &str = "ens_pat_";
pub const PAT_RANDOM_LEN: usize = 32;
pub const PAT_CHECKSUM_LEN: usize = 6;
pub const PAT_LEN: usize = PAT_PREFIX.len() + PAT_RANDOM_LEN + PAT_CHECKSUM_LEN;

pub const SESSION_PREFIX: &str = "ens_sess_";
const SESSION_RANDOM_LEN: usize = 40;

/// Why a string is not a well-formed personal access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretParseError {
    #[error("the token does not start with `ens_pat_`")]
    MissingPrefix,
    #[error("the token must be {PAT_LEN} characters long")]
    BadLength,
    #[error("the token contains a character outside 0-9A-Za-z")]
    BadCharacter,
    #[error("the token's checksum does not match")]
    BadChecksum,
}

/// SHA-256 of a secret: the only form in which a secret is stored or looked up.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(SecretHash(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(SecretHash(bytes.try_into().ok()?))
    }
}

impl PartialEq for SecretHash {
    /// Constant-time: how much of two hashes agree never shows in timing.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for SecretHash {}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", &self.to_hex()[..8])
    }
}

fn checksum(random: &str) -> String {
    base62::encode_padded(
        u64::from(crc32fast::hash(random.as_bytes())),
        PAT_CHECKSUM_LEN,
    )
}

/// Checks that `s` is a well-formed personal access token (prefix, length,
/// alphabet, checksum) without allocating: the hot path of every API call.
pub fn check_pat_format(s: &str) -> Result<(), SecretParseError> {
    let rest = s
        .strip_prefix(PAT_PREFIX)
        .ok_or(SecretParseError::MissingPrefix)?;
    if s.len() != PAT_LEN {
        return Err(SecretParseError::BadLength);
    }
    // Every byte is tested, without branching on which class it falls in:
    // the characters of a random token are a coin toss between digits,
    // upper and lower case, and a branch per byte mispredicts half the time.
    // `b | 0x20` folds A-Z onto a-z and maps no other byte into a-z.
    let alphanumeric = rest.bytes().fold(true, |ok, b| {
        ok & ((b.wrapping_sub(b'0') < 10) | ((b | 0x20).wrapping_sub(b'a') < 26))
    });
    if !alphanumeric {
        return Err(SecretParseError::BadCharacter);
    }
    let (random, sum) = rest.split_at(PAT_RANDOM_LEN);
    // The six digits of the CRC in base62 (62^6 > 2^32, so always six), as
    // `checksum` writes them: computed as two independent halves of three.
    const HALF: u32 = 62 * 62 * 62;
    let crc = crc32fast::hash(random.as_bytes());
    let mut expected = [0u8; 8];
    for (digits, mut value) in expected[..PAT_CHECKSUM_LEN]
        .chunks_exact_mut(3)
        .zip([crc / HALF, crc % HALF])
    {
        for digit in digits.iter_mut().rev() {
            *digit = base62::ALPHABET[(value % 62) as usize];
            value /= 62;
        }
    }
    let mut presented = [0u8; 8];
    presented[..PAT_CHECKSUM_LEN].copy_from_slice(sum.as_bytes());
    // One constant-time comparison of the six bytes, packed in a word.
    if bool::from(u64::from_le_bytes(expected).ct_eq(&u64::from_le_bytes(presented))) {
        Ok(())
    } else {
        Err(SecretParseError::BadChecksum)
    }
}

/// A personal access token in the clear. Created once, shown once.
#[derive(Clone)]
pub struct PatSecret(String);

impl PatSecret {
    pub fn generate() -> Self {
        Self::from_random(base62::random(PAT_RANDOM_LEN))
    }

    /// A well-formed token drawn from `rng`, for benchmarks and tests that
    /// need many (a fast seeded RNG); the product uses [`Self::generate`].
    pub fn from_rng(rng: &mut (impl rand::Rng + ?Sized)) -> Self {
        Self::from_random(base62::random_from(rng, PAT_RANDOM_LEN))
    }

    fn from_random(random: String) -> Self {
        let sum = checksum(&random);
        PatSecret(format!("{PAT_PREFIX}{random}{sum}"))
    }

    /// The plaintext, for the one response that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl FromStr for PatSecret {
    type Err = SecretParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_pat_format(s)?;
        Ok(PatSecret(s.to_owned()))
    }
}

impl fmt::Debug for PatSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatSecret(<redacted>)")
    }
}

/// A session token in the clear: the bearer/cookie value of a signed-in user.
#[derive(Clone)]
pub struct SessionSecret(String);

impl SessionSecret {
    pub fn generate() -> Self {
        SessionSecret(format!(
            "{SESSION_PREFIX}{}",
            base62::random(SESSION_RANDOM_LEN)
        ))
    }

    /// Accepts anything that looks like a session token; the lookup decides.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(SESSION_PREFIX)?;
        (rest.len() == SESSION_RANDOM_LEN && rest.bytes().all(base62::is_base62))
            .then(|| SessionSecret(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_a_seeded_rng_are_well_formed_and_repeat_with_the_seed() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a: Vec<String> = (0..100)
            .map(|_| PatSecret::from_rng(&mut rng).expose().to_owned())
            .collect();
        for secret in &a {
            assert_eq!(check_pat_format(secret), Ok(()), "{secret}");
        }
        let mut again = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(PatSecret::from_rng(&mut again).expose(), a[0]);
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn generated_secret_has_the_contract_shape_and_parses() {
        let secret = PatSecret::generate();
        let s = secret.expose();
        assert_eq!(s.len(), 46);
        assert!(s.starts_with("ens_pat_"));
        assert!(s[8..].bytes().all(base62::is_base62));
        let parsed: PatSecret = s.parse().expect("parses");
        assert!(parsed.hash() == secret.hash());
    }

    #[test]
    fn checksum_is_crc32_of_the_random_part_in_base62() {
        // CRC-32("00000000000000000000000000000000") = 0xA0F2_92D0 (zlib).
        let random = "0".repeat(32);
        assert_eq!(crc32fast::hash(random.as_bytes()), 0xA0F2_92D0);
        assert_eq!(checksum(&random), base62::encode_padded(0xA0F2_92D0, 6));
        let token = format!("ens_pat_{random}{}", checksum(&random));
        assert!(token.parse::<PatSecret>().is_ok());
    }

    #[test]
    fn parse_rejects_each_malformation_with_its_own_error() {
        let good = PatSecret::generate().expose().to_owned();
        assert_eq!(
            "ghp_abc".parse::<PatSecret>().unwrap_err(),
            SecretParseError::MissingPrefix
        );
        assert_eq!(
            format!("{good}0").parse::<PatSecret>().unwrap_err(),
            SecretParseError::BadLength
        );
        let mut bad_char = good.clone();
        bad_char.replace_range(10..11, "-");
        assert_eq!(
            bad_char.parse::<PatSecret>().unwrap_err(),
            SecretParseError::BadCharacter
        );
        // A one-character typo in the random part breaks the checksum.
        let mut typo = good.into_bytes();
        typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert_eq!(
            typo.parse::<PatSecret>().unwrap_err(),
            SecretParseError::BadChecksum
        );
    }

    #[test]
    fn format_check_accepts_exactly_the_base62_bytes() {
        let good = PatSecret::generate().expose().to_owned();
        for byte in 0..=0x7fu8 {
            let mut token = good.clone().into_bytes();
            token[20] = byte;
            let token = String::from_utf8(token).expect("ascii");
            let result = check_pat_format(&token);
            if base62::is_base62(byte) {
                assert_ne!(result, Err(SecretParseError::BadCharacter), "{byte:#x}");
            } else {
                assert_eq!(result, Err(SecretParseError::BadCharacter), "{byte:#x}");
            }
        }
        // Bytes of the right count that are not ASCII.
        let mut wide = good.clone();
        wide.replace_range(20..22, "é");
        assert_eq!(wide.len(), PAT_LEN);
        assert_eq!(check_pat_format(&wide), Err(SecretParseError::BadCharacter));
    }

    #[test]
    fn format_check_agrees_with_the_checksum_for_many_values() {
        // CRCs of these spread over the whole 32-bit range, so every digit of
        // both halves takes many values.
        for i in 0..20_000u32 {
            let random = format!("{:0>32}", base62::encode_padded(u64::from(i) * 7919, 12));
            let sum = checksum(&random);
            assert_eq!(check_pat_format(&format!("ens_pat_{random}{sum}")), Ok(()));
            // Any other checksum is refused.
            let mut wrong = sum.into_bytes();
            wrong[(i % 6) as usize] = if wrong[(i % 6) as usize] == b'0' {
                b'1'
            } else {
                b'0'
            };
            let wrong = String::from_utf8(wrong).expect("ascii");
            assert_eq!(
                check_pat_format(&format!("ens_pat_{random}{wrong}")),
                Err(SecretParseError::BadChecksum)
            );
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = PatSecret::generate();
        assert!(!format!("{secret:?}").contains(&secret.expose()[8..]));
        let session = SessionSecret::generate();
        assert!(!format!("{session:?}").contains(&session.expose()[9..]));
    }
}
