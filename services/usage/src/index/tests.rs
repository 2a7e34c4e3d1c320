use super::*;
use enspace_core::Scope;

fn index() -> RequestIndex {
    let db = sled::Config::new()
        .temporary(true)
        .open()
        .expect("temp sled");
    let last_used = db.open_tree("token_last_used").expect("tree");
    RequestIndex::open(&db, last_used).expect("index")
}

fn record(token: Ulid, at_ms: i64, status: u16) -> RequestRecord {
    RequestRecord {
        id: Ulid::new(),
        token_id: token,
        user_id: "alice".into(),
        at: Timestamp::from_millisecond(at_ms).expect("ts"),
        node: "node-1".into(),
        method: "GET".into(),
        path: "/api/v1/workspaces/acme/records".into(),
        path_truncated: false,
        workspace: Some("acme".into()),
        status,
        duration_ms: 0.125,
        client_ip: "127.0.0.1".into(),
        user_agent: Some("test".into()),
    }
}

const T0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS as i64;

#[test]
fn a_record_round_trips_and_is_indexed_once() {
    let idx = index();
    let token = Ulid::new();
    let r = record(token, T0 + 5, 200);
    let cutoff = Timestamp::UNIX_EPOCH;
    let first = idx.ingest(&[r.clone(), r.clone()], cutoff).expect("ingest");
    assert_eq!((first.indexed, first.duplicates), (1, 1));
    let again = idx.ingest(std::slice::from_ref(&r), cutoff).expect("again");
    assert_eq!((again.indexed, again.duplicates), (0, 1));
    let (got, next) = idx.query(token, 0, Upper::To(u64::MAX), 10).expect("query");
    assert_eq!(got, vec![r]);
    assert_eq!(next, None);
    let buckets = idx
        .stats(token, T0 as u64, T0 as u64 + HOUR_MS, HOUR_MS)
        .expect("stats");
    assert_eq!(buckets[0].counts.total, 1, "counted once");
}

#[test]
fn paging_is_newest_first_and_exact() {
    let idx = index();
    let token = Ulid::new();
    let records: Vec<_> = (0..25).map(|i| record(token, T0 + i / 3, 200)).collect();
    idx.ingest(&records, Timestamp::UNIX_EPOCH).expect("ingest");
    let mut seen = Vec::new();
    let mut upper = Upper::To(u64::MAX);
    loop {
        let (page, next) = idx.query(token, 0, upper, 4).expect("query");
        seen.extend(page);
        match next {
            Some(p) => upper = Upper::Before(p),
            None => break,
        }
    }
    let mut want = records.clone();
    want.sort_by_key(|r| std::cmp::Reverse((r.at, r.id)));
    assert_eq!(seen, want);
}

#[test]
fn stats_split_by_class_and_respect_partial_edges() {
    let idx = index();
    let token = Ulid::new();
    let h = HOUR_MS as i64;
    let records = vec![
        record(token, T0 + 10, 200),
        record(token, T0 + h / 2, 404),
        record(token, T0 + h + 1, 503),
        record(token, T0 + 2 * h + 7, 301),
        record(Ulid::new(), T0 + 11, 200),
    ];
    idx.ingest(&records, Timestamp::UNIX_EPOCH).expect("ingest");
    let t0 = T0 as u64;
    let b = idx
        .stats(token, t0, t0 + 3 * HOUR_MS, HOUR_MS)
        .expect("stats");
    let totals: Vec<_> = b.iter().map(|b| b.counts).collect();
    assert_eq!(
        totals,
        [
            Counts {
                total: 2,
                success: 1,
                client_error: 1,
                server_error: 0
            },
            Counts {
                total: 1,
                success: 0,
                client_error: 0,
                server_error: 1
            },
            Counts {
                total: 1,
                success: 1,
                client_error: 0,
                server_error: 0
            },
        ]
    );
    // A window starting mid-hour counts only what it covers.
    let b = idx
        .stats(token, t0 + 11, t0 + 2 * HOUR_MS, DAY_MS)
        .expect("stats");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].start_ms, t0 - t0 % DAY_MS);
    assert_eq!(b[0].counts.total, 2);
}

#[test]
fn the_sweep_deletes_records_and_counts_before_the_cutoff() {
    let idx = index();
    let (a, b) = (Ulid::new(), Ulid::new());
    let h = HOUR_MS as i64;
    idx.ingest(
        &[
            record(a, T0, 200),
            record(a, T0 + 2 * h, 200),
            record(b, T0 + 1, 200),
            record(b, T0 + 3 * h, 200),
        ],
        Timestamp::UNIX_EPOCH,
    )
    .expect("ingest");
    let cutoff = Timestamp::from_millisecond(T0 + h + 5).expect("ts");
    assert_eq!(idx.sweep(cutoff).expect("sweep"), 2);
    assert_eq!(idx.count(a).expect("count"), 1);
    assert_eq!(idx.count(b).expect("count"), 1);
    let stats = idx
        .stats(a, T0 as u64, T0 as u64 + 4 * HOUR_MS, HOUR_MS)
        .expect("stats");
    assert_eq!(stats.iter().map(|b| b.counts.total).sum::<u64>(), 1);
    // Records arriving already older than the retention are not indexed.
    let late = idx.ingest(&[record(a, T0, 200)], cutoff).expect("ingest");
    assert_eq!(late.expired, 1);
    assert_eq!(idx.count(a).expect("count"), 1);
}

#[test]
fn hourly_counts_are_exact_across_reopening_folding_and_redelivery() {
    let idx = index();
    let token = Ulid::new();
    let t0 = T0 as u64;
    let total = |idx: &RequestIndex| {
        idx.stats(token, t0, t0 + HOUR_MS, HOUR_MS).expect("stats")[0]
            .counts
            .total
    };
    // The counts' entries (the insights' have a key one byte longer).
    let journal = |idx: &RequestIndex| {
        idx.tree
            .range(journal_key(0)..=journal_key(u64::MAX))
            .filter(|item| item.as_ref().is_ok_and(|(key, _)| key.len() == 24))
            .count()
    };
    let mut sent = Vec::new();
    for i in 0..3 {
        let r = record(token, T0 + i, 200);
        idx.ingest(std::slice::from_ref(&r), Timestamp::UNIX_EPOCH)
            .expect("ingest");
        sent.push(r);
    }
    assert_eq!(journal(&idx), 3, "journaled, not folded yet");
    // A restart reads the journal back.
    let idx = RequestIndex::open(&idx.db, idx.last_used.clone()).expect("reopen");
    assert_eq!(total(&idx), 3);
    for i in 3..(3 + counts::FOLD_AFTER_ENTRIES as i64) {
        let r = record(token, T0 + i, 404);
        idx.ingest(std::slice::from_ref(&r), Timestamp::UNIX_EPOCH)
            .expect("ingest");
        sent.push(r);
    }
    assert!(journal(&idx) < counts::FOLD_AFTER_ENTRIES, "folded");
    assert_eq!(total(&idx), sent.len() as u64);
    // Every record again, as a redelivery: nothing is counted twice.
    let again = idx.ingest(&sent, Timestamp::UNIX_EPOCH).expect("again");
    assert_eq!(again.duplicates, sent.len());
    let idx = RequestIndex::open(&idx.db, idx.last_used.clone()).expect("reopen");
    assert_eq!(total(&idx), sent.len() as u64);
    assert_eq!(
        idx.stats(token, t0, t0 + HOUR_MS, HOUR_MS).expect("stats")[0]
            .counts
            .client_error,
        counts::FOLD_AFTER_ENTRIES as u64
    );
}

#[test]
fn the_last_use_is_the_newest_record_and_survives_the_sweep() {
    let idx = index();
    let token = Ulid::new();
    let ms = |t: Option<Timestamp>| t.map(|t| t.as_millisecond());
    assert_eq!(idx.last_used(token).expect("last used"), None);
    idx.ingest(&[record(token, T0 + 5, 200)], Timestamp::UNIX_EPOCH)
        .expect("ingest");
    // Within the minute the tree is not rewritten; the records answer.
    idx.ingest(&[record(token, T0 + 30_000, 500)], Timestamp::UNIX_EPOCH)
        .expect("ingest");
    assert_eq!(
        ms(idx.last_used(token).expect("last used")),
        Some(T0 + 30_000)
    );
    let cutoff = Timestamp::from_millisecond(T0 + HOUR_MS as i64 * 2).expect("ts");
    assert_eq!(idx.sweep(cutoff).expect("sweep"), 2);
    assert_eq!(idx.count(token).expect("count"), 0);
    assert_eq!(
        ms(idx.last_used(token).expect("last used")),
        Some(T0 + 30_000)
    );
}

fn call(token: Ulid, at_ms: i64, method: &str, ws: &str, status: u16, ip: &str) -> RequestRecord {
    RequestRecord {
        method: method.into(),
        workspace: Some(ws.into()),
        client_ip: ip.into(),
        ..record(token, at_ms, status)
    }
}

#[test]
fn insights_count_each_indexed_call_once_across_folding_reopening_and_redelivery() {
    let idx = index();
    let (token, other) = (Ulid::new(), Ulid::new());
    let mut sent = Vec::new();
    // Over three hours: reads allowed in acme, one delete and one read of
    // globex denied, a 401, from two IPs.
    for i in 0..(counts::FOLD_AFTER_ENTRIES as i64 + 5) {
        let at = T0 + i * 100_000;
        let r = call(
            token,
            at,
            "GET",
            "acme",
            200,
            if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" },
        );
        idx.ingest(std::slice::from_ref(&r), Timestamp::UNIX_EPOCH)
            .expect("ingest");
        sent.push(r);
    }
    let denied = [
        call(token, T0 + 10, "DELETE", "acme", 403, "10.0.0.3"),
        call(token, T0 + 20, "GET", "globex", 403, "10.0.0.3"),
        call(token, T0 + 30, "GET", "acme", 401, "10.0.0.3"),
        call(other, T0 + 40, "GET", "acme", 200, "10.0.0.9"),
    ];
    idx.ingest(&denied, Timestamp::UNIX_EPOCH).expect("ingest");
    sent.extend(denied);
    let check = |idx: &RequestIndex| {
        let s = idx.insights(token, T0 as u64).expect("insights");
        let reads = counts::FOLD_AFTER_ENTRIES as u64 + 5;
        assert_eq!(s.scope(Scope::Read).allowed, reads);
        assert_eq!(s.scope(Scope::Read).denied, 1);
        assert_eq!(s.scope(Scope::Delete).denied, 1);
        assert_eq!(s.scope(Scope::Write), insights::Tally::default());
        assert_eq!(s.workspaces["acme"].allowed, reads);
        assert_eq!(s.workspaces["acme"].denied, 1);
        assert_eq!(s.workspaces["globex"].denied, 1);
        assert_eq!(s.invalid_token, 1);
        assert_eq!(s.ips["10.0.0.3"].count, 3);
        assert_eq!(s.ips["10.0.0.1"].first_ms, T0 as u64);
        assert_eq!(s.ips.len(), 3, "not the other token's IP");
        assert_eq!(
            s.scope(Scope::Read).last_allowed_ms,
            (T0 + (reads as i64 - 1) * 100_000) as u64
        );
    };
    check(&idx);
    // Redelivered: nothing counted twice, before or after a reopen.
    idx.ingest(&sent, Timestamp::UNIX_EPOCH).expect("again");
    check(&idx);
    let idx = RequestIndex::open(&idx.db, idx.last_used.clone()).expect("reopen");
    check(&idx);
    idx.ingest(&sent, Timestamp::UNIX_EPOCH).expect("again");
    idx.lock_and_fold();
    check(&idx);
}

#[test]
fn insights_start_at_the_cutoff_to_the_millisecond_and_the_sweep_removes_ended_hours() {
    let idx = index();
    let token = Ulid::new();
    let at = |h: i64, ms: i64| T0 + h * HOUR_MS as i64 + ms;
    let records = [
        call(token, at(0, 5), "GET", "acme", 200, "10.0.0.1"),
        call(token, at(1, 1_000), "POST", "acme", 201, "10.0.0.1"),
        call(token, at(1, 2_000), "DELETE", "acme", 204, "10.0.0.2"),
        call(token, at(2, 0), "GET", "acme", 200, "10.0.0.2"),
    ];
    idx.ingest(&records, Timestamp::UNIX_EPOCH).expect("ingest");
    let allowed = |idx: &RequestIndex, cutoff: i64| {
        let s = idx.insights(token, cutoff as u64).expect("insights");
        Scope::ALL.map(|scope| s.scope(scope).allowed)
    };
    assert_eq!(allowed(&idx, at(0, 0)), [2, 1, 1]);
    assert_eq!(allowed(&idx, at(0, 6)), [1, 1, 1]);
    assert_eq!(allowed(&idx, at(1, 1_000)), [1, 1, 1]);
    assert_eq!(allowed(&idx, at(1, 1_001)), [1, 0, 1]);
    assert_eq!(allowed(&idx, at(2, 0)), [1, 0, 0]);
    assert_eq!(allowed(&idx, at(2, 1)), [0, 0, 0]);
    let cutoff = Timestamp::from_millisecond(at(1, 1_500)).expect("ts");
    idx.sweep(cutoff).expect("sweep");
    let stored = |idx: &RequestIndex| {
        idx.insights
            .as_ref()
            .expect("kept")
            .scan_prefix([&token.to_bytes()[..], &[insights::HOUR]].concat())
            .count()
    };
    assert_eq!(
        stored(&idx),
        2,
        "hour 0 ended before the cutoff, hour 1 did not"
    );
    assert_eq!(allowed(&idx, at(1, 1_500)), [1, 0, 1]);
    let s = idx.insights(token, at(1, 1_500) as u64).expect("insights");
    assert_eq!(s.ips.len(), 1);
    assert_eq!(s.ips["10.0.0.2"].count, 2);
}

#[test]
fn an_index_from_before_insights_builds_them_once_at_open() {
    let idx = index().without_insights();
    let token = Ulid::new();
    idx.ingest(
        &[
            call(token, T0, "GET", "acme", 200, "10.0.0.1"),
            call(token, T0 + 1, "PUT", "acme", 403, "10.0.0.1"),
        ],
        Timestamp::UNIX_EPOCH,
    )
    .expect("ingest");
    assert_eq!(
        idx.insights(token, 0).expect("none kept"),
        insights::Summary::default()
    );
    let tree = idx.db.open_tree(insights::TREE).expect("tree");
    tree.remove(insights::BUILT_KEY)
        .expect("as before insights");
    let idx = RequestIndex::open(&idx.db, idx.last_used.clone()).expect("reopen");
    let s = idx.insights(token, 0).expect("insights");
    assert_eq!(s.scope(Scope::Read).allowed, 1);
    assert_eq!(s.scope(Scope::Write).denied, 1);
    // Built once: opening again counts nothing twice.
    let idx = RequestIndex::open(&idx.db, idx.last_used.clone()).expect("reopen");
    assert_eq!(idx.insights(token, 0).expect("insights"), s);
}

/// Over days, hours and the cutoff's own hour, journaled or folded, before
/// and after a sweep: the insights are those of the records at or after the
/// cutoff, counted one by one.
#[test]
fn insights_match_the_records_from_any_cutoff_over_days() {
    let idx = index();
    let token = Ulid::new();
    let day0 = T0 - T0 % DAY_MS as i64;
    let methods = ["GET", "POST", "DELETE", "PUT"];
    let statuses = [200, 403, 404, 401, 201];
    let records: Vec<RequestRecord> = (0..400i64)
        .map(|i| {
            let at = day0 + i * 1_111_111; // about 5 days
            call(
                token,
                at,
                methods[(i % 4) as usize],
                if i % 7 == 0 { "globex" } else { "acme" },
                statuses[(i % 5) as usize],
                &format!("10.0.0.{}", i % 9),
            )
        })
        .collect();
    let brute = |cutoff: i64| {
        let mut hour = HourInsight::default();
        for r in records.iter().filter(|r| r.at.as_millisecond() >= cutoff) {
            hour.add_record(r, r.at.as_millisecond() as u64);
        }
        let mut s = insights::Summary::default();
        s.add_hour(&hour);
        s
    };
    let check = |idx: &RequestIndex, from: i64| {
        for cutoff in (from..day0 + 6 * DAY_MS as i64).step_by(2_345_678) {
            assert_eq!(
                idx.insights(token, cutoff as u64).expect("insights"),
                brute(cutoff),
                "cutoff {}",
                cutoff - day0
            );
        }
    };
    for chunk in records.chunks(7) {
        idx.ingest(chunk, Timestamp::UNIX_EPOCH).expect("ingest");
    }
    check(&idx, day0);
    idx.lock_and_fold();
    check(&idx, day0);
    let swept = day0 + 2 * DAY_MS as i64 + 5_000_000;
    idx.sweep(Timestamp::from_millisecond(swept).expect("ts"))
        .expect("sweep");
    check(&idx, swept);
}

/// A record whose path was cut keeps its flag (layout version 2); one whose
/// path was not is written as version 1, as before, and reads as not cut;
/// both count in stats and insights.
#[test]
fn a_cut_path_keeps_its_flag_and_an_uncut_record_keeps_the_first_layout() {
    let idx = index();
    let token = Ulid::new();
    let plain = record(token, T0 + 10, 200);
    let cut = RequestRecord {
        path: "/".repeat(enspace_core::record_bounds::MAX_PATH_BYTES),
        path_truncated: true,
        ..record(token, T0 + 20, 401)
    };
    idx.ingest(&[plain.clone(), cut.clone()], Timestamp::UNIX_EPOCH)
        .expect("ingest");
    let (got, _) = idx.query(token, 0, Upper::To(u64::MAX), 10).expect("query");
    assert_eq!(got, vec![cut.clone(), plain.clone()]);
    let versions: Vec<u8> = [&plain, &cut]
        .iter()
        .map(|r| {
            let key = record_key(token, key_ms(r.at), r.id);
            let value = idx.tree.get(key).expect("get").expect("stored");
            // A fixarray marker, then the version as a positive fixint.
            value[1]
        })
        .collect();
    assert_eq!(versions, [1, 2]);
    let buckets = idx
        .stats(token, T0 as u64, T0 as u64 + HOUR_MS, HOUR_MS)
        .expect("stats");
    assert_eq!(buckets[0].counts.total, 2);
    // A cutoff inside the hour reads the hour's records one by one.
    let summary = idx.insights(token, T0 as u64 + 1).expect("insights");
    assert_eq!(summary.scope(Scope::Read).allowed, 1);
}

#[test]
fn a_record_delivered_again_is_skipped_after_a_reopen_and_out_of_order() {
    let idx = index();
    let token = Ulid::new();
    let (early, middle, late) = (
        record(token, T0 + 1, 200),
        record(token, T0 + 2, 200),
        record(token, T0 + 3, 200),
    );
    let cutoff = Timestamp::UNIX_EPOCH;
    let first = idx
        .ingest(&[middle.clone(), late.clone()], cutoff)
        .expect("ingest");
    assert_eq!(first.indexed, 2);
    // Older than the newest indexed: looked up, new, indexed.
    let out_of_order = idx
        .ingest(std::slice::from_ref(&early), cutoff)
        .expect("early");
    assert_eq!((out_of_order.indexed, out_of_order.duplicates), (1, 0));
    // Reopened (nothing known in memory): every copy is still found.
    let idx = RequestIndex::open(&idx.db, idx.last_used.clone()).expect("reopen");
    let newer = record(token, T0 + 4, 200);
    let again = idx
        .ingest(&[early, middle, late, newer], cutoff)
        .expect("again");
    assert_eq!((again.indexed, again.duplicates), (1, 3));
}
