//! A leak report until two API nodes refuse the token, as real processes on
//! a real nats-server (the release `enspace` binary): `enspace tokens
//! --github-keys` and two `enspace api-node`s. Each sample creates a token,
//! waits until both nodes accept it, then posts a signed GitHub
//! secret-scanning report of it and times until both nodes answer `401`.
//! Baseline in the same run, interleaved: the same with the owner's
//! `DELETE /v1/tokens/{id}` in place of the report.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::support::{Nats, Process, percentile, sign_in};
use crate::verdict::Verdict;

/// Fewer reports than this say nothing of a p99.
const MIN_REPORTS: usize = 50;

#[derive(clap::Args)]
pub struct Args {
    /// The `enspace` binary.
    #[arg(long, default_value = "target/release/enspace")]
    binary: String,
    /// Samples of each kind (leak report, DELETE).
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

const TARGET_P99: Duration = Duration::from_secs(1);
const RECORDS: &str = "/api/v1/workspaces/acme/records";
const KEY_ID: &str = "bench-github-key";

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::support::require_binary(&args.binary)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure(args))
}

/// The status `node` answers a read with `secret`.
async fn status(client: &reqwest::Client, node: &str, secret: &str) -> anyhow::Result<u16> {
    Ok(client
        .get(format!("{node}{RECORDS}"))
        .header(AUTHORIZATION, format!("Bearer {secret}"))
        .send()
        .await?
        .status()
        .as_u16())
}

/// Polls every node until each answers `want` for `secret`.
async fn until_all(
    client: &reqwest::Client,
    nodes: &[String],
    secret: &str,
    want: u16,
) -> anyhow::Result<()> {
    let start = Instant::now();
    for node in nodes {
        while status(client, node, secret).await? != want {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("{node} did not answer {want} within 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    Ok(())
}

async fn create(
    client: &reqwest::Client,
    svc: &str,
    session: &str,
) -> anyhow::Result<(String, String)> {
    let body = r#"{"description":"leak bench","expiration":"never","scopes":["read"],"workspaces":["acme"]}"#;
    let res = client
        .post(format!("{svc}/v1/tokens"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    if res.status() != 201 {
        bail!("creation answered {}", res.status());
    }
    let created: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    let id = created["token"]["id"].as_str().context("no id")?.to_owned();
    let secret = created["secret"].as_str().context("no secret")?.to_owned();
    Ok((id, secret))
}

async fn report(
    client: &reqwest::Client,
    svc: &str,
    key: &SigningKey,
    secret: &str,
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&serde_json::json!([{
        "token": secret, "type": "enspace_personal_access_token",
        "url": "https://github.com/acme/app/blob/main/.env", "source": "content",
    }]))?;
    let signature: Signature = key.sign(&body);
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    let res = client
        .post(format!("{svc}/v1/secret-scanning/github"))
        .header(CONTENT_TYPE, "application/json")
        .header("Github-Public-Key-Identifier", KEY_ID)
        .header("Github-Public-Key-Signature", signature)
        .body(body)
        .send()
        .await?;
    if res.status() != 200 {
        bail!("the report answered {}", res.status());
    }
    let labels: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
    if labels[0]["label"] != "true_positive" {
        bail!("the report was labelled {}", labels[0]["label"]);
    }
    Ok(())
}

async fn delete(
    client: &reqwest::Client,
    svc: &str,
    session: &str,
    id: &str,
) -> anyhow::Result<()> {
    let res = client
        .delete(format!("{svc}/v1/tokens/{id}"))
        .header(AUTHORIZATION, format!("Bearer {session}"))
        .send()
        .await?;
    if res.status() != 204 {
        bail!("DELETE answered {}", res.status());
    }
    Ok(())
}

fn summary(name: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    println!(
        "{name}, {} samples:\n  p50 {p50:>10.2?}   p99 {p99:>10.2?}   max {:>10.2?}",
        samples.len(),
        samples[samples.len() - 1]
    );
    p99
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let nats = Nats::start()?;
    let data = tempfile::tempdir()?;
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let key_file = data.path().join("github-keys.json");
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("pem: {e}"))?;
    std::fs::write(
        &key_file,
        serde_json::json!({"public_keys": [
            {"key_identifier": KEY_ID, "key": pem, "is_current": true}
        ]})
        .to_string(),
    )?;
    let store = data.path().join("tokens");
    let service = Process::enspace(
        &args.binary,
        &[
            "tokens",
            "--data",
            &store.display().to_string(),
            "--nats-url",
            &nats.url(),
            "--github-keys",
            &key_file.display().to_string(),
            "--max-tokens-per-user",
            "100000000",
        ],
    )?;
    service.wait_ready(Duration::from_secs(60))?;
    let event_key = crate::support::event_key_of(&store)?;
    let mut nodes = Vec::new();
    for id in ["leak-node-a", "leak-node-b"] {
        let node = Process::enspace(
            &args.binary,
            &[
                "api-node",
                "--nats-url",
                &nats.url(),
                "--node-id",
                id,
                "--event-key",
                &event_key,
            ],
        )?;
        node.wait_ready(Duration::from_secs(60))?;
        nodes.push(node);
    }
    let svc = format!("http://{}", service.base);
    let bases: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.base)).collect();
    let client = reqwest::Client::new();
    let session = sign_in(&client, &svc).await?;

    let mut leaked = Vec::with_capacity(args.samples);
    let mut deleted = Vec::with_capacity(args.samples);
    for i in 0..args.samples * 2 {
        let (id, secret) = create(&client, &svc, &session).await?;
        until_all(&client, &bases, &secret, 200).await?;
        let start = Instant::now();
        if i % 2 == 0 {
            report(&client, &svc, &key, &secret).await?;
        } else {
            delete(&client, &svc, &session, &id).await?;
        }
        until_all(&client, &bases, &secret, 401).await?;
        if i % 2 == 0 {
            leaked.push(start.elapsed());
        } else {
            deleted.push(start.elapsed());
        }
    }

    let p99 = summary(
        "GitHub leak report -> refused on both API nodes (signature check, revocation, JetStream, both replicas)",
        &mut leaked,
    );
    let b99 = summary(
        "baseline DELETE /v1/tokens/{id} -> refused on both API nodes",
        &mut deleted,
    );
    println!(
        "ratio p99 / baseline p99: {:.2}   target: p99 < {TARGET_P99:?} ({})",
        p99.as_secs_f64() / b99.as_secs_f64().max(1e-9),
        Verdict::new(leaked.len(), 0, MIN_REPORTS, p99 < TARGET_P99)
    );
    Ok(())
}
