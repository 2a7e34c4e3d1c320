use std::collections::HashMap;

use jiff::Timestamp;

use super::*;
use crate::index::Counts;
use crate::insights::{Seen, Tally};

fn record(token: Ulid, at_ms: i64) -> RequestRecord {
    RequestRecord {
        id: Ulid::new(),
        token_id: token,
        user_id: "alice".into(),
        at: Timestamp::from_millisecond(at_ms).expect("ts"),
        node: "node-1".into(),
        method: "DELETE".into(),
        path: "/api/v1/workspaces/acme/records/é".into(),
        path_truncated: true,
        workspace: Some("acme".into()),
        status: 403,
        duration_ms: 0.125,
        client_ip: "2001:db8::1".into(),
        user_agent: None,
    }
}

fn summary() -> Summary {
    let tally = Tally {
        allowed: 3,
        denied: 1,
        last_allowed_ms: 7,
        last_denied_ms: 9,
    };
    Summary {
        scopes: [tally, Tally::default(), tally],
        workspaces: HashMap::from([("acme".to_owned(), tally)]),
        other_workspaces: tally,
        invalid_token: 2,
        rate_limited: 5,
        ips: HashMap::from([(
            "10.0.0.1".to_owned(),
            Seen {
                count: 4,
                allowed: 3,
                first_ms: 1,
                last_ms: 9,
            },
        )]),
        other_ip_calls: 11,
    }
}

fn bucket(start_ms: u64) -> Bucket {
    Bucket {
        start_ms,
        counts: Counts {
            total: 3,
            success: 1,
            client_error: 1,
            server_error: 1,
        },
    }
}

#[test]
fn every_query_and_every_answer_round_trips() {
    let token = Ulid::new();
    let queries = [
        Query::Page {
            token,
            from_ms: 1,
            upper: Upper::Before(Position {
                at_ms: 9,
                id: Ulid::new(),
            }),
            limit: 50,
        },
        Query::Page {
            token,
            from_ms: 0,
            upper: Upper::To(u64::MAX),
            limit: 0,
        },
        Query::Stats {
            token,
            from_ms: 1,
            to_ms: 2,
            bucket_ms: HOUR_MS,
        },
        Query::Insights {
            token,
            cutoff_ms: 5,
        },
        Query::Timeline(TimelineQuery {
            token,
            from_ms: 1,
            to_ms: 2,
            leak_ms: Some(1),
        }),
        Query::LastUsed {
            tokens: vec![token, Ulid::new()],
        },
    ];
    for query in queries {
        let bytes = encode_query(&query).expect("encode");
        assert_eq!(decode_query(&bytes), Ok(query));
    }
    let replies: [Reply; 7] = [
        Ok(Answer::Page(Page {
            records: vec![record(token, 1_790_000_000_123), record(token, 5)],
            next: Some(Position {
                at_ms: 5,
                id: Ulid::new(),
            }),
        })),
        Ok(Answer::Stats(Stats {
            buckets: vec![bucket(0), bucket(HOUR_MS)],
            dropped: 94,
        })),
        Ok(Answer::Insights(Box::new(summary()))),
        Ok(Answer::Timeline(Box::new(Timeline {
            days: vec![bucket(0)],
            summary: summary(),
            leak: Some(Summary::default()),
            dropped: 0,
        }))),
        Ok(Answer::LastUsed(vec![
            (token, Some(u64::MAX)),
            (token, None),
        ])),
        Err(Refusal::NotServed { partition: 3 }),
        Err(Refusal::Unreadable),
    ];
    for reply in replies {
        let bytes = encode_reply(&reply).expect("encode");
        assert_eq!(decode_reply(&bytes), Ok(reply));
    }
}

#[test]
fn hostile_or_undecodable_bytes_are_refused_as_unreadable() {
    let token = Ulid::new();
    let page = encode_query(&Query::Insights {
        token,
        cutoff_ms: 1,
    })
    .expect("encode");
    let other_shape = rmp_serde::to_vec_named(&Answer::LastUsed(Vec::new())).expect("encode");
    let not_a_ulid = rmp_serde::to_vec_named(&HashMap::from([(
        "Insights",
        HashMap::from([("token", "not-a-ulid")]),
    )]))
    .expect("encode");
    let hostile: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{\"Page\":{}}".to_vec(),
        vec![0xff; 64],
        // A map header claiming four billion entries, and nothing after it.
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        // An array header claiming four billion elements.
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        page[..page.len() - 1].to_vec(),
        other_shape,
        not_a_ulid,
    ];
    for bytes in &hostile {
        assert_eq!(decode_query(bytes), Err(Refusal::Unreadable), "{bytes:?}");
        assert_eq!(decode_reply(bytes), Err(BadReply::Unreadable), "{bytes:?}");
    }
}

#[test]
fn a_reply_larger_than_a_message_is_cut_and_put_back_together_in_order() {
    let bytes: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_be_bytes()).collect();
    let parts = split(&bytes, 4096).expect("split");
    assert!(parts.len() > 10);
    assert!(parts.iter().all(|p| p.len() <= 4096));
    let mut whole = Parts::default();
    let (last, rest) = parts.split_last().expect("parts");
    for part in rest {
        assert_eq!(whole.add(part), Ok(None));
    }
    assert_eq!(whole.add(last), Ok(Some(bytes)));

    let empty = split(&[], 4096).expect("split");
    assert_eq!(Parts::default().add(&empty[0]), Ok(Some(Vec::new())));
    assert!(split(&vec![0; 2 * 1024 * (MAX_PARTS as usize + 1)], 1).is_none());
}

#[test]
fn parts_out_of_order_truncated_or_claiming_too_many_are_refused() {
    let parts = split(&[7; 5000], 2048 + 1032).expect("split");
    assert_eq!(parts.len(), 3);
    let mut skipped = Parts::default();
    assert_eq!(
        skipped.add(&parts[1]),
        Err(BadReply::OutOfOrder {
            expected: 0,
            got: 1
        })
    );
    assert_eq!(Parts::default().add(&[0, 0, 0]), Err(BadReply::Truncated));
    let mut zero = parts[0].clone();
    zero[4..8].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(Parts::default().add(&zero), Err(BadReply::TooManyParts(0)));
    let mut many = parts[0].clone();
    many[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        Parts::default().add(&many),
        Err(BadReply::TooManyParts(u32::MAX))
    );
    let mut changed = Parts::default();
    assert_eq!(changed.add(&parts[0]), Ok(None));
    let mut other_count = parts[1].clone();
    other_count[4..8].copy_from_slice(&2u32.to_be_bytes());
    assert!(matches!(
        changed.add(&other_count),
        Err(BadReply::OutOfOrder { .. })
    ));
}

#[test]
fn a_query_out_of_bounds_or_over_several_partitions_is_told_apart() {
    let token = Ulid::new();
    let page = |limit| Query::Page {
        token,
        from_ms: 0,
        upper: Upper::To(1),
        limit,
    };
    assert_eq!(page(MAX_PAGE).check(), Ok(()));
    assert_eq!(page(MAX_PAGE + 1).check(), Err(Refusal::OutOfBounds));
    let hours = |hours: u64| Query::Stats {
        token,
        from_ms: 0,
        to_ms: hours * HOUR_MS,
        bucket_ms: HOUR_MS,
    };
    assert_eq!(hours(MAX_BUCKETS).check(), Ok(()));
    assert_eq!(hours(MAX_BUCKETS + 1).check(), Err(Refusal::OutOfBounds));
    let too_many = Query::LastUsed {
        tokens: vec![token; MAX_TOKENS + 1],
    };
    assert_eq!(too_many.check(), Err(Refusal::OutOfBounds));

    assert_eq!(page(1).partition(), Some(partition_of(&token)));
    let elsewhere = std::iter::repeat_with(Ulid::new)
        .find(|t| partition_of(t) != partition_of(&token))
        .expect("a token of another partition");
    assert_eq!(
        Query::LastUsed {
            tokens: vec![token, elsewhere]
        }
        .partition(),
        None
    );
    assert_eq!(Query::LastUsed { tokens: Vec::new() }.partition(), None);
}
