//! The fold and the sweep over a temporary database, without HTTP.

use enspace_core::fixtures::{created, revoked};
use enspace_core::token::RevokeReason;
use enspace_core::{EventEnvelope, SecretHash, TokenEvent};
use jiff::{SignedDuration, Timestamp};

use super::*;
use enspace_store::Projections;

struct Fixture {
    db: sled::Db,
    tokens: Projections,
    notifications: Notifications,
}

fn fixture() -> Fixture {
    let db = sled::Config::new().temporary(true).open().expect("sled");
    Fixture {
        tokens: Projections::open(&db).expect("projections"),
        notifications: Notifications::open(&db, false).expect("notifications"),
        db,
    }
}

impl Fixture {
    fn fold(&self, events: &[EventEnvelope]) {
        self.tokens.apply(events).expect("projections");
        let _one = self.notifications.projection.lock().expect("lock");
        self.notifications
            .projection
            .fold(events, &self.tokens, false)
            .expect("fold");
    }

    /// When each stage due for `token` is (ms), soonest first.
    fn due_ms(&self, token: ulid::Ulid) -> Vec<u64> {
        let due = self.notifications.due.of_token(token).expect("due");
        due.into_iter().map(|(_, ms)| ms).collect()
    }

    fn kinds(&self) -> Vec<(Kind, String)> {
        let mut list = self.notifications.store.list("alice", 100).expect("list");
        list.reverse();
        list.into_iter().map(|n| (n.kind, n.detail)).collect()
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// A token expiring at `expires` is made a month before.
fn month_before(expires: Timestamp) -> Timestamp {
    expires - SignedDuration::from_hours(30 * 24)
}

fn hash(n: u8) -> SecretHash {
    SecretHash([n; 32])
}

fn revoked_because(
    seq: u64,
    of: &EventEnvelope,
    h: &SecretHash,
    reason: RevokeReason,
) -> EventEnvelope {
    let mut e = revoked(seq, of.token_id, h);
    if let TokenEvent::TokenRevoked(r) = &mut e.event {
        r.reason = reason;
        if reason == RevokeReason::Leaked {
            r.url = Some("https://github.com/acme/app/blob/main/.env".into());
        }
    }
    e
}

#[test]
fn each_expiry_stage_is_told_once_when_it_falls_due() {
    let f = fixture();
    let expires = ts("2026-03-01T12:00:00Z");
    let token = created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build();
    f.fold(std::slice::from_ref(&token));
    assert_eq!(f.notifications.due.len(), 3);
    let n = &f.notifications;
    let before_7d = expires - SignedDuration::from_hours(7 * 24) - SignedDuration::from_millis(1);
    assert_eq!(n.sweep(before_7d, false).expect("sweep").told, 0);
    let at_7d = expires - SignedDuration::from_hours(7 * 24);
    assert_eq!(n.sweep(at_7d, false).expect("sweep").told, 1);
    assert_eq!(n.sweep(at_7d, false).expect("sweep").told, 0);
    let at_1d = expires - SignedDuration::from_hours(24);
    assert_eq!(n.sweep(at_1d, false).expect("sweep").told, 1);
    assert_eq!(n.sweep(expires, false).expect("sweep").told, 1);
    assert_eq!(
        n.sweep(expires + SignedDuration::from_hours(24 * 400), false)
            .expect("sweep")
            .told,
        0
    );
    let kinds: Vec<Kind> = f.kinds().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [Kind::ExpiringSoon, Kind::ExpiringSoon, Kind::Expired]
    );
    assert!(f.notifications.due.is_empty());
    assert!(f.kinds()[0].1.contains("fixture"), "{:?}", f.kinds());
}

#[test]
fn a_sweep_with_nothing_due_writes_nothing() {
    let f = fixture();
    let far = ts("2030-01-01T00:00:00Z");
    for i in 1..=50u8 {
        f.fold(&[created(u64::from(i), &hash(i))
            .expires_at(far)
            .at(month_before(far))
            .build()]);
    }
    f.db.flush().expect("flush");
    let before = f.db.checksum().expect("checksum");
    let swept = f
        .notifications
        .sweep(ts("2026-01-01T00:00:00Z"), false)
        .expect("sweep");
    assert_eq!(swept, sweep::Swept::default());
    assert_eq!(f.db.checksum().expect("checksum"), before);
}

#[test]
fn a_late_sweep_tells_only_the_newest_stage() {
    let f = fixture();
    let expires = ts("2026-03-01T12:00:00Z");
    f.fold(&[created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build()]);
    let swept = f
        .notifications
        .sweep(expires + SignedDuration::from_hours(1), false)
        .expect("sweep");
    assert_eq!((swept.told, swept.dropped), (1, 2));
    let kinds: Vec<Kind> = f.kinds().into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [Kind::Expired]);
}

#[test]
fn a_revoked_token_is_not_told_of_its_expiry() {
    let f = fixture();
    let expires = ts("2026-03-01T12:00:00Z");
    let token = created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build();
    f.fold(&[token.clone(), revoked(2, token.token_id, &hash(1))]);
    assert!(f.notifications.due.is_empty());
    assert_eq!(
        f.notifications.sweep(expires, false).expect("sweep").told,
        0
    );
    // The owner revoked it: nothing to tell.
    assert!(f.kinds().is_empty());
}

#[test]
fn a_leak_and_an_administrators_revocation_are_told_but_not_the_owners_or_a_rotations() {
    let f = fixture();
    let tokens: Vec<EventEnvelope> = (1..=5u8)
        .map(|i| created(u64::from(i), &hash(i)).build())
        .collect();
    f.fold(&tokens);
    let reasons = [
        RevokeReason::Leaked,
        RevokeReason::Admin,
        RevokeReason::MembershipRemoved,
        RevokeReason::User,
        RevokeReason::Rotated,
    ];
    let revocations: Vec<EventEnvelope> = tokens
        .iter()
        .zip(reasons)
        .enumerate()
        .map(|(i, (t, reason))| revoked_because(6 + i as u64, t, &hash(i as u8 + 1), reason))
        .collect();
    f.fold(&revocations);
    let kinds: Vec<Kind> = f.kinds().into_iter().map(|(k, _)| k).collect();
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|k| k.as_str());
    assert_eq!(sorted, [Kind::Leaked, Kind::Revoked, Kind::Revoked]);
    assert!(
        f.kinds().iter().any(|(k, d)| *k == Kind::Leaked
            && d.contains("leaked")
            && d.contains("https://github.com/acme/app/blob/main/.env")),
        "{:?}",
        f.kinds()
    );
}

#[test]
fn folding_the_log_again_makes_no_notification_twice() {
    let f = fixture();
    let expires = ts("2026-03-01T12:00:00Z");
    let token = created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build();
    let other = created(2, &hash(2)).build();
    let leak = revoked_because(3, &other, &hash(2), RevokeReason::Leaked);
    let events = [token, other, leak];
    f.fold(&events);
    f.notifications.sweep(expires, false).expect("sweep");
    let made = f.notifications.store.len();
    assert_eq!(made, 2, "the expiry and the leak");
    f.notifications
        .projection
        .rebuild_from_scratch()
        .expect("rebuild");
    f.fold(&events);
    assert_eq!(f.notifications.due.len(), 3, "the index is whole again");
    let swept = f.notifications.sweep(expires, false).expect("sweep");
    assert_eq!(swept.told, 0);
    assert_eq!(f.notifications.store.len(), made);
}

#[test]
fn a_notification_is_queued_for_delivery_only_when_asked() {
    let f = fixture();
    let expires = ts("2026-03-01T12:00:00Z");
    f.fold(&[created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build()]);
    f.notifications
        .sweep(expires - SignedDuration::from_hours(24), true)
        .expect("sweep");
    assert_eq!(f.notifications.store.outbox.len(), 1);
    f.notifications.sweep(expires, false).expect("sweep");
    assert_eq!(f.notifications.store.outbox.len(), 1);
}

#[test]
fn notification_ids_are_the_same_for_the_same_token_and_stage_and_sort_by_time() {
    let token = ulid::Ulid::new();
    let at = ts("2026-03-01T12:00:00Z");
    assert_eq!(
        notification_id(token, &[0], at),
        notification_id(token, &[0], at)
    );
    assert_ne!(
        notification_id(token, &[0], at),
        notification_id(token, &[1], at)
    );
    assert!(
        notification_id(token, &[2], at)
            < notification_id(token, &[0], at + SignedDuration::from_millis(1))
    );
}

/// A rotation at `at` whose old token stops at `expires_at`.
fn rotated(
    seq: u64,
    of: &EventEnvelope,
    h: &SecretHash,
    at: Timestamp,
    expires_at: Timestamp,
) -> EventEnvelope {
    EventEnvelope {
        at,
        event: TokenEvent::TokenRotated(enspace_core::events::TokenRotated {
            user_id: "alice".into(),
            secret_hash: h.to_hex(),
            replaced_by: ulid::Ulid::new(),
            expires_at,
            self_rotated: false,
        }),
        ..revoked(seq, of.token_id, h)
    }
}

#[test]
fn a_rotation_moves_the_expiry_stages_to_the_earlier_end_and_never_later() {
    let f = fixture();
    let expires = ts("2026-03-01T12:00:00Z");
    let token = created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build();
    f.fold(std::slice::from_ref(&token));
    let sooner = ts("2026-02-10T12:00:00Z");
    let rotated_at = sooner - SignedDuration::from_hours(10 * 24);
    f.fold(&[rotated(2, &token, &hash(1), rotated_at, sooner)]);
    let due = f.due_ms(token.token_id);
    assert_eq!(due.len(), 3);
    assert_eq!(due[2], due::key_ms(sooner), "expired at the new end");
    // Nothing falls due at the old times any more.
    let n = &f.notifications;
    assert_eq!(
        n.sweep(sooner - SignedDuration::from_hours(24 * 7), false)
            .expect("sweep")
            .told,
        1
    );
    assert_eq!(
        n.sweep(sooner, false).expect("sweep").told,
        1,
        "the 1-day stage overtaken"
    );
    assert!(n.due.is_empty());
    let told = f.kinds();
    assert_eq!(told[0].0, Kind::ExpiringSoon);
    assert_eq!(told[1].0, Kind::Expired);
    assert!(
        told.iter()
            .all(|(_, d)| d.contains("old token") && d.contains("2026-02-10")),
        "{told:?}"
    );
}

#[test]
fn a_rotation_with_an_hours_overlap_tells_no_expiry_and_nothing_dated_before_it() {
    let f = fixture();
    let expires = ts("2026-03-01T12:00:00Z");
    let token = created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build();
    f.fold(std::slice::from_ref(&token));
    let rotated_at = ts("2026-02-10T12:00:00Z");
    let stops = rotated_at + SignedDuration::from_hours(1);
    let rotation = rotated(2, &token, &hash(1), rotated_at, stops);
    f.fold(std::slice::from_ref(&rotation));
    assert_eq!(f.due_ms(token.token_id).len(), 1);
    let n = &f.notifications;
    assert_eq!(n.sweep(rotated_at, false).expect("sweep").told, 0);
    assert_eq!(
        n.sweep(stops - SignedDuration::from_millis(1), false)
            .expect("sweep")
            .told,
        0
    );
    assert_eq!(n.sweep(stops, false).expect("sweep").told, 1);
    let list = n.store.list("alice", 100).expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].kind, Kind::Expired);
    assert_eq!(list[0].at, stops);
    let TokenEvent::TokenRotated(r) = &rotation.event else {
        unreachable!()
    };
    assert!(
        list[0].detail.contains("old token")
            && list[0].detail.contains(&r.replaced_by.to_string())
            && !list[0].detail.contains("expires in"),
        "{}",
        list[0].detail
    );
}

#[test]
fn a_rotation_without_overlap_tells_nothing() {
    let f = fixture();
    let expires = ts("2026-03-01T12:00:00Z");
    let token = created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build();
    f.fold(std::slice::from_ref(&token));
    let rotated_at = ts("2026-02-10T12:00:00Z");
    f.fold(&[rotated(2, &token, &hash(1), rotated_at, rotated_at)]);
    assert!(f.due_ms(token.token_id).is_empty());
    let n = &f.notifications;
    assert_eq!(n.sweep(expires, false).expect("sweep").told, 0);
}

#[test]
fn a_self_rotation_is_told_once_even_when_folded_again_and_an_owner_s_rotation_is_not() {
    let f = fixture();
    let machine = created(1, &hash(1)).build();
    let other = created(2, &hash(2)).build();
    let at = ts("2026-03-01T12:00:00Z");
    let mut by_itself = rotated(
        3,
        &machine,
        &hash(1),
        at,
        at + SignedDuration::from_hours(1),
    );
    if let TokenEvent::TokenRotated(r) = &mut by_itself.event {
        r.self_rotated = true;
    }
    let by_owner = rotated(4, &other, &hash(2), at, at);
    let log = [machine.clone(), other, by_itself, by_owner];
    f.fold(&log);
    let told = f.kinds();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, Kind::TokenSelfRotated);
    assert!(told[0].1.contains("rotated itself"), "{told:?}");
    assert!(told[0].1.contains("2026-03-01T13:00:00Z"), "{told:?}");
    let listed = f.notifications.store.list("alice", 10).expect("list");
    assert_eq!(listed[0].token_id, machine.token_id);
    // Folded again from scratch: made once.
    f.notifications
        .projection
        .rebuild_from_scratch()
        .expect("rebuild");
    f.fold(&log);
    assert_eq!(f.kinds().len(), 1);
}

/// Folds `log` both ways the fold meets it: one event at a time, each just
/// after the token projections folded it, and all at once with the
/// projections already at the end of the log (a catch-up after a restart).
fn both_ways(log: &[EventEnvelope]) -> [Fixture; 2] {
    let live = fixture();
    for e in log {
        live.fold(std::slice::from_ref(e));
    }
    let catch_up = fixture();
    catch_up.tokens.apply(log).expect("projections");
    {
        let _one = catch_up.notifications.projection.lock().expect("lock");
        catch_up
            .notifications
            .projection
            .fold(log, &catch_up.tokens, false)
            .expect("fold");
    }
    [live, catch_up]
}

fn with_reason(mut e: EventEnvelope, reason: RevokeReason) -> EventEnvelope {
    if let TokenEvent::TokenRevoked(r) = &mut e.event {
        r.reason = reason;
    }
    e
}

#[test]
fn a_second_creation_of_an_id_or_of_a_hash_puts_no_expiry_stages() {
    let expires = ts("2026-03-01T12:00:00Z");
    let made = month_before(expires);
    let token = created(1, &hash(1)).at(made).build();
    let log = [
        token.clone(),
        revoked(2, token.token_id, &hash(1)),
        // The same id and hash again, now with an expiry: the first
        // creation won, and the token stays revoked.
        created(3, &hash(1))
            .token_id(token.token_id)
            .expires_at(expires)
            .at(made)
            .build(),
        // Another id with a hash already held.
        created(4, &hash(1)).expires_at(expires).at(made).build(),
    ];
    for f in both_ways(&log) {
        assert!(f.notifications.due.is_empty());
        assert_eq!(
            f.notifications.sweep(expires, false).expect("sweep").told,
            0
        );
        assert!(f.kinds().is_empty(), "{:?}", f.kinds());
    }
}

#[test]
fn a_revocation_of_a_revoked_token_or_naming_another_token_s_hash_tells_nothing() {
    let token = created(1, &hash(1)).build();
    let other = created(2, &hash(2)).build();
    let log = [
        token.clone(),
        other.clone(),
        // The owner revoked it: nothing to tell; a later report of a leak
        // revokes nothing more.
        revoked(3, token.token_id, &hash(1)),
        revoked_because(4, &token, &hash(1), RevokeReason::Leaked),
        // Another token's hash: `other` is not revoked.
        with_reason(revoked(5, other.token_id, &hash(1)), RevokeReason::Admin),
    ];
    for f in both_ways(&log) {
        assert!(f.kinds().is_empty(), "{:?}", f.kinds());
    }
}

#[test]
fn a_rotation_of_a_revoked_token_tells_nothing() {
    let token = created(1, &hash(1)).build();
    let at = ts("2026-03-01T12:00:00Z");
    let by_owner = rotated(2, &token, &hash(1), at, at + SignedDuration::from_hours(1));
    let mut by_itself = rotated(4, &token, &hash(1), at, at);
    if let (TokenEvent::TokenRotated(owner), TokenEvent::TokenRotated(itself)) =
        (&by_owner.event, &mut by_itself.event)
    {
        // The same successor, as a replayed rotation would name.
        itself.replaced_by = owner.replaced_by;
        itself.self_rotated = true;
    }
    let log = [
        token.clone(),
        by_owner,
        revoked(3, token.token_id, &hash(1)),
        by_itself,
    ];
    for f in both_ways(&log) {
        assert!(f.kinds().is_empty(), "{:?}", f.kinds());
        assert!(f.notifications.due.is_empty());
    }
}

#[test]
fn a_second_rotation_moves_the_expiry_stages_to_its_earlier_end() {
    let expires = ts("2026-03-01T12:00:00Z");
    let token = created(1, &hash(1))
        .expires_at(expires)
        .at(month_before(expires))
        .build();
    let first_end = ts("2026-02-20T12:00:00Z");
    let second_end = ts("2026-02-10T12:00:00Z");
    let at = second_end - SignedDuration::from_hours(10 * 24);
    let log = [
        token.clone(),
        rotated(2, &token, &hash(1), at, first_end),
        // A second successor, ending it sooner: the token stops then.
        rotated(3, &token, &hash(1), at, second_end),
    ];
    for f in both_ways(&log) {
        let view = f
            .tokens
            .token(token.token_id)
            .expect("read")
            .expect("token");
        assert_eq!(view.expires_at, Some(second_end));
        let due = f.due_ms(token.token_id);
        assert_eq!(due.last(), Some(&due::key_ms(second_end)), "{due:?}");
        let told = f.notifications.sweep(second_end, false).expect("sweep");
        assert_eq!(told.told, 1);
        assert!(f.notifications.due.is_empty());
        let kinds = f.kinds();
        assert_eq!(kinds[0].0, Kind::Expired, "{kinds:?}");
        // Told with the token's successor: its first rotation's.
        assert!(
            kinds[0]
                .1
                .contains(&view.replaced_by.expect("linked").to_string()),
            "{kinds:?}"
        );
    }
}
