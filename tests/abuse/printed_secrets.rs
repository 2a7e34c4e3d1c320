//! No password or secret is ever printed: each subcommand's `--help` and its
//! failure paths (NATS unreachable, a bad NATS URL, missing or bad
//! credentials and key files, flag values that do not parse), run as the
//! real binary with secrets in its environment and flags, print none of
//! them, even with `RUST_LOG=debug`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::process::binary;

const PASSWORD: &str = "S3cretPW-n0t-for-logs";
/// `whsec_` and the base64 of 24 bytes.
const WEBHOOK_SECRET: &str = "whsec_UzNjcmV0UFctbjB0LWZvci1sb2dzLTI0";

/// Every secret the runs hold, as they could appear.
fn secrets() -> [&'static str; 3] {
    [PASSWORD, WEBHOOK_SECRET, "UzNjcmV0UFctbjB0LWZvci1sb2dzLTI0"]
}

/// NATS at an address where nothing listens, with a password.
fn nats_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("nats://enspace-node:{PASSWORD}@127.0.0.1:{port}")
}

/// Runs `enspace <args>` with the secrets in its environment until it
/// exits or, for a process that keeps trying, until it has printed
/// `until` (or 10 s passed); answers stdout and stderr together.
fn run(args: &[&str], extra_env: &[(&str, &str)], until: Option<&str>) -> String {
    let mut child = Command::new(binary())
        .args(args)
        .env("NATS_URL", nats_url())
        .env("ENSPACE_INTERNAL_KEY", PASSWORD)
        .env("ENSPACE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env(
            "ENSPACE_WEBHOOK_URL",
            format!("https://hook:{PASSWORD}@127.0.0.1:9/hook"),
        )
        .env("RUST_LOG", "debug")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start enspace");
    let read = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0
                    || tx
                        .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        rx
    };
    let out = read(Box::new(child.stdout.take().expect("stdout")));
    let err = read(Box::new(child.stderr.take().expect("stderr")));
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for chunk in out.try_iter().chain(err.try_iter()) {
            text.push_str(&chunk);
        }
        let exited = child.try_wait().expect("wait").is_some();
        let seen = until.is_some_and(|marker| text.contains(marker));
        if exited || seen || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    for chunk in out.iter().chain(err.iter()) {
        text.push_str(&chunk);
    }
    text
}

/// A run that fails: its arguments, more environment, and what a process
/// that keeps trying prints before it is stopped.
type Failure<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, Option<&'a str>);

fn assert_no_secret(what: &str, text: &str) {
    for secret in secrets() {
        assert!(!text.contains(secret), "{what} printed a secret:\n{text}");
    }
}

#[test]
fn no_subcommand_prints_a_password_or_secret_in_help_or_when_it_fails() {
    let data = tempfile::tempdir().expect("temp dir");
    let data = data.path().to_str().expect("utf-8");
    let files = tempfile::tempdir().expect("temp dir");
    let bad_creds = files.path().join("bad.creds");
    std::fs::write(&bad_creds, format!("garbage {PASSWORD}\n")).expect("write");
    let bad_nkey = files.path().join("bad.nkey");
    std::fs::write(&bad_nkey, format!("SU{PASSWORD}\n")).expect("write");
    let (bad_creds, bad_nkey) = (
        bad_creds.to_str().expect("utf-8"),
        bad_nkey.to_str().expect("utf-8"),
    );
    let listen = ["--listen", "127.0.0.1:0"];

    let helps: &[&[&str]] = &[
        &["--help"],
        &["serve", "--help"],
        &["tokens", "--help"],
        &["api-node", "--help"],
        &["restore", "--help"],
        &["audit", "verify", "--help"],
        &["audit", "export", "--help"],
        &["event-key", "--help"],
        &["hash-password", "--help"],
    ];
    for args in helps {
        let text = run(args, &[], None);
        assert!(text.contains("Usage"), "{args:?}: {text}");
        assert_no_secret(&format!("{args:?}"), &text);
    }
    let help = run(&["api-node", "--help"], &[], None);
    assert!(help.contains("[env: NATS_URL]"), "{help}");

    let bad_url = format!("nats://enspace-node:{PASSWORD}@[::bad");
    let bad_webhook_url = format!("https://hook:{PASSWORD}@bad host/");
    let failures: Vec<Failure<'_>> = vec![
        // The password in NATS_URL, and files that cannot be used.
        (
            vec!["api-node", "--nats-nkey", "/nonexistent/nkey"],
            vec![],
            None,
        ),
        (
            vec!["api-node", "--nats-creds", "/nonexistent/creds"],
            vec![],
            None,
        ),
        (vec!["api-node", "--nats-creds", bad_creds], vec![], None),
        (
            vec!["tokens", "--data", data, "--nats-nkey", "/nonexistent/nkey"],
            vec![],
            None,
        ),
        (
            vec![
                "restore",
                "--data",
                data,
                "--nats-nkey",
                "/nonexistent/nkey",
            ],
            vec![],
            None,
        ),
        (
            vec!["serve", "--data", data, "--nats-url", &bad_url],
            vec![],
            None,
        ),
        (vec!["api-node", "--event-key", "garbage"], vec![], None),
        // Flags that hold secrets and do not parse.
        (
            vec!["serve", "--data", data],
            vec![("ENSPACE_WEBHOOK_SECRET", "whsec_S3cretPW-n0t-for-logs")],
            None,
        ),
        (
            vec!["serve", "--data", data],
            vec![("ENSPACE_WEBHOOK_URL", &bad_webhook_url)],
            None,
        ),
        (
            vec![
                "serve",
                "--data",
                data,
                "--github-keys",
                "/nonexistent/keys.json",
            ],
            vec![],
            None,
        ),
        (
            vec![
                "serve",
                "--data",
                data,
                "--directory",
                "/nonexistent/directory.json",
            ],
            vec![],
            None,
        ),
        // NATS that does not answer: the processes keep trying (and log it).
        (vec!["api-node"], vec![], Some("attempt failed")),
        (
            vec!["api-node", "--nats-nkey", bad_nkey],
            vec![],
            Some("attempt failed"),
        ),
        (
            vec!["serve", "--data", data],
            vec![],
            Some("attempt failed"),
        ),
    ];
    for (mut args, env, until) in failures {
        if ["api-node", "tokens", "serve"].contains(&args[0]) {
            args.extend(listen);
        }
        // A node without a key stops before it tries NATS at all.
        if args[0] == "api-node" && !args.contains(&"--event-key") {
            args.push("--trust-first-event-key");
        }
        let text = run(&args, &env, until);
        assert!(!text.trim().is_empty(), "{args:?} said nothing");
        assert_no_secret(&format!("{args:?}"), &text);
    }
    // The URL is still named, without its password.
    let text = run(
        &[
            "api-node",
            "--trust-first-event-key",
            "--nats-nkey",
            "/nonexistent/nkey",
        ],
        &[],
        None,
    );
    assert!(
        text.contains("cannot connect to NATS at nats://enspace-node:***@127.0.0.1:"),
        "{text}"
    );
}
