//! The committed schemas are the ones the code generates, they
//! are served, and what the service stores and emits validates against them.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{ServeApp, TestApp, create_body};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn updating() -> bool {
    std::env::var_os("ENSPACE_UPDATE_SCHEMAS").is_some()
}

/// Compares a generated document with its committed file; with
/// `ENSPACE_UPDATE_SCHEMAS=1` writes the file instead.
fn assert_committed(file: &str, generated: &Value) {
    let path = schemas_dir().join(file);
    if updating() {
        let text = serde_json::to_string_pretty(generated).expect("json") + "\n";
        std::fs::write(&path, text).expect("write schema");
        return;
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("schemas/{file} is missing")),
    )
    .expect("committed schema is JSON");
    assert!(
        committed == *generated,
        "schemas/{file} differs from what the code generates; run \
         `ENSPACE_UPDATE_SCHEMAS=1 cargo test -p enspace --test integration schemas` and commit"
    );
}

fn schema(file: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(schemas_dir().join(file)).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema json");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn assert_valid(file: &str, instance: &Value) {
    let validator = schema(file);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{instance} does not match schemas/{file}: {errors:?}"
    );
}

#[test]
fn committed_openapi_document_is_the_one_the_code_generates() {
    let generated = serde_json::to_value(enspace::openapi_document()).expect("json");
    assert_eq!(generated["openapi"], "3.1.0");
    assert_committed("openapi.json", &generated);
}

#[test]
fn committed_json_schemas_are_the_ones_the_code_generates() {
    for (file, generated) in enspace::json_schemas() {
        assert_eq!(
            generated["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_committed(file, &generated);
    }
}

#[test]
fn the_openapi_document_documents_every_contract_route_and_security_scheme() {
    let doc = serde_json::to_value(enspace::openapi_document()).expect("json");
    for (path, methods) in [
        ("/v1/session", &["post", "delete"][..]),
        ("/v1/me", &["get"]),
        ("/v1/workspaces", &["get"]),
        ("/v1/tokens", &["get", "post"]),
        ("/v1/tokens/{id}", &["get", "delete", "put", "patch"]),
        ("/v1/tokens/{id}/events", &["get"]),
        ("/v1/tokens/{id}/rotate", &["post"]),
        ("/v1/tokens/report-leak", &["post"]),
        ("/v1/secret-scanning/github", &["post"]),
        ("/v1/tokens/{id}/insights", &["get"]),
        ("/v1/audit/events", &["get"]),
        ("/v1/introspect", &["post"]),
        ("/api/v1/workspaces/{ws}/records", &["get", "post"]),
        (
            "/api/v1/workspaces/{ws}/records/{id}",
            &["get", "put", "delete"],
        ),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/v1/openapi.json", &["get"]),
    ] {
        for method in methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
    for scheme in ["session", "session_cookie", "pat", "internal_key"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let app = ServeApp::spawn(None).await;
    let res = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    let served: Value = res.json().await.expect("json");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(schemas_dir().join("openapi.json")).expect("file"),
    )
    .expect("json");
    assert_eq!(served, committed);
}

#[tokio::test]
async fn events_stored_in_sled_validate_against_their_schemas() {
    let app = TestApp::spawn().await;
    let bob = app.login("bob").await;
    let policy = app
        .client
        .put(app.url("/v1/workspaces/acme/policy"))
        .bearer_auth(&bob)
        .json(&json!({"max_lifetime": "1y", "require_expiration": true}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(policy.status(), 200);
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("schema check")).await;
    let old = token["id"].as_str().expect("id").to_owned();
    let rotated = app
        .post_json(
            &alice,
            &format!("/v1/tokens/{old}/rotate"),
            &json!({"overlap": "1h"}),
        )
        .await;
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.expect("json");
    let id = rotated["token"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{id}"))
            .await
            .status(),
        204
    );
    let history: Value = app
        .get(&alice, &format!("/v1/tokens/{id}/events"))
        .await
        .json()
        .await
        .expect("events");
    let (data, _clock) = app.stop().await;

    let db = enspace_store::sled_config(data.path())
        .open()
        .expect("open sled");
    let events = db.open_tree("events").expect("events tree");
    let signer = enspace_core::EventSigner::generate();
    let mut seen = Vec::new();
    for item in events.iter() {
        let (_, value) = item.expect("entry");
        let stored = enspace_core::StoredEvent::from_bytes(&value).expect("stored event");
        let envelope = enspace_core::EventEnvelope::decode(&stored.payload).expect("envelope");
        let audit = enspace_core::AuditEvent::new(&envelope, &stored, &signer);
        let file = format!("{}.json", audit.kind);
        assert_valid(&file, &audit.data);
        assert_valid(
            "audit_event.json",
            &serde_json::to_value(&audit).expect("json"),
        );
        // The stored MessagePack, read without our types, carries the same data.
        let raw: Value = rmp_serde::from_slice(&stored.payload).expect("messagepack");
        assert_eq!(raw["data"], audit.data);
        // And the whole envelope matches its schema, for consumers of the
        // token events stream in other languages.
        assert_valid("event_envelope.json", &raw);
        seen.push(audit.kind);
    }
    assert_eq!(
        seen,
        [
            "workspace_policy_set",
            "token_created",
            "token_created",
            "token_rotated",
            "token_revoked"
        ]
    );
    for event in history["events"].as_array().expect("array") {
        assert_valid("audit_event.json", event);
    }
}

#[tokio::test]
async fn a_field_renamed_in_code_but_not_in_the_schema_fails_validation() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("rename")).await;
    assert_valid("token.json", &token);

    // What a rename of `description` to `label` in the code would emit.
    let mut renamed = token.clone();
    let object = renamed.as_object_mut().expect("object");
    let description = object.remove("description").expect("description");
    object.insert("label".into(), description);
    assert!(!schema("token.json").is_valid(&renamed));

    let mut wrong_type = token;
    wrong_type["scopes"] = json!("read");
    assert!(!schema("token.json").is_valid(&wrong_type));
}

#[test]
fn directory_files_validate_and_plain_passwords_do_not() {
    let good = json!({
        "workspaces": [{"id": "acme", "name": "Acme Corp"}],
        "users": [{"id": "alice", "name": "Alice", "role": "user", "workspaces": ["acme"],
                   "admin_of": ["acme"],
                   "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"}]
    });
    assert_valid("directory.json", &good);
    let mut bad_admin = good.clone();
    bad_admin["users"][0]["admin_of"] = json!("acme");
    assert!(!schema("directory.json").is_valid(&bad_admin));
    let mut plain = good.clone();
    plain["users"][0]["password_hash"] = json!("alice-password");
    assert!(!schema("directory.json").is_valid(&plain));
    let mut bad_role = good;
    bad_role["users"][0]["role"] = json!("admin");
    assert!(!schema("directory.json").is_valid(&bad_role));
}

#[test]
fn request_records_validate_and_a_renamed_field_does_not() {
    let record = enspace_core::RequestRecord {
        id: ulid::Ulid::new(),
        token_id: ulid::Ulid::new(),
        user_id: "alice".into(),
        at: jiff::Timestamp::now(),
        node: "node-1".into(),
        method: "GET".into(),
        path: "/api/v1/workspaces/acme/records".into(),
        path_truncated: false,
        workspace: Some("acme".into()),
        status: 200,
        duration_ms: 0.42,
        client_ip: "127.0.0.1".into(),
        user_agent: None,
    };
    // As it travels: MessagePack, decoded without our types.
    let decoded: Value = rmp_serde::from_slice(&record.to_msgpack()).expect("messagepack");
    assert_valid("request_record.json", &decoded);
    let mut renamed = decoded;
    let node = renamed
        .as_object_mut()
        .expect("object")
        .remove("node")
        .expect("node");
    renamed["node_id"] = node;
    assert!(!schema("request_record.json").is_valid(&renamed));
}

#[test]
fn a_batch_of_request_records_validates_as_it_travels() {
    let token = ulid::Ulid::new();
    let records: Vec<Vec<u8>> = (0..3)
        .map(|n| {
            enspace_core::RequestRecord {
                id: ulid::Ulid::new(),
                token_id: token,
                user_id: "alice".into(),
                at: jiff::Timestamp::now(),
                node: "node-1".into(),
                method: "GET".into(),
                path: "/api/v1/workspaces/acme/records".into(),
                path_truncated: false,
                workspace: Some("acme".into()),
                status: 200 + n,
                duration_ms: 0.42,
                client_ip: "127.0.0.1".into(),
                user_agent: Some("curl/8".into()),
            }
            .to_msgpack()
        })
        .collect();
    // The payload of a batch message, decoded without our types.
    let decoded: Value =
        rmp_serde::from_slice(&enspace_core::record_batch::encode(&records)).expect("messagepack");
    assert_eq!(decoded.as_array().map(Vec::len), Some(3));
    assert_valid("request_record_batch.json", &decoded);
    assert!(!schema("request_record_batch.json").is_valid(&json!([{"id": "x"}])));
    assert!(!schema("request_record_batch.json").is_valid(&decoded[0]));
}
