//! `new_client_ip`: told when the request-log indexer sees a token used
//! from a client IP it had not used in the retention window
//! (`enspace_usage::client_ips`), once per token, IP and first call.

use jiff::Timestamp;

use super::{Kind, Notification, Notifications, notification_id};
use enspace_store::{Projections, StoreError};
use enspace_usage::client_ips::NewClientIp;

impl Notifications {
    /// Makes a notification of each new client IP of a known token;
    /// answers how many were new.
    pub fn tell_new_client_ips(
        &self,
        new: &[NewClientIp],
        tokens: &Projections,
        retention_days: i64,
    ) -> Result<usize, StoreError> {
        let (deliver, share) = (self.delivers_now(), self.shares());
        let mut made = 0;
        for seen in new {
            // A decoy's uses are told as `decoy_used`.
            let Some(token) = tokens.token(seen.token_id)?.filter(|t| !t.decoy) else {
                continue;
            };
            let at = Timestamp::from_millisecond(i64::try_from(seen.at_ms).unwrap_or(0))
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let mut what = b"ip\0".to_vec();
            what.extend_from_slice(seen.ip.as_bytes());
            what.extend_from_slice(&seen.at_ms.to_be_bytes());
            let notification = Notification {
                id: notification_id(seen.token_id, &what, at),
                kind: Kind::NewClientIp,
                user_id: token.user_id,
                token_id: seen.token_id,
                at,
                detail: format!(
                    "“{}” was used from {}, an address it had not used in the last {retention_days} days",
                    token.description, seen.ip
                ),
                read: false,
            };
            if self
                .store
                .emit_shared(&notification, &what, deliver, share)?
            {
                made += 1;
            }
        }
        self.made_from_batch(made, deliver, share)
    }
}
