//! The request record an API node publishes for every call made with a token
//!. It never holds a header value, a query string or a body.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Unknown fields are ignored when decoding, so nodes and indexers of
/// different versions interoperate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestRecord {
    pub id: Ulid,
    pub token_id: Ulid,
    pub user_id: String,
    #[serde(with = "rfc3339_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub node: String,
    pub method: String,
    /// The path only, without the query string; at most 1024 bytes (a
    /// longer path is cut at a character boundary).
    #[schema(max_length = 1024)]
    pub path: String,
    /// `true` when `path` was cut to 1024 bytes; absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    /// The `{ws}` the call named, if it is a valid workspace id (1 to 64
    /// ASCII letters, digits, `-` or `_`); `null` otherwise.
    #[schema(required = true, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub workspace: Option<String>,
    #[schema(minimum = 100, maximum = 599)]
    pub status: u16,
    #[schema(minimum = 0)]
    pub duration_ms: f64,
    pub client_ip: String,
    /// At most 256 bytes (a longer one is cut).
    #[schema(required = true, max_length = 256)]
    pub user_agent: Option<String>,
}

/// Where an API node hands its request records: the JetStream publisher, or
/// the embedded in-process queue. Must never block the request path.
pub trait RecordSink: Send + Sync + 'static {
    fn record(&self, record: RequestRecord);
}

impl RequestRecord {
    pub fn to_msgpack(&self) -> Vec<u8> {
        // A record is about 320 bytes: one allocation instead of a dozen
        // regrowths.
        let mut buf = Vec::with_capacity(512);
        match rmp_serde::encode::write_named(&mut buf, self) {
            Ok(()) => buf,
            Err(_) => Vec::new(),
        }
    }

    pub fn from_msgpack(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// How many of a token's request records an API node dropped in one hour
/// because its queue was full: published beside the records (subject
/// `enspace.requests.<token_id>.dropped`, `Nats-Msg-Id` = `id`) so that the
/// token's owner sees that records are missing, and how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroppedRecords {
    /// Identifies this count, so that a count delivered twice is kept once.
    pub id: Ulid,
    pub token_id: Ulid,
    /// The start of the hour (UTC) the dropped records were made in.
    #[serde(with = "rfc3339_millis")]
    pub hour: Timestamp,
    pub count: u64,
    pub node: String,
}

impl DroppedRecords {
    /// The last subject token of a drop count's subject, after the token id.
    pub const SUBJECT_SUFFIX: &'static str = "dropped";

    pub fn to_msgpack(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    pub fn from_msgpack(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// Where the embedded request-log indexer (`enspace serve` without NATS)
/// takes an API node's request records and drop counts from: the node's
/// in-process queue. The JetStream path reads the same from
/// `ENSPACE_REQUESTS` instead.
///
/// Records taken are in flight until [`settle`](Self::settle)d (delivered)
/// or [`put_back`](Self::put_back) (not delivered: they go back to the front,
/// to be taken first).
pub trait RecordSource: Send + Sync + 'static {
    /// Records waiting to be taken (not counting those in flight).
    fn waiting(&self) -> usize;
    /// Resolves once a record may have arrived (at once if any is waiting).
    fn arrived(&self) -> impl Future<Output = ()> + Send;
    /// Takes up to `max` records.
    fn take(&self, max: usize) -> Vec<RequestRecord>;
    /// `n` records taken earlier were delivered.
    fn settle(&self, n: usize);
    /// Records taken earlier could not be delivered.
    fn put_back(&self, records: Vec<RequestRecord>);
    /// The counts of records dropped since the last call, as `node`'s.
    fn take_drops(&self, node: &str) -> Vec<DroppedRecords>;
    /// Drop counts that could not be handed on, to be taken again.
    fn put_back_drops(&self, drops: Vec<DroppedRecords>);
}

/// RFC 3339 in UTC with exactly three fractional digits.
pub mod rfc3339_millis {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(ts: &Timestamp) -> String {
        match digits(ts) {
            Some(buf) => String::from_utf8_lossy(&buf).into_owned(),
            None => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        }
    }

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        match digits(ts) {
            Some(buf) => {
                s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
            }
            None => s.serialize_str(&format(ts)),
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` written digit by digit (every record is
    /// stamped, and jiff's `strftime` interprets its pattern each time);
    /// `None` for a year outside 0..=9999.
    fn digits(ts: &Timestamp) -> Option<[u8; 24]> {
        let dt = jiff::tz::Offset::UTC.to_datetime(*ts);
        let year = u16::try_from(dt.year()).ok().filter(|y| *y <= 9999)?;
        let mut buf = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for i in (at..at + width).rev() {
                buf[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        let part = |v: i8| u32::from(v.unsigned_abs());
        put(0, 4, u32::from(year));
        put(5, 2, part(dt.month()));
        put(8, 2, part(dt.day()));
        put(11, 2, part(dt.hour()));
        put(14, 2, part(dt.minute()));
        put(17, 2, part(dt.second()));
        put(20, 3, u32::from(dt.millisecond().unsigned_abs()));
        Some(buf)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_writes_at_with_milliseconds() {
        let record = RequestRecord {
            id: Ulid::new(),
            token_id: Ulid::new(),
            user_id: "alice".into(),
            at: "2026-11-28T10:00:00Z".parse().expect("ts"),
            node: "node-1".into(),
            method: "GET".into(),
            path: "/api/v1/workspaces/acme/records".into(),
            path_truncated: false,
            workspace: Some("acme".into()),
            status: 200,
            duration_ms: 0.25,
            client_ip: "127.0.0.1".into(),
            user_agent: Some("curl/8".into()),
        };
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["at"], "2026-11-28T10:00:00.000Z");
        for (at, written) in [
            ("2026-01-02T03:04:05.006789Z", "2026-01-02T03:04:05.006Z"),
            ("1999-12-31T23:59:59.999Z", "1999-12-31T23:59:59.999Z"),
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ] {
            let at: Timestamp = at.parse().expect("ts");
            assert_eq!(rfc3339_millis::format(&at), written);
            assert_eq!(
                rfc3339_millis::format(&at),
                at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            );
        }
        assert_eq!(
            RequestRecord::from_msgpack(&record.to_msgpack()).expect("decodes"),
            record
        );
        assert!(json.get("path_truncated").is_none(), "only when cut");
        let cut = RequestRecord {
            path_truncated: true,
            ..record
        };
        assert_eq!(
            serde_json::to_value(&cut).expect("json")["path_truncated"],
            true
        );
        assert_eq!(
            RequestRecord::from_msgpack(&cut.to_msgpack()).expect("decodes"),
            cut
        );
    }

    #[test]
    fn a_drop_count_round_trips_and_is_no_request_record() {
        let dropped = DroppedRecords {
            id: Ulid::new(),
            token_id: Ulid::new(),
            hour: "2026-11-28T10:00:00Z".parse().expect("ts"),
            count: 94,
            node: "node-1".into(),
        };
        let bytes = dropped.to_msgpack();
        assert_eq!(
            DroppedRecords::from_msgpack(&bytes).expect("decodes"),
            dropped
        );
        assert!(RequestRecord::from_msgpack(&bytes).is_err());
    }
}
