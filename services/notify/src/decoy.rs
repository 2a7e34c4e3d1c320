//! `decoy_used`: told when someone uses a decoy (contract §18), with the
//! client address, user agent, path and node of the call, at most once per
//! decoy, address and hour (the hour of the call, so that every process
//! that sees the same calls makes the same notification).

use jiff::Timestamp;
use ulid::Ulid;

use super::{Kind, Notification, Notifications, notification_id};
use enspace_store::{Projections, StoreError};

const HOUR_MS: i64 = 3_600_000;

/// One use of what may be a decoy's secret: a call recorded under it by
/// an API node, or an introspection or self-rotation presenting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoyUse {
    pub token_id: Ulid,
    pub at: Timestamp,
    /// Empty when not known.
    pub client_ip: String,
    pub user_agent: Option<String>,
    /// `METHOD /path`, or what the call was (`introspection`).
    pub call: String,
    pub node: String,
}

impl Notifications {
    /// Makes a `decoy_used` notification of each use of an active decoy
    /// (uses of anything else are ignored); answers how many were new.
    pub fn tell_decoy_uses(
        &self,
        uses: &[DecoyUse],
        tokens: &Projections,
    ) -> Result<usize, StoreError> {
        let (deliver, share) = (self.delivers_now(), self.shares());
        let mut made = 0;
        for used in uses {
            let Some(decoy) = tokens
                .token(used.token_id)?
                .filter(|t| t.decoy && t.revoked_at.is_none())
            else {
                continue;
            };
            let hour = used.at.as_millisecond().div_euclid(HOUR_MS);
            let mut what = b"decoy\0".to_vec();
            what.extend_from_slice(used.client_ip.as_bytes());
            what.push(0);
            what.extend_from_slice(&hour.to_be_bytes());
            let from = if used.client_ip.is_empty() {
                "an unknown address"
            } else {
                used.client_ip.as_str()
            };
            let agent = used.user_agent.as_deref().unwrap_or("none");
            let notification = Notification {
                id: notification_id(used.token_id, &what, used.at),
                kind: Kind::DecoyUsed,
                user_id: decoy.user_id,
                token_id: used.token_id,
                at: used.at,
                detail: format!(
                    "the decoy “{}” was used from {from} (user agent “{agent}”): {} on node {}",
                    decoy.description, used.call, used.node
                ),
                read: false,
            };
            if self
                .store
                .emit_shared(&notification, &what, deliver, share)?
            {
                tracing::warn!(
                    decoy.id = %used.token_id,
                    client_ip = %used.client_ip,
                    node = %used.node,
                    "decoy {} was used from {from}",
                    used.token_id
                );
                made += 1;
            }
        }
        self.made_from_batch(made, deliver, share)
    }
}
