//! `enspace audit verify` says what is wrong: a store in use is in use, a
//! corrupt store is corrupt (not "is the token service still running?"),
//! and a broken log names its seq.

use std::process::Command;

use crate::support::process::binary;
use crate::support::{EnspaceProcess, TestApp, create_body};

/// Runs `enspace audit verify --data DIR`: (exit code, stdout, stderr).
fn verify(data: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(["audit", "verify", "--data"])
        .arg(data)
        .output()
        .expect("run enspace audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn verify_of_a_store_in_use_says_so() {
    let data = tempfile::tempdir().expect("temp dir");
    let _running = EnspaceProcess::serve(data.path());
    let (code, out, err) = verify(data.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("is in use"), "{err}");
    assert!(
        !err.contains("corrupt") && !out.contains("ok:"),
        "{out}{err}"
    );
}

#[tokio::test]
async fn verify_of_a_corrupt_store_says_it_is_corrupt_and_exits_1() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for n in 0..5 {
        app.create_token(&alice, &create_body(&format!("t{n}")))
            .await;
    }
    let (data, _) = app.stop().await;
    let file = data.path().join("db");
    let mut bytes = std::fs::read(&file).expect("read db");
    for b in bytes.iter_mut().skip(10).take(40) {
        *b ^= 0xFF;
    }
    std::fs::write(&file, bytes).expect("write db");
    let (code, out, err) = verify(data.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("broken: the store in"), "{out}");
    assert!(out.contains("is corrupt"), "{out}");
    assert!(
        !format!("{out}{err}").contains("still running"),
        "{out}{err}"
    );
    assert!(!err.contains("is in use"), "{err}");
}

#[tokio::test]
async fn verify_names_the_seq_after_the_last_event_when_a_foreign_key_follows_them() {
    let app = TestApp::spawn().await;
    let alice = app.login("alice").await;
    for n in 0..3 {
        app.create_token(&alice, &create_body(&format!("t{n}")))
            .await;
    }
    let (data, _) = app.stop().await;
    enspace_store::tamper::Tamper::open(data.path())
        .expect("open the stopped store")
        .put_foreign_key_in_log(b"not-a-seq", b"x")
        .expect("write");
    let (code, out, _) = verify(data.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seq 4:"), "{out}");
}
