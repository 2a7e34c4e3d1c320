//! `POST /v1/secret-scanning/github` takes posts from anyone: a post is
//! refused before its body is read unless it names a key GitHub publishes
//! with a well-formed signature, and bodies are read a few at a time, capped
//! and within the idle timeout, so that no number of connections can make a
//! real `enspace` process hold their bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::github::{FakeGithub, KEY_ID, PATH};
use crate::support::serve::service_args;
use crate::support::{EnspaceProcess, ServeApp, eventually};

const MIB: usize = 1024 * 1024;

/// `VmRSS` of a process, in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A POST's head: `Content-Length` as declared, and the signature headers
/// if given.
fn head(addr: &str, length: usize, key_id: Option<&str>, signature: Option<&str>) -> String {
    let mut head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n"
    );
    if let Some(key_id) = key_id {
        head.push_str(&format!("github-public-key-identifier: {key_id}\r\n"));
    }
    if let Some(signature) = signature {
        head.push_str(&format!("github-public-key-signature: {signature}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Reads one response (until its body is whole, or the connection ends):
/// the status and the body, if one came.
async fn response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some((status, body.to_owned()));
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn two_hundred_unsigned_one_mib_posts_leave_the_processs_memory_where_it_was() {
    let github = FakeGithub::new();
    let data = tempfile::tempdir().expect("temp dir");
    let process = EnspaceProcess::start(
        &[
            "serve",
            "--data",
            data.path().to_str().expect("utf-8"),
            "--github-keys",
            github.key_file().to_str().expect("utf-8"),
        ],
        &[],
    );
    let pid = process.child.id();
    let addr = process.base.trim_start_matches("http://").to_owned();
    // Warm up: a signed post read whole, as GitHub sends one.
    let api = crate::support::app::ApiClient::from_base(&process.base);
    assert_eq!(github.post_signed(&api, b"[]".to_vec()).await.status(), 200);
    let before = rss(pid);

    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Half name no key at all; half name GitHub's key with a well-formed
    // signature of something else, so their bodies are read and refused.
    let wrong_signature = github.sign(b"another body");
    let body = Arc::new(vec![b' '; MIB]);
    let posts: Vec<_> = (0..200)
        .map(|n| {
            let (addr, body) = (addr.clone(), body.clone());
            let head = if n % 2 == 0 {
                head(&addr, MIB, None, None)
            } else {
                head(&addr, MIB, Some(KEY_ID), Some(&wrong_signature))
            };
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(&addr).await.ok()?;
                stream.write_all(head.as_bytes()).await.ok()?;
                // The server may answer and close before all of it is sent.
                for chunk in body.chunks(64 * 1024) {
                    if stream.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                tokio::time::timeout(Duration::from_secs(60), response(&mut stream))
                    .await
                    .ok()
                    .flatten()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for post in posts {
        if let Some((status, _)) = post.await.expect("post task") {
            statuses.push(status);
        }
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "every answer read is 401, or 503 when the body slots stayed busy: {statuses:?}"
    );
    assert!(
        statuses.contains(&401),
        "refusals were answered: {statuses:?}"
    );
    assert!(
        peak < before + (50 << 20),
        "RSS rose from {} MiB to {} MiB",
        before >> 20,
        peak >> 20
    );
    eventually(Duration::from_secs(30), "RSS back where it was", || async {
        (rss(pid) < before + (50 << 20)).then_some(())
    })
    .await;
    // And GitHub is still served.
    assert_eq!(github.post_signed(&api, b"[]".to_vec()).await.status(), 200);
    eprintln!(
        "RSS before {} MiB, peak {} MiB, after {} MiB; {} answers read",
        before >> 20,
        peak >> 20,
        rss(pid) >> 20,
        statuses.len()
    );
}

#[tokio::test]
async fn a_post_naming_an_unknown_key_is_refused_before_its_body_and_a_stalled_body_is_answered_408()
 {
    let github = FakeGithub::new();
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = service_args(data.path(), None);
    args.github_keys = Some(github.key_file().to_owned());
    args.limits.http.idle_timeout = Duration::from_secs(1);
    let app = ServeApp::spawn_with(args, data).await;
    let addr = app.addr.to_string();
    let signature = github.sign(b"[]");
    for (key_id, want, code) in [
        // Refused at once: the body (never sent) is not waited for.
        (Some("not-a-github-key"), 401, "invalid_signature"),
        (None, 401, "invalid_signature"),
        // A known key: the body is read, and nothing comes.
        (Some(KEY_ID), 408, "body_timeout"),
    ] {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        stream
            .write_all(head(&addr, 1_000_000, key_id, Some(&signature)).as_bytes())
            .await
            .expect("write the head");
        let (status, body) = tokio::time::timeout(Duration::from_secs(30), response(&mut stream))
            .await
            .expect("an answer")
            .expect("a response");
        assert_eq!(status, want, "{key_id:?}: {body}");
        let problem: Value = serde_json::from_str(&body).expect("problem json");
        assert_eq!(problem["code"], code);
    }
    app.stop().await;
}

#[tokio::test]
async fn sign_in_and_leak_report_bodies_over_16_kib_are_413() {
    let app = crate::support::TestApp::spawn().await;
    for path in ["/v1/session", "/v1/tokens/report-leak"] {
        let body = format!(r#"{{"token": "{}"}}"#, "a".repeat(17 * 1024));
        let res = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        crate::support::assert_problem(res, 413, "body_too_large").await;
    }
}
