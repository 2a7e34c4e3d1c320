//! Request records travel in batches: one JetStream message holds many
//! records of one partition.
//!
//! - Subject `enspace.requests.<partition>`, the partition a decimal number
//!   below [`PARTITIONS`] derived from the token id alone
//!   ([`partition_of`]), so that a token's records are always in the same
//!   partition.
//! - Header `Enspace-Record-Count` ([`COUNT_HEADER`]): how many records the
//!   payload holds; `Nats-Msg-Id` identifies the batch, so that a batch
//!   published again (its ack was lost) is stored once.
//! - Payload: a MessagePack array of records, each a map with the fields
//!   of `RequestRecord` (schema `schemas/request_record_batch.json`).
//!
//! A message without the header is one record on its own (what nodes
//! published before batches; still read).

use ulid::Ulid;

use crate::RequestRecord;

/// The header giving the number of records in a batch.
pub const COUNT_HEADER: &str = "Enspace-Record-Count";

/// The number of partitions of the request records: fixed (changing it
/// would move tokens between partitions).
pub const PARTITIONS: u32 = 16;

/// Most records one batch may hold (nodes send far fewer; an indexer
/// refuses a message claiming more).
pub const MAX_RECORDS: usize = 10_000;

/// The partition of a token's records: FNV-1a (32 bits) of the token id's
/// 26-character text, modulo [`PARTITIONS`]. This is what nats-server's
/// subject mapping `partition(16,1)` computes from `enspace.requests.<token_id>`,
/// so any client can derive it.
pub fn partition_of(token_id: &Ulid) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in token_id.to_string().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % PARTITIONS
}

/// The subject a partition's batches are published on.
pub fn partition_subject(partition: u32) -> String {
    format!("enspace.requests.{partition}")
}

/// The partition a batch's subject names, if it names one.
pub fn subject_partition(subject: &str) -> Option<u32> {
    let last = subject.strip_prefix("enspace.requests.")?;
    if last.is_empty() || last.len() > 2 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = last.parse().ok()?;
    // No leading zero: one subject per partition.
    (n < PARTITIONS && n.to_string() == last).then_some(n)
}

/// A batch's payload from its records' MessagePack encodings: the array
/// header, then each record as it is.
pub fn encode(records: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = records.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(body + 5);
    let n = records.len();
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xdc);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    }
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

/// The payload of a batch message on `enspace.requests.<partition>`
/// (subject) with the headers `Enspace-Record-Count` (the number of records
/// in it) and `Nats-Msg-Id` (the batch's id), encoded as MessagePack: an
/// array of request records, all of tokens whose partition is the
/// subject's (FNV-1a 32 of the token id's text modulo 16, as nats-server's
/// `partition(16,1)`). A message on `enspace.requests.<token_id>` without
/// that header is a single `RequestRecord`; one on
/// `enspace.requests.<token_id>.dropped` is a count of dropped records.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]

pub struct RequestRecordBatch(pub Vec<RequestRecord>);

/// Why a batch message is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BatchError {
    #[error("the {COUNT_HEADER} header is not a number from 1 to {MAX_RECORDS}")]
    BadCount,
    #[error("the subject names no partition below {PARTITIONS}")]
    NoPartition,
    #[error("the payload is not a MessagePack array of request records: {0}")]
    Undecodable(String),
    #[error("the header says {header} records, the payload holds {held}")]
    CountMismatch { header: usize, held: usize },
    #[error("record {record} of token {token} belongs to partition {belongs}, not {partition}")]
    WrongPartition {
        record: Ulid,
        token: Ulid,
        belongs: u32,
        partition: u32,
    },
}

/// Reads a batch published on `subject` whose count header is `count`:
/// every record, or why the whole batch is refused (a count that is not
/// the payload's, a record of another partition, anything undecodable).
pub fn decode(
    subject: &str,
    count: &str,
    payload: &[u8],
) -> Result<Vec<RequestRecord>, BatchError> {
    let count: usize = count.trim().parse().map_err(|_| BatchError::BadCount)?;
    if count == 0 || count > MAX_RECORDS {
        return Err(BatchError::BadCount);
    }
    let partition = subject_partition(subject).ok_or(BatchError::NoPartition)?;
    let records: Vec<RequestRecord> =
        rmp_serde::from_slice(payload).map_err(|e| BatchError::Undecodable(e.to_string()))?;
    if records.len() != count {
        return Err(BatchError::CountMismatch {
            header: count,
            held: records.len(),
        });
    }
    if let Some(r) = records
        .iter()
        .find(|r| partition_of(&r.token_id) != partition)
    {
        return Err(BatchError::WrongPartition {
            record: r.id,
            token: r.token_id,
            belongs: partition_of(&r.token_id),
            partition,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token: Ulid) -> RequestRecord {
        RequestRecord {
            id: Ulid::new(),
            token_id: token,
            user_id: "alice".into(),
            at: jiff::Timestamp::UNIX_EPOCH,
            node: "n".into(),
            method: "GET".into(),
            path: "/".into(),
            path_truncated: false,
            workspace: None,
            status: 200,
            duration_ms: 0.0,
            client_ip: String::new(),
            user_agent: None,
        }
    }

    #[test]
    fn the_partition_is_nats_fnv1a_of_the_token_text() {
        // FNV-1a 32 of "01ARZ3NDEKTSV4RRFFQ69G5FAV" computed independently.
        let token: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("ulid");
        let mut h: u32 = 2_166_136_261;
        for b in b"01ARZ3NDEKTSV4RRFFQ69G5FAV" {
            h = (h ^ u32::from(*b)).wrapping_mul(16_777_619);
        }
        assert_eq!(partition_of(&token), h % 16);
        // Tokens spread over every partition.
        let seen: std::collections::BTreeSet<u32> = (0..2000u128)
            .map(|n| partition_of(&Ulid::from(n << 40)))
            .collect();
        assert_eq!(seen.len(), PARTITIONS as usize);
    }

    #[test]
    fn partition_subjects_round_trip_and_nothing_else_is_one() {
        for p in 0..PARTITIONS {
            assert_eq!(subject_partition(&partition_subject(p)), Some(p));
        }
        for s in [
            "enspace.requests.16",
            "enspace.requests.01",
            "enspace.requests.",
            "enspace.requests.01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "enspace.requests.1.dropped",
            "other.1",
        ] {
            assert_eq!(subject_partition(s), None, "{s}");
        }
    }

    #[test]
    fn a_batch_round_trips_for_any_size() {
        let token = Ulid::new();
        let subject = partition_subject(partition_of(&token));
        for n in [1usize, 15, 16, 300, 70_000] {
            let records: Vec<_> = (0..n).map(|_| record(token)).collect();
            let encoded: Vec<Vec<u8>> = records.iter().map(RequestRecord::to_msgpack).collect();
            let payload = encode(&encoded);
            let decoded: Vec<RequestRecord> = rmp_serde::from_slice(&payload).expect("array");
            assert_eq!(decoded, records);
            if n <= MAX_RECORDS {
                assert_eq!(decode(&subject, &n.to_string(), &payload), Ok(records));
            } else {
                assert_eq!(
                    decode(&subject, &n.to_string(), &payload),
                    Err(BatchError::BadCount)
                );
            }
        }
    }

    #[test]
    fn hostile_batches_are_refused_whole() {
        let token = Ulid::new();
        let p = partition_of(&token);
        let subject = partition_subject(p);
        let one = encode(&[record(token).to_msgpack()]);
        assert_eq!(
            decode(&subject, "2", &one),
            Err(BatchError::CountMismatch { header: 2, held: 1 })
        );
        for count in ["0", "-1", "x", "99999999999999999999"] {
            assert_eq!(decode(&subject, count, &one), Err(BatchError::BadCount));
        }
        assert_eq!(
            decode("enspace.requests.x", "1", &one),
            Err(BatchError::NoPartition)
        );
        assert!(matches!(
            decode(&subject, "1", b"\xdd\xff\xff\xff\xff"),
            Err(BatchError::Undecodable(_))
        ));
        assert!(matches!(
            decode(&subject, "1", b"garbage"),
            Err(BatchError::Undecodable(_))
        ));
        let other = partition_subject((p + 1) % PARTITIONS);
        assert!(matches!(
            decode(&other, "1", &one),
            Err(BatchError::WrongPartition { .. })
        ));
    }
}
