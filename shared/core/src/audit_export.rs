//! An audit export (`enspace audit export`): NDJSON, a header line naming
//! the event key and the head, then one [`AuditEvent`] a line in seq order.
//! [`verify`] checks one with nothing but the key an auditor trusts: the
//! chain, every signature, and that each line's JSON says what its signed
//! payload says.

use std::io::BufRead;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::events::{GENESIS_HASH, chain_hash};
use crate::signing::EventKeyJson;
use crate::{AuditEvent, EventEnvelope, EventKey, KeyChain};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The value of the header's `export` field.
pub const EXPORT_KIND: &str = "enspace-audit";

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// Always `enspace-audit`: what tells the header from an event.
    #[schema(example = "enspace-audit")]
    pub export: String,
    /// The format's version: 1.
    pub version: u32,
    /// The keys the events are signed with (informative: verify with the
    /// key you trust, not with this list).
    pub event_keys: Vec<EventKeyJson>,
    /// The last event the export holds: an export cut short no longer
    /// ends there.
    pub head: ExportHead,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportHead {
    pub seq: u64,
    /// Hex of its hash (64 zeros for an empty log).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

/// A verified export: how many events, and the last one's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub count: u64,
    pub head: [u8; 32],
}

/// Where an export stops being trustworthy: the first seq that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq}: {reason}")]
pub struct ExportBreak {
    pub seq: u64,
    pub reason: String,
}

/// Checks the export `lines` against the keys an auditor trusts
/// (`trusted`: one key, or the list `GET /v1/event-key` serves):
/// consecutive seqs from 1, each `prev_hash` the previous `hash` (zeros
/// first), `hash` = SHA-256(prev ‖ payload), every JSON field equal to what
/// the payload says, and the signature over `ENSPACE-EVENT-V1\0` ‖ hash by
/// the key in force: event 1's key, which must be one of `trusted`, then,
/// after each `signing_key_rotated` event (signed by the key it replaces),
/// the key it names; a rotation after a lost key (signed by its new key)
/// only when that key is one of `trusted`. An event may come without a
/// signature (its key was lost before the server kept one): it is vouched
/// for by the next signed event, whose signature covers it through the
/// chain, and an export may not end on one. With a header, the last event
/// is the head it names.
pub fn verify(lines: impl BufRead, trusted: &[EventKey]) -> Result<Verified, ExportBreak> {
    verify_with(lines, trusted, &crate::progress::Silent)
}

/// [`verify`], telling `progress` how many events are checked (of the
/// header's head, when there is a header).
pub fn verify_with(
    lines: impl BufRead,
    trusted: &[EventKey],
    progress: &dyn crate::progress::Progress,
) -> Result<Verified, ExportBreak> {
    verify_visiting(lines, trusted, progress, &mut |_| {})
}

/// [`verify_with`], handing `visit` each event's envelope as it is checked
/// (an event is visited only once it and all before it verified; a break
/// later in the export still answers `Err`, so a caller must not use what it
/// was handed unless the whole export verifies).
pub fn verify_visiting(
    lines: impl BufRead,
    trusted: &[EventKey],
    progress: &dyn crate::progress::Progress,
    visit: &mut dyn FnMut(EventEnvelope),
) -> Result<Verified, ExportBreak> {
    verify_in_batches(lines, trusted, progress, visit, SIGNATURE_BATCH)
}

/// [`verify_visiting`], checking signatures `batch` at a time.
fn verify_in_batches(
    lines: impl BufRead,
    trusted: &[EventKey],
    progress: &dyn crate::progress::Progress,
    visit: &mut dyn FnMut(EventEnvelope),
    batch: usize,
) -> Result<Verified, ExportBreak> {
    let mut prev = GENESIS_HASH;
    let mut expected = 1u64;
    let mut header: Option<ExportHeader> = None;
    let mut keys: Option<KeyChain> = None;
    // The first event without a signature since the last signed one.
    let mut unvouched: Option<u64> = None;
    // Events whose signature is still to be checked, in order.
    let mut unsigned = Unsigned::new(batch);
    for (n, line) in lines.lines().enumerate() {
        let broken = |reason: String| ExportBreak {
            seq: expected,
            reason,
        };
        let checked = match line {
            Err(e) => Err(broken(format!("cannot read the export: {e}"))),
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) if n == 0 && line.contains("\"export\"") => {
                match serde_json::from_str(&line) {
                    Ok(h) => {
                        header = Some(h);
                        continue;
                    }
                    Err(e) => Err(broken(format!("the header is not one: {e}"))),
                }
            }
            Ok(line) => serde_json::from_str::<AuditEvent>(&line)
                .map_err(|e| broken(format!("line {} is not an audit event: {e}", n + 1)))
                .and_then(|event| {
                    let checked = check_event(&event, expected, &prev).map_err(broken)?;
                    let signer =
                        signer_of(&mut keys, trusted, &event, &checked.envelope).map_err(broken)?;
                    Ok((checked, signer))
                }),
        };
        match checked {
            Ok((event, signer)) => {
                prev = event.hash;
                if let Some(chain) = keys.as_mut() {
                    chain.pass(&event.envelope);
                }
                if event.signature.is_empty() {
                    unvouched.get_or_insert(event.seq);
                } else {
                    unvouched = None;
                }
                if unsigned.key.as_ref().is_some_and(|k| *k != signer) {
                    unsigned.check(visit)?;
                }
                unsigned.push(signer, event);
            }
            Err(broken) => {
                // An earlier event's bad signature is the first break.
                unsigned.check(visit)?;
                return Err(broken);
            }
        }
        if unsigned.full() {
            unsigned.check(visit)?;
        }
        if expected.is_multiple_of(1024) {
            progress.advance(expected, header.as_ref().map_or(0, |h| h.head.seq));
        }
        expected += 1;
    }
    unsigned.check(visit)?;
    if let Some(seq) = unvouched {
        return Err(ExportBreak {
            seq,
            reason: "no signature, and no signed event after it vouches for it".into(),
        });
    }
    let count = expected - 1;
    progress.advance(count, header.as_ref().map_or(0, |h| h.head.seq));
    progress.finish();
    if let Some(header) = header {
        if header.export != EXPORT_KIND || header.version != 1 {
            return Err(ExportBreak {
                seq: 1,
                reason: format!(
                    "the header is not a version 1 {EXPORT_KIND} export's: {} {}",
                    header.export, header.version
                ),
            });
        }
        if header.head.seq != count || header.head.hash != hex::encode(prev) {
            return Err(ExportBreak {
                seq: count + 1,
                reason: format!(
                    "the export ends at seq {count}, but its header names the head seq {} ({}): \
                     events are missing at the end",
                    header.head.seq, header.head.hash
                ),
            });
        }
    }
    Ok(Verified { count, head: prev })
}

/// The key that must have signed `event` (see [`verify`]); the first event
/// starts the walk from the trusted key it names.
fn signer_of(
    keys: &mut Option<KeyChain>,
    trusted: &[EventKey],
    event: &AuditEvent,
    envelope: &EventEnvelope,
) -> Result<EventKey, String> {
    let chain = match keys {
        Some(chain) => chain,
        None => {
            let Some(first) = trusted.iter().find(|k| k.key_id() == event.key_id) else {
                return Err(format!(
                    "signed by key {}, which is not among the given keys ({})",
                    event.key_id,
                    trusted
                        .iter()
                        .map(EventKey::key_id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            keys.insert(KeyChain::trusting(first.clone(), trusted.iter().cloned()))
        }
    };
    let Some(signer) = chain.signer_of(envelope) else {
        return Err(match envelope.key_rotation() {
            Some(r) if r.previous_lost => format!(
                "the key {} was declared lost and replaced by {}: verify with that key given \
                 explicitly if you trust it",
                r.previous_key_id, r.key_id
            ),
            _ => format!(
                "a key rotation that does not start from the key in force {}",
                chain.current().key_id()
            ),
        });
    };
    if event.key_id != signer.key_id() {
        return Err(format!(
            "signed by key {}, not by the key in force {}",
            event.key_id,
            signer.key_id()
        ));
    }
    Ok(signer)
}

/// Signatures checked together, at most this many at a time.
const SIGNATURE_BATCH: usize = 1024;

/// An event checked but for its signature.
struct Checked {
    seq: u64,
    hash: [u8; 32],
    signature: Vec<u8>,
    envelope: EventEnvelope,
}

/// Events signed by one key waiting for their signatures to be checked, in
/// seq order, and how many make a batch.
struct Unsigned {
    key: Option<EventKey>,
    events: Vec<Checked>,
    batch: usize,
}

impl Unsigned {
    fn new(batch: usize) -> Self {
        Unsigned {
            key: None,
            events: Vec::with_capacity(batch),
            batch,
        }
    }

    fn push(&mut self, key: EventKey, event: Checked) {
        self.key = Some(key);
        self.events.push(event);
    }

    fn full(&self) -> bool {
        self.events.len() >= self.batch
    }

    /// Checks the waiting signatures together, and one by one to name the
    /// first bad one if the batch fails; hands the good events to `visit`.
    fn check(&mut self, visit: &mut dyn FnMut(EventEnvelope)) -> Result<(), ExportBreak> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let signed = || self.events.iter().filter(|e| !e.signature.is_empty());
        let batch: Vec<([u8; 32], &[u8])> =
            signed().map(|e| (e.hash, e.signature.as_slice())).collect();
        if !key.verify_events(&batch)
            && let Some(bad) = signed().find(|e| !key.verify_event(&e.hash, &e.signature))
        {
            return Err(ExportBreak {
                seq: bad.seq,
                reason: format!(
                    "the signature does not verify with the key {}",
                    key.key_id()
                ),
            });
        }
        for event in self.events.drain(..) {
            visit(event.envelope);
        }
        Ok(())
    }
}

/// Checks one event but for its signature (see [`Unsigned`]).
fn check_event(event: &AuditEvent, expected: u64, prev: &[u8; 32]) -> Result<Checked, String> {
    if event.seq != expected {
        return Err(if event.seq > expected {
            format!("missing event (the next line is seq {})", event.seq)
        } else {
            format!("out of order (the line is seq {})", event.seq)
        });
    }
    if !hex_is(&event.prev_hash, prev) {
        return Err("prev_hash does not match the previous event's hash".into());
    }
    let payload = B64
        .decode(&event.payload)
        .map_err(|_| "payload is not base64".to_owned())?;
    let hash = chain_hash(prev, &payload);
    if !hex_is(&event.hash, &hash) {
        return Err("hash does not match prev_hash and payload".into());
    }
    let signature = B64
        .decode(&event.signature)
        .map_err(|_| "signature is not base64".to_owned())?;
    let envelope = EventEnvelope::decode(&payload).map_err(|e| e.to_string())?;
    let differs = [
        ("id", envelope.id == event.id),
        ("type", envelope.event.type_name() == event.kind),
        ("at", envelope.at == event.at),
        ("actor", envelope.actor == event.actor),
        ("token_id", envelope.token_id == event.token_id),
        ("data", envelope.event.data_json() == event.data),
    ]
    .into_iter()
    .find(|(_, same)| !same);
    if let Some((field, _)) = differs {
        return Err(format!(
            "`{field}` says something the signed payload does not"
        ));
    }
    if envelope.seq != event.seq {
        return Err("`seq` says something the signed payload does not".into());
    }
    Ok(Checked {
        seq: event.seq,
        hash,
        signature,
        envelope,
    })
}

/// Whether `text` is the lowercase hex of `bytes`.
fn hex_is(text: &str, bytes: &[u8; 32]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    text.len() == 64
        && text.as_bytes().chunks(2).zip(bytes).all(|(pair, b)| {
            pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 15)]
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventSigner;

    fn export(n: u64, signer: &EventSigner) -> (Vec<String>, [u8; 32]) {
        let mut prev = GENESIS_HASH;
        let mut lines = Vec::new();
        for seq in 1..=n {
            let envelope =
                crate::fixtures::created(seq, &crate::SecretHash([seq as u8; 32])).build();
            let stored = crate::events::StoredEvent::new(prev, &envelope);
            prev = stored.hash;
            let event = AuditEvent::new(&envelope, &stored, signer);
            lines.push(serde_json::to_string(&event).expect("json"));
        }
        (lines, prev)
    }

    fn header(seq: u64, hash: [u8; 32], signer: &EventSigner) -> String {
        serde_json::to_string(&ExportHeader {
            export: EXPORT_KIND.into(),
            version: 1,
            event_keys: vec![signer.public().to_json()],
            head: ExportHead {
                seq,
                hash: hex::encode(hash),
            },
        })
        .expect("json")
    }

    fn check(lines: &[String], key: &EventKey) -> Result<Verified, ExportBreak> {
        verify(lines.join("\n").as_bytes(), std::slice::from_ref(key))
    }

    /// Signatures are checked in batches (64 here, to keep the test short):
    /// a bad one anywhere in a batch,
    /// or before a later break of another kind, is still the one named, and
    /// no event after it reaches the visitor.
    #[test]
    fn a_bad_signature_inside_a_batch_is_named_by_its_seq() {
        let signer = EventSigner::generate();
        let (lines, _) = export(150, &signer);
        for bad in [1u64, 37, 64, 65, 150] {
            let mut damaged = lines.clone();
            let mut event: AuditEvent =
                serde_json::from_str(&damaged[bad as usize - 1]).expect("event");
            let mut signature = B64.decode(&event.signature).expect("b64");
            signature[10] ^= 1;
            event.signature = B64.encode(signature);
            damaged[bad as usize - 1] = serde_json::to_string(&event).expect("json");
            let mut visited = 0u64;
            let broken = verify_in_batches(
                damaged.join("\n").as_bytes(),
                std::slice::from_ref(signer.public()),
                &crate::progress::Silent,
                &mut |_| visited += 1,
                64,
            );
            assert_eq!(broken.map_err(|b| b.seq), Err(bad));
            assert!(visited < bad, "visited {visited}, bad {bad}");
            // A later line that is not an event does not hide it.
            damaged.push("not json".into());
            assert_eq!(
                check(&damaged, signer.public()).map_err(|b| b.seq),
                Err(bad)
            );
        }
    }

    #[test]
    fn an_export_verifies_with_its_key_with_or_without_a_header() {
        let signer = EventSigner::generate();
        let (mut lines, head) = export(5, &signer);
        assert_eq!(
            check(&lines, signer.public()),
            Ok(Verified { count: 5, head })
        );
        lines.insert(0, header(5, head, &signer));
        assert_eq!(
            check(&lines, signer.public()),
            Ok(Verified { count: 5, head })
        );
    }

    #[test]
    fn another_key_an_edited_field_or_a_cut_tail_is_named_by_seq() {
        let signer = EventSigner::generate();
        let (lines, head) = export(4, &signer);
        let other = EventSigner::generate();
        assert_eq!(check(&lines, other.public()).map_err(|b| b.seq), Err(1));

        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"actor\":\"alice\"", "\"actor\":\"mallory\"");
        assert_ne!(edited[2], lines[2], "the fixture's actor is alice");
        let broken = check(&edited, signer.public()).expect_err("edited");
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("actor"), "{broken}");

        let mut cut = vec![header(4, head, &signer)];
        cut.extend_from_slice(&lines[..3]);
        assert_eq!(check(&cut, signer.public()).map_err(|b| b.seq), Err(4));
    }

    /// Events 1-2 by `k0`, a rotation at 3 (signed by `k0`, or by `k1` when
    /// `lost`), events 4-5 by `k1`.
    fn rotated_export(k0: &EventSigner, k1: &EventSigner, lost: bool) -> Vec<String> {
        let mut prev = GENESIS_HASH;
        (1..=5u64)
            .map(|seq| {
                let mut envelope =
                    crate::fixtures::created(seq, &crate::SecretHash([seq as u8; 32])).build();
                if seq == 3 {
                    envelope.event = crate::TokenEvent::SigningKeyRotated(
                        crate::key_chain::rotation(k0.public(), k1.public(), lost),
                    );
                }
                let stored = crate::events::StoredEvent::new(prev, &envelope);
                prev = stored.hash;
                let signer = if seq < 3 || (seq == 3 && !lost) {
                    k0
                } else {
                    k1
                };
                serde_json::to_string(&AuditEvent::new(&envelope, &stored, signer)).expect("json")
            })
            .collect()
    }

    #[test]
    fn an_export_follows_a_key_rotation_from_the_key_it_started_with() {
        let (k0, k1) = (EventSigner::generate(), EventSigner::generate());
        let lines = rotated_export(&k0, &k1, false).join("\n");
        let verify_by = |keys: &[&EventSigner]| {
            let keys: Vec<EventKey> = keys.iter().map(|k| k.public().clone()).collect();
            verify(lines.as_bytes(), &keys).map(|v| v.count)
        };
        assert_eq!(verify_by(&[&k0]), Ok(5));
        assert_eq!(verify_by(&[&k0, &k1]), Ok(5));
        // The new key alone does not vouch for what the old one signed.
        assert_eq!(verify_by(&[&k1]).map_err(|b| b.seq), Err(1));
        // An event after the rotation signed by the old key is refused.
        let mut stale = rotated_export(&k0, &k1, false);
        let mut event: AuditEvent = serde_json::from_str(&stale[3]).expect("event");
        event.key_id = k0.public().key_id().to_owned();
        stale[3] = serde_json::to_string(&event).expect("json");
        let broken = check(&stale, k0.public()).expect_err("stale key");
        assert_eq!(broken.seq, 4, "{broken}");
    }

    #[test]
    fn a_break_after_a_lost_key_verifies_only_with_the_new_key_given() {
        let (k0, k1) = (EventSigner::generate(), EventSigner::generate());
        let lines = rotated_export(&k0, &k1, true);
        let broken = check(&lines, k0.public()).expect_err("break");
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("lost"), "{broken}");
        let both = [k0.public().clone(), k1.public().clone()];
        assert_eq!(
            verify(lines.join("\n").as_bytes(), &both).map(|v| v.count),
            Ok(5)
        );
    }

    #[test]
    fn an_event_without_a_signature_is_vouched_for_only_by_a_signed_event_after_it() {
        let signer = EventSigner::generate();
        let (lines, _) = export(4, &signer);
        let strip = |lines: &mut Vec<String>, at: usize| {
            let mut event: AuditEvent = serde_json::from_str(&lines[at]).expect("event");
            event.signature = String::new();
            lines[at] = serde_json::to_string(&event).expect("json");
        };
        let mut middle = lines.clone();
        strip(&mut middle, 1);
        assert_eq!(check(&middle, signer.public()).map(|v| v.count), Ok(4));
        let mut last = lines.clone();
        strip(&mut last, 2);
        strip(&mut last, 3);
        assert_eq!(check(&last, signer.public()).map_err(|b| b.seq), Err(3));
    }
}
