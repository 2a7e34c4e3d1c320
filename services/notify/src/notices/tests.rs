//! Notices without NATS: their seal and checks, and how a store keeps one.

use jiff::Timestamp;
use ulid::Ulid;

use super::*;
use crate::Notification;

fn decoy_notice(token_id: Ulid, what: &[u8]) -> ToShare {
    let at: Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
    ToShare {
        notification: Notification {
            id: notification_id(token_id, what, at),
            kind: Kind::DecoyUsed,
            user_id: "alice".into(),
            token_id,
            at,
            detail: "the decoy “canary” was used".into(),
            read: false,
        },
        what: what.to_vec(),
    }
}

fn notifications(delivery_enabled: bool) -> Notifications {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    Notifications::open(&db, delivery_enabled).expect("notifications")
}

#[test]
fn a_sealed_notice_opens_with_its_key_and_only_with_it() {
    let signer = EventSigner::generate();
    let notice = decoy_notice(Ulid::new(), b"decoy\x00192.0.2.1");
    let sealed = seal(&notice, &signer).expect("seal");
    assert_eq!(open(&sealed, &[signer.public().clone()]), Ok(notice));
    let other = EventSigner::generate().public().clone();
    assert_eq!(open(&sealed, &[other]), Err(Refused::NotSigned));
}

#[test]
fn garbage_a_notice_of_another_kind_or_with_an_id_that_does_not_match_is_malformed() {
    let signer = EventSigner::generate();
    let keys = [signer.public().clone()];
    assert!(matches!(
        open(b"not messagepack at all", &keys),
        Err(Refused::Malformed(_))
    ));
    let mut expiring = decoy_notice(Ulid::new(), b"x");
    expiring.notification.kind = Kind::ExpiringSoon;
    let mut moved = decoy_notice(Ulid::new(), b"x");
    moved.notification.token_id = Ulid::new();
    let mut nobody = decoy_notice(Ulid::new(), b"x");
    nobody.notification.user_id.clear();
    for bad in [expiring, moved, nobody] {
        let sealed = seal(&bad, &signer).expect("seal");
        assert!(
            matches!(open(&sealed, &keys), Err(Refused::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn a_notice_is_kept_once_and_queued_for_delivery_only_where_this_process_delivers() {
    let notice = decoy_notice(Ulid::new(), b"decoy\x00192.0.2.1");
    let id = notice.notification.id;
    let quiet = notifications(false);
    assert!(quiet.apply_notice(&notice).expect("apply"));
    assert!(!quiet.apply_notice(&notice).expect("again"));
    assert!(!quiet.store.is_queued(id).expect("queued?"));
    assert_eq!(quiet.store.len(), 1);

    let delivering = notifications(true);
    let mut read = notice.clone();
    read.notification.read = true;
    assert!(delivering.apply_notice(&read).expect("apply"));
    assert!(delivering.store.is_queued(id).expect("queued?"));
    let kept = delivering.store.get(id).expect("get").expect("kept");
    assert!(!kept.read, "a notice arrives unread");
}

#[test]
fn only_a_process_that_shares_queues_what_it_makes_to_share_and_waits_for_nothing_otherwise() {
    let notice = decoy_notice(Ulid::new(), b"decoy\x00192.0.2.1");
    let alone = notifications(false);
    assert!(!alone.shares());
    let made = alone
        .store
        .emit_shared(&notice.notification, &notice.what, false, alone.shares())
        .expect("emit");
    assert!(made);
    assert!(alone.store.to_share.is_empty());
    assert!(alone.wait_shared(Duration::from_secs(5)));

    let member = notifications(false);
    let _ = member.sharing.set(Sharing::default());
    assert!(member.shares());
    member
        .store
        .emit_shared(&notice.notification, &notice.what, false, member.shares())
        .expect("emit");
    assert_eq!(member.store.to_share.len(), 1);
    assert!(
        !member.wait_shared(Duration::from_millis(50)),
        "nothing published it"
    );
}
