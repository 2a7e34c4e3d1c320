//! The request record an API node publishes for every call made with a token
//! (contract §4). It never holds a header value, a query string or a body.

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
    /// The path only, without the query string.
    pub path: String,
    #[schema(required = true)]
    pub workspace: Option<String>,
    #[schema(minimum = 100, maximum = 599)]
    pub status: u16,
    #[schema(minimum = 0)]
    pub duration_ms: f64,
    pub client_ip: String,
    #[schema(required = true)]
    pub user_agent: Option<String>,
}

/// Where an API node hands its request records: the JetStream publisher, or
/// the embedded in-process queue. Must never block the request path.
pub trait RecordSink: Send + Sync + 'static {
    fn record(&self, record: RequestRecord);
}

impl RequestRecord {
    pub fn to_msgpack(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    pub fn from_msgpack(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// RFC 3339 in UTC with exactly three fractional digits.
pub mod rfc3339_millis {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(ts: &Timestamp) -> String {
        ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(ts))
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
            workspace: Some("acme".into()),
            status: 200,
            duration_ms: 0.25,
            client_ip: "127.0.0.1".into(),
            user_agent: Some("curl/8".into()),
        };
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["at"], "2026-11-28T10:00:00.000Z");
        assert_eq!(
            RequestRecord::from_msgpack(&record.to_msgpack()).expect("decodes"),
            record
        );
    }
}
