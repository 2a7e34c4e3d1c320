//! Signed, self-contained audit exports: `enspace audit verify --export`
//! and a short Python script (`docs/verify_export.py`, the README's
//! algorithm with `cryptography`) check an export with nothing but the
//! event key, and both name the first bad seq of a damaged one.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use enspace_core::{EventKey, EventSigner};
use serde_json::{Value, json};

use crate::support::process::{audit, binary};
use crate::support::{TestApp, create_body};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An export of a stopped service's log holding creations, revocations
/// and a rotation, and the public event key the service served.
async fn exported() -> (String, String) {
    let (_, export, key) = exported_from().await;
    (export, key)
}

/// [`exported`], and the stopped service's data directory.
async fn exported_from() -> (tempfile::TempDir, String, String) {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    for i in 0..4 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        let (token, _) = app
            .create_token(who, &create_body(&format!("token {i}")))
            .await;
        let path = format!("/v1/tokens/{}", token["id"].as_str().expect("id"));
        if i == 1 {
            assert_eq!(app.delete(who, &path).await.status(), 204);
        }
        if i == 2 {
            let rotated = app
                .post_json(who, &format!("{path}/rotate"), &json!({"overlap": "0"}))
                .await;
            assert_eq!(rotated.status(), 201);
        }
    }
    let key: Value = app.event_key().await;
    let (data, _) = app.stop().await;
    let (code, out) = audit(&["export", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    (data, out, key["key"].as_str().expect("key").to_owned())
}

fn write(dir: &Path, export: &str) -> String {
    let file = dir.join("export.ndjson");
    std::fs::write(&file, export).expect("write the export");
    file.to_str().expect("utf-8").to_owned()
}

/// `enspace audit verify --export` on `export`, with no data directory.
fn offline(export: &str, key: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), export);
    audit(&["verify", "--export", &file, "--event-key", key])
}

/// The Python script on `export`.
fn python(export: &str, key: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), export);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/verify_export.py");
    let out = Command::new("python3")
        .args([script, &file, key])
        .output()
        .expect("run python3 (tests/run installs cryptography)");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Both verifiers refuse `export`, naming `seq`.
fn both_name(export: &str, key: &str, seq: u64) {
    for (who, (code, out)) in [
        ("offline", offline(export, key)),
        ("python", python(export, key)),
    ] {
        assert_eq!(code, 1, "{who}: {out}");
        assert!(
            out.starts_with(&format!("broken: seq {seq}:")),
            "{who} names seq {seq}: {out}"
        );
    }
}

/// The export's lines, each as JSON; the header first.
fn lines(export: &str) -> Vec<Value> {
    export
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

fn join(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[tokio::test]
async fn an_export_verifies_with_no_data_directory_offline_and_with_a_python_script() {
    let (export, key) = exported().await;
    let all = lines(&export);
    assert_eq!(all[0]["export"], "enspace-audit");
    assert_eq!(all[0]["version"], 1);
    assert_eq!(all[0]["event_keys"][0]["key"], key.as_str());
    let count = all.len() - 1;
    assert_eq!(all[0]["head"]["seq"], count as u64);
    let expected = format!(
        "ok: {count} events, head {}\n",
        all[0]["head"]["hash"].as_str().expect("hash")
    );
    assert_eq!(offline(&export, &key), (0, expected.clone()));
    assert_eq!(python(&export, &key), (0, expected));
}

#[tokio::test]
async fn a_flipped_payload_byte_is_named_by_seq_by_both_verifiers() {
    let (export, key) = exported().await;
    let mut all = lines(&export);
    let mut payload = B64
        .decode(all[3]["payload"].as_str().expect("payload"))
        .expect("base64");
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    all[3]["payload"] = B64.encode(payload).into();
    both_name(&join(&all), &key, 3);
}

#[tokio::test]
async fn a_removed_event_is_named_by_seq_by_both_verifiers() {
    let (export, key) = exported().await;
    let mut all = lines(&export);
    all.remove(4);
    both_name(&join(&all), &key, 4);
}

#[tokio::test]
async fn an_event_re_signed_with_another_key_is_named_by_seq_by_both_verifiers() {
    let (export, key) = exported().await;
    let mut all = lines(&export);
    let other = EventSigner::generate();
    let hash: [u8; 32] = hex::decode(all[2]["hash"].as_str().expect("hash"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    all[2]["signature"] = B64.encode(other.sign_event(&hash)).into();
    all[2]["key_id"] = other.public().key_id().into();
    both_name(&join(&all), &key, 2);
    // Claiming the trusted key's id does not help either.
    all[2]["key_id"] = EventKey::from_base64(&key).expect("key").key_id().into();
    both_name(&join(&all), &key, 2);
}

#[tokio::test]
async fn an_export_cut_short_is_caught_by_the_head_its_header_names() {
    let (export, key) = exported().await;
    let mut all = lines(&export);
    let count = all.len() - 1;
    all.pop();
    both_name(&join(&all), &key, count as u64);
}

#[tokio::test]
async fn a_json_field_that_disagrees_with_the_signed_payload_is_named_by_seq_offline() {
    let (export, key) = exported().await;
    let mut all = lines(&export);
    all[1]["actor"] = "mallory".into();
    let (code, out) = offline(&join(&all), &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("broken: seq 1: `actor`"), "{out}");
}

#[tokio::test]
async fn audit_events_from_the_api_carry_signatures_that_verify_with_the_served_key() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    let (token, _) = app.create_token(&alice, &create_body("signed")).await;
    let id = token["id"].as_str().expect("id");
    assert_eq!(
        app.delete(&alice, &format!("/v1/tokens/{id}"))
            .await
            .status(),
        204
    );
    let served: Value = app.event_key().await;
    let key = EventKey::from_base64(served["key"].as_str().expect("key")).expect("key");
    let audra = app.login("audra").await;
    let page = app.get_ok(&audra, "/v1/audit/events").await;
    let history = app.get_ok(&alice, &format!("/v1/tokens/{id}/events")).await;
    for event in page["events"]
        .as_array()
        .expect("events")
        .iter()
        .chain(history["events"].as_array().expect("events"))
    {
        assert_eq!(event["key_id"], key.key_id());
        let hash: [u8; 32] = hex::decode(event["hash"].as_str().expect("hash"))
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let signature = B64
            .decode(event["signature"].as_str().expect("signature"))
            .expect("base64");
        assert!(key.verify_event(&hash, &signature), "{event}");
    }
    app.stop().await;
}

#[tokio::test]
async fn verify_export_refuses_a_bad_key_a_missing_file_and_a_missing_key_with_a_message() {
    let (export, _) = exported().await;
    let (code, out) = offline(&export, "not-a-key");
    assert_ne!(code, 0, "{out}");
    let run = |args: &[&str]| {
        let out = Command::new(binary())
            .arg("audit")
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        "verify",
        "--export",
        "/nonexistent/export",
        "--event-key",
        "AAAA",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--event-key") || err.contains("cannot read"),
        "{err}"
    );
    let key = B64.encode(EventSigner::generate().public().as_bytes());
    let (code, err) = run(&[
        "verify",
        "--export",
        "/nonexistent/export",
        "--event-key",
        &key,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot read /nonexistent/export"), "{err}");
    let (code, err) = run(&["verify", "--export", "/nonexistent/export"]);
    assert_eq!(code, 2, "a usage error");
    assert!(err.contains("--event-key"), "{err}");
    // Garbage is a broken export, not a crash.
    let (code, out) = offline("{\"seq\": \"x\"}\nnot json\n", &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("broken: seq 1:"), "{out}");
}

#[tokio::test]
async fn export_and_verify_report_progress_on_stderr_when_it_is_not_a_terminal() {
    let (data, export, key) = exported_from().await;
    let count = lines(&export).len() - 1;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), &export);
    let run = |args: &[&str]| {
        let out = Command::new(binary())
            .arg("audit")
            .args(args)
            .env("ENSPACE_PROGRESS_EVERY", "0")
            .output()
            .expect("run");
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (out, err) = run(&["export", "--data", data.path().to_str().expect("utf-8")]);
    assert_eq!(out, export, "progress never mixes into the export");
    assert!(
        err.contains(&format!("done: {count} events exported of {count}")),
        "{err}"
    );
    let (out, err) = run(&["verify", "--export", &file, "--event-key", &key]);
    assert!(out.starts_with(&format!("ok: {count} events")), "{out}");
    assert!(
        err.contains(&format!("done: {count} events verified")),
        "{err}"
    );
}
