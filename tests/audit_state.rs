//! Auditors' questions about moments: `GET /v1/audit/state?at=` (every
//! token as it stood then, by the service's own fold), the same offline on
//! an export (`enspace audit state`), and `GET /v1/audit/changes` (what
//! happened between two moments), with hostile input.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::process::audit;
use crate::support::{TestApp, assert_problem, create_body};

const START: &str = "2026-03-01T10:00:00Z";

/// What happened, an hour apart from START: alice's A and bob's B created
/// (h0), A revoked (h1), B rotated with a day's overlap into C (h2); the
/// clock then stands at h3. Answers (A, B, C) ids.
async fn history(app: &TestApp) -> (String, String, String) {
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (a, _) = app.create_token(&alice, &create_body("alice's")).await;
    let (b, _) = app.create_token(&bob, &create_body("bob's")).await;
    let id = |t: &Value| t["id"].as_str().expect("id").to_owned();
    let (a, b) = (id(&a), id(&b));
    app.clock.advance(SignedDuration::from_hours(1));
    let revoked = app.delete(&alice, &format!("/v1/tokens/{a}")).await;
    assert_eq!(revoked.status(), 204);
    app.clock.advance(SignedDuration::from_hours(1));
    let rotated = app
        .post_json(
            &bob,
            &format!("/v1/tokens/{b}/rotate"),
            &json!({"overlap": "1d"}),
        )
        .await;
    assert_eq!(rotated.status(), 201);
    let c = rotated.json::<Value>().await.expect("json")["token"]["id"]
        .as_str()
        .expect("successor id")
        .to_owned();
    app.clock.advance(SignedDuration::from_hours(1));
    (a, b, c)
}

fn at(hours: f64) -> String {
    let start: Timestamp = START.parse().expect("ts");
    (start + SignedDuration::from_secs_f64(hours * 3600.0)).to_string()
}

/// `id → status` of the state's tokens.
fn statuses(state: &Value) -> Vec<(String, String)> {
    state["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().expect("id").to_owned(),
                t["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

async fn state(app: &TestApp, session: &str, query: &str) -> Value {
    app.get_ok(session, &format!("/v1/audit/state?{query}"))
        .await
}

#[tokio::test]
async fn the_state_at_a_moment_shows_every_token_as_it_stood_then() {
    let app = TestApp::spawn_at(START).await;
    let (a, b, c) = history(&app).await;
    let audra = app.login("audra").await;
    let s = |x: &str, st: &str| (x.to_owned(), st.to_owned());

    let before = state(&app, &audra, &format!("at={}", at(-0.5))).await;
    assert_eq!(before["tokens"], json!([]), "nothing existed before h0");
    let h0 = state(&app, &audra, &format!("at={}", at(0.5))).await;
    assert_eq!(
        sorted(statuses(&h0)),
        sorted(vec![s(&a, "active"), s(&b, "active")])
    );
    let first = &h0["tokens"].as_array().expect("tokens")[0];
    for field in [
        "user_id",
        "description",
        "scopes",
        "workspaces",
        "created_at",
        "expires_at",
    ] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    let h1 = state(&app, &audra, &format!("at={}", at(1.5))).await;
    assert_eq!(
        sorted(statuses(&h1)),
        sorted(vec![s(&a, "revoked"), s(&b, "active")])
    );
    let revoked = h1["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == a.as_str())
        .expect("A");
    assert_eq!(revoked["revoked_reason"], "user");
    let h2 = state(&app, &audra, &format!("at={}", at(2.5))).await;
    assert_eq!(
        sorted(statuses(&h2)),
        sorted(vec![s(&a, "revoked"), s(&b, "rotated"), s(&c, "active")])
    );
    let old = h2["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == b.as_str())
        .expect("B");
    assert_eq!(old["replaced_by"], c.as_str());
    assert_eq!(old["expires_at"], at(26.0), "the end of the day's overlap");
    // Before the rotation, B still had its own three-month expiry.
    let b_at_h1 = h1["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == b.as_str())
        .expect("B");
    assert_eq!(b_at_h1["expires_at"], "2026-06-01T10:00:00Z");
    let after_overlap = state(&app, &audra, &format!("at={}", at(27.0))).await;
    assert_eq!(
        sorted(statuses(&after_overlap)),
        sorted(vec![s(&a, "revoked"), s(&b, "expired"), s(&c, "active")])
    );

    // Filters: by user, by workspace, both.
    let bobs = state(&app, &audra, &format!("at={}&user=bob", at(2.5))).await;
    assert_eq!(
        sorted(statuses(&bobs)),
        sorted(vec![s(&b, "rotated"), s(&c, "active")])
    );
    let acme = state(
        &app,
        &audra,
        &format!("at={}&workspace=acme&user=alice", at(2.5)),
    )
    .await;
    assert_eq!(statuses(&acme), vec![s(&a, "revoked")]);
    let globex = state(&app, &audra, &format!("at={}&workspace=globex", at(2.5))).await;
    assert_eq!(globex["tokens"], json!([]));

    // Pages: one token at a time, by id, until `next_after` is null.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = state(&app, &audra, &format!("at={}&limit=1{after}", at(2.5))).await;
        seen.extend(statuses(&page));
        match page["next_after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, sorted(statuses(&h2)), "every token once, in id order");
}

#[tokio::test]
async fn the_offline_state_of_an_export_is_what_the_api_answers() {
    let app = TestApp::spawn_at(START).await;
    history(&app).await;
    let audra = app.login("audra").await;
    let mut answers = Vec::new();
    for (hours, filter) in [
        (0.5, ""),
        (1.5, ""),
        (2.5, ""),
        (27.0, ""),
        (2.5, "&workspace=acme&user=bob"),
    ] {
        answers.push(state(&app, &audra, &format!("at={}{filter}", at(hours))).await);
    }
    let key: Value = app.event_key().await;
    let key = key["key"].as_str().expect("key").to_owned();
    let (data, _) = app.stop().await;
    let (code, export) = audit(&["export", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{export}");
    let file = data.path().join("export.ndjson");
    std::fs::write(&file, &export).expect("write");
    let file = file.to_str().expect("utf-8");
    for (answer, (hours, filter)) in answers.iter().zip([
        (0.5, vec![]),
        (1.5, vec![]),
        (2.5, vec![]),
        (27.0, vec![]),
        (2.5, vec!["--workspace", "acme", "--user", "bob"]),
    ]) {
        let moment = at(hours);
        let mut args = vec![
            "state",
            "--export",
            file,
            "--event-key",
            &key,
            "--at",
            &moment,
        ];
        args.extend(filter);
        let (code, out) = audit(&args);
        assert_eq!(code, 0, "{out}");
        let offline: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(offline["tokens"], answer["tokens"], "at {moment}");
        assert_eq!(offline["at"], answer["at"]);
    }

    // A tampered export is refused, not folded.
    let tampered = export.replacen("alice's", "mallory", 1);
    std::fs::write(file, tampered).expect("write");
    let moment = at(2.5);
    let (code, out) = audit(&[
        "state",
        "--export",
        file,
        "--event-key",
        &key,
        "--at",
        &moment,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.trim().is_empty(),
        "no state from a tampered export: {out}"
    );
}

#[tokio::test]
async fn the_changes_between_two_moments_are_grouped_by_what_they_did() {
    let app = TestApp::spawn_at(START).await;
    let (a, b, c) = history(&app).await;
    let audra = app.login("audra").await;
    let all = app
        .get_ok(
            &audra,
            &format!("/v1/audit/changes?from={}&to={}", at(0.0), at(3.0)),
        )
        .await;
    let ids = |group: &str| -> Vec<String> {
        all[group]
            .as_array()
            .unwrap_or_else(|| panic!("{group} in {all}"))
            .iter()
            .map(|e| e["token_id"].as_str().expect("token id").to_owned())
            .collect()
    };
    let mut created = ids("created");
    created.sort();
    let mut want = vec![a.clone(), b.clone(), c.clone()];
    want.sort();
    assert_eq!(created, want);
    assert_eq!(
        ids("revoked"),
        vec![a.clone()],
        "a rotation with an overlap revokes nothing"
    );
    assert_eq!(ids("rotated"), vec![b.clone()]);
    assert_eq!(all["policies"], json!([]));
    assert_eq!(all["next_after"], Value::Null);
    for event in all["created"].as_array().expect("created") {
        assert!(event["signature"].as_str().is_some_and(|s| !s.is_empty()));
    }

    // Only what happened in the window: the revocation hour alone.
    let h1 = app
        .get_ok(
            &audra,
            &format!("/v1/audit/changes?from={}&to={}", at(0.5), at(1.5)),
        )
        .await;
    assert_eq!(h1["created"], json!([]));
    assert_eq!(h1["revoked"].as_array().expect("revoked").len(), 1);
    assert_eq!(h1["revoked"][0]["token_id"], a.as_str());

    // Pages of one event, in seq order, add up to the whole.
    let mut seqs = Vec::new();
    let mut after = String::new();
    loop {
        let page = app
            .get_ok(
                &audra,
                &format!(
                    "/v1/audit/changes?from={}&to={}&limit=1{after}",
                    at(0.0),
                    at(3.0)
                ),
            )
            .await;
        for group in ["created", "revoked", "rotated", "policies"] {
            for e in page[group].as_array().expect("group") {
                seqs.push(e["seq"].as_u64().expect("seq"));
            }
        }
        match page["next_after"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let total = ["created", "revoked", "rotated", "policies"]
        .iter()
        .map(|g| all[g].as_array().expect("group").len())
        .sum::<usize>();
    assert_eq!(seqs.len(), total);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test]
async fn only_auditors_ask_about_moments_and_bad_questions_get_422() {
    let app = TestApp::spawn_at(START).await;
    history(&app).await;
    let alice = app.login("alice").await;
    let audra = app.login("audra").await;
    let moment = at(1.0);
    for path in [
        format!("/v1/audit/state?at={moment}"),
        format!("/v1/audit/changes?from={moment}&to={moment}"),
    ] {
        assert_problem(app.get(&alice, &path).await, 403, "auditor_only").await;
        let anonymous = app.client.get(app.url(&path)).send().await.expect("GET");
        assert_eq!(anonymous.status(), 401, "{path}");
    }
    let long = "u".repeat(300);
    for (path, code) in [
        ("/v1/audit/state".to_owned(), "missing_time"),
        ("/v1/audit/state?at=yesterday".to_owned(), "invalid_time"),
        (
            "/v1/audit/state?at=2026-13-01T00:00:00Z".to_owned(),
            "invalid_time",
        ),
        (
            format!("/v1/audit/state?at={moment}&user="),
            "invalid_filter",
        ),
        (
            format!("/v1/audit/state?at={moment}&user={long}"),
            "invalid_filter",
        ),
        (
            format!("/v1/audit/state?at={moment}&workspace=a%00b"),
            "invalid_filter",
        ),
        (
            format!("/v1/audit/state?at={moment}&after=not-a-ulid"),
            "invalid_after",
        ),
        (
            format!("/v1/audit/state?at={moment}&limit=0"),
            "invalid_limit",
        ),
        (
            format!("/v1/audit/state?at={moment}&limit=10001"),
            "invalid_limit",
        ),
        (
            "/v1/audit/changes?to=2026-03-01T00:00:00Z".to_owned(),
            "missing_time",
        ),
        (format!("/v1/audit/changes?from={moment}"), "missing_time"),
        (
            format!("/v1/audit/changes?from={}&to={}", at(2.0), at(1.0)),
            "invalid_window",
        ),
        (
            format!("/v1/audit/changes?from={moment}&to={moment}&after=-1"),
            "invalid_after",
        ),
        (
            format!("/v1/audit/changes?from={moment}&to={moment}&limit=1001"),
            "invalid_limit",
        ),
    ] {
        let res = app.get(&audra, &path).await;
        assert_problem(res, 422, code).await;
    }
    // A moment before any event, or far in the future: answered, not refused.
    let early = state(&app, &audra, "at=1970-01-01T00:00:00Z").await;
    assert_eq!(early["tokens"], json!([]));
    let late = state(&app, &audra, "at=9999-01-01T00:00:00Z").await;
    assert_eq!(late["tokens"].as_array().expect("tokens").len(), 3);
}

#[tokio::test]
async fn the_state_at_a_moment_shows_a_token_s_fences_and_its_right_to_rotate_itself() {
    let app = TestApp::spawn_at(START).await;
    let alice = app.login("alice").await;
    let mut body = create_body("fenced machine");
    body["allowed_cidrs"] = json!(["203.0.113.0/24", "2001:db8::/32"]);
    body["not_before"] = json!("2026-03-02T08:00:00Z");
    body["self_rotate"] = json!(true);
    let (fenced, _) = app.create_token(&alice, &body).await;
    let (plain, _) = app.create_token(&alice, &create_body("plain")).await;
    app.clock.advance(SignedDuration::from_hours(1));
    let audra = app.login("audra").await;
    let now = state(&app, &audra, &format!("at={}", at(0.5))).await;
    let find = |id: &Value| {
        now["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| t["id"] == *id)
            .cloned()
            .expect("listed")
    };
    let seen = find(&fenced["id"]);
    assert_eq!(
        seen["allowed_cidrs"],
        json!(["203.0.113.0/24", "2001:db8::/32"])
    );
    assert_eq!(seen["not_before"], "2026-03-02T08:00:00Z");
    assert_eq!(seen["self_rotate"], true);
    let seen = find(&plain["id"]);
    for absent in ["allowed_cidrs", "not_before", "self_rotate", "decoy"] {
        assert!(seen.get(absent).is_none(), "{absent} absent in {seen}");
    }
}
