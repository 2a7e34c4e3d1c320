//! Every rule of `POST /v1/tokens` and the error rules (RFC 9457 problem details):
//! each bad input gets its exact status and `code`, as problem details, and
//! nothing is recorded for it.

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, create_body};

/// A valid body with one member replaced.
fn body_with(field: &str, value: Value) -> Value {
    let mut body = create_body("ERP Integration");
    body[field] = value;
    body
}

/// Posts `body`, asserts a 422 with `code` naming `field`, and that nothing was recorded.
async fn assert_rejected(app: &TestApp, session: &str, body: Value, code: &str, field: &str) {
    let res = app.post_json(session, "/v1/tokens", &body).await;
    let problem = assert_problem(res, 422, code).await;
    assert_eq!(problem["field"], field, "field named for {body}");
    assert_nothing_recorded(app, session).await;
}

async fn assert_nothing_recorded(app: &TestApp, session: &str) {
    let list: Value = app
        .get(session, "/v1/tokens")
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(
        list["tokens"],
        json!([]),
        "a rejected request created nothing"
    );
    assert_eq!(
        app.state.store.log.len(),
        0,
        "nothing was appended to the log"
    );
}

async fn post_raw(
    app: &TestApp,
    session: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/tokens"))
        .bearer_auth(session)
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("POST")
}

#[tokio::test]
async fn empty_description_is_422_invalid_description() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    assert_rejected(
        &app,
        &alice,
        body_with("description", json!("")),
        "invalid_description",
        "description",
    )
    .await;
}

#[tokio::test]
async fn whitespace_only_description_is_422_invalid_description() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for blank in [" ", "   \t  ", "\u{3000}\u{00a0} "] {
        assert_rejected(
            &app,
            &alice,
            body_with("description", json!(blank)),
            "invalid_description",
            "description",
        )
        .await;
    }
}

#[tokio::test]
async fn description_of_101_characters_is_422_invalid_description() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    assert_rejected(
        &app,
        &alice,
        body_with("description", json!("a".repeat(101))),
        "invalid_description",
        "description",
    )
    .await;
    // Counted in characters, not bytes: 101 two-byte characters are too many too.
    assert_rejected(
        &app,
        &alice,
        body_with("description", json!("é".repeat(101))),
        "invalid_description",
        "description",
    )
    .await;
}

#[tokio::test]
async fn description_with_a_control_character_is_422_invalid_description() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for bad in [
        "ERP\u{0000}Integration",
        "ERP\tIntegration",
        "ERP\nIntegration",
        "ERP\u{007f}",
        "ERP\u{0085}x",
        "a\u{001b}[31m",
    ] {
        assert_rejected(
            &app,
            &alice,
            body_with("description", json!(bad)),
            "invalid_description",
            "description",
        )
        .await;
    }
}

#[tokio::test]
async fn description_of_100_characters_including_multibyte_ones_is_accepted_and_trimmed() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    // 100 characters, 3 and 4 bytes each in UTF-8, with whitespace around them.
    let hundred = format!("{}{}", "日".repeat(50), "🔑".repeat(50));
    assert_eq!(hundred.chars().count(), 100);
    let (token, _) = app
        .create_token(
            &alice,
            &body_with("description", json!(format!("  {hundred}\t "))),
        )
        .await;
    assert_eq!(token["description"], hundred.as_str());
    let (token, _) = app
        .create_token(&alice, &body_with("description", json!("a".repeat(100))))
        .await;
    assert_eq!(token["description"], "a".repeat(100));
}

#[tokio::test]
async fn unknown_expiration_is_422_invalid_expiration() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for bad in ["4m", "1M", "12m", "", "forever", "1 y", "3m "] {
        assert_rejected(
            &app,
            &alice,
            body_with("expiration", json!(bad)),
            "invalid_expiration",
            "expiration",
        )
        .await;
    }
}

#[tokio::test]
async fn empty_scopes_are_422_invalid_scopes() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    assert_rejected(
        &app,
        &alice,
        body_with("scopes", json!([])),
        "invalid_scopes",
        "scopes",
    )
    .await;
}

#[tokio::test]
async fn unknown_scope_is_422_invalid_scopes() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for bad in [
        json!(["admin"]),
        json!(["read", "Write"]),
        json!(["read", ""]),
        json!(["read", "write", "delete", "all"]),
    ] {
        assert_rejected(
            &app,
            &alice,
            body_with("scopes", bad),
            "invalid_scopes",
            "scopes",
        )
        .await;
    }
}

#[tokio::test]
async fn scopes_come_back_in_the_order_read_write_delete_without_duplicates() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let cases = [
        (
            json!(["delete", "write", "read"]),
            json!(["read", "write", "delete"]),
        ),
        (json!(["delete", "read"]), json!(["read", "delete"])),
        (json!(["write", "read", "write"]), json!(["read", "write"])),
        (json!(["delete"]), json!(["delete"])),
    ];
    for (given, want) in cases {
        let (token, _) = app.create_token(&alice, &body_with("scopes", given)).await;
        assert_eq!(token["scopes"], want);
        let stored: Value = app
            .get(
                &alice,
                &format!("/v1/tokens/{}", token["id"].as_str().expect("id")),
            )
            .await
            .json()
            .await
            .expect("token");
        assert_eq!(stored["scopes"], want);
    }
}

#[tokio::test]
async fn empty_workspaces_are_422_invalid_workspaces() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    assert_rejected(
        &app,
        &alice,
        body_with("workspaces", json!([])),
        "invalid_workspaces",
        "workspaces",
    )
    .await;
}

#[tokio::test]
async fn someone_elses_or_an_unknown_workspace_is_422_workspace_not_allowed() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    // initech is bob's; alice belongs to acme and globex only.
    for bad in [
        json!(["initech"]),
        json!(["acme", "initech"]),
        json!(["nowhere"]),
        json!(["ACME"]),
    ] {
        assert_rejected(
            &app,
            &alice,
            body_with("workspaces", bad),
            "workspace_not_allowed",
            "workspaces",
        )
        .await;
    }
    // An auditor belongs to no workspace at all.
    let audra = app.login("audra").await;
    let res = app.post_json(&audra, "/v1/tokens", &create_body("x")).await;
    assert_problem(res, 422, "workspace_not_allowed").await;
}

#[tokio::test]
async fn several_own_workspaces_are_kept_in_order_without_duplicates() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app
        .create_token(
            &alice,
            &body_with("workspaces", json!(["globex", "acme", "globex"])),
        )
        .await;
    assert_eq!(token["workspaces"], json!(["globex", "acme"]));
}

#[tokio::test]
async fn wrong_json_types_are_422_invalid_type_naming_the_field() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let cases = [
        ("description", json!(42), "description"),
        ("description", json!(null), "description"),
        ("expiration", json!(3), "expiration"),
        ("expiration", json!(["3m"]), "expiration"),
        ("scopes", json!("read"), "scopes"),
        ("scopes", json!({"read": true}), "scopes"),
        ("scopes", json!(["read", 1]), "scopes[1]"),
        ("workspaces", json!("acme"), "workspaces"),
        ("workspaces", json!([null]), "workspaces[0]"),
    ];
    for (member, value, field) in cases {
        assert_rejected(
            &app,
            &alice,
            body_with(member, value),
            "invalid_type",
            field,
        )
        .await;
    }
    for not_an_object in [json!([]), json!("token"), json!(null), json!(1)] {
        let res = app.post_json(&alice, "/v1/tokens", &not_an_object).await;
        assert_problem(res, 422, "invalid_type").await;
    }
}

#[tokio::test]
async fn unknown_field_is_422_unknown_field_naming_it() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    assert_rejected(
        &app,
        &alice,
        body_with("secret", json!("ens_pat_mine")),
        "unknown_field",
        "secret",
    )
    .await;
    assert_rejected(
        &app,
        &alice,
        body_with("user_id", json!("bob")),
        "unknown_field",
        "user_id",
    )
    .await;
}

#[tokio::test]
async fn each_missing_field_is_422_missing_field_naming_it() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for field in ["description", "expiration", "scopes", "workspaces"] {
        let mut body = create_body("ERP Integration");
        body.as_object_mut().expect("object").remove(field);
        assert_rejected(&app, &alice, body, "missing_field", field).await;
    }
    assert_rejected(&app, &alice, json!({}), "missing_field", "description").await;
}

#[tokio::test]
async fn malformed_json_is_400_malformed_json() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bad: [&[u8]; 7] = [
        b"",
        b"{",
        b"{\"description\": \"x\",}",
        b"{'description': 'x'}",
        b"description=x",
        b"{\"description\": \"x\"} trailing",
        b"\xff\xfe{}",
    ];
    for body in bad {
        let res = post_raw(&app, &alice, "application/json", body.to_vec()).await;
        assert_problem(res, 400, "malformed_json").await;
    }
    // A complete, valid body followed by anything else is not JSON either.
    let valid = serde_json::to_string(&create_body("x")).expect("json");
    for trailer in [" trailing", "{}", ",", "]"] {
        let res = post_raw(
            &app,
            &alice,
            "application/json",
            format!("{valid}{trailer}").into_bytes(),
        )
        .await;
        assert_problem(res, 400, "malformed_json").await;
    }
    // Nested beyond any sane depth: well-formed but the wrong shape, and
    // never a stack overflow; unbalanced, it is malformed.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let res = post_raw(&app, &alice, "application/json", deep.into_bytes()).await;
    assert_problem(res, 422, "invalid_type").await;
    let unbalanced = format!("{}{}", "[".repeat(10_000), "]".repeat(9_999));
    let res = post_raw(&app, &alice, "application/json", unbalanced.into_bytes()).await;
    assert_problem(res, 400, "malformed_json").await;
    assert_nothing_recorded(&app, &alice).await;
}

#[tokio::test]
async fn body_over_64_kib_is_413_body_too_large() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    // Valid JSON, 65 KiB: the size alone decides.
    let mut body = create_body("x");
    let padding = 65 * 1024 - (body.to_string().len() - 1);
    body["description"] = json!("x".repeat(padding));
    let bytes = serde_json::to_vec(&body).expect("json");
    assert_eq!(bytes.len(), 65 * 1024);
    let res = post_raw(&app, &alice, "application/json", bytes).await;
    assert_problem(res, 413, "body_too_large").await;
    assert_nothing_recorded(&app, &alice).await;
}

#[tokio::test]
async fn body_of_just_under_64_kib_is_judged_by_its_content_not_its_size() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let mut body = create_body("x");
    let padding = 64 * 1024 - 1 - (body.to_string().len() - 1);
    body["description"] = json!("x".repeat(padding));
    let res = app.post_json(&alice, "/v1/tokens", &body).await;
    assert_problem(res, 422, "invalid_description").await;
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415_unsupported_media_type() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let json = serde_json::to_vec(&create_body("x")).expect("json");
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ] {
        let res = post_raw(&app, &alice, content_type, json.clone()).await;
        assert_problem(res, 415, "unsupported_media_type").await;
    }
    let res = app
        .client
        .post(app.url("/v1/tokens"))
        .bearer_auth(&alice)
        .body(json.clone())
        .send()
        .await
        .expect("POST");
    assert_problem(res, 415, "unsupported_media_type").await;
    // Parameters and case do not matter.
    let res = post_raw(&app, &alice, "Application/JSON; charset=utf-8", json).await;
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn unknown_route_is_404_not_found() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for path in [
        "/v1",
        "/v1/token",
        "/v2/tokens",
        "/v1/tokens/",
        "/v1/tokens/x/y",
        "/v1/audit",
        "/v1/tokens/%FF/x",
    ] {
        let res = app.get(&alice, path).await;
        assert_problem(res, 404, "not_found").await;
    }
    let res = app.client.get(app.url("/nope")).send().await.expect("GET");
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn malformed_or_unknown_token_id_is_404_token_not_found() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let unknown = ulid::Ulid::new().to_string();
    for id in [
        "not-a-ulid",
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "0",
        unknown.as_str(),
        "%00",
        "%20",
    ] {
        let path = format!("/v1/tokens/{id}");
        assert_problem(app.get(&alice, &path).await, 404, "token_not_found").await;
        assert_problem(app.delete(&alice, &path).await, 404, "token_not_found").await;
        assert_problem(
            app.get(&alice, &format!("{path}/events")).await,
            404,
            "token_not_found",
        )
        .await;
    }
    assert_eq!(app.state.store.log.len(), 0);
}

#[tokio::test]
async fn a_token_id_that_is_not_utf8_is_a_client_error_never_a_5xx() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for res in [
        app.get(&alice, "/v1/tokens/%FF").await,
        app.delete(&alice, "/v1/tokens/%C3%28").await,
        app.get(&alice, "/v1/tokens/%FF/events").await,
    ] {
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "status {status}");
        let code = if status == 404 {
            "token_not_found"
        } else {
            "bad_request"
        };
        assert_problem(res, status, code).await;
    }
}

#[tokio::test]
async fn put_or_patch_on_a_token_is_405_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("immutable")).await;
    let path = app.url(&format!("/v1/tokens/{}", token["id"].as_str().expect("id")));
    let edit = json!({"description": "changed"});
    for res in [
        app.client
            .put(&path)
            .bearer_auth(&alice)
            .json(&edit)
            .send()
            .await
            .expect("PUT"),
        app.client
            .patch(&path)
            .bearer_auth(&alice)
            .json(&edit)
            .send()
            .await
            .expect("PATCH"),
    ] {
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_problem(res, 405, "token_immutable").await;
        let allow = allow.expect("Allow header on 405");
        assert!(
            allow.contains("GET") && allow.contains("DELETE"),
            "Allow: {allow}"
        );
    }
    let now: Value = app
        .get(
            &alice,
            &format!("/v1/tokens/{}", token["id"].as_str().expect("id")),
        )
        .await
        .json()
        .await
        .expect("token");
    assert_eq!(now["description"], "immutable");
    assert_eq!(app.state.store.log.len(), 1);
}

#[tokio::test]
async fn other_wrong_methods_are_405_problem_details() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let id = ulid::Ulid::new();
    let cases = [
        (reqwest::Method::POST, format!("/v1/tokens/{id}")),
        (reqwest::Method::DELETE, "/v1/tokens".to_owned()),
        (reqwest::Method::PUT, "/v1/tokens".to_owned()),
        (reqwest::Method::PUT, "/v1/session".to_owned()),
        (reqwest::Method::POST, "/v1/me".to_owned()),
        (reqwest::Method::DELETE, "/v1/audit/events".to_owned()),
        (reqwest::Method::POST, "/healthz".to_owned()),
    ];
    for (method, path) in cases {
        let res = app
            .client
            .request(method.clone(), app.url(&path))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("request");
        assert!(
            res.headers().contains_key("allow"),
            "{method} {path} names the allowed methods"
        );
        assert_problem(res, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn sign_in_body_errors_are_problem_details_too() {
    let app = TestApp::spawn().await;
    let post = |content_type: &'static str, body: &'static str| {
        app.client
            .post(app.url("/v1/session"))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };
    assert_problem(
        post("application/json", "{\"username\":")
            .await
            .expect("POST"),
        400,
        "malformed_json",
    )
    .await;
    assert_problem(
        post("application/json", "{\"username\":\"alice\"}")
            .await
            .expect("POST"),
        422,
        "missing_field",
    )
    .await;
    assert_problem(
        post(
            "application/json",
            "{\"username\":\"alice\",\"password\":\"x\",\"otp\":1}",
        )
        .await
        .expect("POST"),
        422,
        "unknown_field",
    )
    .await;
    assert_problem(
        post("application/json", "{\"username\":1,\"password\":\"x\"}")
            .await
            .expect("POST"),
        422,
        "invalid_type",
    )
    .await;
    assert_problem(
        post("text/plain", "{}").await.expect("POST"),
        415,
        "unsupported_media_type",
    )
    .await;
}

/// A small deterministic generator (xorshift), so the cases are the same on
/// every run and a failure can be replayed.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

#[tokio::test]
async fn arbitrary_bodies_and_paths_never_get_a_5xx() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"description\"",
        "\"expiration\"",
        "\"scopes\"",
        "\"workspaces\"",
        "\"read\"",
        "\"acme\"",
        "\"1m\"",
        "\"never\"",
        "null",
        "true",
        "-0",
        "1e999",
        "\"\\u0000\"",
        "\"\\ud83d\\udd11\"",
        "\"日本\"",
        " ",
        "\u{feff}",
        "\"x\"",
        "0.5",
    ];
    for case in 0..300 {
        let len = 1 + rng.next() % 24;
        let body: String = (0..len).map(|_| rng.pick(&pieces)).collect();
        for path in ["/v1/tokens", "/v1/session"] {
            let res = post_raw_to(&app, &alice, path, body.clone().into_bytes()).await;
            let status = res.status().as_u16();
            assert!(
                status < 500,
                "case {case}: POST {path} {body:?} answered {status}"
            );
            if status >= 400 {
                let content_type = res.headers()[CONTENT_TYPE]
                    .to_str()
                    .expect("ascii")
                    .to_owned();
                assert_eq!(content_type, "application/problem+json", "case {case}");
            }
        }
    }
    let segments = [
        "v1",
        "tokens",
        "%00",
        "..",
        "%2F",
        "events",
        "audit",
        "%FF",
        "x",
        "01J0000000000000000000000Z",
    ];
    for case in 0..200 {
        let len = 1 + rng.next() % 4;
        let path: String = (0..len)
            .map(|_| format!("/{}", rng.pick(&segments)))
            .collect();
        for method in [
            reqwest::Method::GET,
            reqwest::Method::DELETE,
            reqwest::Method::POST,
        ] {
            let res = app
                .client
                .request(method.clone(), app.url(&path))
                .bearer_auth(&alice)
                .send()
                .await
                .expect("request");
            let status = res.status().as_u16();
            assert!(
                status < 500,
                "case {case}: {method} {path} answered {status}"
            );
        }
    }
}

async fn post_raw_to(app: &TestApp, session: &str, path: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(session)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("POST")
}
