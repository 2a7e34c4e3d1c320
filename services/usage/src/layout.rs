//! The bytes of the request index (the layout is in [`super::index`]):
//! its keys, built and read back big-endian so that they sort by token and
//! time, and a record's value, versioned positional MessagePack.

use enspace_core::RequestRecord;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::IndexError;

/// The key of an hour's counts (see `index.rs`).
pub(super) const HOUR_KEY: usize = 25;
pub(super) type HourKey = [u8; HOUR_KEY];

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// `ms` as an unsigned key part; times before 1970 clamp to 0.
pub fn key_ms(ts: Timestamp) -> u64 {
    u64::try_from(ts.as_millisecond()).unwrap_or(0)
}

pub(super) const RECORD_KEY: usize = 40;
pub(super) type RecordKey = [u8; RECORD_KEY];

pub(super) fn record_key(token: Ulid, at_ms: u64, id: Ulid) -> RecordKey {
    let mut key = [0u8; RECORD_KEY];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16..24].copy_from_slice(&at_ms.to_be_bytes());
    key[24..40].copy_from_slice(&id.to_bytes());
    key
}

/// The counts key of the hour starting at `hour_ms`.
pub(super) fn hour_key(token: Ulid, hour_ms: u64) -> HourKey {
    let mut key = [0u8; HOUR_KEY];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16..24].copy_from_slice(&(hour_ms + HOUR_MS - 1).to_be_bytes());
    key[24] = 0xFF;
    key
}

/// The smallest key of `token` at or after `at_ms`.
pub(super) fn time_key(token: Ulid, at_ms: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16..24].copy_from_slice(&at_ms.to_be_bytes());
    key
}

pub(super) fn be_u64(bytes: &[u8]) -> Result<u64, IndexError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| IndexError::Corrupt("request index key".into()))?;
    Ok(u64::from_be_bytes(array))
}

pub(super) fn be_ulid(bytes: &[u8]) -> Result<Ulid, IndexError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| IndexError::Corrupt("request index key".into()))?;
    Ok(Ulid::from_bytes(array))
}

/// A position in a token's records: the key of a record, as (`at`, id).
/// Records strictly before it come next when paging newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub at_ms: u64,
    pub id: Ulid,
}

/// What the key does not already hold of a record, as a MessagePack array
/// whose first element is the layout's version: positional (no field names)
/// to keep the index small, versioned so that a later layout can be read
/// beside this one. Version 1 is the first ten elements below; version 2
/// appends `path_truncated`. A record whose path was not cut is still
/// written as version 1, byte for byte as before (and so readable by a
/// binary that knows only version 1); version 1 reads as not cut.
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    version: u8,
    user_id: String,
    node: String,
    method: String,
    path: String,
    workspace: Option<String>,
    status: u16,
    duration_ms: f64,
    client_ip: String,
    user_agent: Option<String>,
    /// Version 2 only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    path_truncated: bool,
}

/// The first layout, and the one that adds `path_truncated`.
const STORED_V1: u8 = 1;
const STORED_V2: u8 = 2;

fn known_version(version: u8) -> Result<(), IndexError> {
    match version {
        STORED_V1 | STORED_V2 => Ok(()),
        other => Err(IndexError::Corrupt(format!(
            "request record layout version {other}"
        ))),
    }
}

pub(super) fn encode_record(r: &RequestRecord) -> Result<Vec<u8>, IndexError> {
    rmp_serde::to_vec(&StoredRecord {
        version: if r.path_truncated {
            STORED_V2
        } else {
            STORED_V1
        },
        user_id: r.user_id.clone(),
        node: r.node.clone(),
        method: r.method.clone(),
        path: r.path.clone(),
        workspace: r.workspace.clone(),
        status: r.status,
        duration_ms: r.duration_ms,
        client_ip: r.client_ip.clone(),
        user_agent: r.user_agent.clone(),
        path_truncated: r.path_truncated,
    })
    .map_err(|e| IndexError::Corrupt(format!("encode request record: {e}")))
}

pub(super) fn decode_record(key: &[u8], value: &[u8]) -> Result<RequestRecord, IndexError> {
    if key.len() != RECORD_KEY {
        return Err(IndexError::Corrupt("request index key".into()));
    }
    let stored: StoredRecord = rmp_serde::from_slice(value)
        .map_err(|e| IndexError::Corrupt(format!("request record: {e}")))?;
    known_version(stored.version)?;
    let at_ms = be_u64(&key[16..24])?;
    Ok(RequestRecord {
        id: be_ulid(&key[24..40])?,
        token_id: be_ulid(&key[0..16])?,
        user_id: stored.user_id,
        at: Timestamp::from_millisecond(at_ms as i64)
            .map_err(|_| IndexError::Corrupt("request time".into()))?,
        node: stored.node,
        method: stored.method,
        path: stored.path,
        path_truncated: stored.path_truncated,
        workspace: stored.workspace,
        status: stored.status,
        duration_ms: stored.duration_ms,
        client_ip: stored.client_ip,
        user_agent: stored.user_agent,
    })
}

/// The status of a stored record, without decoding its strings.
pub(super) fn stored_status(value: &[u8]) -> Result<u16, IndexError> {
    struct StatusOnly;
    impl<'de> serde::de::Visitor<'de> for StatusOnly {
        type Value = (u8, u16);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a stored request record")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<(u8, u16), A::Error> {
            use serde::de::{Error, IgnoredAny};
            let version: u8 = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(0, &self))?;
            for i in 1..6 {
                seq.next_element::<IgnoredAny>()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            let status: u16 = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(6, &self))?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok((version, status))
        }
    }
    let mut de = rmp_serde::Deserializer::from_read_ref(value);
    let (version, status) = serde::Deserializer::deserialize_seq(&mut de, StatusOnly)
        .map_err(|e| IndexError::Corrupt(format!("request record: {e}")))?;
    known_version(version)?;
    Ok(status)
}

/// What the insight counters need of a stored record, borrowed from its
/// bytes (nothing allocated): method, workspace, status, client IP.
#[derive(Deserialize)]
pub(super) struct StoredCall<'a> {
    version: u8,
    _user_id: serde::de::IgnoredAny,
    _node: serde::de::IgnoredAny,
    #[serde(borrow)]
    pub method: &'a str,
    _path: serde::de::IgnoredAny,
    #[serde(borrow)]
    pub workspace: Option<&'a str>,
    pub status: u16,
    _duration_ms: serde::de::IgnoredAny,
    #[serde(borrow)]
    pub client_ip: &'a str,
    _user_agent: serde::de::IgnoredAny,
    #[serde(default)]
    _path_truncated: bool,
}

pub(super) fn stored_call(value: &[u8]) -> Result<StoredCall<'_>, IndexError> {
    let call: StoredCall<'_> = rmp_serde::from_slice(value)
        .map_err(|e| IndexError::Corrupt(format!("request record: {e}")))?;
    known_version(call.version)?;
    Ok(call)
}
